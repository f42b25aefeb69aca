//! Entry points for tools that build large states (benchmarks, simulations)
//! without signing one transaction per action.
//!
//! Signing and verifying millions of orders would make a benchmark's setup
//! take minutes, so [`place_order`] runs an order for an account through
//! exactly the path a signed `PlaceOrder` takes after its envelope checks
//! (`parse_order`, then `State::place_order`: every order check, margin,
//! matching, fills, fees, locks, exposures and participants), skipping only
//! the envelope itself (signature, nonce, chain id).
//!
//! Nothing here is reachable from a block: `apply_block` only runs signed
//! transactions, and no wire message names these functions. Only Rust callers
//! with a `&mut State` can use them, which a node never hands to anyone but
//! `apply_block`.

use vanna_proto::v1 as wire;

use crate::error::TxError;
use crate::events::{Event, OrderOutcome};
use crate::ids::Address;
use crate::state::State;
use crate::trading::parse_order;

/// Places `order` for the account at `sender` as if it were the one action of
/// a signed transaction from it that passed its envelope checks; the nonce
/// does not move. On error nothing has changed.
pub fn place_order(
    state: &mut State,
    sender: &Address,
    order: &wire::PlaceOrder,
    events: &mut Vec<Event>,
) -> Result<OrderOutcome, TxError> {
    let owner = *state.account_index.get(sender).ok_or(TxError::UnknownAccount(*sender))?;
    let request = parse_order(state, order)?;
    state.place_order(owner, &request, None, events)
}
