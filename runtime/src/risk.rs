//! Portfolio risk per account: marks, greeks and margin from `vanna-margin`.
//!
//! Per underlying, the margin tables are rebuilt at the start of every block,
//! after the oracle update and settlement: block time moves every series
//! closer to expiry, so the tables are stale after one block even when the
//! index did not move. Volatility is the oracle surface's for the series'
//! expiry and strike, or the underlying's genesis default while the oracle has
//! no surface. The tables are derived from committed state (oracle, listings,
//! time), so they are not committed themselves.
//!
//! Figures leave the tables only through directed rounding: position value
//! down, requirements up (against the account), margin ratio up. Marks and
//! greeks per position are informational, rounded half to even to six places.

use std::collections::BTreeMap;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::Serialize;
use smallvec::SmallVec;
use vanna_liquidation_rules::{UnderlyingExposure, bands, series_sensitivity};
use vanna_margin::{Position, PositionRange, SeriesIndex, SeriesKey, build_tables};
use vanna_pricing::{decimal_to_f64, to_decimal_up};

use crate::error::TxError;
use crate::ids::{Address, SeriesId};
use crate::instrument::OptionKind;
use crate::margin_tables::UnderlyingRisk;
use crate::money::{ASSET_SCALE, Amount};
use crate::oracle::oracle_symbol;
use crate::state::{Exposure, State};

/// An account's equity and requirements from its positions (open orders
/// aside), each rounded against the account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MarginFigures {
    pub equity: Decimal,
    pub maintenance: Decimal,
    pub initial: Decimal,
}

impl MarginFigures {
    pub fn below_maintenance(&self) -> bool {
        self.equity < self.maintenance
    }

    /// Maintenance ÷ equity rounded up, `None` when equity is not positive:
    /// liquidations take the worst first.
    pub fn ratio(&self) -> Option<Decimal> {
        (self.equity > Decimal::ZERO).then(|| {
            (self.maintenance / self.equity)
                .round_dp_with_strategy(vanna_margin::MARGIN_RATIO_DECIMALS, RoundingStrategy::ToPositiveInfinity)
        })
    }
}

/// One underlying's positions, in table row order (a slice the tables take as is).
struct HeldGroup<'a> {
    symbol: &'a str,
    slot: usize,
    risk: &'a UnderlyingRisk,
    positions: SmallVec<[Position; 8]>,
}

/// Positions grouped by underlying, in order of first appearance. Inline
/// for the common account (one underlying, a few series): evaluating
/// accounts is the hot path of the liquidation pass and must not allocate.
type Held<'a> = SmallVec<[HeldGroup<'a>; 1]>;

/// One position's size, mark and greeks (scaled by its size).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PositionRisk {
    pub series: String,
    pub contracts: Decimal,
    /// Mark price per contract.
    pub mark: Decimal,
    pub delta: Decimal,
    pub gamma: Decimal,
    pub vega_per_vol_point: Decimal,
    pub theta_per_day: Decimal,
}

/// An account's risk at the current marks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AccountRisk {
    /// Cash plus the mark value of all positions, rounded down; negative when
    /// short positions are worth more than the cash.
    pub equity: Decimal,
    /// Initial margin, rounded up: what new risk must leave equity above.
    pub initial: Amount,
    /// Maintenance margin, rounded up: below it the account may be liquidated.
    pub maintenance: Amount,
    /// Maintenance ÷ equity, rounded up to 6 places; `None` when equity is not positive.
    pub margin_ratio: Option<Decimal>,
    pub positions: Vec<PositionRisk>,
}

fn informational(value: f64) -> Decimal {
    Decimal::from_f64_retain(value)
        .map(|d| d.round_dp_with_strategy(ASSET_SCALE, RoundingStrategy::MidpointNearestEven).normalize())
        .unwrap_or_default()
}

impl State {
    /// Rebuilds every underlying's margin tables for the current block time and
    /// oracle values. An underlying whose series cannot be priced (an input out
    /// of the pricer's range) has no tables, and `account_margin` says so.
    pub(crate) fn rebuild_margin_tables(&mut self) {
        let symbols: Vec<String> = self.underlyings.keys().cloned().collect();
        for symbol in symbols {
            self.rebuild_margin_tables_of(&symbol);
        }
    }

    /// Rebuilds one underlying's tables: after a listing, only its own change.
    pub(crate) fn rebuild_margin_tables_of(&mut self, symbol: &str) {
        let settings = self.margin.get(symbol).cloned().unwrap_or_default();
        let spot = decimal_to_f64(self.index_price(symbol).value());
        let mut keys = Vec::new();
        let mut rows = BTreeMap::new();
        for market in self.markets.iter().filter(|m| m.spec.underlying == symbol && m.settled_at.is_none()) {
            rows.insert(market.id, SeriesIndex(keys.len() as u32));
            keys.push(SeriesKey {
                expiry_ms: market.spec.expiry_ms,
                strike: market.spec.strike.value(),
                kind: match market.spec.kind {
                    OptionKind::Call => vanna_margin::OptionKind::Call,
                    OptionKind::Put => vanna_margin::OptionKind::Put,
                },
            });
        }
        let default_volatility = decimal_to_f64(settings.default_volatility);
        let surface = self.oracle.surface(&oracle_symbol(symbol));
        let now_ms = self.time_ms;
        let volatility = |key: &SeriesKey| match surface {
            Some(surface) => surface.vol(now_ms, key.expiry_ms, decimal_to_f64(key.strike), spot),
            None => default_volatility,
        };
        match build_tables(&settings.params, spot, now_ms, &keys, volatility) {
            Ok(tables) => {
                let bound = decimal_to_f64(self.liquidation.volatility_rescan_bound);
                let refresh_ms = self.liquidation.refresh_ms;
                let sensitivity = (0..keys.len() as u32)
                    .map(|row| {
                        series_sensitivity(&tables, SeriesIndex(row), bound, refresh_ms)
                            .expect("every row of the tables has a series")
                    })
                    .collect();
                let mut row_by_series = vec![None; self.markets.len()];
                for (series, row) in &rows {
                    row_by_series[series.0 as usize] = Some(*row);
                }
                self.risk.insert(symbol, UnderlyingRisk { tables, rows, sensitivity, row_by_series });
            }
            Err(_) => {
                self.risk.remove(symbol);
            }
        }
    }

    /// Groups signed lot positions (in series order) by underlying as table positions.
    fn held<'a>(&'a self, positions: impl Iterator<Item = (SeriesId, i64)>) -> Result<Held<'a>, TxError> {
        let mut held: Held<'a> = SmallVec::new();
        for (series, lots) in positions {
            if lots == 0 {
                continue;
            }
            let market = self.market(series);
            let slot = market.risk_slot;
            let at = match held.iter().position(|group| group.slot == slot) {
                Some(at) => at,
                None => {
                    let symbol = market.spec.underlying.as_str();
                    let risk = self
                        .risk
                        .by_slot(slot)
                        .ok_or_else(|| TxError::MarginUnavailable { underlying: symbol.to_string() })?;
                    held.push(HeldGroup { symbol, slot, risk, positions: SmallVec::new() });
                    held.len() - 1
                }
            };
            let group = &mut held[at];
            let row = group.risk.row(series).expect("every unsettled series has a table row");
            group.positions.push(Position { series: row, contracts: contracts_f64(market, lots) });
        }
        Ok(held)
    }

    /// Σ position value (rounded down), maintenance and initial margin (rounded up) of grouped positions.
    fn held_margin(&self, held: &Held<'_>) -> Result<(Decimal, Decimal, Decimal), TxError> {
        let (mut value, mut maintenance, mut initial) = (Decimal::ZERO, Decimal::ZERO, Decimal::ZERO);
        for group in held {
            let rounded = group
                .risk
                .tables
                .account(&group.positions)
                .and_then(|m| m.rounded(ASSET_SCALE))
                .map_err(margin_error)?;
            value += rounded.position_value;
            maintenance += rounded.maintenance;
            initial += rounded.initial;
        }
        Ok((value, maintenance, initial))
    }

    /// Equity and margins of `owner`'s positions with `adjust` (series, lots)
    /// added and `cash_delta` added to its cash: what liquidation and keepers
    /// decide by.
    pub fn margin_figures(
        &self,
        owner: u64,
        adjust: &[(SeriesId, i64)],
        cash_delta: Decimal,
    ) -> Result<MarginFigures, TxError> {
        let account = &self.accounts[owner as usize];
        let positions = account.positions.iter().copied();
        if adjust.len() <= 1 {
            // The common cases (liquidation asks many times), without a copy.
            let held = self.held(WithChange { positions: positions.peekable(), change: adjust.first().copied() })?;
            let (value, maintenance, initial) = self.held_margin(&held)?;
            return Ok(MarginFigures { equity: account.usd.value() + cash_delta + value, maintenance, initial });
        }
        let mut lots: Vec<(SeriesId, i64)> = Vec::with_capacity(account.positions.len() + adjust.len());
        lots.extend(account.positions.iter().copied());
        for &(series, change) in adjust {
            match lots.binary_search_by_key(&series, |(s, _)| *s) {
                Ok(at) => lots[at].1 += change,
                Err(at) => lots.insert(at, (series, change)),
            }
        }
        let held = self.held(lots.into_iter())?;
        let (value, maintenance, initial) = self.held_margin(&held)?;
        Ok(MarginFigures { equity: account.usd.value() + cash_delta + value, maintenance, initial })
    }

    /// Whether `owner`'s equity, with `adjust` (series, lots) added to its
    /// positions and `cash_delta` to its cash, is at least `level`: the exact
    /// answer of [`Self::margin_figures`]. The float figures decide it unless
    /// they are within their error bound of the line (rare), so liquidation's
    /// searches over sizes skip the exact rounding.
    pub(crate) fn meets(
        &self,
        owner: u64,
        adjust: Option<(SeriesId, i64)>,
        cash_delta: Decimal,
        level: Level,
    ) -> Result<bool, TxError> {
        let account = &self.accounts[owner as usize];
        let positions = account.positions.iter().copied();
        let held = self.held(WithChange { positions: positions.peekable(), change: adjust })?;
        let cash = account.usd.value() + cash_delta;
        if let Some(estimate) = Estimate::of(cash, &held, level)
            && estimate.surplus.abs() > estimate.slack
        {
            return Ok(estimate.surplus > 0.0);
        }
        let (value, maintenance, initial) = self.held_margin(&held)?;
        Ok(cash + value >= level.requirement(maintenance, initial))
    }

    /// A lower bound on `owner`'s equity, within a few micro-dollars of the
    /// exact figure ([`Self::margin_figures`]): from the float figures less
    /// their error bound, so it costs no exact rounding; the exact figure
    /// when the float one cannot be trusted.
    pub(crate) fn equity_at_least(&self, owner: u64) -> Result<Decimal, TxError> {
        let account = &self.accounts[owner as usize];
        let held = self.held(account.positions.iter().copied())?;
        if let Some(estimate) = Estimate::of(account.usd.value(), &held, Level::Solvent)
            && let Ok(lower) = vanna_pricing::to_decimal_down(estimate.surplus - estimate.slack, ASSET_SCALE)
        {
            return Ok(lower);
        }
        Ok(self.margin_figures(owner, &[], Decimal::ZERO)?.equity)
    }

    /// Every series' mark, indexed by series id: looked up once for a
    /// ranking over many accounts rather than once per position.
    pub(crate) fn marks_by_series(&self) -> Vec<Option<f64>> {
        (0..self.markets.len()).map(|index| self.mark(SeriesId(index as u32))).collect()
    }

    /// `owner`'s cash plus its positions at `marks` (from
    /// [`State::marks_by_series`]), in floating point: for rankings, never
    /// for decisions. `None` when a position cannot be priced.
    pub(crate) fn equity_at_marks(&self, owner: u64, marks: &[Option<f64>]) -> Option<f64> {
        let account = &self.accounts[owner as usize];
        let mut equity = decimal_to_f64(account.usd.value());
        for &(series, lots) in &account.positions {
            equity += contracts_f64(self.market(series), lots) * marks[series.0 as usize]?;
        }
        Some(equity)
    }

    /// The maintenance margin each of `owner`'s positions holds up, in
    /// floating point: the requirement less the requirement without it. For
    /// rankings, never for decisions. In series order.
    pub(crate) fn maintenance_held_by_each(&self, owner: u64) -> Option<Vec<(SeriesId, f64)>> {
        let account = &self.accounts[owner as usize];
        let held = self.held(account.positions.iter().copied()).ok()?;
        let mut held_up = Vec::with_capacity(account.positions.len());
        for group in &held {
            let all = group.risk.tables.account(&group.positions).ok()?.maintenance;
            let without = group.risk.tables.maintenance_without_each(&group.positions).ok()?;
            // The group's positions are the account's of its underlying, in series order.
            let series = account.positions.iter().map(|(series, _)| *series);
            let series = series.filter(|series| self.market(*series).spec.underlying == group.symbol);
            held_up.extend(series.zip(without).map(|(series, without)| (series, all - without)));
        }
        held_up.sort_unstable_by_key(|(series, _)| *series);
        Some(held_up)
    }

    /// Refuses a change that would leave `owner`'s equity below the initial
    /// margin of its positions and open orders.
    ///
    /// `changed` replaces the account's exposure in one series (an order
    /// placed or replaced there); `equity_out` is cash leaving the account or
    /// being locked (a transfer, backstop collateral). Equity is cash less
    /// backstop collateral plus the positions' value. The requirement takes,
    /// scenario by scenario, each series at the worse of "no open order
    /// fills" and "every open order on one side fills": buys pay their locked
    /// premium and fees for contracts worth their mark, sells give away their
    /// reserve (`vanna_margin::MarginTables::account_range`).
    pub(crate) fn check_initial_margin(
        &self,
        owner: u64,
        changed: Option<(SeriesId, Exposure)>,
        equity_out: Decimal,
        action: &'static str,
    ) -> Result<(), TxError> {
        let (equity, initial_margin) = self.margin_with_orders(owner, changed, equity_out)?;
        if equity < initial_margin {
            return Err(TxError::InsufficientMargin { action, equity, initial_margin });
        }
        Ok(())
    }

    /// Equity and initial margin over every way the open orders could fill,
    /// with `changed` and `equity_out` as for [`Self::check_initial_margin`].
    pub(crate) fn margin_with_orders(
        &self,
        owner: u64,
        changed: Option<(SeriesId, Exposure)>,
        equity_out: Decimal,
    ) -> Result<(Decimal, Decimal), TxError> {
        let account = &self.accounts[owner as usize];
        let mut exposures: Vec<(SeriesId, Exposure)> = account.exposures.iter().map(|(s, e)| (*s, *e)).collect();
        if let Some((series, exposure)) = changed {
            match exposures.binary_search_by_key(&series, |(s, _)| *s) {
                Ok(at) => exposures[at].1 = exposure,
                Err(at) => exposures.insert(at, (series, exposure)),
            }
        }
        let buy_locks: Decimal = account.exposures.values().map(|e| e.buy_lock.value()).sum();
        let collateral = account.usd_locked.value() - buy_locks;
        let held = self.held(exposures.iter().map(|(s, e)| (*s, e.position_lots)))?;
        let (value, _, _) = self.held_margin(&held)?;
        let mut ranges: Vec<(&str, Vec<PositionRange>)> = Vec::new();
        for (series, exposure) in &exposures {
            if exposure.position_lots == 0 && exposure.open_buy_lots == 0 && exposure.open_sell_lots == 0 {
                continue;
            }
            let market = self.market(*series);
            let symbol = market.spec.underlying.as_str();
            let risk = self.risk_of(symbol)?;
            let row = *risk.rows.get(series).expect("every unsettled series has a table row");
            let mark = risk.tables.series(row).expect("a row of the tables").greeks.price;
            let contracts = |lots: i64| decimal_to_f64(market.signed_contracts(lots));
            let bought = contracts(exposure.open_buy_lots as i64);
            let range = PositionRange {
                series: row,
                contracts: contracts(exposure.position_lots),
                bought,
                sold: contracts(exposure.open_sell_lots as i64),
                buy_shift: bought * mark - decimal_to_f64(exposure.buy_lock.value()),
                sell_shift: -decimal_to_f64(exposure.sell_reserve.value()),
            };
            match ranges.iter_mut().find(|(s, _)| *s == symbol) {
                Some((_, group)) => group.push(range),
                None => ranges.push((symbol, vec![range])),
            }
        }
        let mut initial = Decimal::ZERO;
        for (symbol, group) in &ranges {
            let margin = self.risk_of(symbol)?.tables.account_range(group).map_err(margin_error)?;
            initial += to_decimal_up(margin.initial, ASSET_SCALE).map_err(|e| margin_error(e.into()))?;
        }
        Ok((account.usd.value() - collateral + value - equity_out, initial))
    }

    /// A series' mark per contract from the current tables.
    pub(crate) fn mark(&self, series: SeriesId) -> Option<f64> {
        let market = self.market(series);
        let risk = self.risk.get(&market.spec.underlying)?;
        let row = risk.rows.get(&series)?;
        risk.tables.series(*row).map(|mark| mark.greeks.price)
    }

    /// Re-evaluates `owner` and records its spot bands in the at-risk index;
    /// forgets it when it holds no positions. Returns its exact figures when
    /// it is below maintenance margin.
    pub(crate) fn index_account(&mut self, owner: u64) -> Option<MarginFigures> {
        // The entry borrows the listing's names from the state, so the index
        // is moved out for the update (an empty index costs nothing to make).
        let mut index = std::mem::take(&mut self.at_risk);
        let figures = self.evaluate_into(owner, &mut index);
        self.at_risk = index;
        figures
    }

    fn evaluate_into(&self, owner: u64, index: &mut vanna_liquidation_rules::AtRiskIndex) -> Option<MarginFigures> {
        let account = &self.accounts[owner as usize];
        if account.positions.is_empty() {
            index.remove(owner);
            return None;
        }
        let Ok(held) = self.held(account.positions.iter().copied()) else {
            self.watch(owner, index);
            return None;
        };
        // Most accounts are well above maintenance margin: the float figures
        // prove it without the exact ones.
        let estimate = Estimate::of(account.usd.value(), &held, Level::Maintenance);
        let (surplus, below) = match estimate.map(|estimate| estimate.surplus - estimate.slack) {
            Some(lower) if lower > 0.0 => (lower, None),
            _ => {
                let Ok((value, maintenance, initial)) = self.held_margin(&held) else {
                    self.watch(owner, index);
                    return None;
                };
                let figures = MarginFigures { equity: account.usd.value() + value, maintenance, initial };
                (decimal_to_f64(figures.equity - figures.maintenance), figures.below_maintenance().then_some(figures))
            }
        };
        let mut exposures: SmallVec<[UnderlyingExposure; 1]> = SmallVec::new();
        for group in &held {
            let risk = group.risk;
            let mut exposure = UnderlyingExposure { spot: risk.tables.spot(), spot_slope: 0.0, allowance: 0.0 };
            for position in &group.positions {
                let sensitivity = &risk.sensitivity[position.series.0 as usize];
                let size = position.contracts.abs();
                exposure.spot_slope += size * sensitivity.spot_slope;
                if position.contracts < 0.0 {
                    exposure.spot_slope += size * sensitivity.short_slope;
                }
                exposure.allowance += size * sensitivity.allowance;
            }
            exposures.push(exposure);
        }
        let bands = bands(surplus, &exposures);
        let entry = held.iter().map(|group| group.symbol).zip(bands);
        // Due between half and all of the refresh interval, spread by handle,
        // so accounts evaluated in the same block do not all come due together.
        let half = (self.liquidation.refresh_ms / 2).max(1);
        // (A multiply and shift maps the hash onto 0..half without a division.)
        let spread = (u128::from(owner.wrapping_mul(0x9E37_79B9_7F4A_7C15)) * u128::from(half)) >> 64;
        let due = self.time_ms.saturating_add(half + spread as u64);
        index.insert(owner, due, entry);
        below
    }

    /// Puts `owner` on the watch list of every underlying it holds: it cannot
    /// be priced for now, so nothing can be decided, and it is evaluated as
    /// soon as the tables are back.
    fn watch(&self, owner: u64, index: &mut vanna_liquidation_rules::AtRiskIndex) {
        let account = &self.accounts[owner as usize];
        let mut symbols: Vec<&str> =
            account.positions.iter().map(|(series, _)| self.market(*series).spec.underlying.as_str()).collect();
        symbols.sort_unstable();
        symbols.dedup();
        index.insert(
            owner,
            self.time_ms,
            symbols.into_iter().map(|symbol| (symbol, vanna_liquidation_rules::Band::Watch)),
        );
    }

    /// Equity, margins, margin ratio, and each position's mark and greeks.
    pub fn account_margin(&self, address: &Address) -> Result<AccountRisk, TxError> {
        let account = self.account(address).ok_or(TxError::UnknownAccount(*address))?;
        let held = self.held(account.positions.iter().copied())?;
        let (position_value, maintenance, initial) = self.held_margin(&held)?;
        let mut positions = Vec::new();
        for (&series, exposure) in account.exposures.iter().filter(|(_, e)| e.position_lots != 0) {
            let market = self.market(series);
            let risk = self.risk_of(&market.spec.underlying)?;
            let row = risk.row(series).expect("every unsettled series has a table row");
            let position = Position { series: row, contracts: contracts_f64(market, exposure.position_lots) };
            let view = risk.tables.position_risk(position).map_err(margin_error)?;
            positions.push(PositionRisk {
                series: market.spec.name.to_string(),
                contracts: market.signed_contracts(exposure.position_lots),
                mark: informational(view.mark),
                delta: informational(view.delta),
                gamma: informational(view.gamma),
                vega_per_vol_point: informational(view.vega_per_vol_point),
                theta_per_day: informational(view.theta_per_day),
            });
        }
        positions.sort_by(|a, b| a.series.cmp(&b.series));
        let equity = account.usd.value() + position_value;
        let margin_ratio = MarginFigures { equity, maintenance, initial }.ratio();
        Ok(AccountRisk {
            equity,
            initial: Amount::round_up(initial),
            maintenance: Amount::round_up(maintenance),
            margin_ratio,
            positions,
        })
    }

    fn risk_of(&self, symbol: &str) -> Result<&UnderlyingRisk, TxError> {
        self.risk.get(symbol).ok_or_else(|| TxError::MarginUnavailable { underlying: symbol.to_string() })
    }
}

/// Positions in series order with one (series, lots) change applied: added
/// to the series' position, or inserted in its place.
struct WithChange<I: Iterator<Item = (SeriesId, i64)>> {
    positions: std::iter::Peekable<I>,
    change: Option<(SeriesId, i64)>,
}

impl<I: Iterator<Item = (SeriesId, i64)>> Iterator for WithChange<I> {
    type Item = (SeriesId, i64);

    fn next(&mut self) -> Option<(SeriesId, i64)> {
        let Some((series, lots)) = self.change else { return self.positions.next() };
        match self.positions.peek() {
            Some(&(next, held)) if next == series => {
                self.positions.next();
                self.change = None;
                Some((series, held + lots))
            }
            Some(&(next, _)) if next < series => self.positions.next(),
            _ => self.change.take(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let (low, high) = self.positions.size_hint();
        let extra = usize::from(self.change.is_some());
        (low, high.and_then(|high| high.checked_add(extra)))
    }
}

/// `decimal_to_f64(market.signed_contracts(lots))` without `Decimal`
/// arithmetic, which dominated evaluating an account: lot × lots is
/// mantissa × lots at the lot's scale, and when that product and the power
/// of ten are exact in `f64`, one division gives the correctly rounded value,
/// the same bits `decimal_to_f64` returns for the same number (normalised or
/// not). Otherwise the general path.
fn contracts_f64(market: &crate::state::Market, lots: i64) -> f64 {
    if let Some((mantissa, power)) = market.lot_units
        && let Some(m) = mantissa.checked_mul(lots)
        && m.unsigned_abs() <= 1 << 53
    {
        return m as f64 / power;
    }
    decimal_to_f64(market.signed_contracts(lots))
}

/// What equity is compared with in [`State::meets`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Level {
    Initial,
    Maintenance,
    /// Zero: the account can pay what it owes.
    Solvent,
}

impl Level {
    /// The requirement of this level among an account's margins.
    fn requirement<T: Default>(self, maintenance: T, initial: T) -> T {
        match self {
            Level::Initial => initial,
            Level::Maintenance => maintenance,
            Level::Solvent => T::default(),
        }
    }
}

/// An account's equity less the requirement of a [`Level`], in floating
/// point, and how far the exact figure ([`MarginFigures`]) may be from it.
struct Estimate {
    surplus: f64,
    /// The exact surplus is within `slack` of `surplus`. The exact figures
    /// round each underlying's position value down and requirement up to
    /// `ASSET_SCALE` places (at most 1e-6 each), and the float sums err by a
    /// few ulps of the magnitudes summed; the slack covers both many times
    /// over.
    slack: f64,
}

impl Estimate {
    /// Only the scenarios the level needs are evaluated: below initial, the
    /// maintenance ones (the liquidation pass's question, at half the work).
    /// `None` when the tables refuse the positions or the magnitudes are so
    /// large that only the exact path can decide.
    fn of(cash: Decimal, held: &Held<'_>, level: Level) -> Option<Estimate> {
        let mut surplus = decimal_to_f64(cash);
        let mut magnitude = surplus.abs();
        for group in held {
            let tables = &group.risk.tables;
            let (value, required) = if level == Level::Initial {
                let margin = tables.account(&group.positions).ok()?;
                (margin.position_value, margin.initial)
            } else {
                let (value, maintenance) = tables.maintenance(&group.positions).ok()?;
                (value, if level == Level::Solvent { 0.0 } else { maintenance })
            };
            surplus += value - required;
            magnitude += value.abs() + required;
        }
        let slack = 4e-6 * held.len() as f64 + 1e-12 * magnitude;
        (magnitude < 1e15 && surplus.is_finite()).then_some(Estimate { surplus, slack })
    }
}

fn margin_error(error: vanna_margin::MarginError) -> TxError {
    TxError::Margin(error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Field;
    use crate::instrument::{SeriesSpec, UnderlyingSpec};
    use crate::money::{Price, Quantity};
    use crate::state::Market;

    #[test]
    fn one_change_is_added_or_inserted_in_series_order() {
        let held = [(SeriesId(1), 5), (SeriesId(3), -2)];
        let apply = |change: Option<(SeriesId, i64)>| {
            let merged: Vec<(SeriesId, i64)> =
                WithChange { positions: held.iter().copied().peekable(), change }.collect();
            // The general path: a copy with the change added or inserted in place.
            let mut expected = held.to_vec();
            if let Some((series, lots)) = change {
                match expected.binary_search_by_key(&series, |(s, _)| *s) {
                    Ok(at) => expected[at].1 += lots,
                    Err(at) => expected.insert(at, (series, lots)),
                }
            }
            assert_eq!(merged, expected, "{change:?}");
        };
        apply(None);
        for series in 0..5 {
            apply(Some((SeriesId(series), 4)));
            apply(Some((SeriesId(series), -5)));
        }
    }

    /// `meets` decides by the float figures unless they are too close to the
    /// line: its answers are the exact figures' answers, also a micro-dollar
    /// either side of the line and on it.
    #[test]
    fn meets_gives_the_exact_answer_at_and_around_the_line() {
        use vanna_proto::v1::Side as WireSide;

        use crate::tx::limit_order;
        let (genesis, signers) = crate::sandbox::demo_genesis(&[("writer", 1_000_000), ("taker", 1_000_000)]);
        let mut chain = crate::sandbox::Sandbox::new(&genesis, signers).unwrap();
        let mut events = Vec::new();
        let trades = [
            ("BTC-25DEC26-90000-P", WireSide::Sell, "2500", "3"),
            ("BTC-25DEC26-110000-C", WireSide::Sell, "1500", "2"),
            ("BTC-25DEC26-100000-C", WireSide::Buy, "6000", "1"),
        ];
        for (series, side, price, quantity) in trades {
            let opposite = if side == WireSide::Buy { WireSide::Sell } else { WireSide::Buy };
            for (who, side) in [("taker", opposite), ("writer", side)] {
                let (order, address) = (limit_order(series, side, price, quantity), chain.address(who));
                crate::tools::place_order(&mut chain.state, &address, &order, &mut events).unwrap();
            }
        }
        let state = &chain.state;
        let writer = state.account_index[&chain.address("writer")];
        assert_eq!(state.accounts[writer as usize].positions.len(), 3);
        let put = state.series_by_name["BTC-25DEC26-90000-P"];
        let other = state.series_by_name["BTC-25DEC26-100000-P"];
        for adjust in [None, Some((put, 1)), Some((put, -2)), Some((other, 4))] {
            let exact = state.margin_figures(writer, adjust.as_slice(), Decimal::ZERO).unwrap();
            let lines = [
                (Level::Initial, exact.initial),
                (Level::Maintenance, exact.maintenance),
                (Level::Solvent, Decimal::ZERO),
            ];
            for (level, required) in lines {
                for offset in [-1_000_000, -1, 0, 1, 1_000_000] {
                    // Cash that puts equity `offset` micro-dollars from the line.
                    let delta = required - exact.equity + Decimal::new(offset, 6);
                    let expected = exact.equity + delta >= required;
                    let got = state.meets(writer, adjust, delta, level).unwrap();
                    assert_eq!(got, expected, "{level:?} with {adjust:?}, {offset} µUSD from the line");
                }
            }
        }
    }

    #[test]
    fn contracts_in_f64_are_the_exact_conversion() {
        for lot in ["1", "0.1", "0.01", "0.001", "0.000001", "0.25", "0.3", "0.07"] {
            let underlying = UnderlyingSpec {
                symbol: "BTC".into(),
                tick_size: Price::new(Decimal::new(5, 1), Field::TickSize).unwrap(),
                lot_size: Quantity::new(lot.parse().unwrap(), Field::LotSize).unwrap(),
                index_price: Price::new(Decimal::from(97_000), Field::IndexPrice).unwrap(),
            };
            let spec = SeriesSpec::parse("BTC-25DEC26-100000-C").unwrap();
            let market = Market::new(SeriesId(0), spec, &underlying, 0);
            let mut lots: Vec<i64> = (-2_000..=2_000).collect();
            lots.extend([i64::MAX, i64::MIN + 1, 1 << 53, (1 << 53) + 1, -(1 << 60), 123_456_789_012_345]);
            for lots in lots {
                let expected = decimal_to_f64(market.signed_contracts(lots));
                assert_eq!(contracts_f64(&market, lots).to_bits(), expected.to_bits(), "{lots} lots of {lot}");
            }
        }
    }
}
