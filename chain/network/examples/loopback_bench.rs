//! Two validators on 127.0.0.1: round-trip latency of a small consensus frame
//! (p50, p99) and throughput of a stream of 1 KiB frames with the rate limits
//! lifted (the transport's own ceiling; by default a peer may send 5,000
//! frames a second, and one that keeps above that is a flood).
//!
//! `cargo run --release -p vanna-network --example loopback_bench [round_trips] [frames]`

use std::time::{Duration, Instant};

use bytes::Bytes;
use vanna_crypto::bls::{self, BlsSecretKey};
use vanna_network::{Inbox, Message, Network, NetworkConfig, NetworkHandle, PeerId};

const CHAIN: &str = "vanna-bench";
const GENESIS: [u8; 32] = [1; 32];
/// Frames in flight before the sender waits for an acknowledgement: the
/// network never blocks a sender, so the sender keeps itself below the
/// outbound queue's 1,024 frames.
const WINDOW: u64 = 256;

fn secret(seed: u8) -> BlsSecretKey {
    BlsSecretKey::from_seed(&[seed; 32]).unwrap()
}

async fn pair(config: NetworkConfig) -> ((NetworkHandle, Inbox), (NetworkHandle, Inbox)) {
    let a = Network::start(config.clone(), Some(secret(1)), GENESIS, CHAIN).await.unwrap();
    let b_config = NetworkConfig { peers: vec![a.0.local_addr()], ..config };
    let b = Network::start(b_config, Some(secret(2)), GENESIS, CHAIN).await.unwrap();
    let keys = [bls::public_key(&secret(1)), bls::public_key(&secret(2))];
    a.0.set_validators(&keys, &[]);
    b.0.set_validators(&keys, &[]);
    while a.0.peers().is_empty() || b.0.peers().is_empty() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (a, b)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn latency(round_trips: usize) {
    let ((a, mut a_inbox), (b, mut b_inbox)) = pair(NetworkConfig::default()).await;
    let a_id = PeerId::Key(bls::public_key(&secret(1)).to_bytes());
    let b_id = PeerId::Key(bls::public_key(&secret(2)).to_bytes());
    let echo = tokio::spawn({
        let b = b.clone();
        async move {
            while let Some(inbound) = b_inbox.consensus.recv().await {
                if b.send(a_id, inbound.message).is_err() {
                    return;
                }
            }
        }
    });
    let frame = Message::Consensus(Bytes::from(vec![7u8; 128]));
    let mut samples = Vec::with_capacity(round_trips);
    for i in 0..round_trips + 100 {
        let started = Instant::now();
        a.send(b_id, frame.clone()).unwrap();
        a_inbox.consensus.recv().await.unwrap();
        if i >= 100 {
            samples.push(started.elapsed()); // The first 100 warm up.
        }
    }
    samples.sort();
    println!(
        "round trip of a 128-byte consensus frame, {round_trips} sequential: p50 {:?}, p99 {:?}, max {:?}",
        percentile(&samples, 0.5),
        percentile(&samples, 0.99),
        samples[samples.len() - 1]
    );
    a.shutdown().await;
    b.shutdown().await;
    echo.abort();
}

async fn throughput(frames: u64, config: NetworkConfig) {
    let ((a, mut a_inbox), (b, mut b_inbox)) = pair(config).await;
    let a_id = PeerId::Key(bls::public_key(&secret(1)).to_bytes());
    let b_id = PeerId::Key(bls::public_key(&secret(2)).to_bytes());
    // b acknowledges every WINDOW frames with a status carrying the count.
    let receiver = tokio::spawn({
        let b = b.clone();
        async move {
            let mut received = 0u64;
            while let Some(_inbound) = b_inbox.consensus.recv().await {
                received += 1;
                if received.is_multiple_of(WINDOW) || received == frames {
                    let _ = b.send(a_id, Message::Status { finalized_height: received });
                }
                if received == frames {
                    return;
                }
            }
        }
    });
    let payload = Message::Consensus(Bytes::from(vec![5u8; 1024]));
    let started = Instant::now();
    let (mut sent, mut acknowledged) = (0u64, 0u64);
    while acknowledged < frames {
        while sent < frames && sent < acknowledged + 2 * WINDOW {
            a.send(b_id, payload.clone()).unwrap();
            sent += 1;
        }
        if let Some(inbound) = a_inbox.sync.recv().await
            && let Message::Status { finalized_height } = inbound.message
        {
            acknowledged = finalized_height;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "stream of 1 KiB consensus frames, rate limits lifted: {frames} in {elapsed:.2} s, {:.0} frames/s, {:.1} MiB/s",
        frames as f64 / elapsed,
        frames as f64 / elapsed / 1024.0
    );
    receiver.await.unwrap();
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<u64>().expect("counts are whole numbers"));
    let round_trips = args.next().unwrap_or(5_000) as usize;
    let frames = args.next().unwrap_or(200_000);
    latency(round_trips).await;
    let lifted = NetworkConfig {
        inbound_frames_per_second: u32::MAX / 2,
        inbound_frame_burst: u32::MAX / 2,
        inbound_bytes_per_second: u64::MAX / 4,
        ..Default::default()
    };
    throughput(frames, lifted).await;
}
