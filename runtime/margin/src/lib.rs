//! `vanna-margin`: portfolio margin for the options of one underlying.
//!
//! What it owns: the margin model (scenario grids, worst loss, short charges),
//! its parameters per underlying, and the tables that make an account's margin
//! cheap: after each oracle update, [`build_tables`] prices every listed series
//! in every scenario once; [`MarginTables::account`] then sums table rows.
//!
//! What it must never do: IO, read a clock (time is an argument), use
//! randomness, iterate a hash map, or let an `f64` reach state: figures leave
//! as `Decimal` only through [`AccountMargin::rounded`], rounded against the
//! account. Prices come from `vanna-pricing` only, so every validator computes
//! the same bits (see that crate's docs for why `f64` is safe here).
//!
//! The model, its parameters and a worked example are in `MARGIN.md`. In short:
//!
//! * mark of a series = Black-Scholes at the oracle spot and the oracle
//!   volatility of its expiry and strike;
//! * maintenance margin = worst loss of the positions (cash is not at risk)
//!   over the maintenance grid (default: spot −15 % … +15 % in 5 % steps ×
//!   volatility ×0.7, ×1, ×1.3), plus 1 % of spot per net short contract;
//! * initial margin = worst loss over the maintenance and initial grids
//!   together (default initial grid: ±20 % in 5 % steps × vol ×0.55, ×1,
//!   ×1.45), plus 1.5 % of spot per net short contract; never below maintenance.
//!
//! Cost, from `vanna bench margin`: a table for 960 series × 48 scenarios is
//! about 46 000 prices; an account of 10 positions is 480 multiply-adds and 48
//! comparisons.

mod params;
mod tables;

pub use params::{GridParams, MarginParams, SCENARIOS_MAX, SPOT_POINTS_MAX, Scenario, VOLATILITY_LEVELS};
pub use tables::{
    AccountMargin, CONTRACTS_ABS_MAX, MARGIN_RATIO_DECIMALS, MarginChange, MarginTables, Position, PositionRange,
    PositionRisk, RangeMargin, RoundedMargin, SERIES_MAX, SeriesIndex, SeriesKey, SeriesMark, build_tables,
};
pub use vanna_pricing::{Greeks, OptionKind};

use thiserror::Error;
use vanna_pricing::PricingError;

#[derive(Clone, Debug, PartialEq, Error)]
pub enum MarginError {
    #[error("invalid {grid} margin parameters: {why}")]
    InvalidParams { grid: &'static str, why: &'static str },
    #[error("{count} series listed for one underlying, more than the limit of {max}")]
    TooManySeries { count: usize, max: usize },
    #[error("cannot price series #{series}: {source}")]
    Pricing { series: usize, source: PricingError },
    #[error("series #{series} is not in the margin tables ({count} series)")]
    UnknownSeries { series: u32, count: usize },
    #[error("positions must be in strictly increasing series order, one per series; #{series} is out of order")]
    PositionsNotSorted { series: u32 },
    #[error("position in series #{series} of {contracts} contracts is not a finite size within ±{max:e}")]
    BadContracts { series: u32, contracts: f64, max: f64 },
    #[error("position range in series #{series} has its low end above its high end or a shift that is not finite")]
    BadRange { series: u32 },
    #[error(transparent)]
    Rounding(#[from] PricingError),
}
