//! The oracle state machine the runtime drives once per block.
//!
//! Per underlying it keeps the latest report of each staked reporter, the
//! index, the aggregated surface, a Fresh/Stale status and the index history.
//! [`Oracle::apply`] takes block time, the block's verified reports and the
//! active stakes, and returns what changed as events.
//!
//! Rules, in order, for each listed underlying:
//! 1. A report counts while block time minus its observation time is at most
//!    `max_report_age_ms`; a newer report of the same reporter replaces the
//!    older one ("latest per reporter"). Reports from reporters without stake,
//!    from too far in the future or for unlisted underlyings are ignored.
//! 2. When the counted reporters hold more than two thirds of the active stake,
//!    their stake-weighted median spot is the aggregate. Otherwise nothing moves.
//! 3. Deviation guard: a Fresh index moves toward the aggregate by at most
//!    `max_move_per_update_bps` per block (bounded steps, not a supermajority
//!    bypass). Why steps: a genuine crash is still followed, within
//!    ln(ratio)/ln(1 + bound) blocks (a 30% fall at 2% in 18 blocks), while a
//!    glitch that survives the median for a block or two moves margin by at most
//!    a step or two. A supermajority rule would let a single bad block jump the
//!    index, and the quorum is already a two-thirds supermajority. The latest
//!    reports stay counted while fresh, so the steps continue every block
//!    without new reports.
//! 4. Staleness: without an accepted aggregate for `stale_after_ms` the
//!    underlying turns Stale (its markets go reduce-only). The first accepted
//!    aggregate after that sets the index directly, unguarded: the old index is
//!    no reference any more, and the quorum still applies.
//! 5. Surfaces: an expiry (still in the future) enters the aggregated surface
//!    when reporters quoting it hold more than two thirds of the stake; at
//!    k = 0 and at every `smile_grid` node, each such reporter's smile is
//!    evaluated exactly (linear in vol, flat beyond) and the stake-weighted
//!    median taken, node by node. The nearest `limits.max_expiries` expiries
//!    are kept. Surfaces are not step-guarded: vol may jump in a crash, and the
//!    median already bounds it by honest values.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::aggregate::{step_toward, weighted_median};
use crate::error::OracleError;
use crate::history::IndexHistory;
use crate::params::OracleParams;
use crate::report::{PriceReport, VerifiedReport};
use crate::surface::{ExpirySmile, SmilePoint, VolSurface};
use crate::types::{IndexPrice, LogMoneyness, ReporterId, StakeTable, Underlying, is_supermajority};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    Fresh,
    /// No accepted update for `stale_after_ms` (or none yet): reduce-only.
    Stale,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IgnoreReason {
    UnlistedUnderlying,
    NoStake,
    TooOld,
    FromTheFuture,
    /// The reporter already has a report observed at the same time or later.
    NotNewer,
}

#[derive(Clone, Debug, PartialEq)]
pub enum OracleEvent {
    IndexUpdated {
        underlying: Underlying,
        index: IndexPrice,
        /// The stake-weighted median; differs from `index` while stepping.
        aggregate: IndexPrice,
        clamped: bool,
        covered_stake: u128,
        total_stake: u128,
    },
    SurfaceUpdated {
        underlying: Underlying,
        expiries: usize,
    },
    /// Some reports counted, but not more than two thirds of the stake.
    QuorumMissed {
        underlying: Underlying,
        covered_stake: u128,
        total_stake: u128,
    },
    BecameStale {
        underlying: Underlying,
    },
    BecameFresh {
        underlying: Underlying,
    },
    ReportIgnored {
        reporter: ReporterId,
        underlying: Underlying,
        reason: IgnoreReason,
    },
}

/// What the runtime reads about one underlying.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UnderlyingState {
    pub status: Status,
    /// The index margin and fees use; None until the first update.
    pub index: Option<IndexPrice>,
    /// The last accepted aggregate, which the index steps toward.
    pub aggregate: Option<IndexPrice>,
    pub last_update_ms: Option<u64>,
    pub surface: Option<VolSurface>,
    pub surface_updated_ms: Option<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Entry {
    state: UnderlyingState,
    latest: BTreeMap<ReporterId, PriceReport>,
    history: IndexHistory,
}

/// Serialized whole (params, and per underlying its state, latest reports
/// and history) for state snapshots.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Oracle {
    params: OracleParams,
    underlyings: BTreeMap<Underlying, Entry>,
}

impl Oracle {
    pub fn new(params: OracleParams) -> Result<Self, OracleError> {
        params.validate()?;
        Ok(Oracle { params, underlyings: BTreeMap::new() })
    }

    pub fn params(&self) -> &OracleParams {
        &self.params
    }

    /// Starts tracking an underlying. With an initial index (from genesis) it is
    /// Fresh from `now_ms`; without, Stale until its first accepted aggregate.
    pub fn list_underlying(
        &mut self,
        underlying: Underlying,
        initial_index: Option<IndexPrice>,
        now_ms: u64,
    ) -> Result<(), OracleError> {
        if self.underlyings.contains_key(&underlying) {
            return Err(OracleError::AlreadyListed(underlying.to_string()));
        }
        if self.underlyings.len() >= self.params.max_underlyings {
            return Err(OracleError::TooMany {
                what: "underlyings",
                count: self.underlyings.len() + 1,
                max: self.params.max_underlyings,
            });
        }
        let mut history = IndexHistory::new(self.params.history_max_entries);
        if let Some(index) = initial_index {
            history.record(now_ms, index);
            history.mark_alive(now_ms, self.params.stale_after_ms);
        }
        let state = UnderlyingState {
            status: if initial_index.is_some() { Status::Fresh } else { Status::Stale },
            index: initial_index,
            aggregate: initial_index,
            last_update_ms: initial_index.map(|_| now_ms),
            surface: None,
            surface_updated_ms: None,
        };
        self.underlyings.insert(underlying, Entry { state, latest: BTreeMap::new(), history });
        Ok(())
    }

    pub fn underlyings(&self) -> impl Iterator<Item = &Underlying> {
        self.underlyings.keys()
    }

    /// By `Underlying` or by its symbol (`&str`): the hot paths ask by symbol
    /// without building an `Underlying`.
    pub fn state<Q: Ord + ?Sized>(&self, underlying: &Q) -> Option<&UnderlyingState>
    where
        Underlying: std::borrow::Borrow<Q>,
    {
        self.underlyings.get(underlying).map(|entry| &entry.state)
    }

    pub fn status<Q: Ord + ?Sized>(&self, underlying: &Q) -> Option<Status>
    where
        Underlying: std::borrow::Borrow<Q>,
    {
        self.state(underlying).map(|state| state.status)
    }

    pub fn index<Q: Ord + ?Sized>(&self, underlying: &Q) -> Option<IndexPrice>
    where
        Underlying: std::borrow::Borrow<Q>,
    {
        self.state(underlying).and_then(|state| state.index)
    }

    /// The index history kept for the TWAP.
    pub fn history(&self, underlying: &Underlying) -> Option<&IndexHistory> {
        self.underlyings.get(underlying).map(|entry| &entry.history)
    }

    /// Each reporter's latest counted report, by reporter: state that the next
    /// blocks' aggregation reads, so the runtime commits it.
    pub fn latest_reports(&self, underlying: &Underlying) -> impl Iterator<Item = (&ReporterId, &PriceReport)> {
        self.underlyings.get(underlying).into_iter().flat_map(|entry| entry.latest.iter())
    }

    pub fn surface(&self, underlying: &Underlying) -> Option<&VolSurface> {
        self.state(underlying).and_then(|state| state.surface.as_ref())
    }

    /// Time-weighted average index over [from_ms, to_ms); see
    /// [`IndexHistory::twap`]. Call with `to_ms` at or before the last applied
    /// block time.
    pub fn twap(&self, underlying: &Underlying, from_ms: u64, to_ms: u64) -> Option<Decimal> {
        self.underlyings.get(underlying)?.history.twap(from_ms, to_ms)
    }

    /// The settlement price of an expiry: the TWAP over the `twap_window_ms`
    /// before it.
    pub fn settlement_price(&self, underlying: &Underlying, expiry_ms: u64) -> Option<Decimal> {
        let from = expiry_ms.checked_sub(self.params.twap_window_ms)?;
        let history = &self.underlyings.get(underlying)?.history;
        // A value merely held through a halt or a stale spell is no price.
        if !history.live_through(from, expiry_ms, self.params.stale_after_ms) {
            return None;
        }
        self.twap(underlying, from, expiry_ms)
    }

    /// Applies one block: ingests `reports`, aggregates every listed underlying,
    /// updates statuses and history. `now_ms` is block time and never decreases.
    pub fn apply(&mut self, now_ms: u64, reports: &[VerifiedReport], stakes: &StakeTable) -> Vec<OracleEvent> {
        let mut events = Vec::new();
        let params = &self.params;
        for entry in self.underlyings.values_mut() {
            entry.latest.retain(|reporter, _| stakes.stake_of(reporter) > 0);
        }
        for report in reports {
            for price in &report.prices {
                let reason = ingest(&mut self.underlyings, params, now_ms, report.reporter, price, stakes);
                if let Some(reason) = reason {
                    events.push(OracleEvent::ReportIgnored {
                        reporter: report.reporter,
                        underlying: price.underlying.clone(),
                        reason,
                    });
                }
            }
        }
        for (underlying, entry) in &mut self.underlyings {
            aggregate_one(params, now_ms, underlying, entry, stakes, &mut events);
        }
        events
    }
}

fn ingest(
    underlyings: &mut BTreeMap<Underlying, Entry>,
    params: &OracleParams,
    now_ms: u64,
    reporter: ReporterId,
    price: &PriceReport,
    stakes: &StakeTable,
) -> Option<IgnoreReason> {
    let Some(entry) = underlyings.get_mut(&price.underlying) else {
        return Some(IgnoreReason::UnlistedUnderlying);
    };
    if stakes.stake_of(&reporter) == 0 {
        return Some(IgnoreReason::NoStake);
    }
    if price.observed_at_ms > now_ms.saturating_add(params.max_future_skew_ms) {
        return Some(IgnoreReason::FromTheFuture);
    }
    if now_ms.saturating_sub(price.observed_at_ms) > params.max_report_age_ms {
        return Some(IgnoreReason::TooOld);
    }
    if entry.latest.get(&reporter).is_some_and(|old| old.observed_at_ms >= price.observed_at_ms) {
        return Some(IgnoreReason::NotNewer);
    }
    entry.latest.insert(reporter, price.clone());
    None
}

fn aggregate_one(
    params: &OracleParams,
    now_ms: u64,
    underlying: &Underlying,
    entry: &mut Entry,
    stakes: &StakeTable,
    events: &mut Vec<OracleEvent>,
) {
    entry.latest.retain(|_, report| now_ms.saturating_sub(report.observed_at_ms) <= params.max_report_age_ms);
    let total_stake = stakes.total();
    let covered_stake: u128 = entry.latest.keys().map(|reporter| u128::from(stakes.stake_of(reporter))).sum();
    let state = &mut entry.state;
    // Quiet for too long is stale whether or not a block came in between: after
    // a halt, the old index is no reference for the first aggregate.
    let quiet_too_long = state.last_update_ms.is_none_or(|at| now_ms.saturating_sub(at) >= params.stale_after_ms);
    if state.status == Status::Fresh && quiet_too_long {
        state.status = Status::Stale;
        events.push(OracleEvent::BecameStale { underlying: underlying.clone() });
    }
    let spots: Vec<(IndexPrice, u64)> =
        entry.latest.iter().map(|(reporter, report)| (report.spot, stakes.stake_of(reporter))).collect();
    match weighted_median(&spots).filter(|_| is_supermajority(covered_stake, total_stake)) {
        Some(aggregate) => {
            let (index, clamped) = match (state.status, state.index) {
                (Status::Fresh, Some(current)) => step_toward(current, aggregate, params.max_move_per_update_bps),
                _ => (aggregate, false),
            };
            if state.status == Status::Stale {
                state.status = Status::Fresh;
                events.push(OracleEvent::BecameFresh { underlying: underlying.clone() });
            }
            state.index = Some(index);
            state.aggregate = Some(aggregate);
            state.last_update_ms = Some(now_ms);
            entry.history.mark_alive(now_ms, params.stale_after_ms);
            entry.history.record(now_ms, index);
            events.push(OracleEvent::IndexUpdated {
                underlying: underlying.clone(),
                index,
                aggregate,
                clamped,
                covered_stake,
                total_stake,
            });
            if let Some(surface) = aggregate_surface(params, now_ms, &entry.latest, stakes) {
                events.push(OracleEvent::SurfaceUpdated {
                    underlying: underlying.clone(),
                    expiries: surface.expiries().len(),
                });
                state.surface = Some(surface);
                state.surface_updated_ms = Some(now_ms);
            }
        }
        None => {
            if covered_stake > 0 {
                events.push(OracleEvent::QuorumMissed { underlying: underlying.clone(), covered_stake, total_stake });
            }
        }
    }
    entry.history.prune(now_ms.saturating_sub(params.history_retention_ms));
}

/// The node-by-node stake-weighted median surface; see the module comment.
fn aggregate_surface(
    params: &OracleParams,
    now_ms: u64,
    latest: &BTreeMap<ReporterId, PriceReport>,
    stakes: &StakeTable,
) -> Option<VolSurface> {
    let mut coverage: BTreeMap<u64, u128> = BTreeMap::new();
    for (reporter, report) in latest {
        let Some(surface) = &report.surface else { continue };
        for smile in surface.expiries().iter().filter(|s| s.expiry_ms() > now_ms) {
            *coverage.entry(smile.expiry_ms()).or_default() += u128::from(stakes.stake_of(reporter));
        }
    }
    let mut expiries = Vec::new();
    for (expiry_ms, covered) in coverage {
        if expiries.len() == params.limits.max_expiries {
            break;
        }
        if !is_supermajority(covered, stakes.total()) {
            continue;
        }
        let quotes: Vec<(&ExpirySmile, u64)> = latest
            .iter()
            .filter_map(|(reporter, report)| {
                let smile = report.surface.as_ref()?.expiry(expiry_ms)?;
                Some((smile, stakes.stake_of(reporter)))
            })
            .collect();
        let median_at = |k: Decimal| {
            let values: Vec<_> = quotes.iter().map(|(smile, w)| (smile.vol_at(k), *w)).collect();
            weighted_median(&values)
        };
        let atm_vol = median_at(Decimal::ZERO)?;
        let mut smile = Vec::with_capacity(params.smile_grid.len());
        for node in &params.smile_grid {
            smile.push(SmilePoint { log_moneyness: LogMoneyness::new(*node).ok()?, vol: median_at(*node)? });
        }
        expiries.push(ExpirySmile::new(expiry_ms, atm_vol, smile, params.limits.max_smile_points).ok()?);
    }
    VolSurface::new(expiries, params.limits.max_expiries).ok()
}

#[cfg(test)]
mod tests;
