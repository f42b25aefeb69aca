//! Figures for the mempool: `cargo run --release -p vanna-mempool --example bench`.
//!
//! 1. `open_envelope` on one core against raw k256 verification (SHA-256 of
//!    the body and ECDSA verify, keys already parsed, as `vanna bench apply`
//!    measures it) of the same signed orders, chunk by chunk alternately so
//!    that both see the same machine load.
//! 2. The pool with 100,000 pending orders from 10,000 accounts: `insert`
//!    into an empty pool, `insert` into the full pool (each one evicting),
//!    `select` of a full block and `on_finalized` of it, over several blocks.
//!
//! Every transaction is signed (and, for 2, verified with `verify_batch` on
//! every core) before the clock starts.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k256::ecdsa::signature::Verifier;
use k256::ecdsa::{Signature, VerifyingKey};
use prost::Message;
use vanna_mempool::{AccountView, Config, Mempool, verify_batch};
use vanna_proto::v1::{self as wire, Side};
use vanna_types::limits::MAX_TRANSACTIONS_PER_BLOCK;
use vanna_types::tx::{Signer, limit_order, place};
use vanna_types::{Address, Envelope, open_envelope};

const CHAIN_ID: &str = "vanna-bench";
const VERIFY_ACCOUNTS: usize = 2_000;
const VERIFY_TRANSACTIONS: usize = 20_000;
const VERIFY_CHUNK: usize = 1_000;
const POOL_ACCOUNTS: usize = 10_000;
const PER_ACCOUNT: u64 = 10;
const NEWCOMERS: usize = 2_000;
const BLOCKS: usize = 5;
const BLOCK_BYTES: usize = 16 << 20;

fn order(signer: &Signer, nonce: u64) -> Vec<u8> {
    let price = format!("{}", 1_000 + (nonce % 50) * 10);
    signer.sign(CHAIN_ID, nonce, vec![place(limit_order("BTC-25DEC26-100000-P", Side::Buy, &price, "0.1"))])
}

fn signers(count: usize, prefix: &str) -> Vec<Signer> {
    (0..count).map(|i| Signer::from_seed(&format!("{prefix}-{i}"))).collect()
}

fn verification() {
    let accounts = signers(VERIFY_ACCOUNTS, "verify");
    let transactions: Vec<Vec<u8>> =
        (0..VERIFY_TRANSACTIONS).map(|i| order(&accounts[i % VERIFY_ACCOUNTS], (i / VERIFY_ACCOUNTS) as u64)).collect();
    let raw: Vec<(VerifyingKey, Vec<u8>, Signature)> = transactions
        .iter()
        .map(|bytes| {
            let signed = wire::SignedTransaction::decode(bytes.as_slice()).unwrap();
            let key = VerifyingKey::from_sec1_bytes(&signed.public_key).unwrap();
            (key, signed.body, Signature::from_slice(&signed.signature).unwrap())
        })
        .collect();
    let (mut raw_elapsed, mut open_elapsed) = (Duration::ZERO, Duration::ZERO);
    for (chunk, raw_chunk) in transactions.chunks(VERIFY_CHUNK).zip(raw.chunks(VERIFY_CHUNK)) {
        let started = Instant::now();
        for (key, body, signature) in raw_chunk {
            key.verify(body, signature).unwrap();
        }
        raw_elapsed += started.elapsed();
        let started = Instant::now();
        for bytes in chunk {
            open_envelope(bytes, CHAIN_ID).unwrap();
        }
        open_elapsed += started.elapsed();
    }
    let raw_per_sec = VERIFY_TRANSACTIONS as f64 / raw_elapsed.as_secs_f64();
    let open_per_sec = VERIFY_TRANSACTIONS as f64 / open_elapsed.as_secs_f64();
    println!("signature checks, one core, {VERIFY_TRANSACTIONS} signed orders of {} bytes", transactions[0].len());
    println!("  raw k256 verify   {raw_per_sec:>10.0} /s");
    println!("  open_envelope     {open_per_sec:>10.0} /s");
    println!("  ratio             {:>10.3} of raw verification", open_per_sec / raw_per_sec);
}

/// Resident memory in KiB (Linux), to size the pool's overhead.
fn resident_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn opened(transactions: Vec<Vec<u8>>, threads: usize) -> Vec<(Vec<u8>, Envelope)> {
    let envelopes = verify_batch(&transactions, CHAIN_ID, threads);
    transactions.into_iter().zip(envelopes).map(|(bytes, envelope)| (bytes, envelope.unwrap())).collect()
}

fn pool() {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let accounts = signers(POOL_ACCOUNTS, "pool");
    // Arrival order: every account's nonce 0, then every nonce 1, ...
    let transactions: Vec<Vec<u8>> =
        (0..PER_ACCOUNT).flat_map(|nonce| accounts.iter().map(move |signer| order(signer, nonce))).collect();
    let started = Instant::now();
    let pending = opened(transactions, threads);
    let batch_elapsed = started.elapsed();
    let newcomers: Vec<Vec<u8>> = signers(NEWCOMERS, "newcomer").iter().map(|signer| order(signer, 0)).collect();
    let newcomers = opened(newcomers, threads);
    let mut committed: HashMap<Address, u64> = accounts.iter().map(|signer| (signer.address(), 0)).collect();
    for (_, envelope) in &newcomers {
        committed.insert(envelope.sender, 0);
    }

    let total = pending.len();
    let mut pool = Mempool::new(Config { max_transactions: total, ..Config::default() });
    let mut now_ms = 1_000;
    // The signed bytes move into the pool: what grows is its indexes.
    let resident_before = resident_kib();
    let started = Instant::now();
    for (bytes, envelope) in pending {
        pool.insert(bytes, envelope, AccountView::Exists { nonce: 0 }, now_ms).unwrap();
    }
    let insert_elapsed = started.elapsed();
    let resident_after = resident_kib();
    assert_eq!(pool.len(), total);
    let started = Instant::now();
    for (bytes, envelope) in newcomers {
        let admitted = pool.insert(bytes, envelope, AccountView::Exists { nonce: 0 }, now_ms).unwrap();
        assert_eq!(admitted.dropped.len(), 1);
    }
    let evicting_elapsed = started.elapsed();

    println!(
        "pool, {total} pending from {POOL_ACCOUNTS} accounts ({} bytes), verify_batch on {threads} threads {:.0} /s",
        pool.bytes(),
        total as f64 / batch_elapsed.as_secs_f64()
    );
    if let (Some(before), Some(after)) = (resident_before, resident_after) {
        println!(
            "  indexes                      {:>8.0} bytes per entry (resident memory)",
            (after.saturating_sub(before) * 1024) as f64 / total as f64
        );
    }
    println!("  insert, empty to full        {:>8.2} us each", insert_elapsed.as_secs_f64() * 1e6 / total as f64);
    println!(
        "  insert into the full pool    {:>8.2} us each (one eviction each)",
        evicting_elapsed.as_secs_f64() * 1e6 / NEWCOMERS as f64
    );
    let (mut select_elapsed, mut finalize_elapsed, mut chosen) = (Duration::ZERO, Duration::ZERO, 0);
    for block in 0..BLOCKS {
        let pending_before = pool.len();
        let started = Instant::now();
        let selected = pool.select(|address| committed.get(address).copied(), MAX_TRANSACTIONS_PER_BLOCK, BLOCK_BYTES);
        let select_block = started.elapsed();
        for transaction in &selected {
            committed.insert(transaction.sender, transaction.nonce + 1);
        }
        let included: Vec<[u8; 32]> = selected.iter().map(|transaction| transaction.hash).collect();
        now_ms += 250;
        let started = Instant::now();
        let pruned = pool.on_finalized(|address| committed.get(address).copied(), &included, now_ms);
        let finalize_block = started.elapsed();
        assert_eq!(pruned.included, selected.len());
        println!(
            "  block {block}: {pending_before} pending, select {} in {:.2} ms, on_finalized {:.2} ms",
            selected.len(),
            select_block.as_secs_f64() * 1e3,
            finalize_block.as_secs_f64() * 1e3
        );
        select_elapsed += select_block;
        finalize_elapsed += finalize_block;
        chosen += selected.len();
    }
    println!(
        "  average per block of {}: select {:.2} ms, on_finalized {:.2} ms",
        chosen / BLOCKS,
        select_elapsed.as_secs_f64() * 1e3 / BLOCKS as f64,
        finalize_elapsed.as_secs_f64() * 1e3 / BLOCKS as f64
    );
}

fn main() {
    verification();
    pool();
}
