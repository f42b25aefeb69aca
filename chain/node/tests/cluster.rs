//! Several node cores in one process, connected by a simulated network in
//! virtual time: they propose, verify, finalize and execute blocks with the
//! runtime, through an epoch change, with trading transactions and oracle
//! reports, and every node reaches the same state root at every height.

use std::collections::{BTreeMap, BinaryHeap};
use std::sync::{Arc, Mutex};

use vanna_consensus::{Bls, Certificate, Header, Timing, ValidatorIndex};
use vanna_node::app::{App, ChainInfo, genesis_header};
use vanna_node::core::{Committed, Core, CoreConfig, Identity, Input, Output, Transactions};
use vanna_node::payload::consensus_chain;
use vanna_proto::v1::Side;
use vanna_runtime::devnet::{add_validators, consensus_secret, demo_genesis, sign_oracle_report};
use vanna_runtime::tx::{Signer, limit_order, place};
use vanna_signer::{MemoryBackend, ProtectionStore};

const VALIDATORS: [&str; 4] = ["val-a", "val-b", "val-c", "val-d"];
const LATENCY_MS: u64 = 5;

/// Transactions every node sees at once (gossip is instant here).
#[derive(Clone, Default)]
struct SharedPool(Arc<Mutex<Vec<Vec<u8>>>>);

impl Transactions for SharedPool {
    fn select(&mut self, state: &vanna_runtime::State, max: usize) -> Vec<Vec<u8>> {
        let pool = self.0.lock().unwrap();
        // Ready ones only: each sender's next nonce in order.
        let mut next: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
        let mut chosen = Vec::new();
        for bytes in pool.iter() {
            use prost::Message as _;
            let signed = vanna_proto::v1::SignedTransaction::decode(bytes.as_slice()).unwrap();
            let body = vanna_proto::v1::TransactionBody::decode(signed.body.as_slice()).unwrap();
            let sender = vanna_runtime::Address::from_slice(&body.sender).unwrap();
            let expected = next
                .entry(body.sender.clone())
                .or_insert_with(|| state.account(&sender).map_or(0, |account| account.nonce));
            if body.nonce == *expected && chosen.len() < max {
                *expected += 1;
                chosen.push(bytes.clone());
            }
        }
        chosen
    }

    fn verified(&self, _: &[u8; 32]) -> bool {
        false
    }

    fn on_executed(&mut self, _: &vanna_runtime::State, included: &[Vec<u8>]) {
        self.0.lock().unwrap().retain(|bytes| !included.contains(bytes));
    }

    fn pending(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

struct Delivery {
    at_ms: u64,
    sequence: u64,
    to: usize,
    input: Input,
}

impl PartialEq for Delivery {
    fn eq(&self, other: &Self) -> bool {
        (self.at_ms, self.sequence) == (other.at_ms, other.sequence)
    }
}
impl Eq for Delivery {}
impl PartialOrd for Delivery {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Delivery {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.at_ms, other.sequence).cmp(&(self.at_ms, self.sequence))
    }
}

struct Cluster {
    cores: Vec<Core<MemoryBackend>>,
    /// Core index of each validator index of the current epoch.
    queue: BinaryHeap<Delivery>,
    sequence: u64,
    now_ms: u64,
    /// State roots by height, per node.
    roots: Vec<BTreeMap<u64, [u8; 32]>>,
    pool: SharedPool,
    chain_id: String,
    traders: Vec<Signer>,
    epochs_seen: u64,
    /// Node 0 as it stood after the first epoch's last block: its snapshot,
    /// that block's header and its finalization certificate.
    at_epoch_end: Option<(Vec<u8>, Header, Certificate<Bls>)>,
    /// The blocks node 0 finalized, in order, with their certificates.
    finalized: Vec<(Header, Vec<u8>, Certificate<Bls>)>,
    genesis: vanna_runtime::Genesis,
}

/// A validator's core at genesis.
fn start_core(
    genesis: &vanna_runtime::Genesis,
    name: &str,
    config: CoreConfig,
    pool: &SharedPool,
    now_ms: u64,
) -> (Core<MemoryBackend>, Vec<Output>) {
    let mut state = genesis.build().unwrap();
    let header = genesis_header(&mut state);
    let app = App::new(chain_info(genesis), state, header).unwrap();
    let secret = consensus_secret(name);
    let store = ProtectionStore::open(consensus_chain(&genesis.chain_id), MemoryBackend::default()).unwrap();
    let identity = Identity { secret: secret.clone(), signer: vanna_signer::Signer::new(secret, store) };
    Core::new(app, Some(identity), config, Box::new(pool.clone()), None, now_ms).unwrap()
}

fn chain_info(genesis: &vanna_runtime::Genesis) -> ChainInfo {
    ChainInfo {
        chain_id: genesis.chain_id.clone(),
        consensus: consensus_chain(&genesis.chain_id),
        epoch_blocks: genesis.staking.params.epoch_blocks,
    }
}

impl Cluster {
    fn new(epoch_blocks: u64) -> Cluster {
        let (mut genesis, mut signers) = demo_genesis(&[("alice", 1_000_000), ("bob", 1_000_000)]);
        signers.extend(add_validators(
            &mut genesis,
            &VALIDATORS.iter().map(|name| (*name, 10_000, 0, "0.1")).collect::<Vec<_>>(),
        ));
        genesis.staking.params.epoch_blocks = epoch_blocks;
        let chain_id = genesis.chain_id.clone();
        let pool = SharedPool::default();
        let mut cores = Vec::new();
        let mut queue = BinaryHeap::new();
        let mut sequence = 0;
        let now_ms = genesis.genesis_time_ms;
        for name in VALIDATORS {
            let timing = Timing { leader_timeout_ms: 400, retry_ms: 200, ..Timing::default() };
            let (core, out) = start_core(&genesis, name, CoreConfig::new(timing, 100), &pool, now_ms);
            let index = cores.len();
            cores.push(core);
            for output in out {
                Self::route(&mut queue, &mut sequence, &cores, index, now_ms, output);
            }
        }
        let traders =
            signers.into_iter().filter(|(name, _)| name == "alice" || name == "bob").map(|(_, s)| s).collect();
        let nodes = cores.len();
        Cluster {
            cores,
            queue,
            sequence,
            now_ms,
            roots: vec![BTreeMap::new(); nodes],
            pool,
            chain_id,
            traders,
            epochs_seen: 0,
            at_epoch_end: None,
            finalized: Vec::new(),
            genesis,
        }
    }

    /// The core that holds validator `index` of the current epoch.
    fn core_of(cores: &[Core<MemoryBackend>], index: ValidatorIndex) -> Option<usize> {
        cores.iter().position(|core| core.me() == Some(index))
    }

    fn route(
        queue: &mut BinaryHeap<Delivery>,
        sequence: &mut u64,
        cores: &[Core<MemoryBackend>],
        from: usize,
        now_ms: u64,
        output: Output,
    ) {
        let mut push = |to: usize, input: Input, at_ms: u64| {
            *sequence += 1;
            queue.push(Delivery { at_ms, sequence: *sequence, to, input });
        };
        let sender = cores[from].me().unwrap_or(ValidatorIndex(u32::MAX));
        match output {
            Output::Broadcast(message) => {
                for to in 0..cores.len() {
                    if to != from {
                        push(to, Input::Message { from: sender, message: message.clone() }, now_ms + LATENCY_MS);
                    }
                }
            }
            Output::Send { to, message } => {
                if let Some(to) = Self::core_of(cores, to) {
                    push(to, Input::Message { from: sender, message }, now_ms + LATENCY_MS);
                }
            }
            Output::Timer { epoch, view, kind, at_ms } => push(from, Input::Timeout { epoch, view, kind }, at_ms),
            Output::Committed(_) | Output::Journal { .. } | Output::KeepBlock { .. } => {}
            Output::Wake { at_ms } => push(from, Input::Wake, at_ms),
            Output::Disconnect { peer, fault } => panic!("node {from} reports {peer:?}: {fault:?}"),
            Output::Halt(why) => panic!("node {from} halted: {why}"),
        }
    }

    fn step(&mut self) -> bool {
        let Some(delivery) = self.queue.pop() else { return false };
        self.now_ms = self.now_ms.max(delivery.at_ms);
        let to = delivery.to;
        let outputs = self.cores[to].handle(self.now_ms, delivery.input);
        for output in outputs {
            if let Output::Committed(committed) = &output {
                let height = committed.header.height.0;
                self.roots[to].insert(height, committed.output.state_root);
                if to == 0 {
                    let block = (committed.header.clone(), committed.payload.clone(), committed.proof.clone());
                    self.finalized.push(block);
                }
                if committed.next_epoch.is_some() && to == 0 {
                    self.epochs_seen += 1;
                    if self.at_epoch_end.is_none() {
                        let snapshot = self.cores[0].app().snapshot();
                        self.at_epoch_end = Some((snapshot, committed.header.clone(), committed.proof.clone()));
                    }
                }
            }
            Self::route(&mut self.queue, &mut self.sequence, &self.cores, to, self.now_ms, output);
        }
        true
    }

    fn height(&self) -> u64 {
        self.cores.iter().map(|core| core.app().executed().height.0).min().unwrap()
    }

    fn run_until(&mut self, height: u64) {
        let deadline = self.now_ms + 600_000;
        while self.height() < height {
            assert!(self.step(), "the network went quiet at height {}", self.height());
            assert!(self.now_ms < deadline, "no progress: height {} after 10 virtual minutes", self.height());
        }
    }

    fn submit_orders(&mut self, round: u64) {
        let nonces: Vec<u64> =
            self.traders.iter().map(|t| self.cores[0].app().state().account(&t.address()).unwrap().nonce).collect();
        for (trader, nonce) in self.traders.iter().zip(nonces) {
            let side = if round.is_multiple_of(2) { Side::Buy } else { Side::Sell };
            let order = place(limit_order("BTC-25DEC26-100000-C", side, "5000", "0.1"));
            self.pool.0.lock().unwrap().push(trader.sign(&self.chain_id, nonce, vec![order]));
        }
    }

    fn report_prices(&mut self, spot: &str) {
        let time = self.now_ms;
        for name in VALIDATORS {
            let signer = Signer::from_seed(&format!("vanna-demo/{name}"));
            let report = vanna_oracle::PriceReport {
                underlying: vanna_oracle::Underlying::new("BTC").unwrap(),
                spot: vanna_oracle::IndexPrice::parse(spot).unwrap(),
                observed_at_ms: time,
                surface: None,
            };
            let bytes = sign_oracle_report(&signer, &self.chain_id, &[report]);
            for core in 0..self.cores.len() {
                let out = self.cores[core].handle(self.now_ms, Input::OracleReport(bytes.clone()));
                assert!(out.is_empty());
            }
        }
    }
}

#[test]
fn four_validators_finalize_and_execute_the_same_chain_through_an_epoch_change() {
    let mut cluster = Cluster::new(8);
    for round in 0..6 {
        cluster.submit_orders(round);
        cluster.report_prices(if round.is_multiple_of(2) { "97000" } else { "97100" });
        cluster.run_until(3 * (round + 1));
    }
    cluster.run_until(20);
    assert!(cluster.epochs_seen >= 2, "epochs changed {} times", cluster.epochs_seen);
    let heights: Vec<u64> = cluster.roots[0].keys().copied().collect();
    for height in heights.iter().take_while(|h| **h <= 20) {
        let roots: Vec<_> = cluster.roots.iter().map(|roots| roots.get(height)).collect();
        assert!(roots.windows(2).all(|pair| pair[0] == pair[1]), "roots differ at height {height}: {roots:?}");
    }
    // The trades went through on every node.
    let state = cluster.cores[0].app().state();
    let alice = state.account(&cluster.traders[0].address()).unwrap();
    assert!(alice.nonce >= 6, "alice's orders were executed: nonce {}", alice.nonce);
    assert_eq!(state.index_price("BTC").value().to_string(), "97100");
}

/// A validator killed just after the first epoch's last block restarts from
/// it: its consensus starts the next epoch, whose validators signed nothing
/// that covers that block yet.
#[test]
fn a_validator_restarted_at_an_epoch_boundary_joins_the_next_epoch() {
    let mut cluster = Cluster::new(8);
    cluster.run_until(10);
    let (snapshot, header, proof) = cluster.at_epoch_end.clone().expect("node 0 finished the first epoch");
    assert_eq!(header.height.0, 8);
    let app = App::from_snapshot(chain_info(&cluster.genesis), &snapshot, header).unwrap();
    let (epoch, _) = app.epoch();
    assert_eq!(epoch.0, 1, "the restored state is the second epoch's");
    let secret = consensus_secret(VALIDATORS[0]);
    let store = ProtectionStore::open(consensus_chain(&cluster.chain_id), MemoryBackend::default()).unwrap();
    let identity = Identity { secret: secret.clone(), signer: vanna_signer::Signer::new(secret, store) };
    let config = CoreConfig::new(Timing::default(), 100);
    let started = Core::new(app, Some(identity), config, Box::new(cluster.pool.clone()), Some(proof), cluster.now_ms);
    let (core, _) = started.unwrap_or_else(|error| panic!("restart at the epoch boundary: {error}"));
    assert_eq!(core.epoch(), epoch);
}

/// A node catching up commits a batch of blocks before the shell stores any
/// of them: each snapshot it carries is the state right after its own block,
/// not the state at the end of the batch.
#[test]
fn a_snapshot_taken_during_catch_up_is_the_state_right_after_its_block() {
    let mut cluster = Cluster::new(8);
    cluster.run_until(12);
    let mut config = CoreConfig::new(Timing::default(), 100);
    config.snapshot_interval_blocks = 5;
    let (mut late, _) = start_core(&cluster.genesis, VALIDATORS[3], config, &cluster.pool, cluster.now_ms);
    let mut outputs = Vec::new();
    for (header, payload, proof) in cluster.finalized.iter().take(12) {
        outputs.extend(late.apply_synced(cluster.now_ms, header.clone(), payload.clone(), proof.clone()));
    }
    let snapshots: Vec<_> = outputs
        .into_iter()
        .filter_map(|output| match output {
            Output::Committed(committed) => {
                let Committed { header, output, snapshot, .. } = *committed;
                snapshot.map(|bytes| (header, output, bytes))
            }
            _ => None,
        })
        .collect();
    let heights: Vec<u64> = snapshots.iter().map(|(header, _, _)| header.height.0).collect();
    assert_eq!(heights, [5, 10]);
    for (header, output, bytes) in snapshots {
        let height = header.height.0;
        let restored = App::from_snapshot(chain_info(&cluster.genesis), &bytes, header).unwrap();
        assert_eq!(restored.state().height, height);
        assert_eq!(restored.root(), output.state_root, "the snapshot at {height} holds another state");
    }
}
