//! `vanna-node`: the node around the pure cores. It drives the consensus
//! engine (`vanna-consensus`) with the network, timers and the
//! slashing-protected signer; its application (`app`) proposes, verifies
//! and executes blocks with the runtime; it stores finalized blocks and
//! serves the API.
//!
//! Must not: decide anything the cores decide (what is valid, what a block
//! does, what to sign), or wait on a peer inside the consensus loop.

pub mod app;
pub mod config;
pub mod core;
pub mod evidence;
pub mod home;
pub mod localnet;
pub mod payload;
pub mod receipts;
pub mod rpc;
pub mod serving;
pub mod shell;
pub mod traffic;
pub mod verifier;

/// Milliseconds since the Unix epoch by the wall clock: the shell's time,
/// handed to the cores with each input.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
