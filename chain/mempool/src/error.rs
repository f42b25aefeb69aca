//! Why the pool refused a transaction. Each refusal says what to do next; a
//! refused transaction leaves the pool exactly as it was.

use thiserror::Error;
use vanna_types::Address;

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum MempoolError {
    #[error("transaction {} is already pending", hex::encode(.hash))]
    Duplicate { hash: [u8; 32] },
    #[error("unknown sender {0}: the account does not exist yet; fund it before it sends")]
    UnknownSender(Address),
    #[error("stale nonce {got}: account {account} has used it already; its next nonce is {expected}")]
    StaleNonce { account: Address, expected: u64, got: u64 },
    #[error(
        "nonce {got} is too far ahead: account {account} is at nonce {expected} and the pool holds only its next {window} nonces; send the missing ones first"
    )]
    NonceTooFarAhead { account: Address, expected: u64, got: u64, window: u64 },
    #[error(
        "account {account} already has transaction {} pending with nonce {nonce}; a pending transaction is never replaced: wait for it to be included or to expire, then use the next nonce",
        hex::encode(.pending)
    )]
    NonceTaken { account: Address, nonce: u64, pending: [u8; 32] },
    #[error(
        "account {account} already has {max} transactions pending, the most one account may hold, none with a higher nonce; wait for some to be included"
    )]
    AccountFull { account: Address, max: usize },
    #[error(
        "the pool is full ({count} of {max_count} transactions, {bytes} of {max_bytes} bytes) and holds nothing of lower priority to drop for this one; retry after the next block"
    )]
    PoolFull { count: usize, max_count: usize, bytes: usize, max_bytes: usize },
    /// A node bug: the envelope passed was opened from other bytes.
    #[error(
        "the envelope was opened from other bytes (envelope hash {}, hash of these bytes {})",
        hex::encode(.envelope),
        hex::encode(.bytes)
    )]
    EnvelopeMismatch { envelope: [u8; 32], bytes: [u8; 32] },
}

impl MempoolError {
    /// A stable machine-readable name for replies and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            MempoolError::Duplicate { .. } => "duplicate",
            MempoolError::UnknownSender(_) => "unknown_sender",
            MempoolError::StaleNonce { .. } => "stale_nonce",
            MempoolError::NonceTooFarAhead { .. } => "nonce_too_far_ahead",
            MempoolError::NonceTaken { .. } => "nonce_taken",
            MempoolError::AccountFull { .. } => "account_full",
            MempoolError::PoolFull { .. } => "pool_full",
            MempoolError::EnvelopeMismatch { .. } => "envelope_mismatch",
        }
    }
}
