//! Deterministic simulator for Vanna's consensus core.
//!
//! Owns: a seeded network in virtual time (delay, loss, reordering,
//! duplication, partitions and heals), crash and restart of validators with
//! their persisted slashing-protection store, byzantine validators
//! (equivocating leader, double voter, silent), and the checks every run makes:
//! no two conflicting blocks finalized, finality resumes within a bounded
//! number of views after the network heals, every observed equivocation
//! produces valid evidence against the right validator.
//!
//! Must not: read the wall clock or any ambient randomness; a seed and a
//! configuration determine a run completely.

mod network;
mod rng;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::Serialize;
use vanna_consensus::{
    Action, BlockHash, Bls, BlsSecretKey, Certificate, ChainId, Config, Consensus, Epoch, Event, Header, Height,
    MAX_BLOCKS_PER_RESPONSE, Message, Offence, Scheme, Signable, SignedProposal, SignedVote, TestScheme, Timing,
    ValidatorEntry, ValidatorIndex, ValidatorSet, View, Vote, VoteKind, hash_bytes,
};
use vanna_signer::{MemoryBackend, ProtectionStore, Signer};

pub use network::NetworkProfile;
use network::{Network, SimEvent};
use rng::Rng;

/// The chain id every simulated signature is bound to.
pub const SIM_CHAIN: ChainId = ChainId(0x5157);
/// Blocks every honest node must finalize after the network stabilises.
const BLOCKS_AFTER_STABLE: u64 = 5;
/// Virtual time allowed after stabilisation before liveness counts as failed.
const LIVENESS_DEADLINE_MS: u64 = 120_000;
/// Events processed at most per run (a bound on a runaway seed).
const MAX_EVENTS: u64 = 5_000_000;

/// Schemes the simulator can derive keys for.
pub trait SimScheme: Scheme {
    fn secret_key(seed: u64, index: usize) -> Self::SecretKey;
}

impl SimScheme for TestScheme {
    fn secret_key(seed: u64, index: usize) -> u64 {
        // Distinct per index by construction.
        ((index as u64 + 1) << 40) ^ (seed & 0xff_ffff_ffff)
    }
}

impl SimScheme for Bls {
    fn secret_key(seed: u64, index: usize) -> BlsSecretKey {
        let mut input = seed.to_be_bytes().to_vec();
        input.extend_from_slice(&(index as u64).to_be_bytes());
        let ikm = hash_bytes(b"vanna/sim/key", &input);
        BlsSecretKey::from_seed(&ikm).expect("32-byte seed")
    }
}

/// What a byzantine validator does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Byzantine {
    /// Sends nothing at all.
    Silent,
    /// Votes honestly to half the network and for a conflicting block to the
    /// other half; adds a nullify to its finalize votes.
    DoubleVoter,
    /// As leader, sends one proposal to half the network and a different one to the other half.
    EquivocatingLeader,
}

#[derive(Debug, Clone, Serialize)]
pub struct SimConfig {
    pub validators: usize,
    pub byzantine: usize,
    pub partitions: bool,
    pub crashes: bool,
    /// Heights per epoch; each epoch runs a fresh engine (same validator set).
    pub epoch_length: Option<u64>,
    /// Real BLS signatures instead of the cheap test scheme.
    pub bls: bool,
    /// Stop once every honest node finalized this many blocks after stabilisation.
    pub blocks_after_stable: u64,
}

impl SimConfig {
    pub fn new(validators: usize, byzantine: usize) -> Self {
        Self {
            validators,
            byzantine,
            partitions: false,
            crashes: false,
            epoch_length: None,
            bls: false,
            blocks_after_stable: BLOCKS_AFTER_STABLE,
        }
    }
}

/// The outcome of one seed.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub seed: u64,
    /// Most views any honest node went through.
    pub views: u64,
    /// Length of the finalized chain.
    pub blocks_finalized: u64,
    pub violations: Vec<String>,
    /// Views entered from stabilisation until the slowest honest node finalized
    /// again (a jump over several views counts as one).
    pub recovery_views: u64,
    pub evidence: u64,
    pub signatures_refused: u64,
    pub virtual_ms: u64,
    pub messages: u64,
}

/// Runs one seed under the scheme the configuration asks for.
pub fn run_seed(config: &SimConfig, seed: u64) -> RunReport {
    if config.bls {
        Simulation::<Bls>::new(config, seed).run()
    } else {
        Simulation::<TestScheme>::new(config, seed).run()
    }
}

/// Totals over many seeds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub seeds: u64,
    pub views: u64,
    pub blocks_finalized: u64,
    pub violations: u64,
    pub slowest_recovery_views: u64,
    pub slowest_recovery_seed: u64,
    pub evidence: u64,
    pub signatures_refused: u64,
    pub messages: u64,
    /// The first violations found, with their seeds, to reproduce with `--seed-start`.
    pub violation_samples: Vec<String>,
}

impl Summary {
    pub fn add(&mut self, report: &RunReport) {
        self.seeds += 1;
        self.views += report.views;
        self.blocks_finalized += report.blocks_finalized;
        self.violations += report.violations.len() as u64;
        if report.recovery_views >= self.slowest_recovery_views {
            self.slowest_recovery_views = report.recovery_views;
            self.slowest_recovery_seed = report.seed;
        }
        self.evidence += report.evidence;
        self.signatures_refused += report.signatures_refused;
        self.messages += report.messages;
        for violation in report.violations.iter().take(3) {
            if self.violation_samples.len() < 20 {
                self.violation_samples.push(format!("seed {}: {violation}", report.seed));
            }
        }
    }
}

/// A bound on views to recover after stabilisation: every faulty leader in a
/// row costs a view, plus slack for timeouts still backed off from before.
pub fn liveness_bound_views(config: &SimConfig) -> u64 {
    4 * config.validators as u64 + 24
}

/// The durable part of a node, which survives a crash: its block store's tip
/// and its protection store.
#[derive(Debug, Clone)]
struct Durable<S: Scheme> {
    tip: Header,
    /// The certificate made durable with `tip` (its `Finalized` proof).
    proof: Option<Certificate<S>>,
    disk: MemoryBackend,
}

/// (signer, epoch, view): where equivocations are looked for.
type SeenKey = (ValidatorIndex, Epoch, View);

struct Node<S: SimScheme> {
    secret: S::SecretKey,
    index: ValidatorIndex,
    role: Option<Byzantine>,
    engine: Option<Consensus<S>>,
    /// The node's block store: every finalized block (the node's sync service
    /// answers block requests from it, as the engine only keeps recent ones).
    store: BTreeMap<BlockHash, (Header, Vec<u8>)>,
    /// The certificate that finalized each finished epoch's last block, sent
    /// to validators still in that epoch.
    epoch_ends: BTreeMap<Epoch, (Header, Certificate<S>)>,
    signer: Option<Signer<S, MemoryBackend>>,
    durable: Durable<S>,
    incarnation: u64,
    clock_skew_ms: i64,
    /// Signed messages seen per (signer, epoch, view) while the view was tracked: the evidence oracle.
    seen: BTreeMap<SeenKey, Vec<(Signable, S::Signature)>>,
    expected_evidence: BTreeSet<(ValidatorIndex, Epoch, View)>,
    found_evidence: BTreeSet<(ValidatorIndex, Epoch, View)>,
    /// Views gone through (jumps count the views skipped).
    views_total: u64,
    /// Views entered (a jump counts once): what recovery is measured in, so a
    /// node catching up to views the others passed before stabilisation is not
    /// charged for them.
    view_changes: u64,
    last_view: (Epoch, View),
    views_at_stable: Option<u64>,
    blocks_after_stable: u64,
    recovery_views: Option<u64>,
}

struct Simulation<'a, S: SimScheme> {
    config: &'a SimConfig,
    seed: u64,
    rng: Rng,
    validators: Arc<ValidatorSet<S>>,
    nodes: Vec<Node<S>>,
    network: Network<S>,
    canonical: BTreeMap<Height, BlockHash>,
    violations: Vec<String>,
    evidence: u64,
    refused: u64,
    stable_at_ms: u64,
}

fn timing() -> Timing {
    Timing { leader_timeout_ms: 250, retry_ms: 200, max_backoff_exponent: 4, max_clock_drift_ms: 500 }
}

impl<'a, S: SimScheme> Simulation<'a, S> {
    fn new(config: &'a SimConfig, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let n = config.validators.max(1);
        let secrets: Vec<S::SecretKey> = (0..n).map(|i| S::secret_key(seed, i)).collect();
        let entries = secrets
            .iter()
            .enumerate()
            .map(|(i, s)| ValidatorEntry { public_key: S::public_key(s), operator: vec![i as u8], power: 1 })
            .collect();
        let validators = Arc::new(ValidatorSet::new(entries).expect("distinct simulated keys"));
        let genesis = Header::genesis(Epoch(0), 0, [0; 32]);
        // Byzantine validators: the last `byzantine` positions in set order, each with a seeded behaviour.
        let byzantine = config.byzantine.min(n);
        let behaviours = [Byzantine::Silent, Byzantine::DoubleVoter, Byzantine::EquivocatingLeader];
        let first_behaviour = rng.below(3) as usize;
        let profile = NetworkProfile::draw(&mut rng, config);
        let mut nodes = Vec::with_capacity(n);
        for secret in secrets {
            let index = validators.index_of(&S::public_key(&secret)).expect("member");
            let position = index.0 as usize;
            let role = (position >= n - byzantine).then(|| behaviours[(first_behaviour + position) % 3]);
            let clock_skew_ms = rng.below(101) as i64 - 50;
            nodes.push(Node {
                secret,
                index,
                role,
                engine: None,
                store: BTreeMap::new(),
                epoch_ends: BTreeMap::new(),
                signer: None,
                durable: Durable { tip: genesis.clone(), proof: None, disk: MemoryBackend::default() },
                incarnation: 0,
                clock_skew_ms,
                seen: BTreeMap::new(),
                expected_evidence: BTreeSet::new(),
                found_evidence: BTreeSet::new(),
                views_total: 0,
                view_changes: 0,
                last_view: (Epoch(0), View(0)),
                views_at_stable: None,
                blocks_after_stable: 0,
                recovery_views: None,
            });
        }
        nodes.sort_by_key(|node| node.index);
        let network = Network::new(profile);
        let stable_at_ms = network.profile.stable_at_ms;
        Self {
            config,
            seed,
            rng,
            validators,
            nodes,
            network,
            canonical: BTreeMap::new(),
            violations: Vec::new(),
            evidence: 0,
            refused: 0,
            stable_at_ms,
        }
    }

    fn honest(&self, node: usize) -> bool {
        self.nodes[node].role.is_none()
    }

    fn run(mut self) -> RunReport {
        for node in 0..self.nodes.len() {
            self.start(node, 0);
        }
        let crash_budget = (self.nodes.len().saturating_sub(1) / 3).saturating_sub(self.config.byzantine);
        let crash_plan = self.network.plan_faults(
            &mut self.rng,
            self.config,
            crash_budget,
            self.nodes.len() - self.config.byzantine.min(self.nodes.len()),
        );
        for (at, event) in crash_plan {
            self.network.schedule(at, event);
        }
        self.network.schedule(self.stable_at_ms, SimEvent::Stable);
        let deadline = self.stable_at_ms + LIVENESS_DEADLINE_MS;
        let mut processed = 0u64;
        while let Some((now, event)) = self.network.next() {
            if now > deadline || processed >= MAX_EVENTS {
                break;
            }
            processed += 1;
            self.dispatch(now, event);
            if processed.is_multiple_of(64) && self.finished() {
                break;
            }
        }
        self.finish()
    }

    fn finished(&self) -> bool {
        (0..self.nodes.len())
            .filter(|n| self.honest(*n))
            .all(|n| self.nodes[n].blocks_after_stable >= self.config.blocks_after_stable)
    }

    fn finish(mut self) -> RunReport {
        let bound = liveness_bound_views(self.config);
        let mut recovery = 0;
        for node in 0..self.nodes.len() {
            if !self.honest(node) {
                continue;
            }
            let state = &self.nodes[node];
            match state.recovery_views {
                Some(views) => {
                    recovery = recovery.max(views);
                    if views > bound {
                        let message = format!(
                            "liveness: node {node} took {views} views to finalize after stabilisation (bound {bound})"
                        );
                        self.violations.push(message);
                    }
                }
                None => self.violations.push(format!("liveness: node {node} never finalized after stabilisation")),
            }
            for missing in state.expected_evidence.difference(&state.found_evidence) {
                self.violations
                    .push(format!("node {node} saw an equivocation by {missing:?} without producing evidence"));
            }
        }
        RunReport {
            seed: self.seed,
            views: self.nodes.iter().map(|n| n.views_total).max().unwrap_or(0),
            blocks_finalized: self.canonical.keys().next_back().map_or(0, |h| h.0),
            violations: self.violations,
            recovery_views: recovery,
            evidence: self.evidence,
            signatures_refused: self.refused,
            virtual_ms: self.network.now_ms,
            messages: self.network.delivered,
        }
    }

    fn epoch_of(&self, height: Height) -> (Epoch, Option<Height>) {
        match self.config.epoch_length {
            None => (Epoch(0), None),
            Some(length) => {
                let length = length.max(1);
                // Epoch e holds heights e*L+1 ..= (e+1)*L; a tip at e*L starts epoch e.
                let epoch = height.0 / length;
                (Epoch(epoch), Some(Height((epoch + 1) * length)))
            }
        }
    }

    fn engine_config(&self, node: usize) -> Config<S> {
        let durable = &self.nodes[node].durable;
        let (epoch, last_height) = self.epoch_of(durable.tip.height);
        // A tip that ends an epoch anchors the next one at view 0.
        let anchor_proof = durable.proof.clone().filter(|proof| proof.vote.epoch == epoch);
        Config {
            chain: SIM_CHAIN,
            epoch,
            validators: Arc::clone(&self.validators),
            me: Some(self.nodes[node].index),
            anchor: durable.tip.clone(),
            anchor_proof,
            last_height,
            timing: timing(),
            max_payload_bytes: 1024,
            view_window: 64,
        }
    }

    fn start(&mut self, node: usize, now: u64) {
        if self.nodes[node].role == Some(Byzantine::Silent) {
            return;
        }
        let state = &mut self.nodes[node];
        state.incarnation += 1;
        state.seen.clear();
        let store = ProtectionStore::open(SIM_CHAIN, state.durable.disk.clone()).expect("memory store");
        state.signer = Some(Signer::new(state.secret.clone(), store));
        let config = self.engine_config(node);
        let local = self.local_time(node, now);
        let (engine, actions) = Consensus::new(config, local).expect("the durable anchor is consistent");
        self.nodes[node].engine = Some(engine);
        self.perform(node, now, actions);
    }

    fn local_time(&self, node: usize, now: u64) -> u64 {
        now.saturating_add_signed(self.nodes[node].clock_skew_ms)
    }

    fn dispatch(&mut self, now: u64, event: SimEvent<S>) {
        match event {
            SimEvent::Deliver { to, from, message } => self.deliver(now, to, from, message),
            SimEvent::Timer { node, incarnation, epoch, view, kind } => {
                let state = &self.nodes[node];
                if state.incarnation != incarnation || state.engine.as_ref().is_none_or(|e| e.config().epoch != epoch) {
                    return;
                }
                self.feed(node, now, Event::Timeout { view, kind });
            }
            SimEvent::Crash { node } => {
                let state = &mut self.nodes[node];
                state.engine = None;
                state.signer = None;
                state.incarnation += 1;
                state.seen.clear();
            }
            SimEvent::Restart { node } => {
                if self.nodes[node].engine.is_none() {
                    self.start(node, now);
                }
            }
            SimEvent::Stable => {
                for state in &mut self.nodes {
                    state.views_at_stable = Some(state.view_changes);
                }
            }
        }
    }

    fn message_epoch(message: &Message<S>) -> Option<Epoch> {
        match message {
            Message::Proposal(p) => Some(p.header.epoch),
            Message::Vote(v) => Some(v.vote.epoch),
            Message::Certified { certificate, .. } | Message::Nullification(certificate) => {
                Some(certificate.vote.epoch)
            }
            Message::Status { epoch, .. } => Some(*epoch),
            Message::BlockRequest { .. } | Message::BlockResponse { .. } => None,
        }
    }

    fn deliver(&mut self, now: u64, to: usize, from: usize, message: Message<S>) {
        let Some(engine) = self.nodes[to].engine.as_ref() else {
            return;
        };
        let epoch = Self::message_epoch(&message);
        let current = engine.config().epoch;
        if let Some(epoch) = epoch
            && epoch != current
        {
            // Stragglers in a finished epoch get the certificate that ended it
            // (in reply to their votes and proposals only, so replies never echo).
            let from_straggler = matches!(message, Message::Proposal(_) | Message::Vote(_) | Message::Status { .. });
            if let Some((header, certificate)) = self.nodes[to].epoch_ends.get(&epoch).filter(|_| from_straggler) {
                let reply = Message::Certified { header: Some(header.clone()), certificate: certificate.clone() };
                self.network.send(&mut self.rng, now, to, from, reply);
            }
            return;
        }
        if let Message::BlockRequest { block } = &message
            && self.nodes[to].store.contains_key(block)
        {
            let mut blocks = Vec::new();
            let mut cursor = *block;
            while let Some((header, payload)) = self.nodes[to].store.get(&cursor) {
                if blocks.len() == MAX_BLOCKS_PER_RESPONSE {
                    break;
                }
                blocks.push((header.clone(), payload.clone()));
                cursor = header.parent;
            }
            self.network.send(&mut self.rng, now, to, from, Message::BlockResponse { blocks });
            return;
        }
        if self.honest(to) {
            self.observe(to, &message);
        }
        let from = self.nodes[from].index;
        self.feed(to, now, Event::Message { from, message });
    }

    /// The evidence oracle: remembers signed messages per signer and view while
    /// the receiver still tracks the view, and expects evidence for conflicts.
    fn observe(&mut self, node: usize, message: &Message<S>) {
        let Some(engine) = self.nodes[node].engine.as_ref() else {
            return;
        };
        let (signer, signable, signature) = match message {
            Message::Proposal(p) if p.payload.len() <= engine.config().max_payload_bytes => {
                (self.validators.leader(p.view), p.signable(), p.signature.clone())
            }
            Message::Vote(v) => (v.signer, Signable::Vote(v.vote), v.signature.clone()),
            _ => return,
        };
        if !engine.tracks_view(signable.view()) || signable.epoch() != engine.config().epoch {
            return;
        }
        let key = (signer, signable.epoch(), signable.view());
        let seen = self.nodes[node].seen.entry(key).or_default();
        if seen.iter().any(|(previous, _)| *previous == signable) {
            return;
        }
        let conflict = seen.iter().find(|(previous, _)| Offence::between(previous, &signable).is_some()).cloned();
        seen.push((signable, signature.clone()));
        // Signatures are checked only for conflicts (rare), so the oracle does
        // not dominate the cost the benchmark measures.
        if let Some((previous, previous_signature)) = conflict
            && self.signature_valid(signer, &previous, &previous_signature)
            && self.signature_valid(signer, &signable, &signature)
        {
            self.nodes[node].expected_evidence.insert(key);
        }
    }

    fn signature_valid(&self, signer: ValidatorIndex, message: &Signable, signature: &S::Signature) -> bool {
        self.validators
            .get(signer)
            .is_some_and(|e| S::verify(&e.public_key, &message.signing_bytes(SIM_CHAIN), signature))
    }

    fn feed(&mut self, node: usize, now: u64, event: Event<S>) {
        let local = self.local_time(node, now);
        let Some(engine) = self.nodes[node].engine.as_mut() else {
            return;
        };
        let actions = engine.handle(local, event);
        self.perform(node, now, actions);
    }

    fn perform(&mut self, node: usize, now: u64, actions: Vec<Action<S>>) {
        let mut queue: std::collections::VecDeque<Action<S>> = actions.into();
        while let Some(action) = queue.pop_front() {
            let follow_up = self.perform_one(node, now, action);
            queue.extend(follow_up);
        }
        self.roll_epoch(node, now);
        self.track_views(node);
    }

    fn track_views(&mut self, node: usize) {
        let state = &mut self.nodes[node];
        let Some(engine) = state.engine.as_ref() else {
            return;
        };
        let current = (engine.config().epoch, engine.view());
        if current.0 == state.last_view.0 {
            state.views_total += current.1.0.saturating_sub(state.last_view.1.0);
        } else {
            state.views_total += current.1.0;
        }
        if current != state.last_view {
            state.view_changes += 1;
        }
        state.last_view = current;
    }

    fn perform_one(&mut self, node: usize, now: u64, action: Action<S>) -> Vec<Action<S>> {
        let local = self.local_time(node, now);
        match action {
            Action::Broadcast(message) => {
                self.broadcast(node, now, message);
                Vec::new()
            }
            Action::Send { to, message } => {
                self.network.send(&mut self.rng, now, node, to.0 as usize, message);
                Vec::new()
            }
            Action::ScheduleTimeout { view, kind, after_ms } => {
                let state = &self.nodes[node];
                let Some(engine) = state.engine.as_ref() else {
                    return Vec::new();
                };
                let event =
                    SimEvent::Timer { node, incarnation: state.incarnation, epoch: engine.config().epoch, view, kind };
                self.network.schedule(now + after_ms, event);
                Vec::new()
            }
            Action::RequestProposal { view, parent } => {
                let payload = self.payload(node, view);
                let event = Event::ProposalPayload {
                    view,
                    block_time_ms: local,
                    state_root: state_after(&parent),
                    transactions_root: hash_bytes(b"vanna/sim/txs", &payload),
                    payload,
                };
                self.engine_handle(node, local, event)
            }
            Action::VerifyProposal { view, parent, header, payload } => {
                let valid = header.state_root == state_after(&parent)
                    && header.transactions_root == hash_bytes(b"vanna/sim/txs", &payload);
                self.engine_handle(node, local, Event::ProposalVerified { view, block: header.hash(), valid })
            }
            Action::Sign(message) => {
                let signature = if self.honest(node) {
                    let Some(signer) = self.nodes[node].signer.as_mut() else {
                        return Vec::new();
                    };
                    match signer.sign(&message) {
                        Ok(signature) => signature,
                        Err(_) => {
                            self.refused += 1;
                            return Vec::new();
                        }
                    }
                } else {
                    S::sign(&self.nodes[node].secret, &message.signing_bytes(SIM_CHAIN))
                };
                self.engine_handle(node, local, Event::Signed { message, signature })
            }
            Action::Finalized { header, payload, proof } => {
                self.on_finalized(node, header, payload, proof);
                Vec::new()
            }
            Action::Evidence(evidence) => {
                self.evidence += 1;
                let offender = evidence.offender;
                let epoch = self.nodes[node].engine.as_ref().map_or(Epoch(0), |e| e.config().epoch);
                match evidence.verify(SIM_CHAIN, epoch, &self.validators) {
                    Ok(_) => {}
                    Err(error) => self.violations.push(format!("node {node} produced invalid evidence: {error}")),
                }
                let offender_position = offender.0 as usize;
                if self.nodes.get(offender_position).is_none_or(|n| n.role.is_none()) {
                    self.violations
                        .push(format!("node {node} produced evidence against honest validator {}", offender.0));
                }
                let key = (offender, evidence.first.message.epoch(), evidence.first.message.view());
                self.nodes[node].found_evidence.insert(key);
                Vec::new()
            }
            Action::Misbehaving { peer, fault } => {
                if self.honest(node) && self.nodes.get(peer.0 as usize).is_some_and(|n| n.role.is_none()) {
                    self.violations.push(format!("node {node} reported honest validator {} for {fault:?}", peer.0));
                }
                Vec::new()
            }
        }
    }

    fn engine_handle(&mut self, node: usize, local: u64, event: Event<S>) -> Vec<Action<S>> {
        self.nodes[node].engine.as_mut().map_or_else(Vec::new, |engine| engine.handle(local, event))
    }

    fn payload(&mut self, node: usize, view: View) -> Vec<u8> {
        let mut payload = self.seed.to_be_bytes().to_vec();
        payload.extend_from_slice(&(node as u64).to_be_bytes());
        payload.extend_from_slice(&view.0.to_be_bytes());
        payload.extend_from_slice(&self.rng.next().to_be_bytes());
        payload
    }

    fn broadcast(&mut self, node: usize, now: u64, message: Message<S>) {
        let n = self.nodes.len();
        let conflicting = match (self.nodes[node].role, &message) {
            (Some(Byzantine::DoubleVoter), Message::Vote(vote)) => match vote.vote.kind {
                VoteKind::Notarize { height, block } => {
                    let other = BlockHash(hash_bytes(b"vanna/sim/other", &block.0));
                    let kind = VoteKind::Notarize { height, block: other };
                    Some(self.byzantine_vote(node, Vote { kind, ..vote.vote }))
                }
                // Contradicts the finality rule.
                VoteKind::Finalize { .. } => {
                    Some(self.byzantine_vote(node, Vote { kind: VoteKind::Nullify, ..vote.vote }))
                }
                VoteKind::Nullify => None,
            },
            (Some(Byzantine::EquivocatingLeader), Message::Proposal(proposal)) => {
                Some(Message::Proposal(self.second_proposal(node, proposal)))
            }
            _ => None,
        };
        for to in (0..n).filter(|t| *t != node) {
            let Some(second) = conflicting.as_ref() else {
                self.network.send(&mut self.rng, now, node, to, message.clone());
                continue;
            };
            // Each peer gets the honest message, the conflicting one, or both:
            // splitting the network is the attack, overlap is what detection sees.
            match self.rng.below(3) {
                0 => self.network.send(&mut self.rng, now, node, to, message.clone()),
                1 => self.network.send(&mut self.rng, now, node, to, second.clone()),
                _ => {
                    self.network.send(&mut self.rng, now, node, to, second.clone());
                    self.network.send(&mut self.rng, now, node, to, message.clone());
                }
            }
        }
    }

    fn byzantine_vote(&self, node: usize, vote: Vote) -> Message<S> {
        let signature = S::sign(&self.nodes[node].secret, &Signable::Vote(vote).signing_bytes(SIM_CHAIN));
        Message::Vote(SignedVote { vote, signer: self.nodes[node].index, signature })
    }

    fn second_proposal(&self, node: usize, proposal: &SignedProposal<S>) -> SignedProposal<S> {
        let mut payload = proposal.payload.clone();
        payload.push(0xff);
        let mut header = proposal.header.clone();
        if header.view == proposal.view {
            header.transactions_root = hash_bytes(b"vanna/sim/txs", &payload);
            header.payload_hash = Header::payload_hash_of(&payload);
        } else {
            // A re-proposal: equivocate on the block itself.
            header.block_time_ms += 1;
        }
        let mut second = SignedProposal { payload, header, ..proposal.clone() };
        second.signature = S::sign(&self.nodes[node].secret, &second.signable().signing_bytes(SIM_CHAIN));
        second
    }

    fn on_finalized(&mut self, node: usize, header: Header, payload: Vec<u8>, proof: Certificate<S>) {
        let hash = header.hash();
        let proof_view = proof.vote.view;
        let proof_certificate = proof.clone();
        if self.config.epoch_length.is_some_and(|length| header.height.0.is_multiple_of(length.max(1))) {
            self.nodes[node].epoch_ends.insert(header.epoch, (header.clone(), proof));
        }
        self.nodes[node].store.insert(hash, (header.clone(), payload));
        let honest = self.honest(node);
        let state = &mut self.nodes[node];
        if honest {
            if header.height.0 != state.durable.tip.height.0 + 1 || header.parent != state.durable.tip.hash() {
                let message = format!(
                    "node {node} finalized height {} not extending its tip {}",
                    header.height.0, state.durable.tip.height.0
                );
                self.violations.push(message);
            }
            match self.canonical.get(&header.height) {
                Some(existing) if *existing != hash => {
                    self.violations.push(format!("safety: conflicting blocks finalized at height {}", header.height.0));
                }
                Some(_) => {}
                None => {
                    self.canonical.insert(header.height, hash);
                }
            }
        }
        let state = &mut self.nodes[node];
        state.durable.tip = header;
        state.durable.proof = Some(proof_certificate);
        if let Some(at_stable) = state.views_at_stable {
            state.blocks_after_stable += 1;
            if state.recovery_views.is_none() {
                state.recovery_views = Some(state.view_changes.saturating_sub(at_stable));
            }
        }
        // Prune the protection history below the finalized view: the engine never signs there again.
        let epoch = state.durable.tip.epoch;
        if let Some(signer) = state.signer.as_mut()
            && proof_view.0 > 0
        {
            let _ = signer.store_mut().prune_through(epoch, View(proof_view.0 - 1));
        }
    }

    /// Called after every batch of actions: an engine that finished its epoch
    /// hands over to the next one.
    fn roll_epoch(&mut self, node: usize, now: u64) {
        let done = self.nodes[node].engine.as_ref().is_some_and(|e| e.is_done());
        if !done {
            return;
        }
        let config = self.engine_config(node);
        let local = self.local_time(node, now);
        let (engine, actions) = Consensus::new(config, local).expect("the previous epoch's end anchors the next");
        let state = &mut self.nodes[node];
        state.engine = Some(engine);
        state.seen.clear();
        self.perform(node, now, actions);
    }
}

/// The simulated application's "execution": the state root after a block.
fn state_after(parent: &Header) -> [u8; 32] {
    let mut input = parent.state_root.to_vec();
    input.extend_from_slice(&parent.transactions_root);
    hash_bytes(b"vanna/sim/state", &input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_is_reproducible() {
        let mut config = SimConfig::new(4, 1);
        config.partitions = true;
        let a = run_seed(&config, 42);
        let b = run_seed(&config, 42);
        assert_eq!(a.messages, b.messages);
        assert_eq!(a.blocks_finalized, b.blocks_finalized);
        assert_eq!(a.violations, b.violations);
        assert!(a.blocks_finalized >= BLOCKS_AFTER_STABLE);
    }
}
