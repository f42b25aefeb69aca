//! Liquidation parameters, fixed in genesis.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::LiquidationError;

/// How liquidations are run. Every field has a default, so a genesis file may
/// name only what it changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LiquidationParams {
    /// Penalty as a fraction of the account's maintenance margin when the
    /// liquidation starts, charged in proportion to the contracts closed.
    pub penalty_rate: Decimal,
    /// Fraction of each penalty paid to the keeper that took the position (or
    /// sent the `Liquidate` transaction); the rest goes to the insurance fund.
    pub keeper_share: Decimal,
    /// Below this fraction of maintenance margin, equity no longer allows a
    /// partial liquidation: every position is closed.
    pub full_close_fraction: Decimal,
    /// The book step's immediate-or-cancel orders trade at most this fraction
    /// of the mark away from it.
    pub book_band: Decimal,
    /// Largest discount from mark a backstop offer may ask.
    pub max_backstop_discount: Decimal,
    /// Backstop offers one keeper may hold at once.
    pub max_offers_per_keeper: u32,
    /// A series volatility that moved more than this (absolute, 0.02 = two vol
    /// points) since the last full scan makes the engine rescan every account
    /// with positions in that underlying.
    pub volatility_rescan_bound: Decimal,
    /// Each account's index entry is re-evaluated at least this often (block
    /// time), which bounds how far time decay can move it unseen.
    pub refresh_ms: u64,
}

impl Default for LiquidationParams {
    fn default() -> Self {
        LiquidationParams {
            penalty_rate: Decimal::new(10, 2),
            keeper_share: Decimal::new(50, 2),
            full_close_fraction: Decimal::new(50, 2),
            book_band: Decimal::new(10, 2),
            max_backstop_discount: Decimal::new(20, 2),
            max_offers_per_keeper: 8,
            volatility_rescan_bound: Decimal::new(2, 2),
            refresh_ms: 300_000,
        }
    }
}

impl LiquidationParams {
    pub fn validate(&self) -> Result<(), LiquidationError> {
        let fraction = |name: &'static str, value: Decimal, max: Decimal| {
            if value < Decimal::ZERO || value > max {
                Err(LiquidationError::InvalidParams { name, why: "must be between 0 and its maximum (see the docs)" })
            } else {
                Ok(())
            }
        };
        fraction("penalty_rate", self.penalty_rate, Decimal::ONE)?;
        fraction("keeper_share", self.keeper_share, Decimal::ONE)?;
        fraction("full_close_fraction", self.full_close_fraction, Decimal::ONE)?;
        fraction("book_band", self.book_band, Decimal::new(5, 1))?;
        fraction("max_backstop_discount", self.max_backstop_discount, Decimal::new(5, 1))?;
        fraction("volatility_rescan_bound", self.volatility_rescan_bound, Decimal::new(5, 1))?;
        if self.volatility_rescan_bound.is_zero() {
            return Err(LiquidationError::InvalidParams { name: "volatility_rescan_bound", why: "must be above 0" });
        }
        if self.refresh_ms == 0 || self.refresh_ms > 3_600_000 {
            return Err(LiquidationError::InvalidParams { name: "refresh_ms", why: "must be between 1 and 3600000" });
        }
        if self.max_offers_per_keeper == 0 || self.max_offers_per_keeper > 64 {
            return Err(LiquidationError::InvalidParams { name: "max_offers_per_keeper", why: "must be 1 to 64" });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bounds_are_enforced() {
        assert_eq!(LiquidationParams::default().validate(), Ok(()));
        let bad = LiquidationParams { keeper_share: Decimal::new(11, 1), ..LiquidationParams::default() };
        assert!(bad.validate().is_err());
        let bad = LiquidationParams { refresh_ms: 0, ..LiquidationParams::default() };
        assert!(bad.validate().is_err());
        let bad = LiquidationParams { volatility_rescan_bound: Decimal::ZERO, ..LiquidationParams::default() };
        assert!(bad.validate().is_err());
    }
}
