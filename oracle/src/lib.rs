//! Vanna's price oracle core.
//!
//! Owns: the typed and wire forms of validators' signed price reports (spot
//! index and implied-volatility surface per underlying) and their
//! verification; volatility-surface interpolation (exact in `Decimal`, and a
//! bit-reproducible f64 evaluation for margin); per-underlying aggregation
//! (stake-weighted median under a two-thirds quorum, a per-update deviation
//! guard, staleness); the index history and its TWAP for settlement.
//!
//! Must not: do IO, read a clock (time is an argument), use randomness, or let
//! hash-map order reach a result. The runtime drives [`Oracle::apply`] once per
//! block; the feeder sidecar only builds and signs reports with this crate.

pub mod aggregate;
pub mod error;
pub mod history;
pub mod oracle;
pub mod params;
pub mod report;
pub mod surface;
pub mod types;

pub use error::OracleError;
pub use oracle::{IgnoreReason, Oracle, OracleEvent, Status, UnderlyingState};
pub use params::{OracleParams, ReportLimits};
pub use report::{PriceReport, REPORT_DOMAIN, VerifiedReport, reporter_of, sign_report, verify_report, verify_signed};
pub use surface::{ExpirySmile, SmilePoint, VolSurface};
pub use types::{IndexPrice, LogMoneyness, ReporterId, StakeTable, Underlying, Vol};
