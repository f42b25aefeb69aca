//! Oracle parameters, set in genesis. Every field has a default and a hard
//! upper bound checked by [`OracleParams::validate`].

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::error::OracleError;
use crate::types::LogMoneyness;

/// Ceilings on the parameters themselves: what one report or one underlying may
/// cost the chain at most, whatever genesis says.
pub const HARD_MAX_REPORT_BYTES: usize = 64 * 1024;
pub const HARD_MAX_PRICES_PER_REPORT: usize = 64;
pub const HARD_MAX_EXPIRIES: usize = 32;
pub const HARD_MAX_SMILE_POINTS: usize = 32;
pub const HARD_MAX_HISTORY_ENTRIES: usize = 65_536;
pub const HARD_MAX_UNDERLYINGS: usize = 64;

/// Size limits of one signed report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReportLimits {
    /// Largest encoded `SignedOracleReport`, in bytes.
    pub max_report_bytes: usize,
    /// Underlyings in one report.
    pub max_prices_per_report: usize,
    /// Expiries in one underlying's surface.
    pub max_expiries: usize,
    /// Smile points in one expiry, besides the at-the-money point.
    pub max_smile_points: usize,
}

impl Default for ReportLimits {
    fn default() -> Self {
        // 16 expiries × 16 points × ~30 bytes ≈ 8 KiB per underlying at most;
        // a real report (a few expiries, 8 points) is well under 2 KiB.
        ReportLimits { max_report_bytes: 16 * 1024, max_prices_per_report: 16, max_expiries: 16, max_smile_points: 16 }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OracleParams {
    /// A report observed longer ago than this (block time minus observation
    /// time) is ignored.
    pub max_report_age_ms: u64,
    /// A report observed later than block time plus this is ignored: feeders'
    /// clocks may run a little ahead, never far.
    pub max_future_skew_ms: u64,
    /// Largest move of the index in one update, in basis points of the current
    /// index (never less than one price unit, 0.000001). A larger aggregate is
    /// reached in steps of this size, one per update.
    pub max_move_per_update_bps: u32,
    /// An underlying with no accepted update for this long turns stale.
    pub stale_after_ms: u64,
    /// The settlement TWAP window before expiry.
    pub twap_window_ms: u64,
    /// How long index history is kept; at least the TWAP window, longer so that
    /// settlement can still be computed some time after expiry.
    pub history_retention_ms: u64,
    /// Ring size of each underlying's index history.
    pub history_max_entries: usize,
    /// Underlyings the oracle tracks.
    pub max_underlyings: usize,
    /// Log-moneyness nodes (besides 0) at which aggregated smiles are kept:
    /// every reporter's smile is evaluated at these, then the median is taken.
    pub smile_grid: Vec<Decimal>,
    pub limits: ReportLimits,
}

impl Default for OracleParams {
    fn default() -> Self {
        OracleParams {
            max_report_age_ms: 10_000,
            max_future_skew_ms: 2_000,
            max_move_per_update_bps: 200,
            stale_after_ms: 30_000,
            twap_window_ms: 30 * 60_000,
            history_retention_ms: 2 * 60 * 60_000,
            // One entry per index change: 8192 covers 2 hours of changes every
            // second (7200), the retention above at one-second blocks.
            history_max_entries: 8_192,
            max_underlyings: 16,
            smile_grid: default_smile_grid(),
            limits: ReportLimits::default(),
        }
    }
}

/// ±0.1, ±0.25, ±0.5, ±1: near-the-money detail, wings out to strikes at
/// about 37% and 272% of spot.
pub fn default_smile_grid() -> Vec<Decimal> {
    [-100, -50, -25, -10, 10, 25, 50, 100].into_iter().map(|hundredths| Decimal::new(hundredths, 2)).collect()
}

impl OracleParams {
    pub fn validate(&self) -> Result<(), OracleError> {
        let fail = |name, reason| Err(OracleError::InvalidParams { name, reason });
        if self.max_report_age_ms == 0 {
            return fail("max_report_age_ms", "must be positive");
        }
        if self.max_move_per_update_bps == 0 || self.max_move_per_update_bps >= 10_000 {
            return fail("max_move_per_update_bps", "must be in 1..=9999");
        }
        if self.stale_after_ms == 0 {
            return fail("stale_after_ms", "must be positive");
        }
        if self.twap_window_ms == 0 {
            return fail("twap_window_ms", "must be positive");
        }
        if self.history_retention_ms < self.twap_window_ms {
            return fail("history_retention_ms", "must cover the TWAP window");
        }
        if !(2..=HARD_MAX_HISTORY_ENTRIES).contains(&self.history_max_entries) {
            return fail("history_max_entries", "must be in 2..=65536");
        }
        if !(1..=HARD_MAX_UNDERLYINGS).contains(&self.max_underlyings) {
            return fail("max_underlyings", "must be in 1..=64");
        }
        let limits = &self.limits;
        if !(256..=HARD_MAX_REPORT_BYTES).contains(&limits.max_report_bytes) {
            return fail("limits.max_report_bytes", "must be in 256..=65536");
        }
        if !(1..=HARD_MAX_PRICES_PER_REPORT).contains(&limits.max_prices_per_report) {
            return fail("limits.max_prices_per_report", "must be in 1..=64");
        }
        if !(1..=HARD_MAX_EXPIRIES).contains(&limits.max_expiries) {
            return fail("limits.max_expiries", "must be in 1..=32");
        }
        if limits.max_smile_points > HARD_MAX_SMILE_POINTS {
            return fail("limits.max_smile_points", "must be at most 32");
        }
        if self.smile_grid.len() > limits.max_smile_points {
            return fail("smile_grid", "more nodes than limits.max_smile_points");
        }
        for node in &self.smile_grid {
            if node.is_zero() || LogMoneyness::new(*node).is_err() {
                return fail("smile_grid", "nodes must be non-zero valid log-moneyness");
            }
        }
        if self.smile_grid.windows(2).any(|pair| pair[0] >= pair[1]) {
            return fail("smile_grid", "must be strictly increasing");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_round_trip_through_json() {
        let params = OracleParams::default();
        params.validate().unwrap();
        let json = serde_json::to_string(&params).unwrap();
        assert!(json.contains("\"-0.25\""), "decimals travel as strings: {json}");
        let back: OracleParams = serde_json::from_str(&json).unwrap();
        assert_eq!(back, params);
        let partial: OracleParams = serde_json::from_str(r#"{"stale_after_ms": 5000}"#).unwrap();
        assert_eq!(partial.stale_after_ms, 5000);
        assert_eq!(partial.twap_window_ms, params.twap_window_ms);
        assert!(serde_json::from_str::<OracleParams>(r#"{"stale_after": 1}"#).is_err());
    }

    #[test]
    fn bad_params_are_refused() {
        type Change = Box<dyn Fn(&mut OracleParams)>;
        let cases: Vec<Change> = vec![
            Box::new(|p| p.max_move_per_update_bps = 0),
            Box::new(|p| p.max_move_per_update_bps = 10_000),
            Box::new(|p| p.history_retention_ms = p.twap_window_ms - 1),
            Box::new(|p| p.history_max_entries = 1),
            Box::new(|p| p.smile_grid = vec![Decimal::ZERO]),
            Box::new(|p| p.smile_grid = vec![Decimal::ONE, Decimal::NEGATIVE_ONE]),
            Box::new(|p| p.limits.max_expiries = 0),
            Box::new(|p| p.max_underlyings = 65),
        ];
        for (index, change) in cases.iter().enumerate() {
            let mut params = OracleParams::default();
            change(&mut params);
            assert!(
                matches!(params.validate(), Err(OracleError::InvalidParams { .. })),
                "case {index} must be refused"
            );
        }
    }
}
