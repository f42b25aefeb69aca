//! Index history and time-weighted averages.
//!
//! Each underlying keeps a bounded ring of (time, index) changes: an entry is
//! added only when the index changes, and it holds until the next entry. The
//! ring drops entries that ended before the retention horizon and, when full,
//! its oldest entry; a TWAP whose start the ring no longer covers is `None`,
//! never a guess. Because an unchanged index adds no entry, the history also
//! keeps the quiet periods (no accepted aggregate for longer than the
//! staleness bound, e.g. a halt): a value "held" through one is no price.

use std::collections::VecDeque;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

use crate::types::{IndexPrice, PRICE_SCALE};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexHistory {
    /// (time the value took effect, value), strictly increasing in time.
    entries: VecDeque<(u64, IndexPrice)>,
    max_entries: usize,
    /// When the last aggregate was accepted.
    last_alive_ms: Option<u64>,
    /// (last aggregate before, first aggregate after) of each quiet period
    /// longer than the staleness bound, oldest first; at most `MAX_QUIET_PERIODS`.
    quiet: VecDeque<(u64, u64)>,
}

/// Quiet periods remembered; older ones fall out with the retention horizon.
pub const MAX_QUIET_PERIODS: usize = 64;

impl IndexHistory {
    pub fn new(max_entries: usize) -> Self {
        assert!(max_entries >= 2, "a history needs room for two entries");
        IndexHistory { entries: VecDeque::new(), max_entries, last_alive_ms: None, quiet: VecDeque::new() }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The kept (time, value) entries, oldest first: what a state commitment covers.
    pub fn entries(&self) -> impl Iterator<Item = (u64, IndexPrice)> + '_ {
        self.entries.iter().copied()
    }

    /// Records that the index is `price` from `at_ms` on. An unchanged price adds
    /// nothing; a second value at the same time replaces the first. Time never
    /// goes back (block time is monotonic); an earlier time is a caller bug.
    pub fn record(&mut self, at_ms: u64, price: IndexPrice) {
        if let Some(&(last_at, last_price)) = self.entries.back() {
            assert!(at_ms >= last_at, "index history time went backwards");
            if last_price == price {
                return;
            }
            if last_at == at_ms {
                self.entries.pop_back();
                if self.entries.back().is_some_and(|(_, p)| *p == price) {
                    return;
                }
            }
        }
        if self.entries.len() == self.max_entries {
            self.entries.pop_front();
        }
        self.entries.push_back((at_ms, price));
    }

    /// Notes that an aggregate was accepted at `at_ms`; a silence longer than
    /// `max_quiet_ms` since the previous one is remembered as a quiet period.
    pub fn mark_alive(&mut self, at_ms: u64, max_quiet_ms: u64) {
        if let Some(previous) = self.last_alive_ms
            && at_ms.saturating_sub(previous) > max_quiet_ms
        {
            if self.quiet.len() == MAX_QUIET_PERIODS {
                self.quiet.pop_front();
            }
            self.quiet.push_back((previous, at_ms));
        }
        self.last_alive_ms = Some(at_ms);
    }

    /// The remembered quiet periods, oldest first: what a state commitment covers.
    pub fn quiet_periods(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.quiet.iter().copied()
    }

    /// Whether prices were live throughout [from_ms, to_ms): no quiet period
    /// overlaps it, and the last aggregate is recent enough to reach its end.
    pub fn live_through(&self, from_ms: u64, to_ms: u64, max_quiet_ms: u64) -> bool {
        let recent = self.last_alive_ms.is_some_and(|at| at.saturating_add(max_quiet_ms) >= to_ms);
        recent && !self.quiet.iter().any(|(start, end)| *start < to_ms && *end > from_ms)
    }

    /// Drops entries that stopped holding at or before `horizon_ms`; the entry in
    /// force at the horizon stays, since it covers the start of the window.
    pub fn prune(&mut self, horizon_ms: u64) {
        while self.entries.len() >= 2 && self.entries[1].0 <= horizon_ms {
            self.entries.pop_front();
        }
        while self.quiet.front().is_some_and(|(_, end)| *end <= horizon_ms) {
            self.quiet.pop_front();
        }
    }

    /// The time-weighted average index over [from_ms, to_ms): each value weighted
    /// by how long it held inside the interval; the last value is taken to hold
    /// until `to_ms`. Exact sum, one division rounded half-to-even to
    /// [`PRICE_SCALE`] decimals (neutral between buyers and sellers at
    /// settlement). `None` when the interval is empty or starts before the
    /// oldest entry kept.
    pub fn twap(&self, from_ms: u64, to_ms: u64) -> Option<Decimal> {
        if from_ms >= to_ms || self.entries.front().is_none_or(|(at, _)| *at > from_ms) {
            return None;
        }
        let mut weighted = Decimal::ZERO;
        for (index, &(start, price)) in self.entries.iter().enumerate() {
            let end = self.entries.get(index + 1).map_or(u64::MAX, |(at, _)| *at);
            let overlap_start = start.max(from_ms);
            let overlap_end = end.min(to_ms);
            if overlap_end <= overlap_start {
                continue;
            }
            // price ≤ 1e12 with 6 decimals, duration < 2^64 ms: checked, and far
            // inside Decimal for any real window.
            let term = price.value().checked_mul(Decimal::from(overlap_end - overlap_start))?;
            weighted = weighted.checked_add(term)?;
        }
        let average = weighted.checked_div(Decimal::from(to_ms - from_ms))?;
        Some(average.round_dp_with_strategy(PRICE_SCALE, RoundingStrategy::MidpointNearestEven).normalize())
    }

    /// Smallest and largest value in force during [from_ms, to_ms).
    pub fn range(&self, from_ms: u64, to_ms: u64) -> Option<(IndexPrice, IndexPrice)> {
        let mut result: Option<(IndexPrice, IndexPrice)> = None;
        for (index, &(start, price)) in self.entries.iter().enumerate() {
            let end = self.entries.get(index + 1).map_or(u64::MAX, |(at, _)| *at);
            if end <= from_ms || start >= to_ms {
                continue;
            }
            result = Some(match result {
                None => (price, price),
                Some((low, high)) => (low.min(price), high.max(price)),
            });
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_halt_is_remembered_and_breaks_liveness() {
        let mut history = IndexHistory::new(16);
        history.mark_alive(1_000, 30_000);
        history.mark_alive(20_000, 30_000);
        assert!(history.live_through(0, 40_000, 30_000));
        assert!(!history.live_through(0, 60_000, 30_000), "silent since 20 s: not live at 60 s");
        history.mark_alive(100_000, 30_000);
        assert_eq!(history.quiet_periods().collect::<Vec<_>>(), vec![(20_000, 100_000)]);
        assert!(!history.live_through(50_000, 100_000, 30_000), "the window falls in the halt");
        assert!(history.live_through(100_000, 110_000, 30_000));
        history.prune(100_000);
        assert_eq!(history.quiet_periods().count(), 0);
    }

    fn price(text: &str) -> IndexPrice {
        IndexPrice::parse(text).unwrap()
    }

    #[test]
    fn twap_weights_by_duration() {
        let mut history = IndexHistory::new(16);
        history.record(1_000, price("100"));
        history.record(2_000, price("200"));
        history.record(4_000, price("100"));
        // [1000, 5000): 100 for 1s, 200 for 2s, 100 for 1s → 150.
        assert_eq!(history.twap(1_000, 5_000), Some(Decimal::from(150)));
        // Partial overlap at both ends: [1500, 3000) → (100×500 + 200×1000)/1500.
        assert_eq!(history.twap(1_500, 3_000), Some("166.666667".parse().unwrap()));
        assert_eq!(history.twap(999, 2_000), None, "starts before the history");
        assert_eq!(history.twap(3_000, 3_000), None, "empty interval");
    }

    #[test]
    fn record_skips_repeats_and_replaces_same_time() {
        let mut history = IndexHistory::new(16);
        history.record(1, price("1"));
        history.record(2, price("1"));
        assert_eq!(history.len(), 1);
        history.record(3, price("2"));
        history.record(3, price("3"));
        assert_eq!(history.len(), 2);
        assert_eq!(history.twap(3, 4), Some(Decimal::from(3)));
        history.record(3, price("1"));
        assert_eq!(history.len(), 1, "back to the previous value removes the change");
    }

    #[test]
    fn ring_and_prune_bound_the_history() {
        let mut history = IndexHistory::new(3);
        for (at, value) in [(0, "1"), (10, "2"), (20, "3"), (30, "4")] {
            history.record(at, price(value));
        }
        assert_eq!(history.len(), 3);
        assert_eq!(history.twap(5, 15), None, "the oldest entry was dropped");
        assert_eq!(history.twap(10, 20), Some(Decimal::from(2)));
        history.prune(25);
        assert_eq!(history.len(), 2, "the entry in force at the horizon stays");
        assert_eq!(history.twap(25, 35), Some("3.5".parse().unwrap()));
    }

    fn prices_strategy() -> impl Strategy<Value = Vec<(u64, u64)>> {
        // (gap in ms, price in millionths of a dollar)
        prop::collection::vec((1u64..10_000, 1u64..1_000_000_000_000), 1..40)
    }

    proptest! {
        #[test]
        fn twap_of_a_constant_is_the_constant(
            value in 1u64..1_000_000_000_000_000,
            start in 0u64..1_000_000,
            length in 1u64..10_000_000,
            offset in 0u64..1_000,
        ) {
            let mut history = IndexHistory::new(8);
            let constant = price(&Decimal::new(value as i64, 6).to_string());
            history.record(start, constant);
            history.record(start + length / 2, constant);
            prop_assert_eq!(history.twap(start + offset, start + offset + length), Some(constant.value()));
        }

        #[test]
        fn twap_is_bounded_by_the_window(steps in prices_strategy(), from_frac in 0u64..100, span in 1u64..400_000) {
            let mut history = IndexHistory::new(64);
            let mut at = 0;
            for (gap, millionths) in &steps {
                history.record(at, price(&Decimal::new(*millionths as i64, 6).to_string()));
                at += gap;
            }
            let from = at * from_frac / 100;
            let to = from + span;
            let twap = history.twap(from, to).unwrap();
            let (low, high) = history.range(from, to).unwrap();
            prop_assert!(low.value() <= twap && twap <= high.value(), "{} not in [{}, {}]", twap, low, high);
        }
    }
}
