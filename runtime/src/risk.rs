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
use serde::{Deserialize, Serialize};
use vanna_liquidation::{SeriesSensitivity, UnderlyingExposure, bands, series_sensitivity};
use vanna_margin::{MarginParams, MarginTables, Position, PositionRange, SeriesIndex, SeriesKey, build_tables};
use vanna_pricing::{decimal_to_f64, to_decimal_up};

use crate::error::RuntimeError;
use crate::ids::{Address, SeriesId};
use crate::instrument::OptionKind;
use crate::money::{ASSET_SCALE, Amount};
use crate::oracle::oracle_symbol;
use crate::state::{Exposure, State};

/// Margin settings of one underlying, in genesis.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UnderlyingMargin {
    /// Scenario grids and short charges (see `runtime/margin/MARGIN.md`).
    pub params: MarginParams,
    /// Annual volatility used while the oracle has no surface for the underlying.
    pub default_volatility: Decimal,
}

impl Default for UnderlyingMargin {
    fn default() -> Self {
        UnderlyingMargin { params: MarginParams::default(), default_volatility: Decimal::new(6, 1) }
    }
}

/// One underlying's tables and which table row each listed series is.
#[derive(Clone, Debug)]
pub struct UnderlyingRisk {
    pub tables: MarginTables,
    pub rows: BTreeMap<SeriesId, SeriesIndex>,
    /// Per table row: the at-risk index's bounds for one contract.
    pub sensitivity: Vec<SeriesSensitivity>,
}

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

/// Positions grouped by underlying, each group in table row order.
type Held<'a> = Vec<(&'a str, Vec<(SeriesId, Position)>)>;

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
                self.risk.insert(symbol.to_string(), UnderlyingRisk { tables, rows, sensitivity });
            }
            Err(_) => {
                self.risk.remove(symbol);
            }
        }
    }

    /// Groups signed lot positions (in series order) by underlying as table positions.
    fn held<'a>(&'a self, positions: impl Iterator<Item = (SeriesId, i64)>) -> Result<Held<'a>, RuntimeError> {
        let mut held: Held<'a> = Vec::new();
        for (series, lots) in positions {
            if lots == 0 {
                continue;
            }
            let market = self.market(series);
            let symbol = market.spec.underlying.as_str();
            let risk = self.risk_of(symbol)?;
            let row = *risk.rows.get(&series).expect("every unsettled series has a table row");
            let position = Position { series: row, contracts: decimal_to_f64(market.signed_contracts(lots)) };
            match held.iter_mut().find(|(s, _)| *s == symbol) {
                Some((_, group)) => group.push((series, position)),
                None => held.push((symbol, vec![(series, position)])),
            }
        }
        Ok(held)
    }

    /// Σ position value (rounded down), maintenance and initial margin (rounded up) of grouped positions.
    fn held_margin(&self, held: &Held<'_>) -> Result<(Decimal, Decimal, Decimal), RuntimeError> {
        let (mut value, mut maintenance, mut initial) = (Decimal::ZERO, Decimal::ZERO, Decimal::ZERO);
        let mut table_positions = Vec::new();
        for (symbol, group) in held {
            let risk = self.risk_of(symbol)?;
            table_positions.clear();
            table_positions.extend(group.iter().map(|(_, position)| *position));
            let rounded =
                risk.tables.account(&table_positions).and_then(|m| m.rounded(ASSET_SCALE)).map_err(margin_error)?;
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
    ) -> Result<MarginFigures, RuntimeError> {
        let account = &self.accounts[owner as usize];
        let mut lots: Vec<(SeriesId, i64)> =
            account.exposures.iter().map(|(series, exposure)| (*series, exposure.position_lots)).collect();
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
    ) -> Result<(), RuntimeError> {
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
            let range = PositionRange {
                series: row,
                low: contracts(exposure.position_lots - exposure.open_sell_lots as i64),
                high: contracts(exposure.position_lots + exposure.open_buy_lots as i64),
                low_shift: -decimal_to_f64(exposure.sell_reserve.value()),
                high_shift: contracts(exposure.open_buy_lots as i64) * mark - decimal_to_f64(exposure.buy_lock.value()),
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
        let equity = account.usd.value() - collateral + value - equity_out;
        if equity < initial {
            return Err(RuntimeError::InsufficientMargin { action, equity, initial_margin: initial });
        }
        Ok(())
    }

    /// A series' mark per contract from the current tables.
    pub(crate) fn mark(&self, series: SeriesId) -> Option<f64> {
        let market = self.market(series);
        let risk = self.risk.get(&market.spec.underlying)?;
        let row = risk.rows.get(&series)?;
        risk.tables.series(*row).map(|mark| mark.greeks.price)
    }

    /// Re-evaluates `owner` exactly and records its spot bands in the at-risk
    /// index; forgets it when it holds no positions. Returns its figures.
    pub(crate) fn index_account(&mut self, owner: u64) -> Option<MarginFigures> {
        let account = &self.accounts[owner as usize];
        if account.exposures.values().all(|e| e.position_lots == 0) {
            self.at_risk.remove(owner);
            return None;
        }
        let held = self.held(account.exposures.iter().map(|(s, e)| (*s, e.position_lots)));
        let Ok((held, (value, maintenance, initial))) = held.and_then(|held| {
            let figures = self.held_margin(&held)?;
            Ok((held, figures))
        }) else {
            // Unpriceable for now: nothing can be decided. Watch every
            // underlying it holds, so that it is evaluated as soon as the
            // tables are back.
            let mut symbols: Vec<String> = account
                .exposures
                .iter()
                .filter(|(_, e)| e.position_lots != 0)
                .map(|(series, _)| self.market(*series).spec.underlying.clone())
                .collect();
            symbols.sort();
            symbols.dedup();
            let watch = symbols.into_iter().map(|symbol| (symbol, vanna_liquidation::Band::Watch)).collect();
            self.at_risk.insert(owner, self.time_ms, watch);
            return None;
        };
        let figures = MarginFigures { equity: account.usd.value() + value, maintenance, initial };
        let mut exposures = Vec::with_capacity(held.len());
        for (symbol, group) in &held {
            let risk = &self.risk[*symbol];
            let mut exposure = UnderlyingExposure { spot: risk.tables.spot(), spot_slope: 0.0, allowance: 0.0 };
            for (_, position) in group {
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
        let surplus = decimal_to_f64(figures.equity - figures.maintenance);
        let bands = bands(surplus, &exposures);
        let entry = held.iter().map(|(symbol, _)| symbol.to_string()).zip(bands).collect();
        // Due between half and all of the refresh interval, spread by handle,
        // so accounts evaluated in the same block do not all come due together.
        let half = (self.liquidation.refresh_ms / 2).max(1);
        let due = self.time_ms.saturating_add(half + owner.wrapping_mul(0x9E37_79B9_7F4A_7C15) % half);
        self.at_risk.insert(owner, due, entry);
        Some(figures)
    }

    /// Equity, margins, margin ratio, and each position's mark and greeks.
    pub fn account_margin(&self, address: &Address) -> Result<AccountRisk, RuntimeError> {
        let account = self.account(address).ok_or(RuntimeError::UnknownAccount(*address))?;
        let held = self.held(account.exposures.iter().map(|(s, e)| (*s, e.position_lots)))?;
        let (position_value, maintenance, initial) = self.held_margin(&held)?;
        let mut positions = Vec::new();
        for (symbol, group) in held {
            let risk = self.risk_of(symbol)?;
            for (series, position) in group {
                let view = risk.tables.position_risk(position).map_err(margin_error)?;
                let market = self.market(series);
                positions.push(PositionRisk {
                    series: market.spec.name.clone(),
                    contracts: market.signed_contracts(account.exposure(series).position_lots),
                    mark: informational(view.mark),
                    delta: informational(view.delta),
                    gamma: informational(view.gamma),
                    vega_per_vol_point: informational(view.vega_per_vol_point),
                    theta_per_day: informational(view.theta_per_day),
                });
            }
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

    fn risk_of(&self, symbol: &str) -> Result<&UnderlyingRisk, RuntimeError> {
        self.risk.get(symbol).ok_or_else(|| RuntimeError::MarginUnavailable { underlying: symbol.to_string() })
    }
}

fn margin_error(error: vanna_margin::MarginError) -> RuntimeError {
    RuntimeError::Margin(error.to_string())
}
