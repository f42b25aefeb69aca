use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::{MAX_FRAME_BYTES, NetworkError};

/// How a node listens, whom it dials and every bound it keeps. The defaults
/// suit a validator; tests shrink the times.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// Port 0 picks a free port; [`crate::NetworkHandle::local_addr`] tells which.
    pub listen_addr: SocketAddr,
    /// Dialed at start and redialed whenever the link is down.
    pub peers: Vec<SocketAddr>,
    /// Links of any kind.
    pub max_peers: usize,
    /// Links to peers outside the current and next validator sets, so full
    /// nodes can never take the places validators need.
    pub max_non_validator_peers: usize,
    /// Inbound handshakes in progress (each costs a BLS signature and a verification).
    pub max_handshakes: usize,
    /// Addresses dialed at once (configured plus [`crate::NetworkHandle::dial`]).
    pub max_dial_targets: usize,
    /// From the TCP connection to a verified proof, either direction.
    pub handshake_timeout: Duration,
    /// Frames waiting for a peer; past this it is dropped as slow.
    pub outbound_queue_frames: usize,
    /// Bytes waiting for a peer; past this it is dropped as slow. At least
    /// one largest frame.
    pub outbound_queue_bytes: usize,
    /// Token bucket on a peer's frames: sustained rate and burst.
    pub inbound_frames_per_second: u32,
    pub inbound_frame_burst: u32,
    /// Token bucket on a peer's bytes: sustained rate and burst (at least one
    /// largest frame).
    pub inbound_bytes_per_second: u64,
    pub inbound_byte_burst: u64,
    /// A peer whose frames were held back by the rate limits for half of a
    /// period this long (or longer) is disconnected as a flood.
    pub flood_tolerance: Duration,
    /// A ping goes out this often on every link.
    pub ping_interval: Duration,
    /// A link on which nothing arrives for this long is dropped.
    pub idle_timeout: Duration,
    /// Reconnection delays double from the first to the cap, each drawn
    /// between half and all of its value (jitter).
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Capacity of each queue towards the node ([`crate::Inbox`]).
    pub inbox_consensus: usize,
    pub inbox_gossip: usize,
    pub inbox_sync: usize,
    pub inbox_events: usize,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            listen_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            peers: Vec::new(),
            max_peers: 128,
            max_non_validator_peers: 64,
            max_handshakes: 32,
            max_dial_targets: 1_024,
            handshake_timeout: Duration::from_secs(5),
            outbound_queue_frames: 1_024,
            outbound_queue_bytes: 2 * MAX_FRAME_BYTES,
            // A validator sends about 7 consensus frames per view and gossip in
            // batches; 5,000 frames and 64 MiB a second leave room for catch-up.
            inbound_frames_per_second: 5_000,
            inbound_frame_burst: 10_000,
            inbound_bytes_per_second: 64 << 20,
            inbound_byte_burst: 2 * MAX_FRAME_BYTES as u64,
            flood_tolerance: Duration::from_secs(3),
            ping_interval: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(10),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            inbox_consensus: 4_096,
            inbox_gossip: 4_096,
            inbox_sync: 256,
            inbox_events: 1_024,
        }
    }
}

/// Upper end of every count bound: tokio's queues and semaphores refuse
/// more than 2^61 permits, and no sane node wants near 2^24.
const MAX_COUNT: usize = 1 << 24;

impl NetworkConfig {
    pub(crate) fn check(&self) -> Result<(), NetworkError> {
        let bad = |what: &str| Err(NetworkError::Config(what.to_string()));
        let counts = [
            self.max_peers,
            self.max_handshakes,
            self.max_dial_targets,
            self.outbound_queue_frames,
            self.inbox_consensus,
            self.inbox_gossip,
            self.inbox_sync,
            self.inbox_events,
        ];
        if counts.contains(&0) {
            return bad("peer, handshake, dial, queue and inbox bounds must be at least 1");
        }
        if counts.iter().any(|&count| count > MAX_COUNT) {
            return bad("peer, handshake, dial, queue and inbox bounds must be at most 2^24");
        }
        if self.max_non_validator_peers > self.max_peers {
            return bad("max_non_validator_peers exceeds max_peers");
        }
        if self.peers.len() > self.max_dial_targets {
            return bad("more peers than max_dial_targets");
        }
        if self.outbound_queue_bytes < MAX_FRAME_BYTES || self.inbound_byte_burst < MAX_FRAME_BYTES as u64 {
            return bad("outbound_queue_bytes and inbound_byte_burst must hold one largest frame");
        }
        if self.inbound_frames_per_second == 0 || self.inbound_frame_burst == 0 || self.inbound_bytes_per_second == 0 {
            return bad("inbound rates must be positive");
        }
        let times = [self.handshake_timeout, self.ping_interval, self.idle_timeout, self.backoff_initial];
        if times.contains(&Duration::ZERO) {
            return bad("timeouts, the ping interval and the first backoff must be positive");
        }
        if self.idle_timeout <= self.ping_interval {
            return bad("idle_timeout must exceed ping_interval, or quiet links would drop");
        }
        if self.backoff_max < self.backoff_initial {
            return bad("backoff_max is below backoff_initial");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_valid_and_each_bad_bound_is_named() {
        assert!(NetworkConfig::default().check().is_ok());
        let cases: Vec<(&str, NetworkConfig)> = vec![
            ("at least 1", NetworkConfig { max_peers: 0, ..Default::default() }),
            ("at most", NetworkConfig { inbox_sync: usize::MAX, ..Default::default() }),
            ("exceeds", NetworkConfig { max_non_validator_peers: 200, ..Default::default() }),
            ("largest frame", NetworkConfig { outbound_queue_bytes: 1, ..Default::default() }),
            ("positive", NetworkConfig { inbound_frames_per_second: 0, ..Default::default() }),
            ("must exceed", NetworkConfig { idle_timeout: Duration::from_secs(1), ..Default::default() }),
            ("below", NetworkConfig { backoff_max: Duration::from_millis(1), ..Default::default() }),
        ];
        for (needle, config) in cases {
            let error = config.check().unwrap_err().to_string();
            assert!(error.contains(needle), "{error} should mention {needle}");
        }
    }
}
