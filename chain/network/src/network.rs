//! Starting the network, the handle the node drives it with, and the server
//! side of `vanna.v1.Network/Link`.

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use rand::TryRngCore;
use rand::rngs::OsRng;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::server::NamedService;
use tonic::transport::Server;
use tonic::{Request, Response, Status, Streaming};
use tracing::{info, warn};
use vanna_crypto::bls::{BlsPublicKey, BlsSecretKey};
use vanna_proto::v1::PeerFrame;

use crate::connection::{self, Link};
use crate::handshake::{CHALLENGE_BYTES, INSTANCE_BYTES, Identity, Local};
use crate::registry::{OutboundStream, Outbox, Registry, ValidatorKeys};
use crate::socket::{self, SocketInfo};
use crate::wire::{Decoded, FrameCodec};
use crate::{
    Direction, DisconnectReason, Inbound, MAX_CHAIN_ID_BYTES, MAX_FRAME_BYTES, Message, NetworkConfig, NetworkError,
    PeerEvent, PeerId, PeerInfo, dial,
};

/// The service as `network.proto` names it.
const SERVICE_NAME: &str = "vanna.v1.Network";
pub(crate) const LINK_PATH: &str = "/vanna.v1.Network/Link";
/// HTTP/2 bounds on what a peer can make us buffer besides frames: headers
/// (h2 would accept 16 MiB), and the flow-control windows, which cap the
/// bytes a peer may send ahead of our reading.
pub(crate) const MAX_HEADER_LIST_BYTES: u32 = 16 << 10;
pub(crate) const STREAM_WINDOW_BYTES: u32 = 2 << 20;
pub(crate) const CONNECTION_WINDOW_BYTES: u32 = 4 << 20;

/// What every task of one network shares.
pub(crate) struct Shared {
    pub config: NetworkConfig,
    chain_id: String,
    genesis_hash: [u8; 32],
    identity: Option<Identity>,
    pub local_key: Option<[u8; 48]>,
    instance: [u8; INSTANCE_BYTES],
    pub registry: Mutex<Registry>,
    /// Bumped whenever a peer leaves, for dialers waiting on a link kept
    /// instead of theirs.
    pub changed: watch::Sender<u64>,
    pub consensus_tx: mpsc::Sender<Inbound>,
    pub gossip_tx: mpsc::Sender<Inbound>,
    pub sync_tx: mpsc::Sender<Inbound>,
    pub events_tx: mpsc::Sender<PeerEvent>,
    handshakes: Arc<Semaphore>,
    pub shutdown: CancellationToken,
    pub tracker: TaskTracker,
    pub next_link: AtomicU64,
    /// Addresses with a dialing task.
    pub dialing: Mutex<HashSet<SocketAddr>>,
    local_addr: SocketAddr,
}

impl Shared {
    pub(crate) fn local(&self, challenge: [u8; CHALLENGE_BYTES]) -> Local<'_> {
        Local {
            chain_id: &self.chain_id,
            genesis_hash: self.genesis_hash,
            identity: self.identity.as_ref(),
            instance: self.instance,
            challenge,
        }
    }
}

/// What peers send, by kind, so that each part of the node reads its own
/// queue and bulk traffic never delays votes: consensus frames wait for room
/// (the sending peer is slowed down); gossip and sync frames are dropped when
/// their queue is full.
#[derive(Debug)]
pub struct Inbox {
    /// Consensus messages, only from current or next validators.
    pub consensus: mpsc::Receiver<Inbound>,
    /// Transactions and oracle reports.
    pub gossip: mpsc::Receiver<Inbound>,
    /// Sync requests and responses, and status.
    pub sync: mpsc::Receiver<Inbound>,
    /// Peers connecting and leaving (dropped when the queue is full).
    pub events: mpsc::Receiver<PeerEvent>,
}

/// Starts networks.
#[derive(Debug)]
pub struct Network;

impl Network {
    /// Listens on `config.listen_addr`, dials `config.peers`, and returns
    /// the handle and the inbox. `identity` is the node's consensus key
    /// (`None` for a full node); `chain_id` and `genesis_hash` must match a
    /// peer's for a link to open.
    pub async fn start(
        config: NetworkConfig,
        identity: Option<BlsSecretKey>,
        genesis_hash: [u8; 32],
        chain_id: impl Into<String>,
    ) -> Result<(NetworkHandle, Inbox), NetworkError> {
        config.check()?;
        let chain_id = chain_id.into();
        if chain_id.is_empty() || chain_id.len() > MAX_CHAIN_ID_BYTES {
            return Err(NetworkError::Config(format!("chain id must be 1 to {MAX_CHAIN_ID_BYTES} bytes")));
        }
        let listen = config.listen_addr;
        let listen_error = |e: std::io::Error| NetworkError::Listen { addr: listen, reason: e.to_string() };
        let listener = TcpListener::bind(listen).await.map_err(listen_error)?;
        let local_addr = listener.local_addr().map_err(listen_error)?;
        let mut instance = [0u8; INSTANCE_BYTES];
        OsRng.try_fill_bytes(&mut instance).map_err(|e| NetworkError::Randomness(e.to_string()))?;
        let identity = identity.map(Identity::new);
        let (consensus_tx, consensus) = mpsc::channel(config.inbox_consensus);
        let (gossip_tx, gossip) = mpsc::channel(config.inbox_gossip);
        let (sync_tx, sync) = mpsc::channel(config.inbox_sync);
        let (events_tx, events) = mpsc::channel(config.inbox_events);
        let shared = Arc::new(Shared {
            local_key: identity.as_ref().map(|i| i.public().to_bytes()),
            identity,
            chain_id,
            genesis_hash,
            instance,
            registry: Mutex::new(Registry::default()),
            changed: watch::Sender::new(0),
            consensus_tx,
            gossip_tx,
            sync_tx,
            events_tx,
            handshakes: Arc::new(Semaphore::new(config.max_handshakes)),
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
            next_link: AtomicU64::new(0),
            dialing: Mutex::new(HashSet::new()),
            local_addr,
            config,
        });

        // Established links plus handshakes in progress, each on its own socket.
        let slots = Arc::new(Semaphore::new(shared.config.max_peers.saturating_add(shared.config.max_handshakes)));
        let sockets = socket::accept(
            listener,
            slots,
            shared.config.handshake_timeout,
            shared.shutdown.clone(),
            shared.tracker.clone(),
        );
        let server = Server::builder()
            // One link per connection; a second stream is refused, a third not even opened.
            .max_concurrent_streams(Some(2))
            .http2_max_header_list_size(Some(MAX_HEADER_LIST_BYTES))
            .initial_stream_window_size(Some(STREAM_WINDOW_BYTES))
            .initial_connection_window_size(Some(CONNECTION_WINDOW_BYTES))
            .add_service(LinkService { shared: shared.clone() })
            .serve_with_incoming_shutdown(ReceiverStream::new(sockets), shared.shutdown.clone().cancelled_owned());
        shared.tracker.spawn(async move {
            if let Err(error) = server.await {
                warn!(%error, "peer server stopped");
            }
        });
        info!(addr = %local_addr, validator = shared.local_key.is_some(), "network listening");

        let handle = NetworkHandle { shared };
        for peer in handle.shared.config.peers.clone() {
            handle.dial(peer)?;
        }
        Ok((handle, Inbox { consensus, gossip, sync, events }))
    }
}

/// The node's side of the network. Cheap to clone; no method waits on a
/// peer.
#[derive(Clone)]
pub struct NetworkHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for NetworkHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetworkHandle").field("local_addr", &self.shared.local_addr).finish_non_exhaustive()
    }
}

impl NetworkHandle {
    /// The address it listens on (the port chosen when the config said 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// The key this node proves in handshakes: its [`PeerId`] at its peers.
    pub fn local_key(&self) -> Option<BlsPublicKey> {
        self.shared.identity.as_ref().map(|identity| identity.public().clone())
    }

    /// Queues `message` for every peer, except that consensus messages go to
    /// current and next validators only. Returns how many peers took it; a
    /// peer whose queue is full is disconnected instead.
    pub fn broadcast(&self, message: Message) -> Result<usize, NetworkError> {
        message.check()?;
        let validators_only = matches!(message, Message::Consensus(_));
        let frame = message.into_frame();
        Ok(self.shared.registry.lock().unwrap().push_all(&frame, validators_only))
    }

    /// Queues `message` for one peer. A full queue disconnects the peer.
    pub fn send(&self, peer: PeerId, message: Message) -> Result<(), NetworkError> {
        message.check()?;
        self.shared.registry.lock().unwrap().push(&peer, message.into_frame())
    }

    /// The validator sets whose members may send consensus frames: those of
    /// the current and the next epoch.
    pub fn set_validators(&self, current: &[BlsPublicKey], next: &[BlsPublicKey]) {
        let keys: ValidatorKeys = current.iter().chain(next).map(BlsPublicKey::to_bytes).collect();
        self.shared.registry.lock().unwrap().set_validators(keys);
    }

    /// Closes the link to `peer`; false if there was none. It may dial again.
    pub fn disconnect(&self, peer: PeerId, reason: impl Into<String>) -> bool {
        self.shared.registry.lock().unwrap().close(&peer, DisconnectReason::Requested(reason.into()))
    }

    pub fn peers(&self) -> Vec<PeerInfo> {
        self.shared.registry.lock().unwrap().peers()
    }

    /// Keeps a link to `addr` from now on, redialing whenever it is down.
    pub fn dial(&self, addr: SocketAddr) -> Result<(), NetworkError> {
        let max = self.shared.config.max_dial_targets;
        {
            let mut dialing = self.shared.dialing.lock().unwrap();
            if dialing.contains(&addr) {
                return Ok(());
            }
            if dialing.len() >= max {
                return Err(NetworkError::TooManyDialTargets(max));
            }
            dialing.insert(addr);
        }
        self.shared.tracker.spawn(dial::keep_dialing(self.shared.clone(), addr));
        Ok(())
    }

    /// Closes every link, stops dialing and listening, and waits until every
    /// task of the network has ended.
    pub async fn shutdown(&self) {
        self.shared.shutdown.cancel();
        self.shared.tracker.close();
        self.shared.tracker.wait().await;
    }
}

#[derive(Clone)]
struct LinkService {
    shared: Arc<Shared>,
}

impl NamedService for LinkService {
    const NAME: &'static str = SERVICE_NAME;
}

impl Service<http::Request<tonic::body::Body>> for LinkService {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let shared = self.shared.clone();
        Box::pin(async move {
            if request.uri().path() != LINK_PATH {
                return Ok(Status::unimplemented("only Link is served").into_http());
            }
            let mut grpc = tonic::server::Grpc::new(FrameCodec)
                .apply_max_message_size_config(Some(MAX_FRAME_BYTES), Some(MAX_FRAME_BYTES));
            Ok(grpc.streaming(LinkHandler { shared }, request).await)
        })
    }
}

struct LinkHandler {
    shared: Arc<Shared>,
}

impl tonic::server::StreamingService<Decoded> for LinkHandler {
    type Response = PeerFrame;
    type ResponseStream = ServerStream;
    type Future = BoxFuture<Response<ServerStream>, Status>;

    fn call(&mut self, request: Request<Streaming<Decoded>>) -> Self::Future {
        let shared = self.shared.clone();
        Box::pin(async move { accept_link(shared, request) })
    }
}

fn accept_link(shared: Arc<Shared>, request: Request<Streaming<Decoded>>) -> Result<Response<ServerStream>, Status> {
    let Some(socket) = request.extensions().get::<SocketInfo>().cloned() else {
        return Err(Status::internal("stream without a socket"));
    };
    if socket.claimed.load(Ordering::Acquire) {
        return Err(Status::resource_exhausted("one link per connection"));
    }
    let Ok(permit) = shared.handshakes.clone().try_acquire_owned() else {
        socket.kill.cancel();
        return Err(Status::resource_exhausted("too many handshakes in progress"));
    };
    if socket.claimed.swap(true, Ordering::AcqRel) {
        return Err(Status::resource_exhausted("one link per connection"));
    }
    let (outbox, outbound) = Outbox::new(&shared.config);
    let link = Link {
        direction: Direction::Inbound,
        addr: socket.remote,
        inbound: request.into_inner(),
        outbox,
        kill: socket.kill,
        _channel: None,
    };
    shared.tracker.spawn(connection::run(shared.clone(), link, Some(permit)));
    Ok(Response::new(ServerStream(outbound)))
}

/// A link's outgoing frames as the server's response stream.
struct ServerStream(OutboundStream);

impl Stream for ServerStream {
    type Item = Result<PeerFrame, Status>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.0).poll_next(cx).map(|next| next.map(Ok))
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("local_addr", &self.local_addr).finish_non_exhaustive()
    }
}
