//! Vanna's peer network: validators and full nodes linked by tonic
//! bidirectional streams (`vanna.v1.Network/Link`, `proto/vanna/v1/network.proto`).
//!
//! Owns the links and everything about them: the handshake in which both
//! sides prove their BLS consensus key over the other's fresh challenge
//! ([`handshake`]), the frames and their limits ([`wire`]), one link per pair
//! of peers, reconnection with backoff, keepalive, per-peer rate limits and
//! bounded queues. Consensus messages, transactions, oracle reports and
//! blocks travel as opaque bytes: the node decodes them.
//!
//! Must not: decode or judge what it carries, block the caller (every send is
//! a `try_send`; a peer whose queue is full is dropped), grow with what a peer
//! sends, or panic on it. Only members of the current or next epoch's
//! validator set may send consensus frames; anyone else who tries is
//! disconnected.

mod config;
mod connection;
mod dial;
mod error;
pub mod handshake;
mod network;
mod peer;
mod rate;
mod registry;
mod socket;
pub mod wire;

pub use config::NetworkConfig;
pub use error::{DisconnectReason, NetworkError};
pub use network::{Inbox, Network, NetworkHandle};
pub use peer::{Direction, Inbound, PeerEvent, PeerId, PeerInfo};
pub use wire::Message;

/// Both ends of a link must speak the same version.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest consensus message (a proposal carries its block's payload): the
/// node's `max_payload_bytes` must leave room for the proposal around it.
pub const MAX_CONSENSUS_MESSAGE_BYTES: usize = 4 << 20;
/// Transactions per gossip frame.
pub const MAX_TRANSACTIONS_PER_FRAME: usize = 256;
/// Largest gossiped transaction: the runtime refuses anything larger anyway.
pub const MAX_TRANSACTION_BYTES: usize = vanna_types::limits::MAX_TRANSACTION_BYTES;
/// Largest gossiped oracle report.
pub const MAX_ORACLE_REPORT_BYTES: usize = 64 << 10;
/// Blocks asked for or sent in one sync frame (as the consensus block response).
pub const MAX_SYNC_BLOCKS: u32 = 32;
/// Sum of the block sizes in one sync response; a responder sends fewer
/// blocks rather than more bytes.
pub const MAX_SYNC_RESPONSE_BYTES: usize = 8 << 20;
/// Longest chain id in a hello (the genesis file allows 64 characters).
pub const MAX_CHAIN_ID_BYTES: usize = 64;
/// Largest encoded frame in either direction (tonic refuses anything larger
/// before decoding it): the largest sync response plus its framing.
pub const MAX_FRAME_BYTES: usize = MAX_SYNC_RESPONSE_BYTES + (64 << 10);
