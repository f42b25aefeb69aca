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

pub mod backstop;
pub mod block;
pub mod commit;
pub mod crypto;
pub mod error;
pub mod events;
pub mod genesis;
pub mod ids;
pub mod instrument;
pub mod limits;
pub mod liquidate;
pub mod money;
pub mod oracle;
pub mod risk;
pub mod sandbox;
pub mod settlement;
pub mod staking;
pub mod state;
pub mod tools;
pub mod trading;
pub mod tx;

pub use block::{BlockContext, BlockOutput, apply_block};
pub use commit::verify_account_proof;
pub use error::RuntimeError;
pub use genesis::Genesis;
pub use ids::{Address, OrderId};
pub use state::State;
