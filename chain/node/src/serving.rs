//! How much catch-up data this node serves each peer. A request costs a
//! store read of up to a full response, so each peer gets a token bucket on
//! the bytes served: one that asks again and again (rather than once per
//! response, as catching up does) is ignored until its budget refills, and
//! times out towards another peer.

use std::collections::BTreeMap;

use vanna_network::PeerId;

/// Bytes a second served to one peer, sustained: far more than a node
/// catching up can execute, far less than the store can be made to read.
pub const SERVE_BYTES_PER_SECOND: f64 = 64.0 * 1024.0 * 1024.0;
/// What a peer may take at once: two full responses.
pub const SERVE_BURST_BYTES: f64 = 2.0 * vanna_network::MAX_SYNC_RESPONSE_BYTES as f64;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Negative after a response larger than what was left.
    tokens: f64,
    refilled_at_ms: u64,
}

/// One bucket per connected peer (forgotten when it disconnects).
#[derive(Debug, Default)]
pub struct ServeBudget {
    peers: BTreeMap<PeerId, Bucket>,
}

impl ServeBudget {
    /// Whether `peer` may be served now.
    pub fn allows(&mut self, peer: PeerId, now_ms: u64) -> bool {
        let bucket = self.peers.entry(peer).or_insert(Bucket { tokens: SERVE_BURST_BYTES, refilled_at_ms: now_ms });
        let elapsed_s = now_ms.saturating_sub(bucket.refilled_at_ms) as f64 / 1e3;
        bucket.tokens = (bucket.tokens + elapsed_s * SERVE_BYTES_PER_SECOND).min(SERVE_BURST_BYTES);
        bucket.refilled_at_ms = now_ms;
        bucket.tokens > 0.0
    }

    /// Charges `peer` for a response of `bytes` (after [`ServeBudget::allows`]).
    pub fn spend(&mut self, peer: PeerId, bytes: usize) {
        if let Some(bucket) = self.peers.get_mut(&peer) {
            bucket.tokens -= bytes as f64;
        }
    }

    pub fn forget(&mut self, peer: PeerId) {
        self.peers.remove(&peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(byte: u8) -> PeerId {
        PeerId::Key([byte; 48])
    }

    #[test]
    fn a_peer_asking_faster_than_its_budget_is_refused_until_it_refills() {
        let mut budget = ServeBudget::default();
        let full = vanna_network::MAX_SYNC_RESPONSE_BYTES;
        // Two full responses at once, then nothing.
        for _ in 0..2 {
            assert!(budget.allows(peer(1), 1_000));
            budget.spend(peer(1), full);
        }
        assert!(!budget.allows(peer(1), 1_000));
        // Another peer has a budget of its own.
        assert!(budget.allows(peer(2), 1_000));
        // The rate refills it: a full response takes an eighth of a second.
        let refill_ms = (full as f64 / SERVE_BYTES_PER_SECOND * 1e3) as u64 + 1;
        assert!(budget.allows(peer(1), 1_000 + refill_ms));
        // Never beyond the burst, however long the peer was quiet.
        budget.spend(peer(1), 3 * full);
        assert!(!budget.allows(peer(1), 1_000 + refill_ms));
        assert!(budget.allows(peer(1), 1_000_000));
        budget.spend(peer(1), 2 * full);
        assert!(!budget.allows(peer(1), 1_000_000));
    }

    #[test]
    fn a_forgotten_peer_starts_again_with_a_full_budget() {
        let mut budget = ServeBudget::default();
        assert!(budget.allows(peer(1), 0));
        budget.spend(peer(1), 10 * vanna_network::MAX_SYNC_RESPONSE_BYTES);
        assert!(!budget.allows(peer(1), 0));
        budget.forget(peer(1));
        assert!(budget.allows(peer(1), 0));
    }
}
