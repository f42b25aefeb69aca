//! What the runtime keeps per underlying for margin: its genesis settings
//! and the tables `vanna-margin` builds every block (see `risk` for how they
//! are built and read). Data only: nothing here reads `State`.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use vanna_liquidation_rules::SeriesSensitivity;
use vanna_margin::{MarginParams, MarginTables, SeriesIndex};

use crate::ids::SeriesId;

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
    /// `rows` by series id, for the hot path of evaluating accounts.
    pub(crate) row_by_series: Vec<Option<SeriesIndex>>,
}

impl UnderlyingRisk {
    /// The table row of a listed, unsettled series of this underlying.
    pub fn row(&self, series: SeriesId) -> Option<SeriesIndex> {
        self.row_by_series.get(series.0 as usize).copied().flatten()
    }
}

/// Exact powers of ten in `f64`.
const POWERS_OF_TEN: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20,
    1e21, 1e22,
];

/// A lot's mantissa and power of ten for `risk::contracts_f64`.
pub(crate) fn lot_units(lot: crate::money::Quantity) -> Option<(i64, f64)> {
    let lot = lot.value();
    let power = POWERS_OF_TEN.get(lot.scale() as usize)?;
    Some((i64::try_from(lot.mantissa()).ok()?, *power))
}

/// Every underlying's tables, each in a slot fixed when its underlying is
/// first seen (genesis), so that evaluating an account finds them by the
/// slot its markets carry instead of by comparing symbols.
#[derive(Clone, Debug, Default)]
pub struct RiskTables {
    slots: BTreeMap<String, usize>,
    tables: Vec<Option<UnderlyingRisk>>,
}

impl RiskTables {
    /// The slot of `symbol`'s tables, assigned on first use.
    pub fn slot_for(&mut self, symbol: &str) -> usize {
        if let Some(&slot) = self.slots.get(symbol) {
            return slot;
        }
        self.tables.push(None);
        self.slots.insert(symbol.to_string(), self.tables.len() - 1);
        self.tables.len() - 1
    }

    pub fn get(&self, symbol: &str) -> Option<&UnderlyingRisk> {
        self.slots.get(symbol).and_then(|&slot| self.by_slot(slot))
    }

    pub fn by_slot(&self, slot: usize) -> Option<&UnderlyingRisk> {
        self.tables.get(slot).and_then(Option::as_ref)
    }

    pub fn contains_key(&self, symbol: &str) -> bool {
        self.get(symbol).is_some()
    }

    pub fn insert(&mut self, symbol: &str, risk: UnderlyingRisk) {
        let slot = self.slot_for(symbol);
        self.tables[slot] = Some(risk);
    }

    /// Forgets `symbol`'s tables (unpriceable for now); its slot stays.
    pub fn remove(&mut self, symbol: &str) {
        if let Some(&slot) = self.slots.get(symbol) {
            self.tables[slot] = None;
        }
    }
}
