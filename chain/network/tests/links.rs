//! Networks on 127.0.0.1 (free ports), honest and hostile peers. Every wait is
//! bounded, every network is shut down at the end.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vanna_network::{
    Direction, DisconnectReason, MAX_FRAME_BYTES, MAX_ORACLE_REPORT_BYTES, Message, NetworkConfig, NetworkError,
    PeerEvent, PeerId,
};
use vanna_proto::v1::peer_frame::{self, DisconnectReason as WireReason, Kind};

fn consensus(bytes: &'static [u8]) -> Message {
    Message::Consensus(Bytes::from_static(bytes))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_validators_exchange_frames_both_ways() {
    init_logs();
    let (a, mut a_inbox) = start(fast_config(), Some(1)).await;
    let (b, mut b_inbox) = start(NetworkConfig { peers: vec![a.local_addr()], ..fast_config() }, Some(2)).await;
    let (c, mut c_inbox) =
        start(NetworkConfig { peers: vec![a.local_addr(), b.local_addr()], ..fast_config() }, Some(3)).await;
    let set = [public(1), public(2), public(3)];
    for node in [&a, &b, &c] {
        node.set_validators(&set, &[]);
    }
    for node in [&a, &b, &c] {
        eventually("a full mesh", || node.peers().len() == 2).await;
    }
    assert!(a.peers().iter().all(|p| p.validator && p.direction == Direction::Inbound));

    assert_eq!(a.broadcast(consensus(b"from a")).unwrap(), 2);
    for inbox in [&mut b_inbox, &mut c_inbox] {
        let got = recv(&mut inbox.consensus, "a's broadcast").await;
        assert_eq!((got.peer, got.message), (key_id(1), consensus(b"from a")));
    }
    c.send(key_id(1), consensus(b"c to a")).unwrap();
    b.send(key_id(3), Message::Status { finalized_height: 9 }).unwrap();
    let got = recv(&mut a_inbox.consensus, "c's message").await;
    assert_eq!((got.peer, got.message), (key_id(3), consensus(b"c to a")));
    let got = recv(&mut c_inbox.sync, "b's status").await;
    assert_eq!((got.peer, got.message), (key_id(2), Message::Status { finalized_height: 9 }));
    let batch = Message::Transactions(vec![Bytes::from_static(b"tx1"), Bytes::from_static(b"tx2")]);
    b.broadcast(batch.clone()).unwrap();
    assert_eq!(recv(&mut a_inbox.gossip, "gossip").await.message, batch);
    assert_eq!(recv(&mut c_inbox.gossip, "gossip").await.message, batch);

    // Pings measure the round trip.
    eventually("a measured round trip", || a.peers().iter().all(|p| p.rtt.is_some())).await;
    // What a peer would refuse is refused before it leaves.
    let too_big = Message::OracleReport(Bytes::from(vec![0; MAX_ORACLE_REPORT_BYTES + 1]));
    assert!(matches!(a.broadcast(too_big), Err(NetworkError::TooLarge { .. })));
    assert_eq!(a.send(key_id(9), consensus(b"x")), Err(NetworkError::UnknownPeer(key_id(9))));

    // A deliberate disconnect is seen by both sides; b dials a again.
    assert!(a.disconnect(key_id(2), "test"));
    let (peer, reason) = disconnected(&mut b_inbox.events).await;
    assert_eq!((peer, reason), (key_id(1), DisconnectReason::Remote(WireReason::Requested)));
    eventually("b redialed a", || a.peers().iter().any(|p| p.id == key_id(2))).await;
    for node in [&a, &b, &c] {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_dialing_each_other_keep_the_same_single_link() {
    init_logs();
    let (a, _a_inbox) = start(fast_config(), Some(1)).await;
    let (b, mut b_inbox) = start(fast_config(), Some(2)).await;
    a.dial(b.local_addr()).unwrap();
    b.dial(a.local_addr()).unwrap();
    let settled = || {
        let (pa, pb) = (a.peers(), b.peers());
        pa.len() == 1 && pb.len() == 1 && pa[0].direction != pb[0].direction
    };
    eventually("one link each way agreed", settled).await;
    // Still the same link a while later (several pings and redial delays).
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(settled());
    // Both keep the link dialed by the smaller key.
    let smaller_dials = if public(1).to_bytes() < public(2).to_bytes() { &a } else { &b };
    assert_eq!(smaller_dials.peers()[0].direction, Direction::Outbound);
    b.set_validators(&[public(1), public(2)], &[]);
    a.send(key_id(2), consensus(b"over the kept link")).unwrap();
    assert_eq!(recv(&mut b_inbox.consensus, "a frame").await.message, consensus(b"over the kept link"));
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_node_syncs_and_gossips_but_its_consensus_frames_are_refused() {
    init_logs();
    let (v, mut v_inbox) = start(fast_config(), Some(1)).await;
    v.set_validators(&[public(1)], &[public(2)]);
    let (full, mut full_inbox) = start(NetworkConfig { peers: vec![v.local_addr()], ..fast_config() }, None).await;
    full.set_validators(&[public(1)], &[public(2)]);
    eventually("the full node connected", || v.peers().len() == 1 && full.peers().len() == 1).await;
    let anonymous = v.peers()[0].id;
    assert!(matches!(anonymous, PeerId::Anonymous(_)) && !v.peers()[0].validator);
    assert_eq!(full.peers()[0].id, key_id(1));

    full.broadcast(Message::Transactions(vec![Bytes::from_static(b"tx")])).unwrap();
    full.broadcast(Message::OracleReport(Bytes::from_static(b"report"))).unwrap();
    assert_eq!(recv(&mut v_inbox.gossip, "a transaction").await.peer, anonymous);
    assert_eq!(
        recv(&mut v_inbox.gossip, "a report").await.message,
        Message::OracleReport(Bytes::from_static(b"report"))
    );
    full.send(key_id(1), Message::SyncRequest { from_height: 1, max: 2 }).unwrap();
    let request = recv(&mut v_inbox.sync, "a sync request").await;
    assert_eq!(request.message, Message::SyncRequest { from_height: 1, max: 2 });
    let blocks = vec![Bytes::from_static(b"block 1"), Bytes::from_static(b"block 2")];
    v.send(request.peer, Message::SyncResponse { from_height: 1, blocks: blocks.clone() }).unwrap();
    let response = recv(&mut full_inbox.sync, "the sync response").await;
    assert_eq!(response.message, Message::SyncResponse { from_height: 1, blocks });
    // A validator's consensus broadcast skips the full node; a direct send reaches it.
    assert_eq!(v.broadcast(consensus(b"vote")).unwrap(), 0);
    v.send(anonymous, consensus(b"certificate")).unwrap();
    assert_eq!(recv(&mut full_inbox.consensus, "a direct consensus message").await.peer, key_id(1));

    full.send(key_id(1), consensus(b"forged vote")).unwrap();
    let (peer, reason) = disconnected(&mut v_inbox.events).await;
    assert_eq!((peer, reason), (anonymous, DisconnectReason::NotAValidator));
    assert!(v_inbox.consensus.try_recv().is_err(), "the full node's consensus frame reached the node");

    // A key outside both sets is refused the same way; one in the next set is not.
    let (outsider, _outsider_inbox) =
        start(NetworkConfig { peers: vec![v.local_addr()], ..fast_config() }, Some(7)).await;
    let (next, _next_inbox) = start(NetworkConfig { peers: vec![v.local_addr()], ..fast_config() }, Some(2)).await;
    eventually("both keyed peers connected, on both sides", || {
        v.peers().iter().filter(|p| p.id == key_id(7) || p.id == key_id(2)).count() == 2
            && outsider.peers().len() == 1
            && next.peers().len() == 1
    })
    .await;
    next.send(key_id(1), consensus(b"next epoch's vote")).unwrap();
    let got = recv(&mut v_inbox.consensus, "the next validator's vote").await;
    assert_eq!(got.peer, key_id(2));
    outsider.send(key_id(1), consensus(b"outsider vote")).unwrap();
    loop {
        let (peer, reason) = disconnected(&mut v_inbox.events).await;
        if peer == key_id(7) {
            assert_eq!(reason, DisconnectReason::NotAValidator);
            break;
        }
    }
    for node in [&v, &full, &outsider, &next] {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_chains_bad_signatures_and_replayed_proofs_are_refused() {
    init_logs();
    let (v, mut inbox) = start(fast_config(), Some(1)).await;
    let addr = v.local_addr();

    let mut peer = RawPeer::open(addr).await;
    let mut hello = peer.hello(None);
    hello.chain_id = "another-chain".into();
    peer.send(Kind::Hello(hello)).await;
    peer.until_closed().await;

    let impostor = secret(5);
    let mut peer = RawPeer::open(addr).await;
    peer.send(Kind::Hello(peer.hello(Some(&public(2))))).await;
    // Signed with another key than the one claimed.
    peer.send(Kind::Proof(peer.proof(&impostor))).await;
    peer.until_closed().await;

    // A proof recorded on one link does not open another: the challenge differs.
    let recorded = {
        let peer = RawPeer::connect(addr, Some(&secret(2))).await;
        eventually("the honest link", || v.peers().len() == 1).await;
        let proof = peer.proof(&secret(2));
        drop(peer);
        eventually("the honest link closed", || v.peers().is_empty()).await;
        proof
    };
    let mut replay = RawPeer::open(addr).await;
    replay.send(Kind::Hello(replay.hello(Some(&public(2))))).await;
    replay.send(Kind::Proof(recorded)).await;
    replay.until_closed().await;

    // A frame before the handshake is over is refused too.
    let mut early = RawPeer::open(addr).await;
    early.send(Kind::Status(peer_frame::Status { finalized_height: 1 })).await;
    early.until_closed().await;

    // A network of another genesis never links.
    let (other, _other_inbox) = vanna_network::Network::start(
        NetworkConfig { peers: vec![addr], ..fast_config() },
        Some(secret(3)),
        [0; 32],
        CHAIN,
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(v.peers().is_empty() && other.peers().is_empty());
    let connected = std::iter::from_fn(|| inbox.events.try_recv().ok())
        .filter(|e| matches!(e, PeerEvent::Connected(info) if info.id != key_id(2)))
        .count();
    assert_eq!(connected, 0, "a refused peer was reported connected");
    other.shutdown().await;
    v.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_garbage_frames_disconnect_the_sender_and_nothing_panics() {
    init_logs();
    let (v, mut inbox) = start(fast_config(), Some(1)).await;
    let addr = v.local_addr();

    // Over the frame limit: tonic refuses it before reading it.
    let mut peer = RawPeer::connect(addr, None).await;
    let huge = vec![Bytes::from(vec![1u8; MAX_FRAME_BYTES + 1])];
    peer.send(Kind::Transactions(peer_frame::Transactions { transactions: huge })).await;
    let (_, reason) = disconnected(&mut inbox.events).await;
    assert!(matches!(reason, DisconnectReason::Violation(NetworkError::Transport(_))), "{reason}");
    peer.until_closed().await;

    // Under the frame limit but over its kind's.
    let mut peer = RawPeer::connect(addr, None).await;
    let report = Bytes::from(vec![1u8; MAX_ORACLE_REPORT_BYTES + 1]);
    peer.send(Kind::OracleReport(peer_frame::OracleReport { report })).await;
    let (_, reason) = disconnected(&mut inbox.events).await;
    assert!(matches!(reason, DisconnectReason::Violation(NetworkError::TooLarge { .. })), "{reason}");
    peer.until_closed().await;

    // Bytes that are no frame at all, inside a valid gRPC message.
    let mut peer = RawPeer::connect(addr, Some(&secret(2))).await;
    eventually("the validator's link", || v.peers().iter().any(|p| p.id == key_id(2))).await;
    peer.send_bytes(Bytes::from_static(&[0xff, 0xff, 0xff, 0x0f, 0x22, 0x99])).await;
    let (peer_id, reason) = disconnected(&mut inbox.events).await;
    assert_eq!(peer_id, key_id(2));
    assert!(matches!(reason, DisconnectReason::Violation(NetworkError::Malformed(_))), "{reason}");
    peer.until_closed().await;

    // Bytes that are not even HTTP/2.
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = socket.write_all(&[0x5a; 4096]).await;
    assert!(closes(&mut socket).await, "the node kept a garbage connection open");

    // An idle TCP connection that never opens a link is closed after the handshake timeout.
    let short = NetworkConfig { handshake_timeout: Duration::from_millis(300), ..fast_config() };
    let (w, _w_inbox) = start(short, None).await;
    let mut idle = tokio::net::TcpStream::connect(w.local_addr()).await.unwrap();
    assert!(closes(&mut idle).await, "an idle connection stayed open");
    w.shutdown().await;

    // The node is still fine.
    let (b, _b_inbox) = start(NetworkConfig { peers: vec![addr], ..fast_config() }, Some(3)).await;
    eventually("an honest peer after the hostile ones", || v.peers().iter().any(|p| p.id == key_id(3))).await;
    b.shutdown().await;
    v.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_reading_is_dropped_while_the_others_keep_receiving() {
    init_logs();
    // No idle timeout within the test: the slow peer must be caught by its queue.
    let config = NetworkConfig { outbound_queue_frames: 8, idle_timeout: Duration::from_secs(60), ..fast_config() };
    let (v, mut inbox) = start(config, Some(1)).await;
    let (reader, mut reader_inbox) = start(NetworkConfig { peers: vec![v.local_addr()], ..fast_config() }, None).await;
    // Connects, then never reads again.
    let stalled = RawPeer::connect(v.local_addr(), None).await;
    eventually("both full nodes connected", || v.peers().len() == 2).await;
    let batch = Message::Transactions(vec![Bytes::from(vec![9u8; vanna_network::MAX_TRANSACTION_BYTES]); 256]);
    let mut rounds = 0;
    let slow = loop {
        rounds += 1;
        assert!(rounds < 500, "the stalled peer was never dropped");
        v.broadcast(batch.clone()).unwrap();
        assert_eq!(recv(&mut reader_inbox.gossip, "a batch").await.message, batch);
        if let Ok(PeerEvent::Disconnected { peer, reason }) = inbox.events.try_recv() {
            break (peer, reason);
        }
    };
    assert_eq!(slow.1, DisconnectReason::SlowPeer);
    assert_eq!(v.peers().len(), 1);
    assert_ne!(v.peers()[0].id, slow.0);
    // The reader still gets everything.
    for _ in 0..3 {
        assert_eq!(v.broadcast(batch.clone()).unwrap(), 1);
        assert_eq!(recv(&mut reader_inbox.gossip, "a batch after the drop").await.message, batch);
    }
    drop(stalled);
    reader.shutdown().await;
    v.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_peer_is_reconnected_within_the_backoff_bound() {
    init_logs();
    let config = fast_config();
    let backoff_max = config.backoff_max;
    let (b, _b_inbox) = start(config.clone(), Some(2)).await;
    let b_addr = b.local_addr();
    let (a, _a_inbox) = start(NetworkConfig { peers: vec![b_addr], ..config.clone() }, Some(1)).await;
    eventually("the first link", || a.peers().len() == 1).await;
    b.shutdown().await;
    eventually("a noticed b leave", || a.peers().is_empty()).await;
    // Let a's delays grow to the cap while b is down.
    tokio::time::sleep(backoff_max * 3).await;
    let (b, _b_inbox) = start(NetworkConfig { listen_addr: b_addr, ..config }, Some(2)).await;
    let restarted = Instant::now();
    eventually("a redialed b", || a.peers().iter().any(|p| p.id == key_id(2))).await;
    let took = restarted.elapsed();
    // One delay (at most the cap) plus a dial and a handshake, with room for a loaded machine.
    assert!(took < backoff_max + Duration::from_secs(3), "took {took:?}");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_peer_is_throttled_then_disconnected() {
    init_logs();
    let config = NetworkConfig {
        inbound_frames_per_second: 200,
        inbound_frame_burst: 50,
        flood_tolerance: Duration::from_secs(1),
        inbox_sync: 10_000,
        ..fast_config()
    };
    let (v, mut inbox) = start(config, Some(1)).await;
    let peer = RawPeer::connect(v.local_addr(), None).await;
    eventually("the flooder connected", || v.peers().len() == 1).await;
    let started = Instant::now();
    let flooder = tokio::spawn(async move {
        for height in 0..1_000_000u64 {
            if peer.tx.send(status(height)).await.is_err() {
                break;
            }
        }
        peer
    });
    let (_, reason) = disconnected(&mut inbox.events).await;
    let elapsed = started.elapsed();
    assert_eq!(reason, DisconnectReason::Flood);
    let delivered = std::iter::from_fn(|| inbox.sync.try_recv().ok()).count();
    // At most the burst plus the rate over the time it took (and a frame of slack per throttle).
    let allowed = 50 + (200.0 * elapsed.as_secs_f64()) as usize + 2;
    assert!(delivered <= allowed, "{delivered} frames got through in {elapsed:?}, more than {allowed}");
    assert!(delivered >= 50, "only {delivered} frames got through");
    flooder.abort();
    v.shutdown().await;
}

/// Whether the node closes the socket (reading whatever it sends first, such as its HTTP/2 settings).
async fn closes(socket: &mut tokio::net::TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    let read_to_end = async {
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(PATIENCE, read_to_end).await.is_ok()
}

fn status(height: u64) -> Bytes {
    use prost::Message as _;
    vanna_proto::v1::PeerFrame { kind: Some(Kind::Status(peer_frame::Status { finalized_height: height })) }
        .encode_to_vec()
        .into()
}
