//! The validator's price feeder sidecar (`vanna feeder`).
//!
//! Owns: price sources behind the [`Source`] trait (a seeded synthetic market,
//! CSV replay, and HTTP JSON adapters for Deribit, Binance and Kraken), the
//! sanity checks and median that combine them per underlying, and signing one
//! oracle report per round with the operator key.
//!
//! Unlike `vanna-oracle` it does IO and reads the clock (through its caller),
//! but it decides nothing on chain: whatever it reports is only one validator's
//! vote, aggregated by the runtime. It must never panic on a source's answer:
//! a bad answer is dropped with a logged reason.

pub mod combine;
pub mod csv_replay;
pub mod error;
pub mod exchanges;
pub mod feeder;
pub mod quote;
pub mod synthetic;

pub use combine::{CombineConfig, combine};
pub use error::FeederError;
pub use feeder::{Feeder, key_from_file, key_from_seed, source_from_spec};
pub use quote::{Quote, RawSmile, Source};
pub use synthetic::{SyntheticConfig, SyntheticSource};
