//! Keeping a link to each address the node dials: dial, run the link, and
//! after it ends wait with exponential backoff and jitter before dialing
//! again; while the peer is reachable over another link (the one both
//! sides chose to keep), wait for that link to end instead.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio_util::sync::CancellationToken;
use tonic::transport::Endpoint;
use tracing::{debug, warn};

use crate::connection::{self, Link, LinkEnd};
use crate::network::{CONNECTION_WINDOW_BYTES, LINK_PATH, MAX_HEADER_LIST_BYTES, STREAM_WINDOW_BYTES, Shared};
use crate::registry::Outbox;
use crate::socket::Connector;
use crate::wire::FrameCodec;
use crate::{Direction, DisconnectReason, MAX_FRAME_BYTES, NetworkError, PeerId};

/// Delays that double from `initial` to `max`; each is drawn between half
/// and all of its value so that peers restarted together do not redial in step.
#[derive(Debug)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub(crate) fn new(initial: Duration, max: Duration) -> Self {
        Self { initial, max, next: initial }
    }
    pub(crate) fn reset(&mut self) {
        self.next = self.initial;
    }
    pub(crate) fn next_delay(&mut self, rng: &mut impl Rng) -> Duration {
        let bound = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        bound / 2 + bound.mul_f64(rng.random_range(0.0..=0.5))
    }
}

pub(crate) async fn keep_dialing(shared: Arc<Shared>, addr: SocketAddr) {
    let config = &shared.config;
    let mut backoff = Backoff::new(config.backoff_initial, config.backoff_max);
    while !shared.shutdown.is_cancelled() {
        let started = Instant::now();
        let end = dial(&shared, addr).await;
        match &end {
            LinkEnd { reason: DisconnectReason::Violation(NetworkError::SelfConnection), .. } => {
                warn!(%addr, "this address leads back to this node; no longer dialing it");
                break;
            }
            LinkEnd { peer: Some(peer @ PeerId::Key(_)), .. } => wait_while_connected(&shared, peer).await,
            _ => {}
        }
        // A link that held for a while was a success: start the delays over.
        if started.elapsed() >= config.backoff_max {
            backoff.reset();
        }
        let delay = backoff.next_delay(&mut rand::rng());
        debug!(%addr, reason = %end.reason, ?delay, "redialing after a delay");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shared.shutdown.cancelled() => break,
        }
    }
    shared.dialing.lock().unwrap().remove(&addr);
}

/// Returns once `peer` has no link (the one kept instead of ours ended).
async fn wait_while_connected(shared: &Shared, peer: &PeerId) {
    let mut changed = shared.changed.subscribe();
    while shared.registry.lock().unwrap().contains(peer) {
        tokio::select! {
            result = changed.changed() => if result.is_err() { return },
            _ = shared.shutdown.cancelled() => return,
        }
    }
}

async fn dial(shared: &Arc<Shared>, addr: SocketAddr) -> LinkEnd {
    let kill = shared.shutdown.child_token();
    match open(shared, addr, kill.clone()).await {
        Ok(link) => connection::run(shared.clone(), link, None).await,
        Err(reason) => {
            kill.cancel();
            debug!(%addr, %reason, "dial failed");
            LinkEnd { peer: None, reason }
        }
    }
}

async fn open(shared: &Shared, addr: SocketAddr, kill: CancellationToken) -> Result<Link, DisconnectReason> {
    let closed = |e: &dyn std::fmt::Display| DisconnectReason::Closed(e.to_string());
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| closed(&e))?
        .connect_timeout(shared.config.handshake_timeout)
        .http2_max_header_list_size(MAX_HEADER_LIST_BYTES)
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES);
    let connector = Connector { addr, kill: kill.clone() };
    let channel = tokio::time::timeout(shared.config.handshake_timeout, endpoint.connect_with_connector(connector))
        .await
        .map_err(|e| closed(&e))?
        .map_err(|e| closed(&e))?;
    let mut client = tonic::client::Grpc::new(channel.clone())
        .max_decoding_message_size(MAX_FRAME_BYTES)
        .max_encoding_message_size(MAX_FRAME_BYTES);
    let (outbox, outbound) = Outbox::new(&shared.config);
    let call = async {
        client.ready().await.map_err(|e| closed(&e))?;
        let path = tonic::codegen::http::uri::PathAndQuery::from_static(LINK_PATH);
        client.streaming(tonic::Request::new(outbound), path, FrameCodec).await.map_err(|e| closed(&e))
    };
    let response = tokio::time::timeout(shared.config.handshake_timeout, call).await.map_err(|e| closed(&e))??;
    Ok(Link {
        direction: Direction::Outbound,
        addr,
        inbound: response.into_inner(),
        outbox,
        kill,
        _channel: Some(channel),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn delays_double_to_the_cap_with_jitter_and_reset() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let (initial, max) = (Duration::from_millis(100), Duration::from_millis(1_000));
        let mut backoff = Backoff::new(initial, max);
        let mut bound = initial;
        for _ in 0..8 {
            let delay = backoff.next_delay(&mut rng);
            assert!(delay >= bound / 2 && delay <= bound, "{delay:?} outside [{:?}, {bound:?}]", bound / 2);
            bound = (bound * 2).min(max);
        }
        assert_eq!(backoff.next, max);
        backoff.reset();
        assert!(backoff.next_delay(&mut rng) <= initial);
    }
}
