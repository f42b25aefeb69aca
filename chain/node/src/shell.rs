//! The tokio shell: it opens the home's store, restores the state, connects
//! the network, starts the API and the feeder, and drives the core with
//! what arrives (consensus messages, timers, transactions, reports, blocks
//! for catch-up), performing what the core asks: messages out, blocks and
//! certificates made durable, timers set. One task owns the core; nothing
//! it does waits on a peer.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use prost::Message as _;
use tokio::sync::{mpsc, oneshot, watch};
use vanna_consensus::{Bls, Certificate, Header, Message, Signable, Timing, ValidatorIndex};
use vanna_mempool::{AccountView, Mempool, MempoolError};
use vanna_network::{Inbound, Network, NetworkConfig, NetworkHandle, PeerEvent, PeerId};
use vanna_proto::v1 as wire;
use vanna_signer::{FileBackend, ProtectionStore, Signer};
use vanna_store::{BlockStore, Journal, StoredBlock};

use crate::app::{App, ChainInfo, genesis_header};
use crate::config::NodeConfig;
use crate::core::{Committed, Core, CoreConfig, Identity, Input, Output, Transactions};
use crate::evidence::{decode_certificate, encode_certificate};
use crate::home::Home;
use crate::payload::{MAX_PAYLOAD_BYTES, consensus_chain};
use crate::rpc::{self, NodeRequest, Refusal};
use crate::verifier::{Job, Opened, Verifiers};

/// Blocks asked for in one catch-up request.
const SYNC_BATCH: u32 = vanna_network::MAX_SYNC_BLOCKS;
/// A peer this many blocks ahead puts the node in catch-up.
const SYNC_LAG: u64 = 4;
/// A node behind by less than `SYNC_LAG` catches up too once it has
/// finalized nothing for this long.
const SYNC_STALL_MS: u64 = 1_500;
/// A catch-up request unanswered for this long is asked of another peer.
const SYNC_TIMEOUT_MS: u64 = 3_000;
/// Verifications of submitted and gossiped transactions in flight at most.
const MAX_VERIFYING: usize = 8_192;
/// Recent blocks whose finalization time the node remembers (for
/// `GetTransaction`): about an hour of blocks at 4 a second.
const FINALIZED_AT_KEPT: usize = 16_384;
/// Next-epoch consensus messages kept until the epoch starts here: a few
/// views' worth from every validator.
const MAX_EARLY_MESSAGES: usize = 1_024;
/// Test builds only: a validator started with this variable set equivocates.
#[cfg(feature = "test-equivocate")]
pub const EQUIVOCATE_ENV: &str = "VANNA_TEST_EQUIVOCATE";
/// How long an admitted transaction waits to be gossiped with others in
/// one frame: per-frame costs (framing, a wake-up on every peer) dominate
/// when each goes alone.
const GOSSIP_FLUSH_MS: u64 = 10;
/// Journal records, or bytes, before the node prunes what finality made
/// useless. Proposals carry their blocks, so under load the bytes come first:
/// without that bound the journal (on disk and in memory) grew to hundreds
/// of megabytes between prunes.
const JOURNAL_PRUNE_RECORDS: usize = 4_096;
const JOURNAL_PRUNE_BYTES: u64 = 16 << 20;

/// Why the node stopped.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Home(#[from] crate::home::HomeError),
    #[error("genesis: {0}")]
    Genesis(String),
    #[error("storage: {0}")]
    Store(#[from] vanna_store::StoreError),
    #[error("slashing protection: {0}")]
    Protection(#[from] vanna_signer::Error),
    #[error("network: {0}")]
    Network(#[from] vanna_network::NetworkError),
    #[error("API on {address}: {why}")]
    Api { address: std::net::SocketAddr, why: String },
    #[error("restoring the state: {0}")]
    Restore(String),
    #[error("starting the {what} thread: {source}")]
    Thread { what: &'static str, source: std::io::Error },
    #[error("{0}")]
    Halted(String),
}

/// The mempool as the core's transaction source.
#[derive(Clone)]
struct Pool(Arc<Mutex<Mempool>>);

impl Pool {
    fn lock(&self) -> std::sync::MutexGuard<'_, Mempool> {
        // Only the shell's one task takes the lock: a poisoned lock means it panicked already.
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Transactions for Pool {
    fn select(&mut self, state: &vanna_runtime::State, max: usize) -> Vec<Vec<u8>> {
        let committed = |address: &vanna_types::Address| state.account(address).map(|account| account.nonce);
        // Room in the payload for reports, evidence and the certificate.
        let max_bytes = MAX_PAYLOAD_BYTES - 256 * 1024;
        self.lock().select(committed, max, max_bytes).into_iter().map(|selected| selected.bytes).collect()
    }

    fn verified(&self, hash: &[u8; 32]) -> bool {
        self.lock().is_verified(hash)
    }

    fn on_executed(&mut self, state: &vanna_runtime::State, included: &[Vec<u8>]) {
        let hashes: Vec<[u8; 32]> = included.iter().map(|bytes| vanna_types::tx::transaction_hash(bytes)).collect();
        let committed = |address: &vanna_types::Address| state.account(address).map(|account| account.nonce);
        self.lock().on_finalized(committed, &hashes, crate::now_ms());
    }

    fn pending(&self) -> usize {
        self.lock().len()
    }
}

/// Counters the status reports.
#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    transactions: u64,
    orders: u64,
    fills: u64,
    liquidations: u64,
}

/// Catch-up in progress: which peer was asked, from where, when.
#[derive(Debug, Clone, Copy)]
struct Asked {
    peer: PeerId,
    from_height: u64,
    at_ms: u64,
}

struct Shell {
    /// Consensus messages of the next epoch, received before this node got there.
    early: Vec<(PeerId, Message<Bls>)>,
    /// When this node stored each recent block: (height, Unix ms), oldest first.
    finalized_at: std::collections::VecDeque<(u64, u64)>,
    core: Core<FileBackend>,
    info: ChainInfo,
    config: NodeConfig,
    network: NetworkHandle,
    store: BlockStore,
    journal: Journal,
    pool: Pool,
    timers: BTreeMap<(u64, u64), Input>,
    timer_sequence: u64,
    status: watch::Sender<wire::StatusResponse>,
    verifiers: Verifiers,
    /// Admitted transactions not yet gossiped (at most a frame's worth).
    gossip_out: Vec<Bytes>,
    counters: Counters,
    /// Finalized heights peers announced.
    peer_heights: BTreeMap<PeerId, u64>,
    /// Catch-up data served, per peer.
    serving: crate::serving::ServeBudget,
    asked: Option<Asked>,
    /// When catch-up began and from which height, for its progress line.
    catch_up: Option<(u64, u64)>,
    /// The executed height and when it was reached.
    progress: (u64, u64),
}

/// Runs the node in `home` until `stop` turns true or it halts.
pub async fn run(home: Home, mut stop: watch::Receiver<bool>) -> Result<(), NodeError> {
    let config = home.config()?;
    let genesis = home.genesis()?;
    let keys = home.keys()?;
    let chain_id = genesis.chain_id.clone();
    let info = ChainInfo {
        chain_id: chain_id.clone(),
        consensus: consensus_chain(&chain_id),
        epoch_blocks: genesis.staking.params.epoch_blocks,
    };
    let mut genesis_state = genesis.build().map_err(|error| NodeError::Genesis(error.to_string()))?;
    let genesis_block = genesis_header(&mut genesis_state);
    let genesis_hash = genesis_block.hash().0;

    // The state: the latest snapshot, then the stored blocks after it.
    let store = BlockStore::open(home.blocks_dir())?;
    let restore = |error: crate::app::AppError| NodeError::Restore(error.to_string());
    let mut app = match restore_snapshot(&store, &info)? {
        Some(app) => app,
        None => App::new(info.clone(), genesis_state, genesis_block.clone()).map_err(restore)?,
    };
    let last = store.last_height()?;
    for height in app.executed().height.0 + 1..=last {
        let block = store.block(height)?.ok_or_else(|| NodeError::Restore(format!("block {height} is missing")))?;
        let header =
            Header::decode(&block.header).ok_or_else(|| NodeError::Restore(format!("block {height}'s header")))?;
        app.execute(&header, &block.payload, &|_| false).map_err(restore)?;
    }
    let anchor_proof = match last {
        0 => None,
        _ => {
            let block = store.block(last)?.ok_or_else(|| NodeError::Restore(format!("block {last} is missing")))?;
            Some(decode_certificate(&block.certificate).map_err(|e| NodeError::Restore(e.to_string()))?)
        }
    };
    tracing::info!(height = app.executed().height.0, "state restored");

    // The signer, if this node's key is a validator's of some epoch: it may become one.
    let protection = ProtectionStore::open(info.consensus, FileBackend::open(home.protection_path())?)?;
    let identity = Identity { secret: keys.consensus.clone(), signer: Signer::new(keys.consensus.clone(), protection) };

    let mempool = Pool(Arc::new(Mutex::new(Mempool::new(vanna_mempool::Config {
        max_transactions: config.mempool.max_transactions,
        max_per_account: config.mempool.max_per_account,
        ..vanna_mempool::Config::default()
    }))));
    let timing = Timing {
        leader_timeout_ms: config.consensus.leader_timeout_ms,
        retry_ms: config.consensus.retry_ms,
        ..Timing::default()
    };
    let mut core_config = CoreConfig::new(timing, config.consensus.max_block_interval_ms);
    core_config.snapshot_interval_blocks = config.storage.snapshot_interval_blocks;
    #[cfg(feature = "test-equivocate")]
    {
        core_config.equivocate = std::env::var_os(EQUIVOCATE_ENV).is_some();
    }
    let now = crate::now_ms();
    let (core, first) = Core::new(app, Some(identity), core_config, Box::new(mempool.clone()), anchor_proof, now)
        .map_err(NodeError::Halted)?;

    let network_config = NetworkConfig {
        listen_addr: config.network.listen,
        peers: config.network.peers.clone(),
        ..NetworkConfig::default()
    };
    let (network, mut inbox) =
        Network::start(network_config, Some(keys.consensus.clone()), genesis_hash, chain_id.clone()).await?;
    // Before any peer's first frame, so that validators are not refused as outsiders.
    announce_validators(&core, &network);
    tracing::info!(address = %network.local_addr(), "network listening");

    let api_listener = rpc::bind(config.api.listen)
        .await
        .map_err(|error| NodeError::Api { address: config.api.listen, why: error.to_string() })?;
    let api_address =
        api_listener.local_addr().map_err(|e| NodeError::Api { address: config.api.listen, why: e.to_string() })?;
    tracing::info!(moniker = %config.moniker, api = %api_address, "API listening");
    let (requests_tx, mut requests) = mpsc::channel(rpc::MAX_PENDING_REQUESTS);
    let (status, status_rx) = watch::channel(wire::StatusResponse::default());
    let api_stop = {
        let mut stop = stop.clone();
        async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        }
    };
    let api = tokio::spawn(rpc::serve(api_listener, requests_tx, status_rx, api_stop));

    let (reports_tx, mut reports) = mpsc::channel::<Vec<u8>>(16);
    if config.feeder.enabled {
        spawn_feeder(&config, &genesis, &keys, reports_tx.clone())?;
    }
    let (opened_tx, mut opened) = mpsc::channel::<Opened>(MAX_VERIFYING);
    let cores = std::thread::available_parallelism().map_or(1, |cores| cores.get());
    let known: crate::verifier::Known = {
        let pool = mempool.clone();
        Arc::new(move |hash| pool.lock().is_verified(hash))
    };
    let verifiers = Verifiers::start(cores, MAX_VERIFYING, chain_id.clone(), opened_tx, known)
        .map_err(|source| NodeError::Thread { what: "signature-checking", source })?;
    let journal = Journal::open(home.journal_path())?;
    let mut shell = Shell {
        core,
        info,
        config: config.clone(),
        network,
        store,
        journal,
        pool: mempool,
        timers: BTreeMap::new(),
        timer_sequence: 0,
        status,
        verifiers,
        gossip_out: Vec::new(),
        counters: Counters::default(),
        peer_heights: BTreeMap::new(),
        serving: crate::serving::ServeBudget::default(),
        asked: None,
        catch_up: None,
        progress: (0, crate::now_ms()),
        finalized_at: std::collections::VecDeque::new(),
        early: Vec::new(),
    };
    shell.update_validators();
    shell.perform(first)?;
    shell.restore_consensus()?;
    shell.publish_status();

    let mut status_tick = tokio::time::interval(Duration::from_millis(500));
    status_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut gossip_tick = tokio::time::interval(Duration::from_millis(GOSSIP_FLUSH_MS));
    gossip_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let result = loop {
        let next_timer = shell.timers.keys().next().map(|(at, _)| *at);
        let sleep = async {
            match next_timer {
                Some(at_ms) => {
                    let wait = at_ms.saturating_sub(crate::now_ms());
                    tokio::time::sleep(Duration::from_millis(wait)).await
                }
                None => std::future::pending().await,
            }
        };
        let step = tokio::select! {
            biased;
            _ = stop.changed() => {
                if *stop.borrow() { break Ok(()); }
                Ok(())
            }
            // Periodic and cheap: never starved by a flood of the rest.
            _ = status_tick.tick() => shell.on_tick(),
            _ = gossip_tick.tick(), if !shell.gossip_out.is_empty() => { shell.flush_gossip(); Ok(()) }
            Some(inbound) = inbox.consensus.recv() => shell.on_consensus(inbound),
            _ = sleep => shell.on_timers(),
            Some(inbound) = inbox.sync.recv() => shell.on_sync(inbound),
            Some(event) = inbox.events.recv() => { shell.on_peer(event); Ok(()) }
            // Work under way finishes before new work is taken on: verified
            // transactions reach the mempool before more are accepted.
            Some(done) = opened.recv() => shell.on_opened(done),
            Some(report) = reports.recv() => shell.on_report(report, true),
            Some(inbound) = inbox.gossip.recv() => shell.on_gossip(inbound),
            Some(request) = requests.recv() => shell.on_request(request),
        };
        if let Err(error) = step {
            break Err(error);
        }
    };
    shell.network.shutdown().await;
    api.abort();
    if let Err(error) = &result {
        tracing::error!(%error, "the node stopped");
    }
    result
}

/// The newest stored snapshot that is the state its block left: its height
/// and root must be the block's. One that is not (written by an older
/// build, or damaged) is skipped with a warning, and an older one, or
/// genesis, is replayed from instead.
fn restore_snapshot(store: &BlockStore, info: &ChainInfo) -> Result<Option<App>, NodeError> {
    for height in store.snapshot_heights()?.into_iter().rev() {
        let Some(block) = store.block(height)? else {
            tracing::warn!(height, "a snapshot without its block: skipped");
            continue;
        };
        let header =
            Header::decode(&block.header).ok_or_else(|| NodeError::Restore(format!("block {height}'s header")))?;
        match App::from_snapshot(info.clone(), &store.snapshot(height)?, header) {
            Ok(app) if app.state().height == height && app.root() == block.state_root => return Ok(Some(app)),
            Ok(app) => tracing::warn!(
                height,
                state_height = app.state().height,
                "the snapshot is not the state after its block: skipped"
            ),
            Err(error) => tracing::warn!(height, %error, "the snapshot does not load: skipped"),
        }
    }
    Ok(None)
}

fn spawn_feeder(
    config: &NodeConfig,
    genesis: &vanna_runtime::Genesis,
    keys: &crate::home::Keys,
    reports: mpsc::Sender<Vec<u8>>,
) -> Result<(), NodeError> {
    use vanna_feeder::{CombineConfig, Feeder, SyntheticConfig, source_from_spec};
    // Every localnet validator walks the same synthetic path from genesis.
    let synthetic = SyntheticConfig::new(0, genesis.genesis_time_ms);
    let source = source_from_spec(&config.feeder.source, &synthetic, Duration::from_secs(2))
        .map_err(|error| NodeError::Genesis(format!("feeder: {error}")))?;
    let underlyings = genesis
        .underlyings
        .iter()
        .filter_map(|underlying| vanna_oracle::Underlying::new(&underlying.symbol).ok())
        .collect();
    let mut feeder = Feeder::new(
        genesis.chain_id.clone(),
        keys.account.clone(),
        underlyings,
        vec![source],
        CombineConfig::default(),
    )
    .map_err(|error| NodeError::Genesis(format!("feeder: {error}")))?;
    let interval = Duration::from_millis(config.feeder.interval_ms);
    // Sources may block (HTTP): off the async threads.
    std::thread::Builder::new()
        .name("feeder".into())
        .spawn(move || {
            loop {
                if let Some(report) = feeder.report(crate::now_ms())
                    && reports.blocking_send(report).is_err()
                {
                    return;
                }
                std::thread::sleep(interval);
            }
        })
        .map_err(|source| NodeError::Thread { what: "price feeder", source })?;
    Ok(())
}

impl Shell {
    fn now(&self) -> u64 {
        crate::now_ms()
    }

    /// The network identity of validator `index` of the current epoch.
    fn peer_of(&self, index: ValidatorIndex) -> Option<PeerId> {
        self.core.validators().get(index).map(|entry| PeerId::Key(entry.public_key.to_bytes()))
    }

    fn index_of(&self, peer: &PeerId) -> Option<ValidatorIndex> {
        let PeerId::Key(key) = peer else { return None };
        let key = vanna_crypto::bls::BlsPublicKey::from_bytes(key).ok()?;
        self.core.validators().index_of(&key)
    }

    fn update_validators(&self) {
        announce_validators(&self.core, &self.network);
    }

    fn perform(&mut self, outputs: Vec<Output>) -> Result<(), NodeError> {
        for output in outputs {
            match output {
                Output::Broadcast(message) => {
                    let bytes = Bytes::from(vanna_consensus::wire::encode(&message));
                    let _ = self.network.broadcast(vanna_network::Message::Consensus(bytes));
                }
                Output::Send { to, message } => {
                    if let Some(peer) = self.peer_of(to) {
                        let bytes = Bytes::from(vanna_consensus::wire::encode(&message));
                        let _ = self.network.send(peer, vanna_network::Message::Consensus(bytes));
                    }
                }
                Output::Timer { epoch, view, kind, at_ms } => {
                    self.timer_sequence += 1;
                    self.timers.insert((at_ms, self.timer_sequence), Input::Timeout { epoch, view, kind });
                }
                Output::Wake { at_ms } => {
                    self.timer_sequence += 1;
                    self.timers.insert((at_ms, self.timer_sequence), Input::Wake);
                }
                Output::Committed(committed) => self.committed(*committed)?,
                Output::Journal { header, certificate } => {
                    self.journal.append(&journal_record(JournalRecord::Certificate { header, certificate }))?;
                }
                Output::KeepBlock { header, payload } => {
                    self.journal.append(&journal_record(JournalRecord::Block { header, payload }))?;
                }
                Output::Disconnect { peer, fault } => {
                    if let Some(peer) = self.peer_of(peer) {
                        tracing::warn!(%peer, ?fault, "disconnecting a misbehaving peer");
                        self.network.disconnect(peer, format!("{fault:?}"));
                    }
                }
                Output::Halt(why) => return Err(NodeError::Halted(why)),
            }
        }
        Ok(())
    }

    /// A block is final and executed: made durable before anything else leaves.
    fn committed(&mut self, committed: Committed) -> Result<(), NodeError> {
        let height = committed.header.height.0;
        let receipts = crate::receipts::encode(&committed.output.receipts);
        let transactions: Vec<[u8; 32]> = committed.output.receipts.iter().map(|receipt| receipt.tx_hash).collect();
        self.store.commit_indexed(
            &StoredBlock {
                height,
                hash: committed.header.hash().0,
                header: committed.header.encode(),
                payload: committed.payload,
                certificate: encode_certificate(&committed.proof),
                receipts,
                state_root: committed.output.state_root,
            },
            &transactions,
        )?;
        if self.finalized_at.len() == FINALIZED_AT_KEPT {
            self.finalized_at.pop_front();
        }
        self.finalized_at.push_back((height, crate::now_ms()));
        if let Some(snapshot) = &committed.snapshot {
            self.store.put_snapshot(height, snapshot)?;
        }
        self.count(&committed.output);
        // Checked by the runtime if not before: a copy still queued for
        // checking (gossip behind the block) is dropped unchecked.
        {
            let mut pool = self.pool.lock();
            for receipt in &committed.output.receipts {
                if matches!(receipt.status, vanna_runtime::events::TxStatus::Included { .. }) {
                    pool.note_verified(&receipt.tx_hash);
                }
            }
        }
        if committed.next_epoch.is_some() {
            self.update_validators();
            self.replay_early()?;
        }
        if self.journal.records().len() > JOURNAL_PRUNE_RECORDS || self.journal.len_bytes() > JOURNAL_PRUNE_BYTES {
            self.prune_journal()?;
        }
        Ok(())
    }

    fn count(&mut self, output: &vanna_runtime::BlockOutput) {
        use vanna_runtime::events::{Event, TxStatus};
        for receipt in &output.receipts {
            if let TxStatus::Included { actions } = &receipt.status {
                self.counters.transactions += 1;
                self.counters.orders += actions.len() as u64;
            }
        }
        for event in &output.events {
            match event {
                Event::Filled(_) => self.counters.fills += 1,
                Event::LiquidationStarted { .. } => self.counters.liquidations += 1,
                _ => {}
            }
        }
    }

    /// Drops journal records that finality made useless.
    fn prune_journal(&mut self) -> Result<(), NodeError> {
        let executed = self.core.app().executed().height.0;
        let epoch = self.core.epoch();
        self.journal.rewrite(|record| match read_journal_record(record) {
            Some(JournalRecord::Block { header, .. }) => header.height.0 > executed,
            Some(JournalRecord::Certificate { certificate, .. }) => certificate.vote.epoch >= epoch,
            None => false,
        })?;
        Ok(())
    }

    /// After a restart: blocks kept above the anchor, journaled
    /// certificates, and the votes recorded since, back to the engine.
    fn restore_consensus(&mut self) -> Result<(), NodeError> {
        let mut blocks = Vec::new();
        let mut certificates = Vec::new();
        for record in self.journal.records() {
            match read_journal_record(record) {
                Some(JournalRecord::Block { header, payload }) => blocks.push((header, payload)),
                Some(JournalRecord::Certificate { header, certificate }) => certificates.push((header, certificate)),
                None => {}
            }
        }
        let votes: Vec<Signable> = self.recorded_votes();
        let outputs = self.core.restore(self.now(), blocks, certificates, votes);
        self.perform(outputs)
    }

    fn recorded_votes(&self) -> Vec<Signable> {
        self.core.recorded_after(self.core.app().executed().view)
    }

    fn on_consensus(&mut self, inbound: Inbound) -> Result<(), NodeError> {
        let vanna_network::Message::Consensus(bytes) = inbound.message else { return Ok(()) };
        let message: Message<Bls> = match vanna_consensus::wire::decode(&bytes) {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!(peer = %inbound.peer, %error, "undecodable consensus message; disconnecting");
                self.network.disconnect(inbound.peer, format!("undecodable consensus message: {error}"));
                return Ok(());
            }
        };
        self.on_decoded(inbound.peer, message)
    }

    /// A message for the current epoch goes to the engine; one for the next
    /// epoch waits until this node gets there (validator indices change
    /// with the set, so it cannot be read before); an older one is dropped.
    fn on_decoded(&mut self, peer: PeerId, message: Message<Bls>) -> Result<(), NodeError> {
        let epoch = self.core.epoch();
        match message_epoch(&message) {
            Some(of) if of < epoch => return Ok(()),
            Some(of) if of > epoch => {
                if of.0 == epoch.0 + 1 && self.early.len() < MAX_EARLY_MESSAGES {
                    self.early.push((peer, message));
                }
                return Ok(());
            }
            _ => {}
        }
        let Some(from) = self.index_of(&peer) else { return Ok(()) };
        let outputs = self.core.handle(self.now(), Input::Message { from, message });
        self.perform(outputs)
    }

    /// After an epoch change: the messages that arrived early.
    fn replay_early(&mut self) -> Result<(), NodeError> {
        for (peer, message) in std::mem::take(&mut self.early) {
            self.on_decoded(peer, message)?;
        }
        Ok(())
    }

    fn on_timers(&mut self) -> Result<(), NodeError> {
        let now = self.now();
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let input = entry.remove();
            let outputs = self.core.handle(now, input);
            self.perform(outputs)?;
        }
        Ok(())
    }

    fn on_report(&mut self, report: Vec<u8>, own: bool) -> Result<(), NodeError> {
        if own {
            let _ = self.network.broadcast(vanna_network::Message::OracleReport(Bytes::from(report.clone())));
        }
        let outputs = self.core.handle(self.now(), Input::OracleReport(report));
        self.perform(outputs)
    }

    fn on_gossip(&mut self, inbound: Inbound) -> Result<(), NodeError> {
        match inbound.message {
            vanna_network::Message::Transactions(transactions) => {
                for bytes in transactions {
                    let hash = vanna_types::tx::transaction_hash(&bytes);
                    let known = {
                        let pool = self.pool.lock();
                        pool.contains(&hash) || pool.is_verified(&hash)
                    };
                    if !known {
                        self.open(bytes.to_vec(), None);
                    }
                }
                Ok(())
            }
            vanna_network::Message::OracleReport(bytes) => self.on_report(bytes.to_vec(), false),
            _ => Ok(()),
        }
    }

    /// Checks a transaction's envelope (its signature) off the loop.
    fn open(&mut self, bytes: Vec<u8>, reply: Option<oneshot::Sender<Result<[u8; 32], Refusal>>>) {
        // A full queue refuses: the submitter retries, gossip is dropped
        // (its sender's proposal will carry it if it matters).
        if let Err(Job { reply: Some(reply), .. }) = self.verifiers.submit(Job { bytes, reply }) {
            let _ = reply
                .send(Err(Refusal::Exhausted("the node is verifying too many transactions; retry shortly".into())));
        }
    }

    fn on_opened(&mut self, opened: Opened) -> Result<(), NodeError> {
        let Opened { bytes, envelope, reply } = opened;
        let answer = match envelope {
            Err(error) => Err(Refusal::Invalid(error.to_string())),
            Ok(envelope) => {
                let hash = envelope.hash;
                let committed: AccountView =
                    self.core.app().state().account(&envelope.sender).map(|account| account.nonce).into();
                let gossip = bytes.clone();
                let mut pool = self.pool.lock();
                pool.note_verified(&envelope.hash);
                match pool.insert(bytes, envelope, committed, crate::now_ms()) {
                    Ok(_) => {
                        drop(pool);
                        if reply.is_some() {
                            self.gossip_out.push(Bytes::from(gossip));
                            if self.gossip_out.len() >= vanna_network::MAX_TRANSACTIONS_PER_FRAME {
                                self.flush_gossip();
                            }
                        }
                        Ok(hash)
                    }
                    Err(error) => Err(refusal(error)),
                }
            }
        };
        if let Some(reply) = reply {
            let _ = reply.send(answer);
        }
        if self.core.waiting() {
            let outputs = self.core.handle(self.now(), Input::Wake);
            self.perform(outputs)?;
        }
        Ok(())
    }

    fn flush_gossip(&mut self) {
        let transactions = std::mem::take(&mut self.gossip_out);
        let _ = self.network.broadcast(vanna_network::Message::Transactions(transactions));
    }

    fn on_request(&mut self, request: NodeRequest) -> Result<(), NodeError> {
        match request {
            NodeRequest::Submit { bytes, reply } => {
                if self.asked.is_some() {
                    let _ = reply.send(Err(Refusal::Unavailable(
                        "the node is catching up; retry shortly or use another node".into(),
                    )));
                } else {
                    self.open(bytes, Some(reply));
                }
            }
            NodeRequest::Account { address, reply } => {
                let state = self.core.app().state();
                let account = state.account(&address).map(|account| wire::GetAccountResponse {
                    nonce: account.nonce,
                    usd: account.usd.to_string(),
                    usd_locked: account.usd_locked.to_string(),
                    vanna: account.vanna.to_string(),
                    positions: account.positions.len() as u32,
                    open_orders: account.open_orders.len() as u32,
                    height: state.height,
                });
                let _ = reply.send(account);
            }
            NodeRequest::Transaction { hash, reply } => {
                let found = self.find_transaction(&hash).unwrap_or_else(|error| {
                    tracing::warn!(%error, "looking up a transaction in the store");
                    None
                });
                let _ = reply.send(found);
            }
            NodeRequest::StateRoot { height, reply } => {
                let root = if height == self.core.app().executed().height.0 {
                    Some(self.core.app().root())
                } else {
                    self.store.block(height).ok().flatten().map(|block| block.state_root)
                };
                let _ = reply.send(root);
            }
        }
        Ok(())
    }

    /// A transaction waiting in the mempool, or in a stored block with its receipt.
    fn find_transaction(&self, hash: &[u8; 32]) -> Result<Option<wire::GetTransactionResponse>, NodeError> {
        if self.pool.lock().contains(hash) {
            return Ok(Some(wire::GetTransactionResponse { pending: true, ..Default::default() }));
        }
        let Some((height, position)) = self.store.transaction(hash)? else { return Ok(None) };
        let Some((header, receipts)) = self.store.header_and_receipts(height)? else { return Ok(None) };
        let block_time_ms = Header::decode(&header).map_or(0, |header| header.block_time_ms);
        let receipt_json = crate::receipts::at(&receipts, position as usize)
            .map(|json| String::from_utf8_lossy(json).into_owned())
            .unwrap_or_default();
        let finalized_at_ms = self
            .finalized_at
            .binary_search_by_key(&height, |(stored, _)| *stored)
            .map_or(0, |at| self.finalized_at[at].1);
        Ok(Some(wire::GetTransactionResponse {
            pending: false,
            height,
            position,
            block_time_ms,
            finalized_at_ms,
            receipt_json,
        }))
    }

    fn on_peer(&mut self, event: PeerEvent) {
        match event {
            PeerEvent::Connected(info) => {
                let height = self.core.app().executed().height.0;
                let _ = self.network.send(info.id, vanna_network::Message::Status { finalized_height: height });
            }
            PeerEvent::Disconnected { peer, .. } => {
                self.peer_heights.remove(&peer);
                self.serving.forget(peer);
                if self.asked.is_some_and(|asked| asked.peer == peer) {
                    self.asked = None;
                }
            }
        }
    }

    fn on_tick(&mut self) -> Result<(), NodeError> {
        let height = self.core.app().executed().height.0;
        if height != self.progress.0 {
            self.progress = (height, self.now());
        }
        let _ = self.network.broadcast(vanna_network::Message::Status { finalized_height: height });
        if let Some(asked) = self.asked
            && self.now() > asked.at_ms + SYNC_TIMEOUT_MS
        {
            self.peer_heights.remove(&asked.peer);
            self.asked = None;
        }
        self.maybe_sync();
        self.publish_status();
        Ok(())
    }

    /// Asks the most advanced peer for the next blocks when it is ahead.
    fn maybe_sync(&mut self) {
        if self.asked.is_some() {
            return;
        }
        let height = self.core.app().executed().height.0;
        let Some((peer, best)) = self.peer_heights.iter().max_by_key(|(_, h)| **h).map(|(p, h)| (*p, *h)) else {
            return;
        };
        // Far behind, or behind at all and finalizing nothing on its own (a
        // node that missed the last block of an epoch cannot finalize it:
        // the others have moved on to the next epoch).
        let stalled = self.now().saturating_sub(self.progress.1) > SYNC_STALL_MS;
        if best <= height || (best < height + SYNC_LAG && !stalled) {
            return;
        }
        let from_height = height + 1;
        if self.network.send(peer, vanna_network::Message::SyncRequest { from_height, max: SYNC_BATCH }).is_ok() {
            self.asked = Some(Asked { peer, from_height, at_ms: self.now() });
        }
    }

    fn on_sync(&mut self, inbound: Inbound) -> Result<(), NodeError> {
        match inbound.message {
            vanna_network::Message::Status { finalized_height } => {
                self.peer_heights.insert(inbound.peer, finalized_height);
                self.maybe_sync();
                Ok(())
            }
            vanna_network::Message::SyncRequest { from_height, max } => {
                if !self.serving.allows(inbound.peer, self.now()) {
                    tracing::debug!(peer = %inbound.peer, from_height, "catch-up request over the peer's budget: ignored");
                    return Ok(());
                }
                let blocks = self.store.blocks(from_height, max.min(SYNC_BATCH) as usize)?;
                let mut encoded = Vec::new();
                let mut size = 0;
                for block in blocks {
                    let bytes = wire::FinalizedBlock {
                        header: block.header,
                        payload: block.payload,
                        certificate: block.certificate,
                    }
                    .encode_to_vec();
                    size += bytes.len();
                    if size > vanna_network::MAX_SYNC_RESPONSE_BYTES {
                        break;
                    }
                    encoded.push(Bytes::from(bytes));
                }
                self.serving.spend(inbound.peer, size);
                let _ = self
                    .network
                    .send(inbound.peer, vanna_network::Message::SyncResponse { from_height, blocks: encoded });
                Ok(())
            }
            vanna_network::Message::SyncResponse { from_height, blocks } => {
                self.on_blocks(inbound.peer, from_height, blocks)
            }
            _ => Ok(()),
        }
    }

    /// Catch-up blocks: each is checked against its certificate (which must
    /// finalize it or a block later in the response that it leads to) and
    /// executed in order; a bad response costs the peer its link.
    fn on_blocks(&mut self, peer: PeerId, from_height: u64, blocks: Vec<Bytes>) -> Result<(), NodeError> {
        if !self.asked.is_some_and(|asked| asked.peer == peer && asked.from_height == from_height) {
            return Ok(());
        }
        self.asked = None;
        let mut decoded = Vec::new();
        for bytes in &blocks {
            let block = wire::FinalizedBlock::decode(bytes.as_ref()).ok();
            let parsed = block.and_then(|block| {
                let header = Header::decode(&block.header)?;
                let certificate = decode_certificate(&block.certificate).ok()?;
                Some((header, block.payload, certificate))
            });
            match parsed {
                Some(parsed) => decoded.push(parsed),
                None => {
                    self.network.disconnect(peer, "an undecodable catch-up block");
                    return Ok(());
                }
            }
        }
        let now = self.now();
        for index in 0..decoded.len() {
            let (header, payload, proof) = decoded[index].clone();
            if header.height.0 != self.core.app().executed().height.0 + 1 {
                break;
            }
            if !self.finalizes(&decoded, index, &proof) {
                tracing::warn!(%peer, height = header.height.0, "a catch-up block without a valid finalization; disconnecting");
                self.network.disconnect(peer, "catch-up block without a valid finalization");
                return Ok(());
            }
            let outputs = self.core.apply_synced(now, header, payload, proof);
            self.perform(outputs)?;
        }
        self.report_catch_up(now);
        self.maybe_sync();
        Ok(())
    }

    /// Logs catch-up progress: height reached, blocks a second, what remains and when it should be done.
    fn report_catch_up(&mut self, now: u64) {
        let height = self.core.app().executed().height.0;
        let best = self.peer_heights.values().max().copied().unwrap_or(0);
        let remaining = best.saturating_sub(height);
        let (since_ms, from) = *self.catch_up.get_or_insert((now, height));
        if remaining == 0 {
            tracing::info!(height, "caught up");
            self.catch_up = None;
            return;
        }
        let seconds = now.saturating_sub(since_ms) as f64 / 1000.0;
        let rate = if seconds > 0.0 { height.saturating_sub(from) as f64 / seconds } else { 0.0 };
        let eta = if rate > 0.0 { format!("{:.0}s", remaining as f64 / rate) } else { "unknown".into() };
        tracing::info!(height, remaining, blocks_per_second = format!("{rate:.1}"), eta, "catching up");
    }

    /// Whether `proof` is a valid finalization, by the validators of the
    /// block's epoch, of block `index` of `blocks` or of a later one the
    /// response chains to it by parent hashes.
    fn finalizes(
        &self,
        blocks: &[(Header, Vec<u8>, Certificate<Bls>)],
        index: usize,
        proof: &Certificate<Bls>,
    ) -> bool {
        let vanna_consensus::VoteKind::Finalize { block: target, .. } = proof.vote.kind else { return false };
        let (epoch, set) = self.core.app().epoch();
        if proof.vote.epoch != epoch || proof.verify(self.info.consensus, epoch, &set).is_err() {
            return false;
        }
        let mut cursor = index;
        loop {
            let (header, payload, _) = &blocks[cursor];
            if Header::payload_hash_of(payload) != header.payload_hash {
                return false;
            }
            if header.hash() == target {
                return true;
            }
            cursor += 1;
            if cursor >= blocks.len() || blocks[cursor].0.parent != header.hash() {
                return false;
            }
        }
    }

    fn publish_status(&self) {
        let app = self.core.app();
        let state = app.state();
        let prices = state
            .underlyings
            .keys()
            .map(|symbol| wire::IndexPrice {
                underlying: symbol.clone(),
                index: state.index_price(symbol).value().to_string(),
                stale: state.is_stale(symbol),
            })
            .collect();
        let validators = state
            .staking
            .validators
            .values()
            .map(|validator| wire::ValidatorSummary {
                moniker: validator.moniker.clone(),
                operator: validator.operator.as_bytes().to_vec(),
                stake: vanna_runtime::money::Amount::from_micro(validator.tokens).to_string(),
                rewards: vanna_runtime::money::Amount::from_micro(validator.reward_pool + validator.commission_pending)
                    .to_string(),
                jailed: validator.jailed,
                tombstoned: validator.tombstoned,
                active: state.staking.is_active(&validator.operator),
            })
            .collect();
        let best = self.peer_heights.values().max().copied().unwrap_or(0);
        let executed = app.executed().height.0;
        let _ = self.status.send(wire::StatusResponse {
            chain_id: self.info.chain_id.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            height: executed.max(best),
            finalized_height: executed,
            state_root: app.root().to_vec(),
            epoch: self.core.epoch().0,
            view: self.core.view().0,
            validator: self.core.me().is_some(),
            peers: self.network.peers().len() as u32,
            syncing: self.asked.is_some(),
            sync_target_height: best,
            mempool_transactions: self.pool.lock().len() as u64,
            block_time_ms: app.executed().block_time_ms,
            transactions_total: self.counters.transactions,
            orders_total: self.counters.orders,
            fills_total: self.counters.fills,
            liquidations_total: self.counters.liquidations,
            prices,
            validators,
            moniker: self.config.moniker.clone(),
            total_usd: state.total_usd().to_string(),
            total_vanna: state.total_vanna().to_string(),
        });
    }
}

/// Tells the network who may send consensus messages: the validators of
/// the current epoch and of the next.
fn announce_validators(core: &Core<FileBackend>, network: &NetworkHandle) {
    let current: Vec<_> = core.validators().entries().iter().map(|entry| entry.public_key.clone()).collect();
    let next: Vec<_> = crate::app::validator_set(core.app().state())
        .map(|set| set.entries().iter().map(|entry| entry.public_key.clone()).collect())
        .unwrap_or_default();
    network.set_validators(&current, &next);
}

/// What the consensus journal holds.
enum JournalRecord {
    Block { header: Header, payload: Vec<u8> },
    Certificate { header: Option<Header>, certificate: Certificate<Bls> },
}

fn journal_record(record: JournalRecord) -> Vec<u8> {
    let entry = match record {
        JournalRecord::Block { header, payload } => {
            wire::JournalEntry { header: header.encode(), payload, certificate: Vec::new(), kind: 1 }
        }
        JournalRecord::Certificate { header, certificate } => wire::JournalEntry {
            header: header.map(|h| h.encode()).unwrap_or_default(),
            payload: Vec::new(),
            certificate: encode_certificate(&certificate),
            kind: 2,
        },
    };
    entry.encode_to_vec()
}

fn read_journal_record(bytes: &[u8]) -> Option<JournalRecord> {
    let entry = wire::JournalEntry::decode(bytes).ok()?;
    match entry.kind {
        1 => Some(JournalRecord::Block { header: Header::decode(&entry.header)?, payload: entry.payload }),
        2 => Some(JournalRecord::Certificate {
            header: if entry.header.is_empty() { None } else { Some(Header::decode(&entry.header)?) },
            certificate: decode_certificate(&entry.certificate).ok()?,
        }),
        _ => None,
    }
}

/// The status code and message of a mempool refusal.
fn refusal(error: MempoolError) -> Refusal {
    match error {
        MempoolError::UnknownSender(_)
        | MempoolError::StaleNonce { .. }
        | MempoolError::NonceTooFarAhead { .. }
        | MempoolError::NonceTaken { .. }
        | MempoolError::Duplicate { .. } => Refusal::Precondition(error.to_string()),
        MempoolError::AccountFull { .. } | MempoolError::PoolFull { .. } => Refusal::Exhausted(error.to_string()),
        MempoolError::EnvelopeMismatch { .. } => Refusal::Invalid(error.to_string()),
    }
}

/// The epoch a consensus message belongs to (none for block transfers).
fn message_epoch(message: &Message<Bls>) -> Option<vanna_consensus::Epoch> {
    match message {
        Message::Proposal(proposal) => Some(proposal.header.epoch),
        Message::Vote(vote) => Some(vote.vote.epoch),
        Message::Certified { certificate, .. } | Message::Nullification(certificate) => Some(certificate.vote.epoch),
        Message::Status { epoch, .. } => Some(*epoch),
        Message::BlockRequest { .. } | Message::BlockResponse { .. } => None,
    }
}
