//! Nodes on 127.0.0.1 with free ports, waits bounded in time, and a raw
//! peer that speaks the protocol frame by frame to misbehave on purpose.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{BufMut, Bytes};
use prost::Message as _;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use tonic::codec::{Codec, EncodeBuf, Encoder};
use tonic::transport::{Channel, Endpoint};
use tonic_prost::ProstDecoder;
use vanna_crypto::bls::{self, BlsPublicKey, BlsSecretKey};
use vanna_network::handshake::signed_message;
use vanna_network::{
    DisconnectReason, Inbound, Inbox, Network, NetworkConfig, NetworkHandle, PROTOCOL_VERSION, PeerEvent, PeerId,
};
use vanna_proto::v1::PeerFrame;
use vanna_proto::v1::peer_frame::{Hello, Kind, Proof};

pub const CHAIN: &str = "vanna-test";
pub const GENESIS: [u8; 32] = [7; 32];
/// Every wait in these tests gives up after this long: generous, for a loaded machine.
pub const PATIENCE: Duration = Duration::from_secs(20);

pub fn init_logs() {
    let _ = tracing_subscriber::fmt().with_test_writer().with_max_level(tracing::Level::INFO).try_init();
}

pub fn secret(seed: u8) -> BlsSecretKey {
    BlsSecretKey::from_seed(&Sha256::digest([b'n', seed])).unwrap()
}

pub fn public(seed: u8) -> BlsPublicKey {
    bls::public_key(&secret(seed))
}

pub fn key_id(seed: u8) -> PeerId {
    PeerId::Key(public(seed).to_bytes())
}

/// Times short enough for tests.
pub fn fast_config() -> NetworkConfig {
    NetworkConfig {
        ping_interval: Duration::from_millis(200),
        idle_timeout: Duration::from_secs(5),
        backoff_initial: Duration::from_millis(50),
        backoff_max: Duration::from_millis(400),
        ..Default::default()
    }
}

pub async fn start(config: NetworkConfig, seed: Option<u8>) -> (NetworkHandle, Inbox) {
    Network::start(config, seed.map(secret), GENESIS, CHAIN).await.unwrap()
}

/// Polls `condition` until it holds; fails the test after [`PATIENCE`].
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub async fn recv(queue: &mut mpsc::Receiver<Inbound>, what: &str) -> Inbound {
    match tokio::time::timeout(PATIENCE, queue.recv()).await {
        Ok(Some(inbound)) => inbound,
        Ok(None) => panic!("inbox closed waiting for {what}"),
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

/// The next disconnection the node reports.
pub async fn disconnected(events: &mut mpsc::Receiver<PeerEvent>) -> (PeerId, DisconnectReason) {
    loop {
        match tokio::time::timeout(PATIENCE, events.recv()).await {
            Ok(Some(PeerEvent::Disconnected { peer, reason })) => return (peer, reason),
            Ok(Some(PeerEvent::Connected(_))) => continue,
            Ok(None) => panic!("event queue closed"),
            Err(_) => panic!("timed out waiting for a disconnection"),
        }
    }
}

/// Sends raw bytes as gRPC messages and decodes what comes back.
#[derive(Debug, Default, Clone, Copy)]
pub struct RawCodec;

#[derive(Debug)]
pub struct RawEncoder;

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = PeerFrame;
    type Encoder = RawEncoder;
    type Decoder = ProstDecoder<PeerFrame>;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> ProstDecoder<PeerFrame> {
        ProstDecoder::default()
    }
}

/// A peer driven by hand.
pub struct RawPeer {
    pub tx: mpsc::Sender<Bytes>,
    pub inbound: tonic::Streaming<PeerFrame>,
    /// The node's hello, which carries the challenge to sign.
    pub node_hello: Hello,
    pub challenge: [u8; 32],
    _channel: Channel,
}

impl RawPeer {
    /// Opens a link and reads the node's hello; sends nothing.
    pub async fn open(addr: SocketAddr) -> Self {
        let channel = Endpoint::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
        let mut client = tonic::client::Grpc::new(channel.clone())
            .max_encoding_message_size(64 << 20)
            .max_decoding_message_size(64 << 20);
        let (tx, rx) = mpsc::channel(64);
        client.ready().await.unwrap();
        let path = tonic::codegen::http::uri::PathAndQuery::from_static("/vanna.v1.Network/Link");
        let response = client.streaming(tonic::Request::new(ReceiverStream::new(rx)), path, RawCodec).await.unwrap();
        let mut inbound = response.into_inner();
        let first = tokio::time::timeout(PATIENCE, inbound.message()).await.unwrap().unwrap().unwrap();
        let Some(Kind::Hello(node_hello)) = first.kind else { panic!("the node did not start with a hello") };
        Self { tx, inbound, node_hello, challenge: [3; 32], _channel: channel }
    }

    pub fn hello(&self, key: Option<&BlsPublicKey>) -> Hello {
        Hello {
            chain_id: CHAIN.into(),
            genesis_hash: Bytes::copy_from_slice(&GENESIS),
            protocol_version: PROTOCOL_VERSION,
            challenge: Bytes::copy_from_slice(&self.challenge),
            consensus_key: key.map(|k| Bytes::copy_from_slice(&k.to_bytes())).unwrap_or_default(),
            instance: Bytes::from_static(&[8; 16]),
        }
    }

    /// The proof an honest holder of `secret` sends for this link.
    pub fn proof(&self, secret: &BlsSecretKey) -> Proof {
        let node_challenge: [u8; 32] = self.node_hello.challenge[..].try_into().unwrap();
        let node_key = (!self.node_hello.consensus_key.is_empty())
            .then(|| BlsPublicKey::from_bytes(&self.node_hello.consensus_key).unwrap());
        let message = signed_message(
            CHAIN,
            &GENESIS,
            &node_challenge,
            &self.challenge,
            &bls::public_key(secret),
            node_key.as_ref(),
        );
        Proof { signature: Bytes::copy_from_slice(&bls::sign(secret, &message).to_bytes()) }
    }

    pub async fn send(&self, kind: Kind) {
        self.send_bytes(PeerFrame { kind: Some(kind) }.encode_to_vec().into()).await;
    }

    pub async fn send_bytes(&self, bytes: Bytes) {
        // The node may already have closed the link; the test checks that.
        let _ = self.tx.send(bytes).await;
    }

    /// A full handshake, as a full node or as the holder of `secret`.
    pub async fn connect(addr: SocketAddr, secret: Option<&BlsSecretKey>) -> Self {
        let peer = Self::open(addr).await;
        let public = secret.map(bls::public_key);
        peer.send(Kind::Hello(peer.hello(public.as_ref()))).await;
        peer.send(Kind::Proof(secret.map(|s| peer.proof(s)).unwrap_or_default())).await;
        peer
    }

    /// Reads until the node closes the link; fails the test if it does not.
    /// Returns the goodbye, if the node sent one.
    pub async fn until_closed(&mut self) -> Option<i32> {
        let mut goodbye = None;
        loop {
            match tokio::time::timeout(PATIENCE, self.inbound.message()).await {
                Err(_) => panic!("the node kept the link open"),
                Ok(Ok(Some(PeerFrame { kind: Some(Kind::Goodbye(g)) }))) => goodbye = Some(g.reason),
                Ok(Ok(Some(_))) => {}
                Ok(Ok(None)) | Ok(Err(_)) => return goodbye,
            }
        }
    }
}
