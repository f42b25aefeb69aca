//! The simulated world: validators with their engines, block stores and
//! protection stores, the network, the faults, and the checks. Key material
//! lives here only: the attacker (`crate::adversary`) is handed its own
//! secret key and nothing else.

mod mac;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use vanna_consensus::{
    Action, BlockHash, Bls, BlsSecretKey, Certificate, Config, Consensus, Epoch, Event, Header, Height,
    MAX_BLOCKS_PER_RESPONSE, Message, Offence, Scheme, Signable, Timing, ValidatorEntry, ValidatorIndex, ValidatorSet,
    View, hash_bytes,
};
use vanna_signer::{MemoryBackend, ProtectionStore, Signer, WriteFault};

use crate::adversary::{Adversary, Outgoing};
use crate::network::{Network, NetworkProfile, SimEvent};
use crate::rng::Rng;
use crate::{Attack, Byzantine, RunReport, SIM_CHAIN, SimConfig, liveness_bound_views};
use mac::MacScheme;

/// Virtual time allowed after stabilisation before liveness counts as failed.
const LIVENESS_DEADLINE_MS: u64 = 120_000;
/// Events processed at most per run (a bound on a runaway seed).
const MAX_EVENTS: u64 = 5_000_000;
/// Virtual time the application takes to build a proposal's payload.
const BUILD_MS: u64 = 1;
/// Heights per epoch when validator sets change and no length was given.
const SETS_EPOCH_LENGTH: u64 = 6;
/// Chance (per mille) that a protection-store write suffers a fault, and that
/// a node crashes right after making a finalized block durable (with `disk`).
const DISK_FAULT_PER_MILLE: u64 = 20;
/// Disk faults and crashes inside a batch stop this long before stabilisation,
/// so every node is back by then.
const FAULTS_END_BEFORE_STABLE_MS: u64 = 1_500;

/// Key derivation, private to the world.
trait KeyGen: Scheme {
    fn secret_key(seed: u64, index: usize) -> Self::SecretKey;
}

impl KeyGen for MacScheme {
    fn secret_key(seed: u64, index: usize) -> Self::SecretKey {
        mac::derive(seed, index)
    }
}

impl KeyGen for Bls {
    fn secret_key(seed: u64, index: usize) -> BlsSecretKey {
        let mut input = seed.to_be_bytes().to_vec();
        input.extend_from_slice(&(index as u64).to_be_bytes());
        let ikm = hash_bytes(b"vanna/sim/key", &input);
        BlsSecretKey::from_seed(&ikm).expect("32-byte seed")
    }
}

pub(crate) fn run_mac(config: &SimConfig, seed: u64) -> RunReport {
    Simulation::<MacScheme>::new(config, seed).run()
}

pub(crate) fn run_bls(config: &SimConfig, seed: u64) -> RunReport {
    Simulation::<Bls>::new(config, seed).run()
}

/// The durable part of a node, which survives a crash: its block store's tip
/// with the certificate made durable with it, and its protection store.
#[derive(Debug, Clone)]
struct Durable<S: Scheme> {
    tip: Header,
    proof: Option<Certificate<S>>,
    disk: MemoryBackend,
}

/// (signer, epoch, view): where equivocations are looked for.
type SeenKey = (ValidatorIndex, Epoch, View);

struct Node<S: KeyGen> {
    secret: S::SecretKey,
    index: ValidatorIndex,
    role: Option<Byzantine>,
    adversary: Option<Adversary<S>>,
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
    expected_evidence: BTreeSet<SeenKey>,
    found_evidence: BTreeSet<SeenKey>,
    /// Peers this node reported as misbehaving, per epoch (its engine ignores them).
    reported: BTreeSet<(Epoch, ValidatorIndex)>,
    /// Certificates the engine accepted since the last finalization (durable).
    journal: Vec<(Option<Header>, Certificate<S>)>,
    /// Everything this node ever signed, across restarts: the double-sign oracle.
    signed: BTreeMap<(Epoch, View), Vec<Signable>>,
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

struct Simulation<'a, S: KeyGen> {
    config: &'a SimConfig,
    seed: u64,
    rng: Rng,
    epoch_length: Option<u64>,
    publics: Vec<S::PublicKey>,
    sets: BTreeMap<Epoch, Arc<ValidatorSet<S>>>,
    nodes: Vec<Node<S>>,
    network: Network<S>,
    canonical: BTreeMap<Height, BlockHash>,
    violations: Vec<String>,
    evidence: u64,
    refused: u64,
    reports: u64,
    stable_at_ms: u64,
    /// Set when a fault crashed the node whose actions are being performed.
    crashed_mid_batch: bool,
}

fn timing() -> Timing {
    Timing { leader_timeout_ms: 250, retry_ms: 200, max_backoff_exponent: 4, max_clock_drift_ms: 500 }
}

impl<'a, S: KeyGen> Simulation<'a, S> {
    fn new(config: &'a SimConfig, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let n = config.validators.max(1);
        let attacks = config.attacks;
        let secrets: Vec<S::SecretKey> = (0..n).map(|i| S::secret_key(seed, i)).collect();
        let mut publics: Vec<S::PublicKey> = secrets.iter().map(S::public_key).collect();
        // Positions follow the set's order (by key), which every epoch's set shares.
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|i| S::public_key_bytes(&publics[*i]));
        let secrets: Vec<S::SecretKey> = order.iter().map(|i| secrets[*i].clone()).collect();
        publics = order.iter().map(|i| publics[*i].clone()).collect();
        let genesis = Header::genesis(Epoch(0), 0, [0; 32]);
        // Byzantine validators: the last `byzantine` positions, each with a seeded behaviour.
        let byzantine = config.byzantine.min(n);
        let behaviours = [Byzantine::Silent, Byzantine::DoubleVoter, Byzantine::EquivocatingLeader];
        let first_behaviour = rng.below(3) as usize;
        let profile = NetworkProfile::draw(&mut rng, config);
        // Any two clocks differ by at most the allowed drift.
        let skew_ms_max = if attacks.contains(Attack::Skew) { timing().max_clock_drift_ms / 2 } else { 50 };
        let mut nodes = Vec::with_capacity(n);
        for (position, secret) in secrets.into_iter().enumerate() {
            let role = (position >= n - byzantine).then(|| {
                if attacks.is_empty() { behaviours[(first_behaviour + position) % 3] } else { Byzantine::Attacker }
            });
            let adversary = (role == Some(Byzantine::Attacker))
                .then(|| Adversary::new(position, secret.clone(), SIM_CHAIN, attacks, seed));
            let clock_skew_ms = rng.below(2 * skew_ms_max + 1) as i64 - skew_ms_max as i64;
            nodes.push(Node {
                secret,
                index: ValidatorIndex(position as u32),
                role,
                adversary,
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
                reported: BTreeSet::new(),
                journal: Vec::new(),
                signed: BTreeMap::new(),
                views_total: 0,
                view_changes: 0,
                last_view: (Epoch(0), View(0)),
                views_at_stable: None,
                blocks_after_stable: 0,
                recovery_views: None,
            });
        }
        let network = Network::new(profile);
        let stable_at_ms = network.profile.stable_at_ms;
        let epoch_length = config.epoch_length.or(attacks.contains(Attack::Sets).then_some(SETS_EPOCH_LENGTH));
        Self {
            config,
            seed,
            rng,
            epoch_length,
            publics,
            sets: BTreeMap::new(),
            nodes,
            network,
            canonical: BTreeMap::new(),
            violations: Vec::new(),
            evidence: 0,
            refused: 0,
            reports: 0,
            stable_at_ms,
            crashed_mid_batch: false,
        }
    }

    /// The validator set of `epoch`: the same keys, and with `sets` honest
    /// powers of 1 to 3 drawn per epoch (byzantine ones stay 1, so they keep
    /// less than a third of the power).
    fn set(&mut self, epoch: Epoch) -> Arc<ValidatorSet<S>> {
        if let Some(set) = self.sets.get(&epoch) {
            return Arc::clone(set);
        }
        let changing = self.config.attacks.contains(Attack::Sets);
        let entries = self
            .publics
            .iter()
            .enumerate()
            .map(|(position, key)| {
                let mut power = 1;
                if changing && self.nodes[position].role.is_none() && epoch.0 > 0 {
                    let mut input = self.seed.to_be_bytes().to_vec();
                    input.extend_from_slice(&epoch.0.to_be_bytes());
                    input.extend_from_slice(&(position as u64).to_be_bytes());
                    power = 1 + u64::from(hash_bytes(b"vanna/sim/power", &input)[0] % 3);
                }
                ValidatorEntry { public_key: key.clone(), operator: vec![position as u8], power }
            })
            .collect();
        let set = Arc::new(ValidatorSet::new(entries).expect("distinct simulated keys"));
        self.sets.insert(epoch, Arc::clone(&set));
        set
    }

    fn honest(&self, node: usize) -> bool {
        self.nodes[node].role.is_none()
    }

    fn run(mut self) -> RunReport {
        for node in 0..self.nodes.len() {
            self.start(node, 0);
        }
        let n = self.nodes.len();
        let honest = n - self.config.byzantine.min(n);
        let crash_budget = if self.config.attacks.contains(Attack::Outage) {
            honest
        } else {
            (n.saturating_sub(1) / 3).saturating_sub(self.config.byzantine)
        };
        let crash_plan = self.network.plan_faults(&mut self.rng, self.config, crash_budget, honest);
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
            // A peer the node reported is ignored by its engine from then on.
            for missing in state.expected_evidence.difference(&state.found_evidence) {
                if !state.reported.contains(&(missing.1, missing.0)) {
                    self.violations
                        .push(format!("node {node} saw an equivocation by {missing:?} without producing evidence"));
                }
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
            peers_reported: self.reports,
            virtual_ms: self.network.now_ms,
            messages: self.network.delivered,
        }
    }

    fn epoch_of(&self, height: Height) -> (Epoch, Option<Height>) {
        match self.epoch_length {
            None => (Epoch(0), None),
            Some(length) => {
                let length = length.max(1);
                // Epoch e holds heights e*L+1 ..= (e+1)*L; a tip at e*L starts epoch e.
                let epoch = height.0 / length;
                (Epoch(epoch), Some(Height((epoch + 1) * length)))
            }
        }
    }

    fn engine_config(&mut self, node: usize) -> Config<S> {
        let (epoch, last_height) = self.epoch_of(self.nodes[node].durable.tip.height);
        let validators = self.set(epoch);
        let durable = &self.nodes[node].durable;
        // A tip that ends an epoch anchors the next one at view 0.
        let anchor_proof = durable.proof.clone().filter(|proof| proof.vote.epoch == epoch);
        Config {
            chain: SIM_CHAIN,
            epoch,
            validators,
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
        match ProtectionStore::open(SIM_CHAIN, state.durable.disk.clone()) {
            Ok(store) => state.signer = Some(Signer::new(state.secret.clone(), store)),
            Err(error) => {
                // A torn tail is cut off on open; anything else is a simulator bug.
                self.violations.push(format!("node {node} could not open its protection store: {error}"));
                return;
            }
        }
        let config = self.engine_config(node);
        let (epoch, anchor_view) = (config.epoch, config.anchor_proof.as_ref().map_or(View(0), |p| p.vote.view));
        let local = self.local_time(node, now);
        let (engine, actions) = Consensus::new(config, local).expect("the durable anchor is consistent");
        self.nodes[node].engine = Some(engine);
        self.perform(node, now, actions);
        self.replay_after_restart(node, now, epoch, anchor_view);
    }

    /// A restarted node gets back the blocks it kept above its anchor and the
    /// certificates it journaled, and what it signed after its anchor is said
    /// again (see `Event::Block`, `Event::Certificate`, `Event::Signed`).
    fn replay_after_restart(&mut self, node: usize, now: u64, epoch: Epoch, anchor_view: View) {
        let anchor_height = self.nodes[node].durable.tip.height;
        let blocks: Vec<(Header, Vec<u8>)> = self.nodes[node]
            .store
            .values()
            .filter(|(header, _)| header.epoch == epoch && header.height > anchor_height)
            .cloned()
            .collect();
        for (header, payload) in blocks {
            self.feed(node, now, Event::Block { header, payload });
        }
        let journal: Vec<(Option<Header>, Certificate<S>)> =
            self.nodes[node].journal.iter().filter(|(_, c)| c.vote.epoch == epoch).cloned().collect();
        for (header, certificate) in journal {
            self.feed(node, now, Event::Certificate { header, certificate });
        }
        let Some(signer) = self.nodes[node].signer.as_mut() else {
            return;
        };
        let votes: Vec<Signable> = signer
            .store()
            .export()
            .records
            .iter()
            .filter_map(|record| record.to_signable().ok().flatten())
            .filter(|m| matches!(m, Signable::Vote(_)) && m.epoch() == epoch && m.view() > anchor_view)
            .collect();
        let mut signed = Vec::new();
        for message in votes {
            if let Ok(signature) = signer.sign(&message) {
                signed.push(Event::Signed { message, signature });
            }
        }
        for event in signed {
            self.feed(node, now, event);
        }
    }

    fn crash(&mut self, node: usize) {
        let state = &mut self.nodes[node];
        state.engine = None;
        state.signer = None;
        state.incarnation += 1;
        state.seen.clear();
    }

    /// A crash caused by a fault while the node works; it restarts shortly,
    /// before stabilisation (faults of this kind stop early enough).
    fn crash_now(&mut self, node: usize, now: u64) {
        self.crash(node);
        self.crashed_mid_batch = true;
        let back = now + self.rng.range(100, 600);
        self.network.schedule(back.min(self.stable_at_ms.saturating_sub(1)), SimEvent::Restart { node });
    }

    fn disk_faults_allowed(&self, node: usize, now: u64) -> bool {
        self.honest(node)
            && self.config.attacks.contains(Attack::Disk)
            && now + FAULTS_END_BEFORE_STABLE_MS < self.stable_at_ms
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
            SimEvent::Payload { node, incarnation, event } => {
                if self.nodes[node].incarnation == incarnation {
                    self.feed(node, now, event);
                }
            }
            SimEvent::Crash { node } => self.crash(node),
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
        if self.nodes[to].engine.is_none() {
            return;
        }
        let n = self.nodes.len();
        let lying = self.config.attacks.contains(Attack::Lying);
        if let Some(adversary) = self.nodes[to].adversary.as_mut() {
            let sends = adversary.on_receive(n, from, &message);
            self.send_all(now, to, sends);
            if lying && matches!(message, Message::BlockRequest { .. }) {
                return;
            }
        }
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
            self.observe(to, from, &message);
        }
        let from = self.nodes[from].index;
        self.feed(to, now, Event::Message { from, message });
    }

    fn send_all(&mut self, now: u64, from: usize, sends: Vec<Outgoing<S>>) {
        for Outgoing { to, message } in sends {
            self.network.send(&mut self.rng, now, from, to, message);
        }
    }

    /// The evidence oracle: remembers signed messages per signer and view while
    /// the receiver still tracks the view, and expects evidence for conflicts
    /// that arrived on their signer's own connection (the only ones the engine
    /// looks at).
    fn observe(&mut self, node: usize, from: usize, message: &Message<S>) {
        let Some(engine) = self.nodes[node].engine.as_ref() else {
            return;
        };
        let validators = Arc::clone(&engine.config().validators);
        let (signer, signable, signature) = match message {
            Message::Proposal(p)
                if p.payload.len() <= engine.config().max_payload_bytes
                    && (p.header.view != p.view || p.header.payload_hash == Header::payload_hash_of(&p.payload)) =>
            {
                (validators.leader(p.view), p.signable(), p.signature.clone())
            }
            Message::Vote(v) => (v.signer, Signable::Vote(v.vote), v.signature.clone()),
            _ => return,
        };
        if signer.0 as usize != from
            || !engine.tracks_view(signable.view())
            || signable.epoch() != engine.config().epoch
        {
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
        let valid = |message: &Signable, signature: &S::Signature| {
            validators
                .get(signer)
                .is_some_and(|e| S::verify(&e.public_key, &message.signing_bytes(SIM_CHAIN), signature))
        };
        if let Some((previous, previous_signature)) = conflict
            && valid(&previous, &previous_signature)
            && valid(&signable, &signature)
        {
            self.nodes[node].expected_evidence.insert(key);
        }
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
        let mut queue: VecDeque<Action<S>> = actions.into();
        self.crashed_mid_batch = false;
        while let Some(action) = queue.pop_front() {
            let follow_up = self.perform_one(node, now, action);
            if self.crashed_mid_batch {
                // The process died here: the rest of the batch never happened.
                self.crashed_mid_batch = false;
                return;
            }
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
                if let Message::Proposal(proposal) = &message
                    && proposal.header.view == proposal.view
                {
                    self.keep_block(node, &proposal.header, &proposal.payload);
                }
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
                // Building a block takes time: a lone validator would otherwise
                // finalize forever without virtual time moving.
                let incarnation = self.nodes[node].incarnation;
                self.network.schedule(now + BUILD_MS, SimEvent::Payload { node, incarnation, event });
                Vec::new()
            }
            Action::VerifyProposal { view, parent, header, payload } => {
                let valid = header.state_root == state_after(&parent)
                    && header.transactions_root == hash_bytes(b"vanna/sim/txs", &payload);
                if valid {
                    self.keep_block(node, &header, &payload);
                }
                self.engine_handle(node, local, Event::ProposalVerified { view, block: header.hash(), valid })
            }
            Action::Sign(message) => match self.sign(node, now, message) {
                Some(signature) => self.engine_handle(node, local, Event::Signed { message, signature }),
                None => Vec::new(),
            },
            Action::Finalized { header, payload, proof } => {
                self.on_finalized(node, header, payload, proof);
                if self.disk_faults_allowed(node, now) && self.rng.per_mille(DISK_FAULT_PER_MILLE) {
                    self.crash_now(node, now);
                }
                Vec::new()
            }
            Action::Evidence(evidence) => {
                self.evidence += 1;
                let offender = evidence.offender;
                let (epoch, validators) = match self.nodes[node].engine.as_ref() {
                    Some(engine) => (engine.config().epoch, Arc::clone(&engine.config().validators)),
                    None => return Vec::new(),
                };
                if let Err(error) = evidence.verify(SIM_CHAIN, epoch, &validators) {
                    self.violations.push(format!("node {node} produced invalid evidence: {error}"));
                }
                if self.nodes.get(offender.0 as usize).is_none_or(|n| n.role.is_none()) {
                    self.violations
                        .push(format!("node {node} produced evidence against honest validator {}", offender.0));
                }
                let key = (offender, evidence.first.message.epoch(), evidence.first.message.view());
                self.nodes[node].found_evidence.insert(key);
                Vec::new()
            }
            Action::Certificate { header, certificate } => {
                self.nodes[node].journal.push((header, certificate));
                Vec::new()
            }
            Action::Misbehaving { peer, fault } => {
                if self.honest(node) {
                    self.reports += 1;
                    if self.nodes.get(peer.0 as usize).is_some_and(|n| n.role.is_none()) {
                        self.violations.push(format!("node {node} reported honest validator {} for {fault:?}", peer.0));
                    }
                }
                if let Some(epoch) = self.nodes[node].engine.as_ref().map(|e| e.config().epoch) {
                    self.nodes[node].reported.insert((epoch, peer));
                }
                Vec::new()
            }
        }
    }

    /// An honest node signs through its protection store (whose disk may
    /// fail); a byzantine one signs anything. Every honest signature is
    /// checked against everything the node ever signed.
    fn sign(&mut self, node: usize, now: u64, message: Signable) -> Option<S::Signature> {
        if !self.honest(node) {
            return Some(S::sign(&self.nodes[node].secret, &message.signing_bytes(SIM_CHAIN)));
        }
        let mut torn = false;
        if self.disk_faults_allowed(node, now) && self.rng.per_mille(DISK_FAULT_PER_MILLE) {
            let bytes = self.rng.range(1, 80) as usize;
            let fault = match self.rng.below(3) {
                0 => WriteFault::Torn(bytes),
                1 => WriteFault::Failed(bytes),
                _ => WriteFault::Duplicated,
            };
            torn = matches!(fault, WriteFault::Torn(_));
            self.nodes[node].durable.disk.inject(fault);
        }
        let result = self.nodes[node].signer.as_mut()?.sign(&message);
        let signature = match result {
            Ok(signature) => signature,
            Err(_) => {
                self.refused += 1;
                if torn {
                    self.crash_now(node, now);
                }
                return None;
            }
        };
        let history = self.nodes[node].signed.entry((message.epoch(), message.view())).or_default();
        if let Some(offence) = history.iter().find_map(|previous| Offence::between(previous, &message)) {
            self.violations.push(format!("double sign: node {node} signed {offence:?} in {message:?}"));
        }
        if !history.contains(&message) {
            history.push(message);
        }
        Some(signature)
    }

    /// The node's block store keeps every block it proposed or found valid
    /// before the engine can vote for it, so a notarized block can always be
    /// fetched from an honest voter, even after more than a third crashed.
    fn keep_block(&mut self, node: usize, header: &Header, payload: &[u8]) {
        self.nodes[node].store.entry(header.hash()).or_insert_with(|| (header.clone(), payload.to_vec()));
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
        let role = self.nodes[node].role;
        if role == Some(Byzantine::Attacker) {
            self.attacker_broadcast(node, now, message);
            return;
        }
        let conflicting = match (role, &message) {
            (Some(Byzantine::DoubleVoter), Message::Vote(vote)) => {
                self.classic_adversary(node).conflicting_vote(vote.vote)
            }
            (Some(Byzantine::EquivocatingLeader), Message::Proposal(proposal)) => {
                Some(Message::Proposal(self.classic_adversary(node).second_proposal(proposal)))
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

    /// The classic behaviours sign with the node's own key through the same
    /// code as the attacker.
    fn classic_adversary(&self, node: usize) -> Adversary<S> {
        Adversary::new(node, self.nodes[node].secret.clone(), SIM_CHAIN, self.config.attacks, self.seed)
    }

    /// What an attacker's engine broadcasts, as the attacker sends it: as
    /// leader, a first proposal to a near-quorum and a second to the rest with
    /// the other byzantine validators voting for it, invalid proposals and
    /// payloads its header does not commit to; double votes.
    fn attacker_broadcast(&mut self, node: usize, now: u64, message: Message<S>) {
        let n = self.nodes.len();
        let attacks = self.config.attacks;
        let others: Vec<usize> = (0..n).filter(|t| *t != node).collect();
        let Some(mut adversary) = self.nodes[node].adversary.take() else {
            return;
        };
        let mut sends: Vec<Outgoing<S>> = Vec::new();
        match &message {
            Message::Proposal(proposal) if attacks.contains(Attack::Equivocate) && adversary.rng().per_mille(700) => {
                let second = adversary.second_proposal(proposal);
                let first_to = self.near_quorum(proposal.header.epoch, node);
                for to in &others {
                    let chosen = if first_to.contains(to) { proposal.clone() } else { second.clone() };
                    sends.push(Outgoing { to: *to, message: Message::Proposal(chosen) });
                }
                // The coalition votes for the second proposal, where it was delivered.
                let second_to: Vec<usize> = others.iter().copied().filter(|t| !first_to.contains(t)).collect();
                let coalition: Vec<usize> =
                    (0..n).filter(|b| self.nodes[*b].role == Some(Byzantine::Attacker)).collect();
                for member in coalition {
                    let vote = if member == node {
                        adversary.vote_for(&second)
                    } else {
                        match self.nodes[member].adversary.as_ref() {
                            Some(other) => other.vote_for(&second),
                            None => continue,
                        }
                    };
                    for to in second_to.iter().filter(|t| **t != member) {
                        sends.push(Outgoing { to: *to, message: vote.clone() });
                    }
                }
            }
            Message::Proposal(proposal) => {
                for to in &others {
                    sends.push(Outgoing { to: *to, message: message.clone() });
                }
                if attacks.contains(Attack::Invalid) && adversary.rng().per_mille(400) {
                    let bad = adversary.invalid_proposal(proposal, 1024);
                    let to = others[adversary.rng().below(others.len() as u64) as usize];
                    sends.insert(0, Outgoing { to, message: Message::Proposal(bad) });
                }
                if attacks.contains(Attack::Payload) && adversary.rng().per_mille(300) {
                    let to = others[adversary.rng().below(others.len() as u64) as usize];
                    let bad = adversary.mismatched_payload(proposal);
                    sends.insert(0, Outgoing { to, message: Message::Proposal(bad) });
                }
            }
            Message::Vote(vote) if attacks.contains(Attack::Equivocate) && adversary.rng().per_mille(500) => {
                let conflicting = adversary.conflicting_vote(vote.vote);
                for to in &others {
                    match (&conflicting, adversary.rng().below(3)) {
                        (Some(second), 0) => sends.push(Outgoing { to: *to, message: second.clone() }),
                        (Some(second), 1) => {
                            sends.push(Outgoing { to: *to, message: second.clone() });
                            sends.push(Outgoing { to: *to, message: message.clone() });
                        }
                        _ => sends.push(Outgoing { to: *to, message: message.clone() }),
                    }
                }
            }
            _ => {
                for to in &others {
                    sends.push(Outgoing { to: *to, message: message.clone() });
                }
            }
        }
        self.nodes[node].adversary = Some(adversary);
        self.send_all(now, node, sends);
    }

    /// Honest validators that, with every byzantine vote, just make a quorum.
    fn near_quorum(&mut self, epoch: Epoch, leader: usize) -> Vec<usize> {
        let set = self.set(epoch);
        let byzantine: u64 =
            (0..self.nodes.len()).filter(|p| !self.honest(*p)).map(|p| set.power(ValidatorIndex(p as u32))).sum();
        let mut chosen = Vec::new();
        let mut power = byzantine;
        for position in (0..self.nodes.len()).filter(|p| self.honest(*p) && *p != leader) {
            if set.is_quorum(power) {
                break;
            }
            power += set.power(ValidatorIndex(position as u32));
            chosen.push(position);
        }
        chosen
    }

    fn on_finalized(&mut self, node: usize, header: Header, payload: Vec<u8>, proof: Certificate<S>) {
        let hash = header.hash();
        if self.epoch_length.is_some_and(|length| header.height.0.is_multiple_of(length.max(1))) {
            self.nodes[node].epoch_ends.insert(header.epoch, (header.clone(), proof.clone()));
        }
        let honest = self.honest(node);
        if honest && header.payload_hash != Header::payload_hash_of(&payload) {
            self.violations.push(format!(
                "node {node} finalized height {} with a payload its header does not commit to",
                header.height.0
            ));
        }
        self.nodes[node].store.insert(hash, (header.clone(), payload));
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
        let proof_view = proof.vote.view;
        let state = &mut self.nodes[node];
        let proof_epoch = proof.vote.epoch;
        state
            .journal
            .retain(|(_, c)| c.vote.epoch > proof_epoch || (c.vote.epoch == proof_epoch && c.vote.view > proof_view));
        state.durable.tip = header;
        state.durable.proof = Some(proof);
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
    use crate::{Attacks, run_seed};

    #[test]
    fn a_seed_is_reproducible() {
        let mut config = SimConfig::new(4, 1);
        config.partitions = true;
        config.attacks = Attacks::all();
        let a = run_seed(&config, 42);
        let b = run_seed(&config, 42);
        assert_eq!(a.messages, b.messages);
        assert_eq!(a.blocks_finalized, b.blocks_finalized);
        assert_eq!(a.violations, b.violations);
        assert!(a.blocks_finalized >= crate::BLOCKS_AFTER_STABLE);
    }

    #[test]
    fn one_validator_finalizes_alone() {
        let report = run_seed(&SimConfig::new(1, 0), 3);
        assert!(report.violations.is_empty(), "{:?}", report.violations);
        assert!(report.blocks_finalized >= crate::BLOCKS_AFTER_STABLE);
    }
}
