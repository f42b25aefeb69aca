//! Margin tables: every listed series priced in every scenario once per oracle
//! update, so that an account's margin is a few hundred additions.

use rust_decimal::{Decimal, RoundingStrategy};
use vanna_pricing::{
    Greeks, OptionKind, SeriesPricer, SpotPricer, decimal_to_f64, to_decimal_down, to_decimal_up, years_between_ms,
};

use crate::MarginError;
use crate::params::{MarginParams, SCENARIOS_MAX, Scenario};

/// Most series one table covers; bounds build time and memory
/// (8 192 × 246 scenarios × 8 bytes ≈ 16 MB at the very largest grids).
pub const SERIES_MAX: usize = 8_192;
/// Largest absolute position, in contracts, an account evaluation accepts.
pub const CONTRACTS_ABS_MAX: f64 = 1e12;
/// Decimal places of margin ratios.
pub const MARGIN_RATIO_DECIMALS: u32 = 6;

/// One listed series of the table's underlying.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeriesKey {
    /// Expiry, Unix milliseconds.
    pub expiry_ms: u64,
    /// Strike in USD, as listed.
    pub strike: Decimal,
    pub kind: OptionKind,
}

/// A series' position in the slice the table was built from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeriesIndex(pub u32);

/// An account's net position in one series: positive long, negative short, in
/// contracts (one contract is one unit of the underlying).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Position {
    pub series: SeriesIndex,
    pub contracts: f64,
}

/// A position together with the open orders that could change it, in
/// contracts: `bought` more if every buy fills, `sold` fewer if every sell
/// fills (both ≥ 0), independently. Filling moves equity too, in proportion:
/// all the buys by `buy_shift` USD (the bought contracts' mark value less
/// the cash they pay), all the sells by `sell_shift` (minus what they give
/// away against the mark).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PositionRange {
    pub series: SeriesIndex,
    pub contracts: f64,
    pub bought: f64,
    pub sold: f64,
    pub buy_shift: f64,
    pub sell_shift: f64,
}

/// Requirements of an account whose open orders may still fill, in f64.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RangeMargin {
    pub maintenance: f64,
    pub initial: f64,
}

/// A series as priced for the table.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SeriesMark {
    pub key: SeriesKey,
    /// The oracle volatility used for this series.
    pub volatility: f64,
    /// Price (the mark) and greeks per contract at the oracle spot and volatility.
    pub greeks: Greeks,
}

/// The margin tables of one underlying after one oracle update.
#[derive(Clone, Debug)]
pub struct MarginTables {
    spot: f64,
    now_ms: u64,
    /// The continuously compounded rate every series was priced at.
    rate: f64,
    scenarios: Vec<Scenario>,
    maintenance_scenarios: usize,
    /// Short charge per contract, in USD: fraction × spot.
    maintenance_short_charge: f64,
    initial_short_charge: f64,
    marks: Vec<SeriesMark>,
    /// Row-major: `pnl[series × scenarios + scenario]`, the change of one
    /// contract's value from the mark to the scenario's price.
    pnl: Vec<f64>,
}

/// An account's margin from its positions, in f64; see [`AccountMargin::rounded`]
/// for the figures that may enter state.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AccountMargin {
    /// Σ contracts × mark: positive for long premium, negative for short.
    pub position_value: f64,
    /// Worst maintenance-grid loss plus the maintenance short charge.
    pub maintenance: f64,
    /// Worst loss over both grids plus the initial short charge.
    pub initial: f64,
    /// The worst loss alone over the maintenance grid (0 when no scenario loses).
    pub maintenance_worst_loss: f64,
    /// The worst loss alone over both grids.
    pub initial_worst_loss: f64,
    /// Index into [`MarginTables::scenarios`] of the maintenance grid's worst
    /// scenario; `None` when no scenario loses.
    pub maintenance_worst_scenario: Option<usize>,
    pub initial_worst_scenario: Option<usize>,
    /// Σ max(−contracts, 0).
    pub short_contracts: f64,
}

/// The figures that may enter state, each rounded against the account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoundedMargin {
    /// Rounded towards −∞: a long is worth a little less, a short owes a little more.
    pub position_value: Decimal,
    /// Rounded towards +∞.
    pub maintenance: Decimal,
    /// Rounded towards +∞.
    pub initial: Decimal,
}

/// What one contract of a position contributes: its mark and greeks times its size.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PositionRisk {
    pub series: SeriesIndex,
    pub contracts: f64,
    /// Mark price per contract.
    pub mark: f64,
    /// contracts × mark.
    pub value: f64,
    pub delta: f64,
    pub gamma: f64,
    pub vega_per_vol_point: f64,
    pub theta_per_day: f64,
}

/// An account's margin before and after a change (an order's worst-case fill,
/// a transfer of positions), for the "only reduces risk" rule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MarginChange {
    pub before: AccountMargin,
    pub after: AccountMargin,
}

/// Builds the tables of one underlying: the mark and greeks of every series at
/// `spot` and its oracle volatility, and each one's P&L per contract in every
/// scenario of both grids. Every table entry is exactly
/// `vanna_pricing::price(shocked inputs) − mark`, in scenario order, so anyone
/// can recompute it bit for bit.
///
/// `volatility(key)` is the oracle volatility for that series' expiry and
/// strike (annual fraction). Series at or past expiry are worth intrinsic
/// value in every scenario.
pub fn build_tables(
    params: &MarginParams,
    spot: f64,
    now_ms: u64,
    series: &[SeriesKey],
    volatility: impl Fn(&SeriesKey) -> f64,
) -> Result<MarginTables, MarginError> {
    params.validate()?;
    if series.len() > SERIES_MAX {
        return Err(MarginError::TooManySeries { count: series.len(), max: SERIES_MAX });
    }
    let (scenarios, maintenance_scenarios) = params.scenarios();
    debug_assert!(scenarios.len() <= SCENARIOS_MAX);
    let rate = decimal_to_f64(params.rate);
    let mut marks = Vec::with_capacity(series.len());
    let mut pnl = Vec::with_capacity(series.len() * scenarios.len());
    for (index, key) in series.iter().enumerate() {
        let failed = |source| MarginError::Pricing { series: index, source };
        let strike = decimal_to_f64(key.strike);
        let series_volatility = volatility(key);
        let years = years_between_ms(now_ms, key.expiry_ms);
        let pricer = SeriesPricer::new(key.kind, strike, rate, years).map_err(failed)?;
        let at_mark = pricer.at_spot(spot).and_then(|at_spot| at_spot.greeks(series_volatility)).map_err(failed)?;
        // Scenarios come spot move by spot move: price each shocked spot's
        // logarithm once for its volatility levels. Same steps as `price`.
        let mut at_shocked_spot: Option<(f64, SpotPricer)> = None;
        for scenario in &scenarios {
            let shocked_spot = spot * (1.0 + scenario.spot_move);
            let spot_pricer = match at_shocked_spot {
                Some((cached_spot, pricer)) if cached_spot == shocked_spot => pricer,
                _ => {
                    let fresh = pricer.at_spot(shocked_spot).map_err(failed)?;
                    at_shocked_spot = Some((shocked_spot, fresh));
                    fresh
                }
            };
            let shocked_price = spot_pricer.price(series_volatility * scenario.volatility_factor).map_err(failed)?;
            pnl.push(shocked_price - at_mark.price);
        }
        marks.push(SeriesMark { key: *key, volatility: series_volatility, greeks: at_mark });
    }
    let charge = |fraction| decimal_to_f64(fraction) * spot;
    Ok(MarginTables {
        spot,
        now_ms,
        rate,
        scenarios,
        maintenance_scenarios,
        maintenance_short_charge: charge(params.maintenance.short_charge_spot_fraction),
        initial_short_charge: charge(params.initial.short_charge_spot_fraction),
        marks,
        pnl,
    })
}

impl MarginTables {
    /// The oracle spot the tables were built at.
    pub fn spot(&self) -> f64 {
        self.spot
    }

    /// The rate every series was priced at (annual, continuously compounded).
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// The time the tables were built for, Unix milliseconds.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// Maintenance scenarios, then initial ones.
    pub fn scenarios(&self) -> &[Scenario] {
        &self.scenarios
    }

    /// How many of [`Self::scenarios`] form the maintenance grid (they come first).
    pub fn maintenance_scenario_count(&self) -> usize {
        self.maintenance_scenarios
    }

    pub fn series_count(&self) -> usize {
        self.marks.len()
    }

    /// A series' key, volatility, mark and greeks.
    pub fn series(&self, index: SeriesIndex) -> Option<&SeriesMark> {
        self.marks.get(index.0 as usize)
    }

    /// A series' P&L per contract in each scenario.
    pub fn pnl_per_contract(&self, index: SeriesIndex) -> Option<&[f64]> {
        let width = self.scenarios.len();
        let start = (index.0 as usize).checked_mul(width)?;
        self.pnl.get(start..start + width)
    }

    /// Margin of a set of positions: per scenario, the sum over positions of
    /// contracts × P&L per contract (in the order given), then the worst.
    ///
    /// Positions must be in strictly increasing series order, one per series
    /// (as a `BTreeMap` yields them): this fixes the order of the sums, so every
    /// validator gets the same bits, and nets each series before the short
    /// charge.
    pub fn account(&self, positions: &[Position]) -> Result<AccountMargin, MarginError> {
        let mut totals = [0.0f64; SCENARIOS_MAX];
        let totals = &mut totals[..self.scenarios.len()];
        let (position_value, short_contracts) = self.scenario_totals(positions, totals)?;
        let (maintenance_worst_loss, maintenance_worst_scenario) = worst(&totals[..self.maintenance_scenarios], 0);
        let (initial_only_loss, initial_only_scenario) =
            worst(&totals[self.maintenance_scenarios..], self.maintenance_scenarios);
        let (initial_worst_loss, initial_worst_scenario) = if initial_only_loss > maintenance_worst_loss {
            (initial_only_loss, initial_only_scenario)
        } else {
            (maintenance_worst_loss, maintenance_worst_scenario)
        };
        let margin = AccountMargin {
            position_value,
            maintenance: maintenance_worst_loss + short_contracts * self.maintenance_short_charge,
            initial: initial_worst_loss + short_contracts * self.initial_short_charge,
            maintenance_worst_loss,
            initial_worst_loss,
            maintenance_worst_scenario,
            initial_worst_scenario,
            short_contracts,
        };
        debug_assert!(margin.initial >= margin.maintenance && margin.maintenance >= 0.0);
        Ok(margin)
    }

    /// Position value and maintenance margin of `positions`, bit for bit
    /// those of [`Self::account`] (each scenario's sum does not depend on the
    /// others), at less than half the work: the maintenance scenarios only.
    /// What the liquidation pass asks of every candidate.
    pub fn maintenance(&self, positions: &[Position]) -> Result<(f64, f64), MarginError> {
        let mut totals = [0.0f64; SCENARIOS_MAX];
        let totals = &mut totals[..self.maintenance_scenarios];
        let (position_value, short_contracts) = self.scenario_totals(positions, totals)?;
        let (worst_loss, _) = worst(totals, 0);
        Ok((position_value, worst_loss + short_contracts * self.maintenance_short_charge))
    }

    /// Adds the positions' P&L in the first `totals.len()` scenarios to
    /// `totals`, position by position in the order given; returns their mark
    /// value and short contracts. Positions follow the rules of
    /// [`Self::account`].
    fn scenario_totals(&self, positions: &[Position], totals: &mut [f64]) -> Result<(f64, f64), MarginError> {
        let mut position_value = 0.0;
        let mut short_contracts = 0.0;
        let mut previous: Option<SeriesIndex> = None;
        for position in positions {
            self.check(position, previous)?;
            previous = Some(position.series);
            let row = self.pnl_per_contract(position.series).expect("checked series index");
            for (total, pnl) in totals.iter_mut().zip(row) {
                *total += position.contracts * pnl;
            }
            position_value += position.contracts * self.marks[position.series.0 as usize].greeks.price;
            if position.contracts < 0.0 {
                short_contracts += -position.contracts;
            }
        }
        Ok((position_value, short_contracts))
    }

    /// The maintenance margin of `positions` without each one in turn, in
    /// their order: each scenario's total less that position's P&L, so one
    /// pass over the scenarios per position instead of an evaluation each.
    /// The subtraction rounds differently from a fresh sum: for rankings
    /// (which position frees the most margin), never for decisions.
    /// Positions follow the rules of [`Self::account`].
    pub fn maintenance_without_each(&self, positions: &[Position]) -> Result<Vec<f64>, MarginError> {
        let mut totals = [0.0f64; SCENARIOS_MAX];
        let totals = &mut totals[..self.maintenance_scenarios];
        let (_, short_contracts) = self.scenario_totals(positions, totals)?;
        let without = positions.iter().map(|position| {
            let row = self.pnl_per_contract(position.series).expect("checked series index");
            let lowest =
                totals.iter().zip(row).map(|(total, pnl)| total - position.contracts * pnl).fold(0.0, f64::min);
            let short = short_contracts - (-position.contracts).max(0.0);
            -lowest + short * self.maintenance_short_charge
        });
        Ok(without.collect())
    }

    /// Margin of positions that open orders may still change.
    ///
    /// A scenario's P&L is linear in how much of the buys and of the sells of
    /// each series fill (sizes and shifts alike), so its worst value over
    /// every way they could fill is, series by series,
    /// `contracts × pnl + min(0, bought × pnl + buy_shift) + min(0, −sold × pnl + sell_shift)`:
    /// exact, at the cost of one evaluation. The short charge is taken at each
    /// series' most short end, `contracts − sold`, which bounds it from above.
    /// Ranges follow the rules of [`Self::account`].
    pub fn account_range(&self, ranges: &[PositionRange]) -> Result<RangeMargin, MarginError> {
        let width = self.scenarios.len();
        let mut totals = [0.0f64; SCENARIOS_MAX];
        let totals = &mut totals[..width];
        let mut short_contracts = 0.0;
        let mut previous: Option<SeriesIndex> = None;
        for range in ranges {
            let low = range.contracts - range.sold;
            for contracts in [range.contracts, low, range.contracts + range.bought] {
                self.check(&Position { series: range.series, contracts }, previous)?;
            }
            let finite = range.buy_shift.is_finite() && range.sell_shift.is_finite();
            if !(range.bought >= 0.0 && range.sold >= 0.0 && finite) {
                return Err(MarginError::BadRange { series: range.series.0 });
            }
            previous = Some(range.series);
            let row = self.pnl_per_contract(range.series).expect("checked series index");
            for (total, pnl) in totals.iter_mut().zip(row) {
                *total += range.contracts * pnl
                    + (range.bought * pnl + range.buy_shift).min(0.0)
                    + (-range.sold * pnl + range.sell_shift).min(0.0);
            }
            if low < 0.0 {
                short_contracts += -low;
            }
        }
        let (maintenance_loss, _) = worst(&totals[..self.maintenance_scenarios], 0);
        let (initial_only_loss, _) = worst(&totals[self.maintenance_scenarios..], self.maintenance_scenarios);
        Ok(RangeMargin {
            maintenance: maintenance_loss + short_contracts * self.maintenance_short_charge,
            initial: maintenance_loss.max(initial_only_loss) + short_contracts * self.initial_short_charge,
        })
    }

    /// The maintenance grid's largest relative spot move (0.15 for ±15 %).
    pub fn maintenance_spot_move_max(&self) -> f64 {
        self.scenarios[..self.maintenance_scenarios].iter().fold(0.0, |max, s| s.spot_move.abs().max(max))
    }

    /// The largest volatility factor of any scenario (1.45 for a 0.45 shock).
    pub fn volatility_factor_max(&self) -> f64 {
        self.scenarios.iter().fold(1.0, |max, s| s.volatility_factor.max(max))
    }

    /// Maintenance short charge per contract, USD.
    pub fn maintenance_short_charge(&self) -> f64 {
        self.maintenance_short_charge
    }

    /// Margin before and after a change of positions.
    pub fn margin_change(&self, before: &[Position], after: &[Position]) -> Result<MarginChange, MarginError> {
        Ok(MarginChange { before: self.account(before)?, after: self.account(after)? })
    }

    /// Mark, value and greeks of one position, scaled by its size.
    pub fn position_risk(&self, position: Position) -> Result<PositionRisk, MarginError> {
        self.check(&position, None)?;
        let mark = &self.marks[position.series.0 as usize].greeks;
        let contracts = position.contracts;
        Ok(PositionRisk {
            series: position.series,
            contracts,
            mark: mark.price,
            value: contracts * mark.price,
            delta: contracts * mark.delta,
            gamma: contracts * mark.gamma,
            vega_per_vol_point: contracts * mark.vega_per_vol_point,
            theta_per_day: contracts * mark.theta_per_day,
        })
    }

    fn check(&self, position: &Position, previous: Option<SeriesIndex>) -> Result<(), MarginError> {
        if position.series.0 as usize >= self.marks.len() {
            return Err(MarginError::UnknownSeries { series: position.series.0, count: self.marks.len() });
        }
        if previous.is_some_and(|previous| previous >= position.series) {
            return Err(MarginError::PositionsNotSorted { series: position.series.0 });
        }
        if !(-CONTRACTS_ABS_MAX..=CONTRACTS_ABS_MAX).contains(&position.contracts) {
            return Err(MarginError::BadContracts {
                series: position.series.0,
                contracts: position.contracts,
                max: CONTRACTS_ABS_MAX,
            });
        }
        Ok(())
    }
}

/// The largest loss among `totals` (P&L per scenario) and the index of its
/// first occurrence, offset by `first_index`; `(0, None)` if nothing loses.
fn worst(totals: &[f64], first_index: usize) -> (f64, Option<usize>) {
    let mut lowest = 0.0;
    let mut at = None;
    for (index, &total) in totals.iter().enumerate() {
        if total < lowest {
            lowest = total;
            at = Some(first_index + index);
        }
    }
    // Negating only a real loss keeps "no loss" a positive zero.
    (if at.is_some() { -lowest } else { 0.0 }, at)
}

impl AccountMargin {
    /// The figures rounded to `decimal_places` against the account: position
    /// value down (towards −∞), requirements up (towards +∞).
    pub fn rounded(&self, decimal_places: u32) -> Result<RoundedMargin, MarginError> {
        Ok(RoundedMargin {
            position_value: to_decimal_down(self.position_value, decimal_places)?,
            maintenance: to_decimal_up(self.maintenance, decimal_places)?,
            initial: to_decimal_up(self.initial, decimal_places)?,
        })
    }
}

impl RoundedMargin {
    /// Cash plus the value of the positions.
    pub fn equity(&self, cash: Decimal) -> Decimal {
        cash + self.position_value
    }

    /// Equity above the initial requirement; negative when an order that adds
    /// risk must be refused.
    pub fn free_collateral(&self, cash: Decimal) -> Decimal {
        self.equity(cash) - self.initial
    }

    /// Maintenance margin ÷ equity, rounded up to [`MARGIN_RATIO_DECIMALS`]
    /// places; at or above 1 the account may be liquidated. `None` when equity
    /// is not positive (liquidatable whatever the requirement, unless it has
    /// no positions).
    pub fn margin_ratio(&self, cash: Decimal) -> Option<Decimal> {
        let equity = self.equity(cash);
        (equity > Decimal::ZERO).then(|| {
            (self.maintenance / equity)
                .round_dp_with_strategy(MARGIN_RATIO_DECIMALS, RoundingStrategy::ToPositiveInfinity)
        })
    }
}

impl MarginChange {
    /// Neither requirement grows: such an order or transfer only reduces risk
    /// and is accepted whatever the account's equity.
    pub fn reduces_risk(&self) -> bool {
        self.after.initial <= self.before.initial && self.after.maintenance <= self.before.maintenance
    }

    /// How much more initial margin the change needs (negative if it frees some).
    pub fn initial_increase(&self) -> f64 {
        self.after.initial - self.before.initial
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_MS: u64 = 1_790_000_000_000;
    const DAY_MS: u64 = 86_400_000;

    fn listing() -> Vec<SeriesKey> {
        let key = |days: u64, strike: i64, kind| SeriesKey {
            expiry_ms: NOW_MS + days * DAY_MS,
            strike: Decimal::from(strike),
            kind,
        };
        vec![
            key(30, 100_000, OptionKind::Call),
            key(30, 100_000, OptionKind::Put),
            key(30, 110_000, OptionKind::Call),
            key(0, 90_000, OptionKind::Call),
        ]
    }

    fn tables() -> MarginTables {
        build_tables(&MarginParams::default(), 100_000.0, NOW_MS, &listing(), |_| 0.6).unwrap()
    }

    fn position(series: u32, contracts: f64) -> Position {
        Position { series: SeriesIndex(series), contracts }
    }

    #[test]
    fn maintenance_alone_is_bit_for_bit_the_full_evaluation() {
        let tables = tables();
        let portfolios: [&[Position]; 4] = [
            &[],
            &[position(0, -2.0)],
            &[position(0, 1.0), position(1, -3.5), position(3, 0.25)],
            &[position(0, -1e6), position(1, 2e6), position(2, -3e-6), position(3, 7.0)],
        ];
        for positions in portfolios {
            let full = tables.account(positions).unwrap();
            let (value, maintenance) = tables.maintenance(positions).unwrap();
            assert_eq!(value.to_bits(), full.position_value.to_bits(), "{positions:?}");
            assert_eq!(maintenance.to_bits(), full.maintenance.to_bits(), "{positions:?}");
        }
        assert!(matches!(
            tables.maintenance(&[position(1, 1.0), position(0, 1.0)]),
            Err(MarginError::PositionsNotSorted { series: 0 })
        ));
    }

    #[test]
    fn maintenance_without_each_is_the_requirement_without_that_position() {
        let tables = tables();
        let positions = [position(0, -2.0), position(1, 1.5), position(2, -0.5), position(3, 3.0)];
        let without = tables.maintenance_without_each(&positions).unwrap();
        assert_eq!(without.len(), positions.len());
        for (skip, value) in without.iter().enumerate() {
            let rest: Vec<Position> =
                positions.iter().enumerate().filter(|(at, _)| *at != skip).map(|(_, p)| *p).collect();
            let expected = tables.account(&rest).unwrap().maintenance;
            // A subtraction instead of a fresh sum: equal up to rounding.
            assert!((value - expected).abs() <= 1e-9 * expected.max(1.0), "without {skip}: {value} vs {expected}");
        }
    }

    #[test]
    fn no_positions_no_margin() {
        let margin = tables().account(&[]).unwrap();
        assert_eq!(margin.maintenance.to_bits(), 0.0f64.to_bits());
        assert_eq!(margin.initial.to_bits(), 0.0f64.to_bits());
        assert_eq!(margin.position_value.to_bits(), 0.0f64.to_bits());
        assert_eq!((margin.maintenance_worst_scenario, margin.initial_worst_scenario), (None, None));
        let rounded = margin.rounded(6).unwrap();
        assert_eq!(
            (rounded.maintenance, rounded.initial, rounded.position_value),
            (Decimal::ZERO, Decimal::ZERO, Decimal::ZERO)
        );
        assert_eq!(tables().account(&[position(0, 0.0)]).unwrap(), margin);
    }

    #[test]
    fn short_call_margin_is_its_worst_scenario_plus_the_short_charge() {
        let tables = tables();
        let margin = tables.account(&[position(0, -2.0)]).unwrap();
        // A short call loses most when spot rises most and vol rises.
        let worst = margin.maintenance_worst_scenario.unwrap();
        assert_eq!(tables.scenarios()[worst], Scenario { spot_move: 0.15, volatility_factor: 1.3 });
        let row = tables.pnl_per_contract(SeriesIndex(0)).unwrap();
        assert_eq!(margin.maintenance_worst_loss, -(-2.0 * row[worst]));
        assert_eq!(margin.maintenance, margin.maintenance_worst_loss + 2.0 * (0.01 * 100_000.0));
        let initial_worst = margin.initial_worst_scenario.unwrap();
        assert_eq!(tables.scenarios()[initial_worst], Scenario { spot_move: 0.2, volatility_factor: 1.45 });
        assert!(margin.initial > margin.maintenance);
        assert_eq!(margin.short_contracts, 2.0);
        assert_eq!(margin.position_value, -2.0 * tables.series(SeriesIndex(0)).unwrap().greeks.price);
    }

    #[test]
    fn expired_series_are_worth_intrinsic_in_every_scenario() {
        let tables = tables();
        let expired = tables.series(SeriesIndex(3)).unwrap();
        assert_eq!(expired.greeks.price, 10_000.0);
        let row = tables.pnl_per_contract(SeriesIndex(3)).unwrap();
        for (scenario, pnl) in tables.scenarios().iter().zip(row) {
            let intrinsic = (100_000.0 * (1.0 + scenario.spot_move) - 90_000.0f64).max(0.0);
            assert_eq!(*pnl, intrinsic - 10_000.0);
        }
    }

    #[test]
    fn refuses_malformed_positions() {
        let tables = tables();
        assert!(matches!(tables.account(&[position(4, 1.0)]), Err(MarginError::UnknownSeries { series: 4, count: 4 })));
        assert!(matches!(
            tables.account(&[position(1, 1.0), position(0, 1.0)]),
            Err(MarginError::PositionsNotSorted { series: 0 })
        ));
        assert!(matches!(
            tables.account(&[position(1, 1.0), position(1, -1.0)]),
            Err(MarginError::PositionsNotSorted { series: 1 })
        ));
        for bad in [f64::NAN, f64::INFINITY, -2.0 * CONTRACTS_ABS_MAX] {
            assert!(matches!(tables.account(&[position(0, bad)]), Err(MarginError::BadContracts { .. })));
        }
        assert!(tables.position_risk(position(9, 1.0)).is_err());
    }

    #[test]
    fn refuses_unpriceable_series() {
        let params = MarginParams::default();
        let series = listing();
        let negative_vol = build_tables(&params, 100_000.0, NOW_MS, &series, |key| {
            if key.strike == Decimal::from(110_000) { -0.1 } else { 0.6 }
        });
        assert!(matches!(negative_vol, Err(MarginError::Pricing { series: 2, .. })));
        assert!(matches!(
            build_tables(&params, f64::NAN, NOW_MS, &series, |_| 0.6),
            Err(MarginError::Pricing { series: 0, .. })
        ));
        let too_many = vec![series[0]; SERIES_MAX + 1];
        assert!(matches!(
            build_tables(&params, 100_000.0, NOW_MS, &too_many, |_| 0.6),
            Err(MarginError::TooManySeries { .. })
        ));
    }

    #[test]
    fn rounding_goes_against_the_account() {
        let margin = AccountMargin {
            position_value: -1234.5678901,
            maintenance: 100.0000001,
            initial: 150.0000001,
            maintenance_worst_loss: 90.0,
            initial_worst_loss: 135.0,
            maintenance_worst_scenario: Some(0),
            initial_worst_scenario: Some(0),
            short_contracts: 1.0,
        };
        let rounded = margin.rounded(6).unwrap();
        assert_eq!(rounded.position_value, "-1234.567891".parse::<Decimal>().unwrap());
        assert_eq!(rounded.maintenance, "100.000001".parse::<Decimal>().unwrap());
        assert_eq!(rounded.initial, "150.000001".parse::<Decimal>().unwrap());
        let cash = Decimal::from(2_000);
        assert_eq!(rounded.equity(cash), "765.432109".parse::<Decimal>().unwrap());
        assert_eq!(rounded.free_collateral(cash), "615.432108".parse::<Decimal>().unwrap());
        // 100.000001 / 765.432109 = 0.130645…, rounded up.
        assert_eq!(rounded.margin_ratio(cash), Some("0.130646".parse::<Decimal>().unwrap()));
        assert_eq!(rounded.margin_ratio(Decimal::from(1_000)), None);
        let not_finite = AccountMargin { initial: f64::INFINITY, ..margin };
        assert!(matches!(not_finite.rounded(6), Err(MarginError::Rounding(_))));
    }

    #[test]
    fn position_risk_scales_the_greeks() {
        let tables = tables();
        let risk = tables.position_risk(position(1, -3.0)).unwrap();
        let greeks = tables.series(SeriesIndex(1)).unwrap().greeks;
        assert_eq!(risk.mark, greeks.price);
        assert_eq!(risk.value, -3.0 * greeks.price);
        assert_eq!(risk.delta, -3.0 * greeks.delta);
        assert_eq!(risk.gamma, -3.0 * greeks.gamma);
        assert_eq!(risk.vega_per_vol_point, -3.0 * greeks.vega_per_vol_point);
        assert_eq!(risk.theta_per_day, -3.0 * greeks.theta_per_day);
    }

    #[test]
    fn a_range_costs_its_worst_fill_and_a_point_range_is_the_position() {
        let tables = tables();
        // A position of `low` contracts that buys could take to `high`.
        let range = |series: u32, low: f64, high: f64| PositionRange {
            series: SeriesIndex(series),
            contracts: low,
            bought: high - low,
            sold: 0.0,
            buy_shift: 0.0,
            sell_shift: 0.0,
        };
        let point = [range(0, -2.0, -2.0)];
        let margin = tables.account(&[position(0, -2.0)]).unwrap();
        let at_point = tables.account_range(&point).unwrap();
        assert_eq!((at_point.maintenance, at_point.initial), (margin.maintenance, margin.initial));
        // A short call that could also be bought back: the worst end is the short one.
        let wide = tables.account_range(&[range(0, -2.0, 1.0)]).unwrap();
        assert!(wide.initial >= margin.initial);
        // Every vertex of a two-series box needs at most what the box needs.
        let boxed = [range(0, -1.0, 2.0), range(1, -3.0, 0.0)];
        let bound = tables.account_range(&boxed).unwrap();
        for a in [-1.0, 2.0] {
            for b in [-3.0, 0.0] {
                let vertex = tables.account(&[position(0, a), position(1, b)]).unwrap();
                assert!(vertex.initial <= bound.initial && vertex.maintenance <= bound.maintenance);
            }
        }
        // A bid for one contract at its mark plus 10 (cash paid, value gained) needs
        // at most the worst loss of the contract plus those 10.
        let mark = tables.series(SeriesIndex(0)).unwrap().greeks.price;
        let bid = PositionRange { buy_shift: -10.0, ..range(0, 0.0, 1.0) };
        let needed = tables.account_range(&[bid]).unwrap();
        let long = tables.account(&[position(0, 1.0)]).unwrap();
        assert_eq!(needed.initial, long.initial_worst_loss + 10.0);
        assert!(needed.initial <= mark + 10.0);
        assert!(matches!(tables.account_range(&[range(0, 1.0, -1.0)]), Err(MarginError::BadRange { series: 0 })));
        // Bids and offers in one series: no fill, either side, or both may happen.
        let both = PositionRange { sold: 2.0, buy_shift: -5.0, sell_shift: -7.0, ..range(0, 1.0, 2.0) };
        let margin = tables.account_range(&[both]).unwrap();
        let row = tables.pnl_per_contract(SeriesIndex(0)).unwrap();
        let worst = row
            .iter()
            .map(|pnl| {
                let fills = [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (1.0, 1.0)];
                fills.iter().map(|(b, s)| (1.0 + b - 2.0 * s) * pnl + b * -5.0 + s * -7.0).fold(f64::INFINITY, f64::min)
            })
            .fold(f64::INFINITY, f64::min);
        let charge = 0.015 * 100_000.0; // one contract short at the most short end
        assert!((margin.initial - (-worst + charge)).abs() < 1e-6, "{margin:?} vs {worst}");
        let nan = PositionRange { sell_shift: f64::NAN, ..range(0, 0.0, 1.0) };
        assert!(matches!(tables.account_range(&[nan]), Err(MarginError::BadRange { series: 0 })));
    }

    #[test]
    fn closing_a_position_reduces_risk_adding_one_does_not() {
        let tables = tables();
        let before = [position(0, -2.0), position(2, 1.0)];
        let closing = tables.margin_change(&before, &[position(0, -1.0), position(2, 1.0)]).unwrap();
        assert!(closing.reduces_risk() && closing.initial_increase() < 0.0);
        let adding = tables.margin_change(&before, &[position(0, -3.0), position(2, 1.0)]).unwrap();
        assert!(!adding.reduces_risk() && adding.initial_increase() > 0.0);
    }
}
