//! The two pure rules aggregation is built from: the stake-weighted median and
//! the per-update deviation guard.

use rust_decimal::{Decimal, RoundingStrategy};

use crate::types::{IndexPrice, PRICE_SCALE};

/// The lower stake-weighted median: the smallest value v such that the values
/// ≤ v carry at least half of the weight. Zero weights count for nothing.
///
/// Why it resists a third: when the weight in the list is more than two thirds
/// of all stake and the liars hold at most a third, the liars hold less than
/// half of the list. Any value below every honest value has at most the liars'
/// weight at or below it (less than half); past the highest honest value the
/// honest weight alone already reaches half. So the median lies within the
/// honest range.
pub fn weighted_median<T: Ord + Copy>(items: &[(T, u64)]) -> Option<T> {
    let mut items: Vec<(T, u64)> = items.iter().copied().filter(|(_, w)| *w > 0).collect();
    items.sort_unstable_by_key(|(value, _)| *value);
    let total: u128 = items.iter().map(|(_, w)| u128::from(*w)).sum();
    let mut cumulative: u128 = 0;
    for (value, weight) in items {
        cumulative += u128::from(weight);
        if cumulative * 2 >= total {
            return Some(value);
        }
    }
    None
}

/// One price unit, 0.000001: the smallest step the guard always allows, so a
/// tiny index can still move.
pub fn price_unit() -> Decimal {
    Decimal::new(1, PRICE_SCALE)
}

/// The largest move allowed from `current` in one update:
/// max(current × bps / 10 000 rounded down to a price unit, one price unit).
pub fn max_move(current: IndexPrice, max_move_bps: u32) -> Decimal {
    let bound = current.value() * Decimal::from(max_move_bps) / Decimal::from(10_000);
    bound.round_dp_with_strategy(PRICE_SCALE, RoundingStrategy::ToZero).max(price_unit())
}

/// Moves from `current` toward `target` by at most [`max_move`]; returns the
/// new index and whether it fell short of the target.
pub fn step_toward(current: IndexPrice, target: IndexPrice, max_move_bps: u32) -> (IndexPrice, bool) {
    let bound = max_move(current, max_move_bps);
    let now = current.value();
    let stepped = if target.value() > now + bound {
        now + bound
    } else if target.value() < now - bound {
        // target > 0, so now - bound > target > 0.
        now - bound
    } else {
        return (target, false);
    };
    // Between current and target, both valid prices, with six decimals.
    let stepped = IndexPrice::new(stepped).expect("a step between two valid prices is valid");
    (stepped, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn price(text: &str) -> IndexPrice {
        IndexPrice::parse(text).unwrap()
    }

    #[test]
    fn weighted_median_by_stake() {
        assert_eq!(weighted_median::<u32>(&[]), None);
        assert_eq!(weighted_median(&[(5, 0)]), None);
        assert_eq!(weighted_median(&[(1, 1), (2, 1), (3, 1)]), Some(2));
        // Even split: the lower median.
        assert_eq!(weighted_median(&[(1, 1), (2, 1)]), Some(1));
        // One heavy reporter decides.
        assert_eq!(weighted_median(&[(1, 1), (9, 10), (3, 1)]), Some(9));
        assert_eq!(weighted_median(&[(7, u64::MAX), (1, u64::MAX), (4, 1)]), Some(4));
    }

    #[test]
    fn step_is_bounded_and_reaches_near_targets() {
        let current = price("100");
        assert_eq!(step_toward(current, price("101"), 200), (price("101"), false));
        assert_eq!(step_toward(current, price("150"), 200), (price("102"), true));
        assert_eq!(step_toward(current, price("1"), 200), (price("98"), true));
        // A tiny index still moves by one unit.
        let tiny = price("0.000010");
        assert_eq!(step_toward(tiny, price("1"), 200), (price("0.000011"), true));
        assert_eq!(step_toward(tiny, price("0.000001"), 200), (price("0.000009"), true));
        // Rounded toward the current value, never past the bound.
        assert_eq!(max_move(price("0.333333"), 300), "0.009999".parse().unwrap());
    }
}
