//! Margin parameters per underlying (set in genesis) and the scenario grids
//! they describe.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use vanna_pricing::{RATE_ABS_MAX, decimal_to_f64};

use crate::MarginError;

/// Most spot points in one grid; with three volatility levels per point and two
/// grids this bounds the scenarios of a table (see [`SCENARIOS_MAX`]).
pub const SPOT_POINTS_MAX: u32 = 41;
/// Volatility levels per spot point: shocked down, unchanged, shocked up.
pub const VOLATILITY_LEVELS: usize = 3;
/// Most scenarios a table holds: both grids at their largest.
pub const SCENARIOS_MAX: usize = 2 * SPOT_POINTS_MAX as usize * VOLATILITY_LEVELS;
/// Largest spot move a grid may apply: keeps every shocked spot positive.
const SPOT_MOVE_MAX_LIMIT: Decimal = Decimal::from_parts(9, 0, 0, false, 1);

/// One scenario grid and its per-contract charge.
///
/// Spot moves are relative and evenly spaced: `spot_points` moves from
/// `−spot_move_max` to `+spot_move_max` inclusive (an odd count, so "unchanged"
/// is one of them). Volatility moves are multiplicative: every series' vol is
/// scaled by `1 − volatility_shock`, `1` and `1 + volatility_shock`, so a 60 %
/// vol with a 0.3 shock is tested at 42 %, 60 % and 78 %. Every spot move is
/// crossed with every volatility move.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GridParams {
    /// Largest relative spot move each way: 0.15 is ±15 %.
    pub spot_move_max: Decimal,
    /// Odd number of evenly spaced spot moves, at least 3.
    pub spot_points: u32,
    /// Relative volatility shock, between 0 and 1: 0.3 is ×0.7 and ×1.3.
    pub volatility_shock: Decimal,
    /// Charge per net short contract, as a fraction of spot, added to the
    /// worst scenario loss: a floor for options the grid finds harmless (far
    /// out of the money) but that can still gap into the money.
    pub short_charge_spot_fraction: Decimal,
}

/// Margin parameters of one underlying.
///
/// The initial grid must be at least as wide as the maintenance grid in every
/// dimension; initial margin is then taken over both grids together, so it is
/// never below maintenance margin whatever the portfolio.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarginParams {
    /// Below this an account may be liquidated.
    pub maintenance: GridParams,
    /// What an order, withdrawal or transfer must leave the account above.
    pub initial: GridParams,
    /// Continuously compounded rate used to price every series (0 for crypto
    /// options quoted against spot with no funding, as Deribit's mark model).
    pub rate: Decimal,
}

impl Default for MarginParams {
    /// ±15 % spot in 5 % steps × vol ±30 %, plus 1 % of spot per short contract
    /// for maintenance; ±20 % in 5 % steps × vol ±45 %, plus 1.5 % for initial.
    fn default() -> Self {
        MarginParams {
            maintenance: GridParams {
                spot_move_max: Decimal::new(15, 2),
                spot_points: 7,
                volatility_shock: Decimal::new(30, 2),
                short_charge_spot_fraction: Decimal::new(1, 2),
            },
            initial: GridParams {
                spot_move_max: Decimal::new(20, 2),
                spot_points: 9,
                volatility_shock: Decimal::new(45, 2),
                short_charge_spot_fraction: Decimal::new(15, 3),
            },
            rate: Decimal::ZERO,
        }
    }
}

/// One point of a grid: the spot is multiplied by `1 + spot_move`, every
/// series' volatility by `volatility_factor`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scenario {
    pub spot_move: f64,
    pub volatility_factor: f64,
}

impl GridParams {
    fn validate(&self, grid: &'static str) -> Result<(), MarginError> {
        let invalid = |why: &'static str| MarginError::InvalidParams { grid, why };
        if self.spot_points < 3 || self.spot_points > SPOT_POINTS_MAX || self.spot_points.is_multiple_of(2) {
            return Err(invalid("spot_points must be odd, between 3 and 41"));
        }
        if self.spot_move_max <= Decimal::ZERO || self.spot_move_max > SPOT_MOVE_MAX_LIMIT {
            return Err(invalid("spot_move_max must be above 0 and at most 0.9"));
        }
        if self.volatility_shock < Decimal::ZERO || self.volatility_shock > Decimal::ONE {
            return Err(invalid("volatility_shock must be between 0 and 1"));
        }
        if self.short_charge_spot_fraction < Decimal::ZERO || self.short_charge_spot_fraction > Decimal::ONE {
            return Err(invalid("short_charge_spot_fraction must be between 0 and 1"));
        }
        Ok(())
    }

    /// The grid's scenarios, spot move by spot move, volatility down, unchanged, up.
    fn scenarios(&self) -> impl Iterator<Item = Scenario> {
        let spot_move_max = decimal_to_f64(self.spot_move_max);
        let shock = decimal_to_f64(self.volatility_shock);
        let steps = f64::from(self.spot_points - 1);
        let factors = [1.0 - shock, 1.0, 1.0 + shock];
        (0..self.spot_points).flat_map(move |point| {
            // (2·point − steps)/steps runs from −1 to 1 and is exactly 0 in the middle.
            let spot_move = spot_move_max * ((2.0 * f64::from(point) - steps) / steps);
            factors.map(|volatility_factor| Scenario { spot_move, volatility_factor })
        })
    }
}

impl MarginParams {
    /// Checks each grid, that the initial grid is at least as wide as the
    /// maintenance one in every dimension, and the rate.
    pub fn validate(&self) -> Result<(), MarginError> {
        self.maintenance.validate("maintenance")?;
        self.initial.validate("initial")?;
        let (maintenance, initial) = (&self.maintenance, &self.initial);
        if initial.spot_move_max < maintenance.spot_move_max
            || initial.volatility_shock < maintenance.volatility_shock
            || initial.short_charge_spot_fraction < maintenance.short_charge_spot_fraction
        {
            return Err(MarginError::InvalidParams {
                grid: "initial",
                why: "initial spot moves, volatility shock and short charge must each be at least the maintenance ones",
            });
        }
        if decimal_to_f64(self.rate).abs() > RATE_ABS_MAX {
            return Err(MarginError::InvalidParams { grid: "both", why: "rate must be between -1 and 1" });
        }
        Ok(())
    }

    /// All scenarios of a table: the maintenance grid first, then the initial
    /// grid; returns them and the count of maintenance ones.
    pub fn scenarios(&self) -> (Vec<Scenario>, usize) {
        let mut scenarios: Vec<Scenario> = self.maintenance.scenarios().collect();
        let maintenance_count = scenarios.len();
        scenarios.extend(self.initial.scenarios());
        (scenarios, maintenance_count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_grids() {
        let params = MarginParams::default();
        params.validate().unwrap();
        let (scenarios, maintenance_count) = params.scenarios();
        assert_eq!((scenarios.len(), maintenance_count), (48, 21));
        let spot_moves: Vec<f64> = scenarios[..21].iter().step_by(3).map(|s| s.spot_move).collect();
        assert_eq!(spot_moves[0], -0.15);
        assert_eq!(spot_moves[3], 0.0);
        assert_eq!(spot_moves[6], 0.15);
        assert_eq!(scenarios[10], Scenario { spot_move: 0.0, volatility_factor: 1.0 });
        assert_eq!(scenarios[0].volatility_factor, 0.7);
        assert_eq!(scenarios[2].volatility_factor, 1.3);
        assert_eq!(scenarios[21].spot_move, -0.2);
        assert_eq!(scenarios[47], Scenario { spot_move: 0.2, volatility_factor: 1.45 });
    }

    #[test]
    fn refuses_inconsistent_params() {
        let good = MarginParams::default();
        let mut even = good.clone();
        even.maintenance.spot_points = 8;
        let mut narrow_initial = good.clone();
        narrow_initial.initial.spot_move_max = Decimal::new(10, 2);
        let mut cheap_initial = good.clone();
        cheap_initial.initial.short_charge_spot_fraction = Decimal::new(5, 3);
        let mut whole_spot = good.clone();
        whole_spot.maintenance.spot_move_max = Decimal::ONE;
        let mut negative_shock = good.clone();
        negative_shock.maintenance.volatility_shock = Decimal::new(-1, 1);
        let mut huge_rate = good.clone();
        huge_rate.rate = Decimal::TWO;
        let mut too_many_points = good.clone();
        too_many_points.initial.spot_points = SPOT_POINTS_MAX + 2;
        for bad in [even, narrow_initial, cheap_initial, whole_spot, negative_shock, huge_rate, too_many_points] {
            assert!(bad.validate().is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn serde_round_trip_keeps_decimals_as_strings() {
        let params = MarginParams::default();
        let json = serde_json::to_string(&params).unwrap();
        assert!(json.contains("\"spot_move_max\":\"0.15\""), "{json}");
        let back: MarginParams = serde_json::from_str(&json).unwrap();
        assert_eq!(back, params);
    }
}
