//! Vanna's transaction pool: the node's pending transactions between
//! admission and a finalized block.
//!
//! It owns admission after the stateless checks, each account's nonce order,
//! the bounds on what is pending (with eviction and a time-to-live), the
//! proposer's fair choice of transactions, and the record of which
//! signatures this node verified, so that each is verified once.
//!
//! It must stay pure: no async runtime, no IO, no clock (time is passed in),
//! no randomness. It depends on the SDK-like crates only (`vanna-types`),
//! never on the runtime. A peer's bytes never reach it before
//! [`open_envelope`](vanna_types::open_envelope) has accepted them.
//!
//! # Using it from the node
//!
//! ```
//! use vanna_mempool::{AccountView, Config, Mempool};
//! use vanna_types::limits::MAX_TRANSACTIONS_PER_BLOCK;
//! use vanna_types::open_envelope;
//! use vanna_types::tx::{Signer, cancel};
//!
//! let chain_id = "vanna-doc";
//! let alice = Signer::from_seed("alice");
//! let mut pool = Mempool::new(Config::default());
//!
//! // A submission or a gossiped transaction. Skip a gossiped one whose hash
//! // `pool.is_verified` knows: it was verified here once already.
//! let bytes = alice.sign(chain_id, 0, vec![cancel(7)]);
//! // On a blocking thread (or `verify_batch` for many): the signature.
//! let envelope = open_envelope(&bytes, chain_id).expect("a good transaction");
//! // On the node's loop, with the sender's committed state.
//! let admitted = pool.insert(bytes, envelope, AccountView::Exists { nonce: 0 }, 1_000).unwrap();
//! assert!(admitted.ready);
//!
//! // Proposing: the choice, which the node sorts with
//! // `vanna_runtime::ordering::canonical_order` before proposing.
//! let committed = |_: &vanna_types::Address| Some(0);
//! let chosen = pool.select(committed, MAX_TRANSACTIONS_PER_BLOCK, 4 << 20);
//! assert_eq!(chosen.len(), 1);
//!
//! // Executing a finalized block: `apply_block_with(state, context, txs,
//! // &|hash| pool.is_verified(hash))`; then, with the nonces after it:
//! assert!(pool.is_verified(&chosen[0].hash));
//! let pruned = pool.on_finalized(|_| Some(1), &[chosen[0].hash], 2_000);
//! assert_eq!(pruned.included, 1);
//! assert!(pool.is_empty() && pool.is_verified(&chosen[0].hash));
//! ```
//!
//! The node calls [`Mempool::on_finalized`] after executing each finalized
//! block, with the committed nonces of the state it executed to; a
//! proposal it makes before that sees the block's transactions still
//! pending.
//!
//! # Rules
//!
//! **Admission** ([`Mempool::insert`]), in this order: the envelope must be
//! the one opened from these bytes; not already pending; the sender's account
//! exists; the nonce is not below the committed one (the higher of the
//! view passed in and the last the pool was told) nor `nonce_window` or more
//! past it; no other transaction is pending with that nonce; then room for
//! it in the account (`max_per_account`) and in the pool
//! (`max_transactions`, `max_bytes`). A refusal is a [`MempoolError`] with
//! the figures and leaves the pending set exactly as it was.
//!
//! **Replacement: none.** A pending (sender, nonce) is never replaced, even
//! by a different transaction from the same key; a byte-identical copy is a
//! duplicate. Without fees there is nothing to price a replacement, so
//! allowing it would let one account make every node verify and gossip
//! without end; and nodes would hold different versions of one nonce. A
//! sender waits for inclusion or for the time-to-live.
//!
//! **Nonce order.** Each account's entries are kept by nonce. The ready
//! ones are the contiguous run from the committed nonce; an entry after a
//! gap waits (at most `nonce_window` nonces ahead) and becomes ready when
//! the gap fills, by admission or by a finalized block.
//!
//! **Eviction.** When the pool is full, the victim is always the
//! highest-nonce entry of some account (dropping it never breaks the run
//! below it), chosen in this order: entries that are waiting before ready
//! ones, then the account holding the most entries, then the oldest such
//! entry. A newcomer takes the victim's place only if it ranks strictly
//! higher by the same measure (ready or not, then its account's count with
//! it): so a ready entry is never dropped for a waiting one, and an account
//! never grows past another by pushing it out. An account at its own limit
//! makes room for a lower nonce by dropping its highest (necessarily
//! waiting). Every entry leaves after `ttl_ms` in the pool (checked as each
//! block finalizes).
//!
//! **Selection** ([`Mempool::select`]): round-robin over the accounts with a
//! ready run, in the order their first ready entry arrived, one transaction
//! per account per round, each account's in nonce order, within the
//! transaction and byte limits given. One account can place at most
//! `max_per_account` transactions in a block.
//!
//! **Verified signatures** ([`Mempool::is_verified`]): every pending
//! transaction, and a bounded record (`verified_capacity`, oldest forgotten
//! first) of the ones that left the pool or that the node noted
//! ([`Mempool::note_verified`]) for a block it will execute; a separate
//! bounded record (`refused_capacity`) of verified ones the pool refused,
//! so that gossip never has one verified twice and refusals cannot push out
//! the hashes of blocks still to execute. Forgetting a hash costs one more
//! verification at execution, never a wrong result: a hash names exact
//! bytes, signature included.

mod error;
mod pool;
mod recent;
mod verify;

#[cfg(test)]
mod tests;

pub use error::MempoolError;
pub use pool::{AccountView, Admitted, Config, Mempool, Pruned, Selected, TxHash};
pub use verify::{MAX_VERIFY_THREADS, verify_batch};
