//! One link's life, the same whichever side dialed: handshake, admission,
//! then reading frames (rate-limited, checked, routed to the node's inbox)
//! and pinging, until something closes it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rand::TryRngCore;
use rand::rngs::OsRng;
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio::time::MissedTickBehavior;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status, Streaming};
use tracing::{debug, info, warn};
use vanna_crypto::bls::BlsPublicKey;
use vanna_proto::v1::PeerFrame;
use vanna_proto::v1::peer_frame::{Goodbye, Kind, Ping, Pong};

use crate::handshake::{self, CHALLENGE_BYTES};
use crate::network::Shared;
use crate::rate::{Flood, Limiter};
use crate::registry::{Candidate, Closer, Outbox, PushError, Registration};
use crate::wire::{Decoded, Received};
use crate::{Direction, DisconnectReason, Inbound, Message, NetworkError, PeerEvent, PeerId};

/// How long a deliberate close waits for its goodbye to flush before the
/// socket is killed.
const CLOSE_LINGER: Duration = Duration::from_millis(500);

/// Both halves of a link's stream and its socket's kill token.
pub(crate) struct Link {
    pub direction: Direction,
    pub addr: SocketAddr,
    pub inbound: Streaming<Decoded>,
    pub outbox: Outbox,
    pub kill: CancellationToken,
    /// A dialed link's client channel, kept for as long as the link.
    pub _channel: Option<tonic::transport::Channel>,
}

/// How a link ended: the peer, once known, and why.
#[derive(Debug)]
pub(crate) struct LinkEnd {
    pub peer: Option<PeerId>,
    pub reason: DisconnectReason,
}

/// Runs a link to its end. `permit` is the handshake slot, given back once
/// the handshake is over.
pub(crate) async fn run(shared: Arc<Shared>, mut link: Link, permit: Option<OwnedSemaphorePermit>) -> LinkEnd {
    let (direction, addr) = (link.direction, link.addr);
    let timeout = shared.config.handshake_timeout;
    let outcome = tokio::select! {
        _ = shared.shutdown.cancelled() => Err(DisconnectReason::Shutdown),
        outcome = tokio::time::timeout(timeout, handshake(&shared, &mut link)) => match outcome {
            Ok(Ok(key)) => Ok(key),
            Ok(Err(NetworkError::Closed(why))) => Err(DisconnectReason::Closed(why)),
            Ok(Err(error)) => Err(DisconnectReason::Violation(error)),
            Err(_) => Err(DisconnectReason::Violation(NetworkError::HandshakeTimeout(timeout))),
        },
    };
    drop(permit);
    let key = match outcome {
        Ok(key) => key,
        Err(reason) => {
            if reason.is_fault() {
                warn!(%addr, ?direction, %reason, "handshake refused");
            } else {
                debug!(%addr, ?direction, %reason, "handshake ended");
            }
            finish(&shared, &link, &reason);
            return LinkEnd { peer: None, reason };
        }
    };

    let closer = Closer::default();
    let number = shared.next_link.fetch_add(1, Ordering::Relaxed);
    let candidate = Candidate {
        link: number,
        key: key.as_ref().map(BlsPublicKey::to_bytes),
        addr,
        direction,
        outbox: link.outbox.clone(),
        closer: closer.clone(),
    };
    let (registration, info) = {
        let mut registry = shared.registry.lock().unwrap();
        let was_connected = candidate.key.is_some_and(|key| registry.contains(&PeerId::Key(key)));
        match registry.admit(candidate, shared.local_key.as_ref(), &shared.config) {
            Ok(registration) => {
                // A replaced link hands its peer over: the peer never left.
                let info = registry.info(&registration.id).filter(|_| !was_connected);
                (registration, info)
            }
            Err((peer, reason)) => {
                drop(registry);
                info!(%addr, ?direction, ?peer, %reason, "link refused");
                finish(&shared, &link, &reason);
                return LinkEnd { peer, reason };
            }
        }
    };
    let id = registration.id;
    info!(peer = %id, %addr, ?direction, validator = info.as_ref().is_some_and(|i| i.validator), "peer connected");
    if let Some(info) = info {
        notify(&shared.events_tx, PeerEvent::Connected(info));
    }

    let reason = serve(&shared, &mut link, &registration, &closer).await;

    let removed = shared.registry.lock().unwrap().remove(&id, number);
    if reason.is_fault() {
        warn!(peer = %id, %addr, %reason, "peer disconnected");
    } else {
        info!(peer = %id, %addr, %reason, "peer disconnected");
    }
    if removed {
        shared.changed.send_modify(|generation| *generation += 1);
        notify(&shared.events_tx, PeerEvent::Disconnected { peer: id, reason: reason.clone() });
    }
    finish(&shared, &link, &reason);
    LinkEnd { peer: Some(id), reason }
}

fn notify(events: &mpsc::Sender<PeerEvent>, event: PeerEvent) {
    if events.try_send(event).is_err() {
        debug!("peer event dropped: the node's event queue is full");
    }
}

/// Says goodbye when there is a reason to, then kills the socket: at once
/// for a misbehaving or stuck peer, after a short linger otherwise.
fn finish(shared: &Shared, link: &Link, reason: &DisconnectReason) {
    if let Some(goodbye) = reason.goodbye() {
        let _ = link.outbox.push(PeerFrame { kind: Some(Kind::Goodbye(Goodbye { reason: goodbye as i32 })) });
    }
    if !reason.lingers() {
        link.kill.cancel();
        return;
    }
    let (kill, shutdown) = (link.kill.clone(), shared.shutdown.clone());
    shared.tracker.spawn(async move {
        tokio::select! {
            _ = tokio::time::sleep(CLOSE_LINGER) => {}
            _ = shutdown.cancelled() => {}
        }
        kill.cancel();
    });
}

async fn handshake(shared: &Arc<Shared>, link: &mut Link) -> Result<Option<BlsPublicKey>, NetworkError> {
    let mut challenge = [0u8; CHALLENGE_BYTES];
    OsRng.try_fill_bytes(&mut challenge).map_err(|e| NetworkError::Randomness(e.to_string()))?;
    let hello = handshake::hello(&shared.local(challenge));
    push(&link.outbox, PeerFrame { kind: Some(Kind::Hello(hello)) })?;
    let hello = match next_frame(&mut link.inbound).await? {
        Received::Hello(hello) => hello,
        other => return Err(NetworkError::Unexpected { frame: other.kind(), when: "before the hello" }),
    };
    let remote = handshake::check_hello(&shared.local(challenge), &hello)?;
    // Signing and verifying take a millisecond or two each: off the runtime's
    // threads, which also drive consensus.
    let proof = blocking(shared, {
        let remote = remote.clone();
        move |shared| Ok(handshake::prove(&shared.local(challenge), &remote))
    })
    .await?;
    push(&link.outbox, PeerFrame { kind: Some(Kind::Proof(proof)) })?;
    let proof = match next_frame(&mut link.inbound).await? {
        Received::Proof(proof) => proof,
        other => return Err(NetworkError::Unexpected { frame: other.kind(), when: "before the proof" }),
    };
    blocking(shared, move |shared| handshake::check_proof(&shared.local(challenge), &remote, &proof)).await
}

async fn blocking<T: Send + 'static>(
    shared: &Arc<Shared>,
    work: impl FnOnce(&Shared) -> Result<T, NetworkError> + Send + 'static,
) -> Result<T, NetworkError> {
    let shared = shared.clone();
    tokio::task::spawn_blocking(move || work(&shared))
        .await
        .map_err(|e| NetworkError::Closed(format!("handshake task failed: {e}")))?
}

fn push(outbox: &Outbox, frame: PeerFrame) -> Result<(), NetworkError> {
    outbox.push(frame).map_err(|_| NetworkError::Closed("outgoing stream ended".into()))
}

async fn next_frame(inbound: &mut Streaming<Decoded>) -> Result<Received, NetworkError> {
    match inbound.next().await {
        None => Err(NetworkError::Closed("the peer ended the stream".into())),
        Some(Err(status)) => Err(match transport_fault(&status) {
            Some(error) => error,
            None => NetworkError::Closed(status.message().to_string()),
        }),
        Some(Ok(decoded)) => decoded.frame,
    }
}

/// tonic refuses a frame over `MAX_FRAME_BYTES` with `OutOfRange`, before
/// reading it; any other stream error is the link failing, not the peer lying.
fn transport_fault(status: &Status) -> Option<NetworkError> {
    (status.code() == Code::OutOfRange).then(|| NetworkError::Transport(status.message().to_string()))
}

async fn serve(shared: &Shared, link: &mut Link, registration: &Registration, closer: &Closer) -> DisconnectReason {
    let config = &shared.config;
    let id = registration.id;
    let mut limiter = Limiter::new(config, Instant::now());
    let mut ping = tokio::time::interval(config.ping_interval);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ping.reset(); // The first tick would otherwise fire at once.
    let mut last_heard = Instant::now();
    let mut ping_sent: Option<(u64, Instant)> = None;
    let mut nonce = 0u64;
    loop {
        let next = tokio::select! {
            reason = closer.closed() => return reason,
            _ = shared.shutdown.cancelled() => return DisconnectReason::Shutdown,
            _ = ping.tick() => {
                if last_heard.elapsed() > config.idle_timeout {
                    return DisconnectReason::Timeout;
                }
                nonce += 1;
                if let Err(reason) = reply(&link.outbox, Kind::Ping(Ping { nonce })) {
                    return reason;
                }
                ping_sent = Some((nonce, Instant::now()));
                continue;
            }
            next = link.inbound.next() => next,
        };
        let decoded = match next {
            None => return DisconnectReason::Closed("the peer ended the stream".into()),
            Some(Err(status)) => {
                return match transport_fault(&status) {
                    Some(error) => DisconnectReason::Violation(error),
                    None => DisconnectReason::Closed(status.message().to_string()),
                };
            }
            Some(Ok(decoded)) => decoded,
        };
        last_heard = Instant::now();
        let received = match decoded.frame {
            Ok(received) => received,
            Err(error) => return DisconnectReason::Violation(error),
        };
        let wait = limiter.admit(Instant::now(), decoded.bytes);
        if !wait.is_zero() {
            let started = Instant::now();
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                reason = closer.closed() => return reason,
                _ = shared.shutdown.cancelled() => return DisconnectReason::Shutdown,
            }
            if limiter.held_back(Instant::now(), started.elapsed()) == Err(Flood) {
                return DisconnectReason::Flood;
            }
        }
        match received {
            Received::Message(message) => {
                let inbound = Inbound { peer: id, message };
                match &inbound.message {
                    Message::Consensus(_) => {
                        if !shared.registry.lock().unwrap().is_validator(&id) {
                            return DisconnectReason::NotAValidator;
                        }
                        // Consensus frames wait for room: the node reads them
                        // first, and a full queue slows this peer only.
                        tokio::select! {
                            _ = shared.consensus_tx.send(inbound) => {}
                            reason = closer.closed() => return reason,
                            _ = shared.shutdown.cancelled() => return DisconnectReason::Shutdown,
                        }
                    }
                    Message::Transactions(_) | Message::OracleReport(_) => forward(&shared.gossip_tx, inbound),
                    Message::SyncRequest { .. } | Message::SyncResponse { .. } | Message::Status { .. } => {
                        forward(&shared.sync_tx, inbound)
                    }
                }
            }
            Received::Ping(nonce) => {
                if let Err(reason) = reply(&link.outbox, Kind::Pong(Pong { nonce })) {
                    return reason;
                }
            }
            Received::Pong(answered) => {
                if let Some((sent, at)) = ping_sent
                    && sent == answered
                {
                    let micros = u64::try_from(at.elapsed().as_micros()).unwrap_or(u64::MAX - 1);
                    registration.rtt_micros.store(micros, Ordering::Relaxed);
                    ping_sent = None;
                }
            }
            Received::Goodbye(reason) => return DisconnectReason::Remote(reason),
            other @ (Received::Hello(_) | Received::Proof(_)) => {
                let frame = other.kind();
                return DisconnectReason::Violation(NetworkError::Unexpected { frame, when: "after the handshake" });
            }
        }
    }
}

fn reply(outbox: &Outbox, kind: Kind) -> Result<(), DisconnectReason> {
    outbox.push(PeerFrame { kind: Some(kind) }).map_err(|error| match error {
        PushError::Full => DisconnectReason::SlowPeer,
        PushError::Closed => DisconnectReason::Closed("outgoing stream ended".into()),
    })
}

/// Gossip and sync frames are dropped when the node is behind on them: the
/// sender gossips again or asks again, and this peer's consensus frames
/// behind them are not held up.
fn forward(queue: &mpsc::Sender<Inbound>, inbound: Inbound) {
    if let Err(mpsc::error::TrySendError::Full(dropped)) = queue.try_send(inbound) {
        debug!(peer = %dropped.peer, kind = dropped.message.kind(), "inbox full; frame dropped");
    }
}
