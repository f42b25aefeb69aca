//! What a Vanna client shares with the runtime, without the runtime: ids and
//! money newtypes, instruments and their names, the limits the chain
//! enforces, events and receipts, the refusal reasons they carry, building
//! and signing transactions, the envelope checks that need no state, and
//! verifying account proofs against a state root.
//!
//! It must not depend on the runtime, the order book, the margin tables or
//! any async runtime: the SDK and light clients build on it (with
//! `vanna-crypto` and `vanna-proto`). Pure data and pure functions.

pub mod envelope;
pub mod error;
pub mod events;
pub mod ids;
pub mod instrument;
pub mod limits;
pub mod money;
pub mod proof;
pub mod staking;
pub mod tx;

pub use envelope::{Envelope, open_envelope};
pub use error::{Field, TxError};
pub use ids::{Address, OrderId, SeriesId};
pub use proof::verify_account_proof;
