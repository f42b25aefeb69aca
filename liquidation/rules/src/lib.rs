//! `vanna-liquidation-rules`: the rules of Vanna's in-block liquidation engine.
//!
//! What it owns: the liquidation parameters (genesis), the at-risk index that
//! lets a price update visit only the accounts it could have pushed below
//! maintenance margin, the order in which a liquidated account's positions are
//! closed, the allocation of positions to keeper backstop offers, and the
//! auto-deleveraging ranking. The runtime (`vanna-runtime`, module
//! `liquidation`) executes these rules on its state inside `apply_block`,
//! right after the oracle update; the flow is described in `liquidation/README.md`.
//!
//! Like every core it is pure: no IO, no clock, no randomness, no hash-map
//! iteration. Its `f64` figures come from `vanna-margin` tables (IEEE basic
//! operations only) and never reach state: they only choose which accounts to
//! evaluate exactly, and in which order.

mod allocation;
mod index;
mod params;
mod ranking;

pub use allocation::pro_rata;
pub use index::{
    AtRiskIndex, Band, MAX_INDEXED_UNDERLYINGS, SeriesSensitivity, UnderlyingExposure, bands, series_sensitivity,
};
pub use params::LiquidationParams;
pub use ranking::{adl_score, close_order};

use thiserror::Error;

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum LiquidationError {
    #[error("invalid liquidation parameter {name}: {why}")]
    InvalidParams { name: &'static str, why: &'static str },
}
