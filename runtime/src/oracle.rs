//! The oracle in the runtime: each block's signed reports are verified and
//! handed to `vanna_oracle::Oracle` in `begin_block`, before the block's
//! transactions, with the active set's power as stake (a reporter is an
//! operator address). The oracle owns the index every other module reads
//! (fee notional, margin spot, settlement) and the Fresh/Stale status that
//! makes a market reduce-only.

use vanna_oracle::{IgnoreReason, IndexPrice, OracleEvent, ReporterId, StakeTable, Status, Underlying};
use vanna_proto::v1 as wire;

use crate::error::Field;
use crate::events::Event;
use crate::ids::Address;
use crate::limits::MAX_ORACLE_REPORTS_PER_BLOCK;
use crate::money::Price;
use crate::state::State;

/// The oracle's name for a runtime underlying symbol. Genesis checks every
/// symbol converts, and underlyings are only listed at genesis.
pub(crate) fn oracle_symbol(symbol: &str) -> Underlying {
    Underlying::new(symbol).expect("genesis checked that every underlying symbol is valid for the oracle")
}

impl State {
    /// The index of an underlying: the oracle's, which starts at the genesis
    /// index and only moves with accepted reports.
    pub fn index_price(&self, symbol: &str) -> Price {
        let index = self.oracle.index(symbol).expect("every underlying is listed with an initial index");
        Price::new(index.value(), Field::IndexPrice).expect("an oracle index is positive with at most 6 decimals")
    }

    /// Whether the underlying's markets are reduce-only for want of fresh prices.
    pub fn is_stale(&self, symbol: &str) -> bool {
        self.oracle.status(symbol) != Some(Status::Fresh)
    }

    /// Verifies the block's reports and applies them. A report that fails
    /// verification is dropped with an event naming the reason; too many
    /// reports is a malformed block, checked by `begin_block` before anything
    /// changes.
    pub(crate) fn apply_oracle_reports(&mut self, reports: &[Vec<u8>], events: &mut Vec<Event>) {
        debug_assert!(reports.len() <= MAX_ORACLE_REPORTS_PER_BLOCK);
        let limits = self.oracle.params().limits.clone();
        let mut verified = Vec::with_capacity(reports.len());
        for (position, bytes) in reports.iter().enumerate() {
            match vanna_oracle::verify_report(&self.params.chain_id, bytes, &limits) {
                Ok(report) => verified.push(report),
                Err(error) => events.push(Event::OracleReportRejected { position, reason: error.to_string() }),
            }
        }
        let stakes: Vec<(ReporterId, u64)> = self
            .staking
            .active
            .iter()
            // A validator jailed mid-epoch (evidence, downtime) loses its oracle weight at once.
            .filter(|member| self.staking.validators.get(&member.operator).is_some_and(|v| !v.jailed))
            .map(|member| (ReporterId(*member.operator.as_bytes()), member.power))
            .collect();
        let stakes = StakeTable::new(&stakes)
            .expect("the active set has unique operators and at most MAX_VALIDATORS < MAX_REPORTERS members");
        let before: Vec<_> = self.oracle.underlyings().map(|u| (u.clone(), self.oracle_fingerprint(u))).collect();
        let oracle_events = self.oracle.apply(self.time_ms, &verified, &stakes);
        // A leaf changes when its state, its history or its latest reports do;
        // a report accepted without changing the index still replaces its
        // reporter's latest, which the fingerprint's newest report time sees.
        for (underlying, fingerprint) in before {
            if self.oracle_fingerprint(&underlying) != fingerprint {
                self.commitment.touch_oracle(underlying.as_str());
            }
        }
        events.extend(oracle_events.into_iter().map(oracle_event));
    }

    /// What changes whenever an underlying's committed oracle state changes:
    /// reports are only added (newer) or dropped, history entries only
    /// appended or pruned from the front.
    fn oracle_fingerprint(&self, underlying: &Underlying) -> OracleFingerprint {
        let history = self.oracle.history(underlying);
        let reports: Vec<(ReporterId, u64)> = self
            .oracle
            .latest_reports(underlying)
            .map(|(reporter, report)| (*reporter, report.observed_at_ms))
            .collect();
        OracleFingerprint {
            state: self.oracle.state(underlying).cloned(),
            history_len: history.map_or(0, |h| h.len()),
            history_first: history.and_then(|h| h.entries().next()),
            quiet: history.map(|h| h.quiet_periods().collect()).unwrap_or_default(),
            reports,
        }
    }

    /// The committed form of an underlying's oracle state.
    pub(crate) fn oracle_state(&self, underlying: &Underlying) -> wire::OracleState {
        let state = self.oracle.state(underlying).expect("only listed underlyings are committed");
        let text = |price: Option<IndexPrice>| price.map(|p| p.to_string()).unwrap_or_default();
        wire::OracleState {
            underlying: underlying.to_string(),
            stale: state.status == Status::Stale,
            index: text(state.index),
            aggregate: text(state.aggregate),
            last_update_ms: state.last_update_ms.unwrap_or(0),
            surface: state.surface.as_ref().map(vanna_oracle::report::surface_to_wire),
            surface_updated_ms: state.surface_updated_ms.unwrap_or(0),
            history: self
                .oracle
                .history(underlying)
                .into_iter()
                .flat_map(|history| history.entries())
                .map(|(at_ms, index)| wire::IndexHistoryEntry { at_ms, index: index.to_string() })
                .collect(),
            quiet_periods: self
                .oracle
                .history(underlying)
                .into_iter()
                .flat_map(|history| history.quiet_periods())
                .map(|(from_ms, to_ms)| wire::QuietPeriod { from_ms, to_ms })
                .collect(),
            latest_reports: self
                .oracle
                .latest_reports(underlying)
                .map(|(reporter, report)| wire::LatestReport {
                    reporter: reporter.as_bytes().to_vec(),
                    report: Some(report.to_wire()),
                })
                .collect(),
        }
    }
}

#[derive(PartialEq)]
struct OracleFingerprint {
    state: Option<vanna_oracle::UnderlyingState>,
    history_len: usize,
    history_first: Option<(u64, IndexPrice)>,
    quiet: Vec<(u64, u64)>,
    reports: Vec<(ReporterId, u64)>,
}

fn ignore_reason(reason: IgnoreReason) -> &'static str {
    match reason {
        IgnoreReason::UnlistedUnderlying => "unlisted underlying",
        IgnoreReason::NoStake => "reporter is not in the active set",
        IgnoreReason::TooOld => "observed longer ago than max_report_age_ms",
        IgnoreReason::FromTheFuture => "observed later than block time plus max_future_skew_ms",
        IgnoreReason::NotNewer => "not newer than the reporter's latest report",
    }
}

fn oracle_event(event: OracleEvent) -> Event {
    match event {
        OracleEvent::IndexUpdated { underlying, index, aggregate, clamped, covered_stake, total_stake } => {
            Event::IndexUpdated {
                underlying: underlying.to_string(),
                index: index.value(),
                aggregate: aggregate.value(),
                clamped,
                covered_stake,
                total_stake,
            }
        }
        OracleEvent::SurfaceUpdated { underlying, expiries } => {
            Event::SurfaceUpdated { underlying: underlying.to_string(), expiries }
        }
        OracleEvent::QuorumMissed { underlying, covered_stake, total_stake } => {
            Event::OracleQuorumMissed { underlying: underlying.to_string(), covered_stake, total_stake }
        }
        OracleEvent::BecameStale { underlying } => Event::UnderlyingStale { underlying: underlying.to_string() },
        OracleEvent::BecameFresh { underlying } => Event::UnderlyingFresh { underlying: underlying.to_string() },
        OracleEvent::ReportIgnored { reporter, underlying, reason } => Event::OracleReportIgnored {
            reporter: Address(*reporter.as_bytes()),
            underlying: underlying.to_string(),
            reason: ignore_reason(reason),
        },
    }
}

/// Refuses a block with more reports than any honest proposer includes.
pub(crate) fn check_report_count(reports: &[Vec<u8>]) -> Result<(), crate::BlockError> {
    if reports.len() > MAX_ORACLE_REPORTS_PER_BLOCK {
        return Err(crate::BlockError::TooManyOracleReports {
            count: reports.len(),
            max: MAX_ORACLE_REPORTS_PER_BLOCK,
        });
    }
    Ok(())
}
