//! `vanna bench localnet`: a localnet of validator processes on 127.0.0.1
//! under a steady offered load of signed orders, measured end to end.
//!
//! Before the nodes start, the run measures this machine's signature
//! ceiling for the setup (`verify_ceiling` = cores × single-core k256
//! verifications per second ÷ validators: every validator verifies every
//! transaction once, and they share the cores) and signs every transaction
//! it will send, so that signing does not compete with the nodes. Each
//! funded test account sends its transactions in nonce order from a task of
//! its own, spread over the nodes' APIs. A transaction is one immediate-or-
//! cancel bid at one tick: it is admitted, gossiped, ordered, finalized and
//! executed like any order, and rests nowhere (the order book alone is
//! `vanna bench matching`).
//!
//! Measured after `--warmup` seconds, for `--duration` seconds: finalized
//! transactions per second (from node 0's counters), the block interval,
//! and for one submission in `--sample-every` the time from submission to
//! the finalized receipt and from the block's proposal to its finalization,
//! read back with `GetTransaction` after the run (the node reports when it
//! stored the block; all processes share this machine's clock). Each node's
//! resident memory is read at the start and the end of the measurement.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k256::ecdsa::signature::Verifier;
use k256::ecdsa::{Signature, VerifyingKey};
use serde::Serialize;
use tonic::transport::Channel;
use vanna_node::localnet::{LocalnetDir, MAKERS, TRADERS, maker_name, trader_name};
use vanna_proto::v1::{self as wire, PlaceOrder, Side, TimeInForce};
use vanna_runtime::tx::{Signer, limit_order, place};

use crate::CliResult;

/// Most transactions signed ahead of a run (about 400 bytes each in memory).
const TRANSACTIONS_MAX: f64 = 4_000_000.0;
/// How long a sampled transaction may take to reach a finalized block after
/// the load stops before it counts as lost.
const SETTLE: Duration = Duration::from_secs(15);
/// Attempts at a submission the node refuses for a transient reason (its
/// queue for the account is full, or it is busy) before the account stops.
const RETRIES: u32 = 50;
/// Sampled transactions looked up at once after the run.
const LOOKUPS_IN_FLIGHT: usize = 32;
/// Submissions of one account awaiting their answer at most (the mempool
/// keeps 64 per account).
const IN_FLIGHT: usize = 16;

#[derive(clap::Args)]
pub struct Args {
    /// Validator processes.
    #[arg(long, default_value_t = 4, value_parser = crate::args::whole::<u32>(1, 16))]
    pub validators: u32,
    /// Offered load in transactions per second; without it, the verify ceiling measured first.
    #[arg(long, value_parser = crate::args::whole::<u64>(1, 100_000))]
    pub rate: Option<u64>,
    /// Seconds measured, after the warm-up.
    #[arg(long, default_value_t = 60, value_parser = crate::args::whole::<u64>(5, 3_600))]
    pub duration: u64,
    /// Seconds of load before the measurement starts.
    #[arg(long, default_value_t = 10, value_parser = crate::args::whole::<u64>(1, 600))]
    pub warmup: u64,
    /// One submission in this many is followed to its finalized receipt.
    #[arg(long, default_value_t = 10, value_parser = crate::args::whole::<u64>(1, 1_000_000))]
    pub sample_every: u64,
    /// Where the localnet lives (a fresh directory; removed afterwards unless given).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Latency {
    samples: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    p50_blocks: f64,
    p99_blocks: f64,
    max_blocks: f64,
}

#[derive(Serialize)]
struct Memory {
    node: usize,
    start_kib: u64,
    end_kib: u64,
    growth: f64,
}

#[derive(Serialize)]
struct Report {
    validators: u32,
    cores: usize,
    offered_rate: f64,
    duration_seconds: f64,
    single_core_verify_per_sec: f64,
    verify_ceiling: f64,
    submitted: u64,
    refused: u64,
    finalized_transactions: u64,
    sustained_per_sec: f64,
    ratio_to_verify_ceiling: f64,
    blocks: u64,
    block_interval_ms: f64,
    /// Submission to a finalized receipt.
    receipt: Latency,
    /// A block's proposal (its header's time) to its finalization at the node.
    finalization: Latency,
    sampled_lost: usize,
    sampled_action_failed: usize,
    /// Transactions waiting in each node's mempool, the most seen in the
    /// once-a-second samples of the measurement.
    mempool_max: Vec<u64>,
    memory: Vec<Memory>,
}

pub fn run(args: &Args) -> CliResult {
    let cores = std::thread::available_parallelism().map_or(1, |cores| cores.get());
    let single = verify_per_sec();
    let ceiling = cores as f64 * single / f64::from(args.validators);
    let rate = args.rate.map_or(ceiling, |rate| rate as f64);
    let total = rate * (args.warmup + args.duration) as f64;
    if total > TRANSACTIONS_MAX {
        return Err(format!(
            "{total:.0} transactions to sign ahead: at most {TRANSACTIONS_MAX:.0}; lower --rate or --duration"
        )
        .into());
    }
    let (scratch, keep) = match &args.dir {
        Some(dir) => (dir.clone(), true),
        None => (std::env::temp_dir().join(format!("vanna-bench-localnet-{}", std::process::id())), false),
    };
    if scratch.exists() {
        return Err(format!("{} exists: give a new --dir", scratch.display()).into());
    }
    let localnet = LocalnetDir::new(&scratch);
    localnet.create(args.validators as usize, 100, vanna_node::now_ms())?;
    let genesis = localnet.home(0).genesis()?;
    if !args.json {
        outln!("verify ceiling {ceiling:.0}/s ({cores} cores × {single:.0}/s ÷ {} validators)", args.validators);
        outln!("signing {total:.0} transactions at {rate:.0}/s ...");
    }
    let accounts = presign(&genesis, rate, args.warmup + args.duration)?;
    let ports = localnet.assign_ports()?;
    let binary = std::env::current_exe()?;
    let mut nodes = Vec::new();
    for index in 0..ports.len() {
        nodes.push(Node(localnet.spawn(&binary, index)?));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let ceiling_of = Ceiling { cores, single, ceiling };
    let result = runtime.block_on(measure(args, rate, ceiling_of, &ports, &nodes, accounts));
    drop(nodes);
    if !keep {
        let _ = std::fs::remove_dir_all(&scratch);
    }
    let report = result?;
    print(args, &report);
    Ok(())
}

/// The signature ceiling measured before the nodes start.
#[derive(Clone, Copy)]
struct Ceiling {
    cores: usize,
    single: f64,
    ceiling: f64,
}

/// A node process, killed and reaped when dropped.
struct Node(std::process::Child);

impl Drop for Node {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.0.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Single-core k256 verifications per second of transaction-sized bodies
/// (SHA-256 of the body and ECDSA verify), over about a second.
fn verify_per_sec() -> f64 {
    let signer = Signer::from_seed("vanna-bench/verify");
    let key = signer.signing_key();
    let body = vec![7u8; 200];
    let signature: Signature = k256::ecdsa::signature::Signer::sign(key, &body);
    let verifying = VerifyingKey::from(key);
    let started = Instant::now();
    let mut count = 0u64;
    while started.elapsed() < Duration::from_secs(1) {
        for _ in 0..100 {
            if verifying.verify(std::hint::black_box(&body), &signature).is_ok() {
                count += 1;
            }
        }
    }
    count as f64 / started.elapsed().as_secs_f64()
}

/// One account's signed transactions, in nonce order, and when to send each.
struct Account {
    transactions: Vec<Vec<u8>>,
    period: Duration,
    node: usize,
}

/// Every transaction of the run, signed: the test accounts share the rate.
fn presign(genesis: &vanna_runtime::Genesis, rate: f64, seconds: u64) -> Result<Vec<Account>, String> {
    let names: Vec<String> = (0..TRADERS).map(trader_name).chain((0..MAKERS).map(maker_name)).collect();
    let series = genesis.series.first().ok_or("the localnet lists no series")?.clone();
    let spec = vanna_runtime::instrument::SeriesSpec::parse(&series).map_err(|error| error.to_string())?;
    let underlying =
        genesis.underlyings.iter().find(|u| u.symbol == spec.underlying).ok_or("the series has no underlying")?;
    let (tick, lot) = (underlying.tick_size.value(), underlying.lot_size.value());
    let per_account = rate / names.len() as f64;
    let count = (per_account * seconds as f64).ceil() as u64;
    let period = Duration::from_secs_f64(1.0 / per_account);
    let order = place(PlaceOrder {
        time_in_force: TimeInForce::Ioc as i32,
        ..limit_order(&series, Side::Buy, &tick.normalize().to_string(), &lot.normalize().to_string())
    });
    // Signing is the slow part: one thread per core.
    let cores = std::thread::available_parallelism().map_or(1, |cores| cores.get());
    let chunks: Vec<Vec<(usize, String)>> =
        (0..cores).map(|core| names.iter().cloned().enumerate().skip(core).step_by(cores).collect()).collect();
    let chain_id = genesis.chain_id.clone();
    let mut accounts: Vec<(usize, Account)> = std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                let (order, chain_id) = (order.clone(), chain_id.clone());
                scope.spawn(move || {
                    chunk
                        .into_iter()
                        .map(|(index, name)| {
                            let signer = Signer::from_seed(&format!("vanna-demo/{name}"));
                            let transactions =
                                (0..count).map(|nonce| signer.sign(&chain_id, nonce, vec![order.clone()])).collect();
                            (index, Account { transactions, period, node: index })
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|handle| handle.join().unwrap_or_default()).collect()
    });
    accounts.sort_by_key(|(index, _)| *index);
    Ok(accounts.into_iter().map(|(_, account)| account).collect())
}

fn client(api: std::net::SocketAddr) -> Result<wire::node_client::NodeClient<Channel>, String> {
    let endpoint = Channel::from_shared(format!("http://{api}")).map_err(|error| error.to_string())?;
    Ok(wire::node_client::NodeClient::new(endpoint.timeout(Duration::from_secs(5)).connect_lazy()))
}

/// What one account's sender did.
#[derive(Default)]
struct Sent {
    submitted: u64,
    refused: u64,
    /// (submitted at, Unix ms; hash; node asked)
    samples: Vec<(u64, [u8; 32], usize)>,
}

/// Sends `account`'s transactions at its period, in nonce order, with up to
/// [`IN_FLIGHT`] awaiting their answer (the mempool holds a nonce that
/// arrives before its predecessor until the gap fills); a transient refusal
/// is retried. Samples those sent inside the measurement window.
async fn send(
    account: Account,
    client: wire::node_client::NodeClient<Channel>,
    node: usize,
    window: (u64, u64),
    sample_every: u64,
    offset: u64,
) -> Sent {
    let mut sent = Sent::default();
    let mut ticker = tokio::time::interval(account.period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut flying = tokio::task::JoinSet::new();
    for (nonce, transaction) in account.transactions.into_iter().enumerate() {
        ticker.tick().await;
        if vanna_node::now_ms() >= window.1 {
            break;
        }
        while flying.len() >= IN_FLIGHT {
            if let Some(Ok(one)) = flying.join_next().await {
                sent.add(one);
            }
        }
        let sampled = (nonce as u64 + offset).is_multiple_of(sample_every);
        flying.spawn(submit(client.clone(), transaction, node, window, sampled));
    }
    while let Some(one) = flying.join_next().await {
        if let Ok(one) = one {
            sent.add(one);
        }
    }
    sent
}

impl Sent {
    fn add(&mut self, other: Sent) {
        self.submitted += other.submitted;
        self.refused += other.refused;
        self.samples.extend(other.samples);
    }
}

async fn submit(
    mut client: wire::node_client::NodeClient<Channel>,
    transaction: Vec<u8>,
    node: usize,
    window: (u64, u64),
    sampled: bool,
) -> Sent {
    let mut sent = Sent::default();
    for _ in 0..=RETRIES {
        let at_ms = vanna_node::now_ms();
        let request = wire::SubmitTransactionRequest { transaction: transaction.clone() };
        match client.submit_transaction(request).await {
            Ok(response) => {
                sent.submitted += 1;
                if sampled
                    && (window.0..window.1).contains(&at_ms)
                    && let Ok(hash) = <[u8; 32]>::try_from(response.into_inner().hash.as_slice())
                {
                    sent.samples.push((at_ms, hash, node));
                }
                return sent;
            }
            Err(status) => {
                sent.refused += 1;
                let transient = matches!(
                    status.code(),
                    tonic::Code::ResourceExhausted | tonic::Code::Unavailable | tonic::Code::DeadlineExceeded
                );
                if !transient {
                    return sent;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    sent
}

async fn status(client: &wire::node_client::NodeClient<Channel>) -> Option<wire::StatusResponse> {
    client.clone().status(wire::StatusRequest {}).await.ok().map(|response| response.into_inner())
}

/// Resident memory of a process, in KiB, from /proc.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

async fn measure(
    args: &Args,
    rate: f64,
    ceiling: Ceiling,
    ports: &[vanna_node::localnet::NodePorts],
    nodes: &[Node],
    accounts: Vec<Account>,
) -> Result<Report, Box<dyn std::error::Error>> {
    let clients: Vec<_> = ports.iter().map(|node| client(node.api)).collect::<Result<_, _>>()?;
    let started = Instant::now();
    while status(&clients[0]).await.is_none_or(|status| status.finalized_height < 2) {
        if started.elapsed() > Duration::from_secs(60) {
            return Err("the localnet did not finalize its first blocks within 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let now = vanna_node::now_ms();
    let window = (now + args.warmup * 1_000, now + (args.warmup + args.duration) * 1_000);
    let senders: Vec<_> = accounts
        .into_iter()
        .enumerate()
        .map(|(index, account)| {
            // A connection of its own: submissions never queue behind
            // another account's, nor the measurement's status calls.
            let node = account.node % ports.len();
            let submitter = client(ports[node].api)?;
            Ok(tokio::spawn(send(account, submitter, node, window, args.sample_every, index as u64)))
        })
        .collect::<Result<Vec<_>, String>>()?;
    tokio::time::sleep(Duration::from_millis(window.0.saturating_sub(vanna_node::now_ms()))).await;
    let begin = status(&clients[0]).await.ok_or("node 0 does not answer")?;
    let begin_at = Instant::now();
    let memory_start: Vec<u64> = nodes.iter().map(|node| rss_kib(node.0.id())).collect();
    let mut mempool_max = vec![0u64; clients.len()];
    while vanna_node::now_ms() < window.1 {
        tokio::time::sleep(Duration::from_millis(1_000.min(window.1.saturating_sub(vanna_node::now_ms())))).await;
        for (index, client) in clients.iter().enumerate() {
            if let Some(status) = status(client).await {
                mempool_max[index] = mempool_max[index].max(status.mempool_transactions);
            }
        }
    }
    let end = status(&clients[0]).await.ok_or("node 0 does not answer")?;
    let seconds = begin_at.elapsed().as_secs_f64();
    let memory_end: Vec<u64> = nodes.iter().map(|node| rss_kib(node.0.id())).collect();
    let mut sent = Sent::default();
    for sender in senders {
        sent.add(sender.await?);
    }
    let blocks = end.finalized_height.saturating_sub(begin.finalized_height);
    let block_interval_ms = seconds * 1e3 / blocks.max(1) as f64;

    // Every sampled transaction, read back once it is final (or given up on),
    // a few at a time.
    let deadline = Instant::now() + SETTLE;
    let mut lookups = tokio::task::JoinSet::new();
    let mut found = Vec::new();
    for (at_ms, hash, node) in sent.samples {
        if lookups.len() >= LOOKUPS_IN_FLIGHT
            && let Some(Ok(one)) = lookups.join_next().await
        {
            found.push(one);
        }
        lookups.spawn(look_up(clients[node].clone(), at_ms, hash, deadline));
    }
    found.extend(lookups.join_all().await);
    let mut receipt_ms = Vec::new();
    let mut proposal_ms: BTreeMap<u64, f64> = BTreeMap::new();
    let (mut lost, mut failed) = (0, 0);
    for (at_ms, found) in found {
        let Some(found) = found else {
            lost += 1;
            continue;
        };
        if !found.receipt_json.contains("\"Included\"") || found.receipt_json.contains("\"Failed\"") {
            failed += 1;
        }
        receipt_ms.push(found.finalized_at_ms.saturating_sub(at_ms) as f64);
        proposal_ms.insert(found.height, found.finalized_at_ms.saturating_sub(found.block_time_ms) as f64);
    }
    let finalized_transactions = end.transactions_total.saturating_sub(begin.transactions_total);
    let report = Report {
        validators: args.validators,
        cores: ceiling.cores,
        offered_rate: rate,
        duration_seconds: seconds,
        single_core_verify_per_sec: ceiling.single,
        verify_ceiling: ceiling.ceiling,
        submitted: sent.submitted,
        refused: sent.refused,
        finalized_transactions,
        sustained_per_sec: finalized_transactions as f64 / seconds,
        ratio_to_verify_ceiling: finalized_transactions as f64 / seconds / ceiling.ceiling,
        blocks,
        block_interval_ms,
        receipt: latency(receipt_ms, block_interval_ms),
        finalization: latency(proposal_ms.into_values().collect(), block_interval_ms),
        sampled_lost: lost,
        sampled_action_failed: failed,
        mempool_max,
        memory: memory_start
            .iter()
            .zip(&memory_end)
            .enumerate()
            .map(|(node, (&start_kib, &end_kib))| Memory {
                node,
                start_kib,
                end_kib,
                growth: end_kib as f64 / start_kib.max(1) as f64 - 1.0,
            })
            .collect(),
    };
    Ok(report)
}

/// A sampled transaction once it is final, or none if it is not by `deadline`.
async fn look_up(
    client: wire::node_client::NodeClient<Channel>,
    at_ms: u64,
    hash: [u8; 32],
    deadline: Instant,
) -> (u64, Option<wire::GetTransactionResponse>) {
    loop {
        let request = wire::GetTransactionRequest { hash: hash.to_vec() };
        match client.clone().get_transaction(request).await {
            Ok(response) if !response.get_ref().pending && response.get_ref().finalized_at_ms > 0 => {
                return (at_ms, Some(response.into_inner()));
            }
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
            _ => return (at_ms, None),
        }
    }
}

fn latency(mut samples: Vec<f64>, block_interval_ms: f64) -> Latency {
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| {
        if samples.is_empty() {
            return 0.0;
        }
        samples[((samples.len() - 1) as f64 * q).round() as usize]
    };
    let (p50, p99, max) = (at(0.5), at(0.99), at(1.0));
    let blocks = |ms: f64| ms / block_interval_ms.max(f64::MIN_POSITIVE);
    Latency {
        samples: samples.len(),
        p50_ms: p50,
        p99_ms: p99,
        max_ms: max,
        p50_blocks: blocks(p50),
        p99_blocks: blocks(p99),
        max_blocks: blocks(max),
    }
}

fn print(args: &Args, r: &Report) {
    if args.json {
        outln!("{}", serde_json::to_string_pretty(r).unwrap_or_default());
        return;
    }
    outln!("localnet of {} validators on {} cores, {:.0} s measured", r.validators, r.cores, r.duration_seconds);
    outln!(
        "  offered        {:>10.0} tx/s ({} submitted, {} refusals retried)",
        r.offered_rate,
        r.submitted,
        r.refused
    );
    outln!(
        "  finalized      {:>10.0} tx/s = {:.2} × verify ceiling {:.0}/s",
        r.sustained_per_sec,
        r.ratio_to_verify_ceiling,
        r.verify_ceiling
    );
    outln!(
        "  block interval {:>10.1} ms over {} blocks, {:.0} transactions each",
        r.block_interval_ms,
        r.blocks,
        r.finalized_transactions as f64 / r.blocks.max(1) as f64
    );
    outln!("  mempool at most {:?} transactions", r.mempool_max);
    for (what, l) in [("receipt", &r.receipt), ("finality", &r.finalization)] {
        outln!(
            "  {what:<9} p50 {:.0} ms ({:.1} blocks)  p99 {:.0} ms ({:.1})  max {:.0} ms ({:.1}), {} samples",
            l.p50_ms,
            l.p50_blocks,
            l.p99_ms,
            l.p99_blocks,
            l.max_ms,
            l.max_blocks,
            l.samples
        );
    }
    for m in &r.memory {
        outln!("  node {} RSS {} → {} KiB ({:+.1}%)", m.node, m.start_kib, m.end_kib, m.growth * 100.0);
    }
}
