//! The connected peers: admission (caps, one link per key), the outbound
//! queues the node writes into, and the validator sets that say who may send
//! consensus frames.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use prost::Message as _;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_util::sync::CancellationToken;
use vanna_proto::v1::PeerFrame;

use crate::{Direction, DisconnectReason, NetworkConfig, PeerId, PeerInfo};

/// Keys of the current and next epochs' validator sets.
pub(crate) type ValidatorKeys = HashSet<[u8; 48]>;

/// The sending half of a peer's bounded queue, in frames and in bytes.
#[derive(Debug, Clone)]
pub(crate) struct Outbox {
    tx: mpsc::Sender<(PeerFrame, usize)>,
    queued_bytes: Arc<AtomicUsize>,
    max_bytes: usize,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PushError {
    Full,
    Closed,
}

impl Outbox {
    pub(crate) fn new(config: &NetworkConfig) -> (Self, OutboundStream) {
        let (tx, rx) = mpsc::channel(config.outbound_queue_frames);
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let outbox = Self { tx, queued_bytes: queued_bytes.clone(), max_bytes: config.outbound_queue_bytes };
        (outbox, OutboundStream { rx, queued_bytes })
    }

    /// Queues a frame without waiting: a full queue means a slow peer.
    pub(crate) fn push(&self, frame: PeerFrame) -> Result<(), PushError> {
        let len = frame.encoded_len();
        if self.queued_bytes.fetch_add(len, Ordering::AcqRel) + len > self.max_bytes {
            self.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            return Err(PushError::Full);
        }
        self.tx.try_send((frame, len)).map_err(|error| {
            self.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            match error {
                mpsc::error::TrySendError::Full(_) => PushError::Full,
                mpsc::error::TrySendError::Closed(_) => PushError::Closed,
            }
        })
    }
}

/// The receiving half, polled by tonic as the link's outgoing stream.
#[derive(Debug)]
pub(crate) struct OutboundStream {
    rx: mpsc::Receiver<(PeerFrame, usize)>,
    queued_bytes: Arc<AtomicUsize>,
}

impl Stream for OutboundStream {
    type Item = PeerFrame;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<PeerFrame>> {
        self.rx.poll_recv(cx).map(|next| {
            next.map(|(frame, len)| {
                self.queued_bytes.fetch_sub(len, Ordering::AcqRel);
                frame
            })
        })
    }
}

/// Asks a link's task to close, saying why; the first reason given wins.
#[derive(Debug, Clone, Default)]
pub(crate) struct Closer {
    token: CancellationToken,
    reason: Arc<Mutex<Option<DisconnectReason>>>,
}

impl Closer {
    pub(crate) fn close(&self, reason: DisconnectReason) {
        self.reason.lock().unwrap().get_or_insert(reason);
        self.token.cancel();
    }
    pub(crate) async fn closed(&self) -> DisconnectReason {
        self.token.cancelled().await;
        self.reason.lock().unwrap().clone().unwrap_or(DisconnectReason::Shutdown)
    }
}

#[derive(Debug)]
struct Entry {
    link: u64,
    addr: SocketAddr,
    direction: Direction,
    outbox: Outbox,
    closer: Closer,
    rtt_micros: Arc<AtomicU64>,
}

/// What a link task keeps of its registration.
#[derive(Debug, Clone)]
pub(crate) struct Registration {
    pub id: PeerId,
    pub rtt_micros: Arc<AtomicU64>,
}

/// A link just handshaken, asking to be admitted.
#[derive(Debug)]
pub(crate) struct Candidate {
    pub link: u64,
    pub key: Option<[u8; 48]>,
    pub addr: SocketAddr,
    pub direction: Direction,
    pub outbox: Outbox,
    pub closer: Closer,
}

#[derive(Debug, Default)]
pub(crate) struct Registry {
    peers: BTreeMap<PeerId, Entry>,
    next_anonymous: u64,
    validators: ValidatorKeys,
}

/// No rtt measured yet.
const NO_RTT: u64 = u64::MAX;

impl Registry {
    pub(crate) fn set_validators(&mut self, keys: ValidatorKeys) {
        self.validators = keys;
    }

    pub(crate) fn is_validator(&self, id: &PeerId) -> bool {
        matches!(id, PeerId::Key(key) if self.validators.contains(key))
    }

    pub(crate) fn contains(&self, id: &PeerId) -> bool {
        self.peers.contains_key(id)
    }

    /// Admits a link, or says why not. When it replaces an older link to the
    /// same key, that link is told to close as a duplicate.
    pub(crate) fn admit(
        &mut self,
        candidate: Candidate,
        local_key: Option<&[u8; 48]>,
        config: &NetworkConfig,
    ) -> Result<Registration, (Option<PeerId>, DisconnectReason)> {
        let id = match candidate.key {
            Some(key) => PeerId::Key(key),
            None => {
                self.next_anonymous += 1;
                PeerId::Anonymous(self.next_anonymous)
            }
        };
        let replaces = match (self.peers.get(&id), &candidate.key) {
            (Some(existing), Some(key)) => {
                if !keeps_new(existing.direction, candidate.direction, local_key, key) {
                    return Err((Some(id), DisconnectReason::Duplicate));
                }
                true
            }
            _ => false,
        };
        let others = self.peers.len() - usize::from(replaces);
        if others >= config.max_peers {
            return Err((Some(id), DisconnectReason::TooManyPeers));
        }
        if !self.is_validator(&id) {
            let non_validators = self.peers.keys().filter(|peer| **peer != id && !self.is_validator(peer)).count();
            if non_validators >= config.max_non_validator_peers {
                return Err((Some(id), DisconnectReason::TooManyPeers));
            }
        }
        let rtt_micros = Arc::new(AtomicU64::new(NO_RTT));
        let entry = Entry {
            link: candidate.link,
            addr: candidate.addr,
            direction: candidate.direction,
            outbox: candidate.outbox,
            closer: candidate.closer,
            rtt_micros: rtt_micros.clone(),
        };
        if let Some(old) = self.peers.insert(id, entry) {
            old.closer.close(DisconnectReason::Duplicate);
        }
        Ok(Registration { id, rtt_micros })
    }

    /// Removes the link if it is still the registered one for `id`.
    pub(crate) fn remove(&mut self, id: &PeerId, link: u64) -> bool {
        if self.peers.get(id).is_some_and(|entry| entry.link == link) {
            self.peers.remove(id);
            return true;
        }
        false
    }

    pub(crate) fn info(&self, id: &PeerId) -> Option<PeerInfo> {
        self.peers.get(id).map(|entry| self.info_of(id, entry))
    }

    fn info_of(&self, id: &PeerId, entry: &Entry) -> PeerInfo {
        let rtt = entry.rtt_micros.load(Ordering::Relaxed);
        PeerInfo {
            id: *id,
            addr: entry.addr,
            direction: entry.direction,
            validator: self.is_validator(id),
            rtt: (rtt != NO_RTT).then(|| Duration::from_micros(rtt)),
        }
    }

    pub(crate) fn peers(&self) -> Vec<PeerInfo> {
        self.peers.iter().map(|(id, entry)| self.info_of(id, entry)).collect()
    }

    /// Queues `frame` for one peer; a full queue closes the link as slow.
    pub(crate) fn push(&self, id: &PeerId, frame: PeerFrame) -> Result<(), crate::NetworkError> {
        let entry = self.peers.get(id).ok_or(crate::NetworkError::UnknownPeer(*id))?;
        match entry.outbox.push(frame) {
            Ok(()) => Ok(()),
            Err(PushError::Full) => {
                entry.closer.close(DisconnectReason::SlowPeer);
                Err(crate::NetworkError::QueueFull(*id))
            }
            // The link is closing; it is gone from the registry in a moment.
            Err(PushError::Closed) => Err(crate::NetworkError::UnknownPeer(*id)),
        }
    }

    /// Queues `frame` for every peer (or every validator); returns how many took it.
    pub(crate) fn push_all(&self, frame: &PeerFrame, validators_only: bool) -> usize {
        let targets: Vec<PeerId> =
            self.peers.keys().filter(|id| !validators_only || self.is_validator(id)).copied().collect();
        targets.iter().filter(|id| self.push(id, frame.clone()).is_ok()).count()
    }

    pub(crate) fn close(&self, id: &PeerId, reason: DisconnectReason) -> bool {
        self.peers.get(id).map(|entry| entry.closer.close(reason)).is_some()
    }
}

/// Of two links between the same pair of peers, both sides keep the one
/// dialed by the smaller key (a node without a key counts as smallest), so
/// they agree without talking. Two links in the same direction mean the
/// older one is stale (a side dials an address once at a time): keep the new.
pub(crate) fn keeps_new(existing: Direction, new: Direction, local: Option<&[u8; 48]>, remote: &[u8; 48]) -> bool {
    if existing == new {
        return true;
    }
    let local_dials = local.is_none_or(|local| local < remote);
    (new == Direction::Outbound) == local_dials
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(link: u64, key: Option<[u8; 48]>, direction: Direction) -> Candidate {
        let (outbox, _) = Outbox::new(&NetworkConfig::default());
        Candidate { link, key, addr: "127.0.0.1:1".parse().unwrap(), direction, outbox, closer: Closer::default() }
    }

    #[test]
    fn both_sides_keep_the_link_the_smaller_key_dialed() {
        let (small, big) = ([1u8; 48], [2u8; 48]);
        // Link X: small dialed big. Link Y: big dialed small.
        // On small's side X is outbound, Y inbound; on big's side the reverse.
        for (existing, new) in [(Direction::Outbound, Direction::Inbound), (Direction::Inbound, Direction::Outbound)] {
            let small_keeps_new = keeps_new(existing, new, Some(&small), &big);
            let flip = |d| if d == Direction::Inbound { Direction::Outbound } else { Direction::Inbound };
            let big_keeps_new = keeps_new(flip(existing), flip(new), Some(&big), &small);
            assert_eq!(small_keeps_new, big_keeps_new);
            // The kept link is the one small dialed.
            let kept_on_small = if small_keeps_new { new } else { existing };
            assert_eq!(kept_on_small, Direction::Outbound);
        }
        assert!(keeps_new(Direction::Inbound, Direction::Inbound, Some(&small), &big));
        assert!(keeps_new(Direction::Inbound, Direction::Outbound, None, &big));
    }

    #[test]
    fn caps_keep_room_for_validators_and_duplicates_are_replaced_or_refused() {
        let config = NetworkConfig { max_peers: 3, max_non_validator_peers: 1, ..Default::default() };
        let mut registry = Registry::default();
        registry.set_validators([[5u8; 48], [6u8; 48]].into_iter().collect());
        let local = [4u8; 48];
        assert!(registry.admit(candidate(1, None, Direction::Inbound), Some(&local), &config).is_ok());
        let refused = registry.admit(candidate(2, Some([9; 48]), Direction::Inbound), Some(&local), &config);
        assert_eq!(refused.unwrap_err().1, DisconnectReason::TooManyPeers);
        assert!(registry.admit(candidate(3, Some([5; 48]), Direction::Inbound), Some(&local), &config).is_ok());
        // Local key 4 < 5: keep the link we dialed.
        let first = registry.admit(candidate(4, Some([5; 48]), Direction::Outbound), Some(&local), &config);
        assert!(first.is_ok());
        let duplicate = registry.admit(candidate(5, Some([5; 48]), Direction::Inbound), Some(&local), &config);
        assert_eq!(duplicate.unwrap_err().1, DisconnectReason::Duplicate);
        assert!(registry.admit(candidate(6, Some([6; 48]), Direction::Inbound), Some(&local), &config).is_ok());
        assert_eq!(registry.peers().len(), 3);
        let full = registry.admit(candidate(7, Some([7; 48]), Direction::Inbound), Some(&local), &config);
        assert_eq!(full.unwrap_err().1, DisconnectReason::TooManyPeers);
        // Only the registered link removes its peer.
        assert!(!registry.remove(&PeerId::Key([5; 48]), 3));
        assert!(registry.remove(&PeerId::Key([5; 48]), 4));
    }

    #[test]
    fn a_full_outbox_refuses_by_frames_and_by_bytes() {
        let config = NetworkConfig { outbound_queue_frames: 2, ..Default::default() };
        let (outbox, _stream) = Outbox::new(&config);
        let ping = PeerFrame { kind: Some(vanna_proto::v1::peer_frame::Kind::Ping(Default::default())) };
        assert_eq!(outbox.push(ping.clone()), Ok(()));
        assert_eq!(outbox.push(ping.clone()), Ok(()));
        assert_eq!(outbox.push(ping), Err(PushError::Full));
        let (outbox, _stream) = Outbox::new(&NetworkConfig::default());
        let big = crate::Message::Consensus(bytes::Bytes::from(vec![0; crate::MAX_CONSENSUS_MESSAGE_BYTES]));
        let frame = big.into_frame();
        let fits = NetworkConfig::default().outbound_queue_bytes / frame.encoded_len();
        for _ in 0..fits {
            assert_eq!(outbox.push(frame.clone()), Ok(()));
        }
        assert_eq!(outbox.push(frame), Err(PushError::Full));
    }
}
