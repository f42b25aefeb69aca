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
use vanna_margin::{MarginParams, MarginTables, Position, SeriesIndex, SeriesKey, build_tables};
use vanna_pricing::decimal_to_f64;

use crate::error::RuntimeError;
use crate::ids::{Address, SeriesId};
use crate::instrument::OptionKind;
use crate::money::{ASSET_SCALE, Amount};
use crate::oracle::oracle_symbol;
use crate::state::State;

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
}

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
                self.risk.insert(symbol.to_string(), UnderlyingRisk { tables, rows });
            }
            Err(_) => {
                self.risk.remove(symbol);
            }
        }
    }

    /// Equity, margins, margin ratio, and each position's mark and greeks.
    pub fn account_margin(&self, address: &Address) -> Result<AccountRisk, RuntimeError> {
        let account = self.account(address).ok_or(RuntimeError::UnknownAccount(*address))?;
        let mut by_underlying: BTreeMap<&str, Vec<(SeriesId, Position)>> = BTreeMap::new();
        for (series, exposure) in &account.exposures {
            if exposure.position_lots == 0 {
                continue;
            }
            let market = self.market(*series);
            let risk = self.risk_of(&market.spec.underlying)?;
            let row = *risk.rows.get(series).expect("every unsettled series has a table row");
            let contracts = decimal_to_f64(market.signed_contracts(exposure.position_lots));
            by_underlying
                .entry(&market.spec.underlying)
                .or_default()
                .push((*series, Position { series: row, contracts }));
        }
        let mut position_value = Decimal::ZERO;
        let mut maintenance = Decimal::ZERO;
        let mut initial = Decimal::ZERO;
        let mut positions = Vec::new();
        for (symbol, held) in by_underlying {
            let risk = self.risk_of(symbol)?;
            let table_positions: Vec<Position> = held.iter().map(|(_, position)| *position).collect();
            let margin = risk.tables.account(&table_positions).map_err(margin_error)?;
            let rounded = margin.rounded(ASSET_SCALE).map_err(margin_error)?;
            position_value += rounded.position_value;
            maintenance += rounded.maintenance;
            initial += rounded.initial;
            for (series, position) in held {
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
        let margin_ratio = (equity > Decimal::ZERO).then(|| {
            (maintenance / equity)
                .round_dp_with_strategy(vanna_margin::MARGIN_RATIO_DECIMALS, RoundingStrategy::ToPositiveInfinity)
        });
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
