//! Vanna's runtime: the deterministic state machine every validator runs.
//!
//! It owns accounts, signed transactions, option instruments, one order book
//! per series, positions, fees and the state root. Its entry point is
//! [`apply_block`]: a block context and transactions in; receipts, events and
//! the state root out.
//!
//! It must stay pure: no IO, no clock (time comes from the block), no
//! randomness, no iteration over hash maps; the same blocks give byte-identical
//! state and roots on every machine. Money is exact (`Decimal` newtypes) and
//! every rounding goes against the account.

pub mod block;
pub mod commit;
pub mod devnet;
pub mod genesis;
pub mod liquidation;
pub mod margin_tables;
pub mod oracle;
pub mod ordering;
pub mod risk;
pub mod root;
#[cfg(any(test, feature = "testkit"))]
pub mod sandbox;
pub mod settlement;
pub mod snapshot;
pub mod staking;
pub mod state;
#[cfg(any(test, feature = "testkit"))]
pub mod tools;
pub mod trading;

// What clients share with the runtime lives in `vanna-types`; re-exported so
// that the runtime's paths name one place.
pub use vanna_types::{error, events, ids, instrument, limits, money, proof, tx};

// The at-risk index keeps each account's underlyings as a bit mask.
const _: () = assert!(limits::MAX_UNDERLYINGS <= vanna_liquidation_rules::MAX_INDEXED_UNDERLYINGS);

pub use block::BlockError;
pub use block::{BlockContext, BlockOutput, apply_block, apply_block_with};
pub use error::TxError;
pub use genesis::Genesis;
pub use ids::{Address, OrderId};
pub use proof::verify_account_proof;
pub use snapshot::SnapshotError;
pub use state::State;
