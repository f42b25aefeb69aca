//! The node's core: the consensus engine of the current epoch, the
//! application, the slashing-protected signer and the pools a proposer draws
//! from, driven by inputs (messages, timers, transactions, reports) into
//! outputs (messages to send, timers to set, blocks committed). Sans-IO: the
//! tokio shell performs the outputs; tests drive several cores in one
//! process.

use std::collections::BTreeMap;
use std::sync::Arc;

use vanna_consensus::{
    Action, BlockHash, Bls, Certificate, Config, Consensus, Epoch, Event, Evidence, Fault, Header, Message, Signable,
    TimerKind, Timing, ValidatorIndex, ValidatorSet, View, VoteKind,
};
use vanna_crypto::bls::{self, BlsSecretKey};
use vanna_proto::v1 as wire;
use vanna_runtime::Address;
use vanna_signer::{Backend, Signer};

use crate::app::{App, ProposalInputs, Verdict};
use crate::evidence::encode_evidence;
use crate::payload::MAX_PAYLOAD_BYTES;

/// Views ahead of the current one the engine keeps votes and proposals for.
const VIEW_WINDOW: u64 = 64;
/// Evidence records waiting for a block at most.
const MAX_PENDING_EVIDENCE: usize = 256;
/// Certificates kept for parent certificates (the recent chain's); the
/// lowest blocks go first.
const MAX_CERTIFICATES: usize = 1024;
/// Proposals waiting for their parent's state at most.
const MAX_WAITING_VERIFICATIONS: usize = 64;

/// Where a proposer's transactions come from, and where their fate goes.
pub trait Transactions {
    /// Up to `max` transactions for a proposal, ready to execute in nonce
    /// order from the state's committed nonces (the core puts them in
    /// canonical order).
    fn select(&mut self, state: &vanna_runtime::State, max: usize) -> Vec<Vec<u8>>;
    /// Whether this node verified the signature of the transaction with
    /// this hash (so the runtime need not check it again).
    fn verified(&self, hash: &[u8; 32]) -> bool;
    /// A block was executed: drop what it included and what it made stale.
    fn on_executed(&mut self, state: &vanna_runtime::State, included: &[Vec<u8>]);
    /// Transactions waiting, ready or not.
    fn pending(&self) -> usize;
}

/// How the core paces and times consensus.
#[derive(Debug, Clone, Copy)]
pub struct CoreConfig {
    pub timing: Timing,
    /// The longest a leader waits for transactions before proposing anyway.
    pub max_block_interval_ms: u64,
    /// A [`Committed`] block at a multiple of this height carries the
    /// state snapshot taken right after it (0: never). Taken here because a
    /// catch-up commits several blocks at once: by the time the shell reads
    /// the outputs, the state is already past the earlier ones.
    pub snapshot_interval_blocks: u64,
    /// Test builds only: sign a second, conflicting notarize vote next to
    /// every genuine one, bypassing slashing protection, so that tests can
    /// watch the chain catch and punish an equivocator.
    #[cfg(feature = "test-equivocate")]
    pub equivocate: bool,
}

impl CoreConfig {
    pub fn new(timing: Timing, max_block_interval_ms: u64) -> CoreConfig {
        CoreConfig {
            timing,
            max_block_interval_ms,
            snapshot_interval_blocks: 0,
            #[cfg(feature = "test-equivocate")]
            equivocate: false,
        }
    }
}

/// What the shell must do.
#[derive(Debug)]
pub enum Output {
    Broadcast(Message<Bls>),
    Send {
        to: ValidatorIndex,
        message: Message<Bls>,
    },
    /// Feed back `Input::Timeout { epoch, view, kind }` at `at_ms`.
    Timer {
        epoch: Epoch,
        view: View,
        kind: TimerKind,
        at_ms: u64,
    },
    /// A finalized block was executed: store it durably before anything
    /// that depends on it leaves the node.
    Committed(Box<Committed>),
    /// A certificate to journal until finality passes its view.
    Journal {
        header: Option<Header>,
        certificate: Certificate<Bls>,
    },
    /// A block this node proposed or found valid: keep it durably before
    /// the votes that follow leave, so a notarized block can always be
    /// fetched from an honest voter, even after a crash.
    KeepBlock {
        header: Header,
        payload: Vec<u8>,
    },
    /// Call [`Core::poke`] (or feed `Input::Wake`) at `at_ms`: a leader
    /// waiting for transactions.
    Wake {
        at_ms: u64,
    },
    /// A peer sent what no honest validator sends.
    Disconnect {
        peer: ValidatorIndex,
        fault: Fault,
    },
    /// The node cannot go on.
    Halt(String),
}

/// A block made final and executed.
#[derive(Debug)]
pub struct Committed {
    pub header: Header,
    pub payload: Vec<u8>,
    pub proof: Certificate<Bls>,
    pub output: vanna_runtime::BlockOutput,
    /// Set when the block ended an epoch.
    pub next_epoch: Option<Epoch>,
    /// The state right after this block, when its height is a snapshot height.
    pub snapshot: Option<Vec<u8>>,
}

/// Inputs.
#[derive(Debug)]
pub enum Input {
    Message {
        from: ValidatorIndex,
        message: Message<Bls>,
    },
    Timeout {
        epoch: Epoch,
        view: View,
        kind: TimerKind,
    },
    /// A signed oracle report (from this node's feeder or gossip).
    OracleReport(Vec<u8>),
    /// A `Wake` is due, or transactions arrived: retry waiting work.
    Wake,
}

/// A validator's signing key and protection store.
pub struct Identity<B: Backend> {
    pub secret: BlsSecretKey,
    pub signer: Signer<Bls, B>,
}

pub struct Core<B: Backend> {
    app: App,
    engine: Consensus<Bls>,
    epoch: Epoch,
    set: Arc<ValidatorSet<Bls>>,
    identity: Option<Identity<B>>,
    me: Option<ValidatorIndex>,
    config: CoreConfig,
    transactions: Box<dyn Transactions + Send>,
    /// The freshest report of each reporter.
    reports: BTreeMap<Address, Vec<u8>>,
    evidence: Vec<Evidence<Bls>>,
    certificates: Recent<Certificate<Bls>>,
    waiting_proposal: Option<(View, Header)>,
    waiting_verifications: Vec<(View, Header, Header, Vec<u8>)>,
    halted: bool,
}

impl<B: Backend> std::fmt::Debug for Core<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Core({:?}, epoch {}, me {:?})", self.app, self.epoch.0, self.me)
    }
}

impl<B: Backend> Core<B> {
    /// A core at the application's executed block, which anchors the
    /// engine; `anchor_proof` is the certificate stored with it (none at
    /// genesis or an epoch's first block).
    pub fn new(
        app: App,
        identity: Option<Identity<B>>,
        config: CoreConfig,
        transactions: Box<dyn Transactions + Send>,
        anchor_proof: Option<Certificate<Bls>>,
        now_ms: u64,
    ) -> Result<(Core<B>, Vec<Output>), String> {
        let (epoch, set) = app.epoch();
        let secret = identity.as_ref().map(|identity| &identity.secret);
        let (engine, me, actions) = engine_for(&app, secret, epoch, &set, anchor_proof, config.timing, now_ms)?;
        let mut core = Core {
            app,
            engine,
            epoch,
            set,
            identity,
            me,
            config,
            transactions,
            reports: BTreeMap::new(),
            evidence: Vec::new(),
            certificates: Recent::default(),
            waiting_proposal: None,
            waiting_verifications: Vec::new(),
            halted: false,
        };
        let mut out = Vec::new();
        core.perform(now_ms, actions, &mut out);
        Ok((core, out))
    }

    pub fn app(&self) -> &App {
        &self.app
    }

    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    pub fn validators(&self) -> &Arc<ValidatorSet<Bls>> {
        &self.set
    }

    pub fn me(&self) -> Option<ValidatorIndex> {
        self.me
    }

    /// Moves to `epoch`: a new engine anchored at the executed block.
    fn start_epoch(
        &mut self,
        epoch: Epoch,
        set: Arc<ValidatorSet<Bls>>,
        now_ms: u64,
    ) -> Result<Vec<Action<Bls>>, String> {
        let secret = self.identity.as_ref().map(|identity| &identity.secret);
        let (engine, me, actions) = engine_for(&self.app, secret, epoch, &set, None, self.config.timing, now_ms)?;
        self.engine = engine;
        self.me = me;
        self.epoch = epoch;
        self.set = set;
        self.waiting_proposal = None;
        self.waiting_verifications.clear();
        Ok(actions)
    }

    /// Feeds one input; returns what the shell must do.
    pub fn handle(&mut self, now_ms: u64, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        if self.halted {
            return out;
        }
        let event = match input {
            Input::Message { from, message } => Event::Message { from, message },
            Input::Timeout { epoch, view, kind } => {
                if epoch != self.epoch {
                    return out;
                }
                Event::Timeout { view, kind }
            }
            Input::OracleReport(bytes) => {
                self.keep_report(bytes);
                return out;
            }
            Input::Wake => return self.poke(now_ms),
        };
        let actions = self.engine.handle(now_ms, event);
        self.perform(now_ms, actions, &mut out);
        out
    }

    fn keep_report(&mut self, bytes: Vec<u8>) {
        let limits = self.app.state().oracle.params().limits.clone();
        let Ok(report) = vanna_oracle::verify_report(&self.app.info().chain_id, &bytes, &limits) else { return };
        let reporter = Address(*report.reporter.as_bytes());
        if self.app.state().staking.is_active(&reporter) {
            self.reports.insert(reporter, bytes);
        }
    }

    fn perform(&mut self, now_ms: u64, actions: Vec<Action<Bls>>, out: &mut Vec<Output>) {
        let mut queue: std::collections::VecDeque<Action<Bls>> = actions.into();
        while let Some(action) = queue.pop_front() {
            if self.halted {
                return;
            }
            let events = self.perform_one(now_ms, action, out);
            for event in events {
                queue.extend(self.engine.handle(now_ms, event));
            }
        }
    }

    /// Performs one action; returns events to feed back.
    fn perform_one(&mut self, now_ms: u64, action: Action<Bls>, out: &mut Vec<Output>) -> Vec<Event<Bls>> {
        match action {
            Action::Broadcast(message) => {
                if let Message::Proposal(proposal) = &message {
                    // Our own proposal: its children need its root, and it must outlive a crash.
                    self.app.remember(&proposal.header, &proposal.payload);
                    out.push(Output::KeepBlock { header: proposal.header.clone(), payload: proposal.payload.clone() });
                }
                out.push(Output::Broadcast(message));
                Vec::new()
            }
            Action::Send { to, message } => {
                out.push(Output::Send { to, message });
                Vec::new()
            }
            Action::ScheduleTimeout { view, kind, after_ms } => {
                out.push(Output::Timer { epoch: self.epoch, view, kind, at_ms: now_ms + after_ms });
                Vec::new()
            }
            Action::RequestProposal { view, parent } => self.propose(now_ms, view, parent, out).into_iter().collect(),
            Action::VerifyProposal { view, parent, header, payload } => {
                self.verify(view, parent, header, payload, out).into_iter().collect()
            }
            Action::Sign(message) => self.sign(&message, out).into_iter().collect(),
            Action::Finalized { header, payload, proof } => self.commit(now_ms, header, payload, proof, out),
            Action::Evidence(evidence) => {
                let known = self.evidence.iter().any(|e| {
                    e.offender == evidence.offender
                        && e.first.message == evidence.first.message
                        && e.second.message == evidence.second.message
                });
                if self.evidence.len() < MAX_PENDING_EVIDENCE && !known {
                    self.evidence.push(evidence);
                }
                Vec::new()
            }
            Action::Certificate { header, certificate } => {
                self.keep_certificate(&certificate);
                out.push(Output::Journal { header, certificate });
                Vec::new()
            }
            Action::Misbehaving { peer, fault } => {
                out.push(Output::Disconnect { peer, fault });
                Vec::new()
            }
        }
    }

    fn keep_certificate(&mut self, certificate: &Certificate<Bls>) {
        if let VoteKind::Notarize { height, block } | VoteKind::Finalize { height, block } = certificate.vote.kind {
            self.certificates.insert(height.0, block, certificate.clone());
        }
    }

    fn propose(&mut self, now_ms: u64, view: View, parent: Header, out: &mut Vec<Output>) -> Option<Event<Bls>> {
        self.identity.as_ref()?;
        // Transactions that can follow the parent: selected against the
        // state after it, so none its unfinalized ancestors carry comes again.
        let source = &self.transactions;
        let Some(after_parent) = self.app.state_after(parent.hash(), &|hash| source.verified(hash)) else {
            // The parent's state is not known yet: try again when it is.
            self.waiting_proposal = Some((view, parent));
            return None;
        };
        let transactions = self.transactions.select(after_parent, vanna_types::limits::MAX_TRANSACTIONS_PER_BLOCK);
        // Nothing to include yet: wait for transactions, up to the interval.
        let deadline = parent.block_time_ms.saturating_add(self.config.max_block_interval_ms);
        if transactions.is_empty() && now_ms < deadline {
            self.waiting_proposal = Some((view, parent));
            out.push(Output::Wake { at_ms: deadline });
            return None;
        }
        let identity = self.identity.as_ref()?;
        let parent_certificate = if parent.height.0 == 0 {
            None
        } else {
            match self.certificates.get(parent.height.0, parent.hash()) {
                Some(certificate) => Some(certificate.clone()),
                None => {
                    self.waiting_proposal = Some((view, parent));
                    return None;
                }
            }
        };
        // A reporter that has left the set (jailed, tombstoned, unbonded)
        // would make the block invalid: its last report goes.
        let state = self.app.state();
        self.reports.retain(|reporter, _| state.staking.is_active(reporter));
        let evidence: Vec<wire::Evidence> = self.evidence.iter().map(encode_evidence).collect();
        let inputs = ProposalInputs {
            transactions,
            oracle_reports: self.reports.values().cloned().collect(),
            evidence,
            parent_certificate,
        };
        let secret = identity.secret.clone();
        let source = &self.transactions;
        match self.app.build(&parent, view, self.epoch, now_ms, &secret, inputs, &|hash| source.verified(hash)) {
            Some(proposal) => {
                self.waiting_proposal = None;
                Some(Event::ProposalPayload {
                    view,
                    block_time_ms: proposal.block_time_ms,
                    state_root: proposal.state_root,
                    transactions_root: proposal.transactions_root,
                    payload: proposal.payload,
                })
            }
            None => {
                // The parent's state is not known yet: try again when it is.
                self.waiting_proposal = Some((view, parent));
                None
            }
        }
    }

    fn verify(
        &mut self,
        view: View,
        parent: Header,
        header: Header,
        payload: Vec<u8>,
        out: &mut Vec<Output>,
    ) -> Option<Event<Bls>> {
        let block = header.hash();
        let source = &self.transactions;
        match self.app.verify(&parent, &header, &payload, &|hash| source.verified(hash)) {
            Verdict::Valid => {
                out.push(Output::KeepBlock { header, payload });
                Some(Event::ProposalVerified { view, block, valid: true })
            }
            Verdict::Invalid(why) => {
                tracing::warn!(view = view.0, height = header.height.0, %why, "refusing a proposal");
                Some(Event::ProposalVerified { view, block, valid: false })
            }
            Verdict::Unknown => {
                if self.waiting_verifications.len() >= MAX_WAITING_VERIFICATIONS {
                    self.waiting_verifications.remove(0);
                }
                self.waiting_verifications.push((view, parent, header, payload));
                None
            }
        }
    }

    #[cfg_attr(not(feature = "test-equivocate"), allow(unused_variables))]
    fn sign(&mut self, message: &Signable, out: &mut Vec<Output>) -> Option<Event<Bls>> {
        let identity = self.identity.as_mut()?;
        match identity.signer.sign(message) {
            Ok(signature) => {
                #[cfg(feature = "test-equivocate")]
                self.equivocate(message, out);
                Some(Event::Signed { message: *message, signature })
            }
            Err(error) => {
                tracing::warn!(%error, ?message, "the signer refused");
                None
            }
        }
    }

    /// The test-only equivocator: a notarize vote for a block that does not
    /// exist, in the same view as the genuine one.
    #[cfg(feature = "test-equivocate")]
    fn equivocate(&self, message: &Signable, out: &mut Vec<Output>) {
        use vanna_consensus::{Scheme, SignedVote};
        let (true, Some(identity), Some(me), Signable::Vote(vote)) =
            (self.config.equivocate, self.identity.as_ref(), self.me, message)
        else {
            return;
        };
        let VoteKind::Notarize { height, block } = vote.kind else { return };
        let mut other = block.0;
        other[0] ^= 0xff;
        let twin = vanna_consensus::Vote { kind: VoteKind::Notarize { height, block: BlockHash(other) }, ..*vote };
        let signature = Bls::sign(&identity.secret, &Signable::Vote(twin).signing_bytes(self.app.info().consensus));
        tracing::warn!(view = vote.view.0, "test mode: signing a conflicting notarize vote");
        out.push(Output::Broadcast(Message::Vote(SignedVote { vote: twin, signer: me, signature })));
    }

    fn commit(
        &mut self,
        now_ms: u64,
        header: Header,
        payload: Vec<u8>,
        proof: Certificate<Bls>,
        out: &mut Vec<Output>,
    ) -> Vec<Event<Bls>> {
        let transactions = crate::payload::Payload::decode(&payload).map(|p| p.transactions).unwrap_or_default();
        let source = &self.transactions;
        let executed = match self.app.execute(&header, &payload, &|hash| source.verified(hash)) {
            Ok(executed) => executed,
            Err(error) => {
                self.halted = true;
                out.push(Output::Halt(error.to_string()));
                return Vec::new();
            }
        };
        self.transactions.on_executed(self.app.state(), &transactions);
        self.evidence.retain(|evidence| {
            evidence.first.message.epoch() >= self.epoch
                && !matches!(evidence.first.message.view(), view if view.0 + VIEW_WINDOW * 4 < header.view.0)
        });
        let next_epoch = executed.next_epoch.as_ref().map(|(epoch, _)| *epoch);
        let every = self.config.snapshot_interval_blocks;
        let snapshot = (every > 0 && header.height.0.is_multiple_of(every)).then(|| self.app.snapshot());
        out.push(Output::Committed(Box::new(Committed {
            header: header.clone(),
            payload,
            proof,
            output: executed.output,
            next_epoch,
            snapshot,
        })));
        let mut events = Vec::new();
        if let Some((epoch, set)) = executed.next_epoch {
            match self.start_epoch(epoch, set, now_ms) {
                Ok(actions) => self.perform(now_ms, actions, out),
                Err(error) => {
                    self.halted = true;
                    out.push(Output::Halt(format!("cannot start epoch {}: {error}", epoch.0)));
                }
            }
            return events;
        }
        // The executed state may be what waiting work needed.
        events.extend(self.retry_waiting(now_ms, out));
        events
    }

    /// Retries the proposal and verifications that waited for a parent's state.
    fn retry_waiting(&mut self, now_ms: u64, out: &mut Vec<Output>) -> Vec<Event<Bls>> {
        let mut events = Vec::new();
        if let Some((view, parent)) = self.waiting_proposal.take() {
            events.extend(self.propose(now_ms, view, parent, out));
        }
        for (view, parent, header, payload) in std::mem::take(&mut self.waiting_verifications) {
            events.extend(self.verify(view, parent, header, payload, out));
        }
        events
    }

    /// Retries waiting work: at a `Wake`, or when transactions arrived.
    pub fn poke(&mut self, now_ms: u64) -> Vec<Output> {
        let mut out = Vec::new();
        if self.halted {
            return out;
        }
        let events = self.retry_waiting(now_ms, &mut out);
        for event in events {
            let actions = self.engine.handle(now_ms, event);
            self.perform(now_ms, actions, &mut out);
        }
        out
    }

    /// Whether a proposal waits for transactions or a parent's state.
    pub fn waiting(&self) -> bool {
        self.waiting_proposal.is_some()
    }

    /// Feeds back what the node kept across a restart, in the order the
    /// engine needs: the blocks above the anchor, the journaled
    /// certificates, and the votes the protection store recorded (re-signed:
    /// signing an identical message again is allowed).
    pub fn restore(
        &mut self,
        now_ms: u64,
        blocks: Vec<(Header, Vec<u8>)>,
        certificates: Vec<(Option<Header>, Certificate<Bls>)>,
        votes: Vec<Signable>,
    ) -> Vec<Output> {
        let mut out = Vec::new();
        let mut events: Vec<Event<Bls>> = Vec::new();
        for (header, payload) in blocks {
            if header.epoch == self.epoch && header.height > self.app.executed().height {
                self.app.remember(&header, &payload);
                events.push(Event::Block { header, payload });
            }
        }
        for (header, certificate) in certificates {
            if certificate.vote.epoch == self.epoch {
                self.keep_certificate(&certificate);
                events.push(Event::Certificate { header, certificate });
            }
        }
        for vote in votes {
            if vote.epoch() == self.epoch
                && let Some(event) = self.sign(&vote, &mut out)
            {
                events.push(event);
            }
        }
        for event in events {
            let actions = self.engine.handle(now_ms, event);
            self.perform(now_ms, actions, &mut out);
        }
        out
    }

    /// Executes a finalized block that came by catch-up rather than through
    /// the engine (its certificate checked by the caller against the
    /// block's epoch), then anchors a new engine at it.
    pub fn apply_synced(
        &mut self,
        now_ms: u64,
        header: Header,
        payload: Vec<u8>,
        proof: Certificate<Bls>,
    ) -> Vec<Output> {
        let mut out = Vec::new();
        if self.halted {
            return out;
        }
        self.commit(now_ms, header, payload, proof.clone(), &mut out);
        if self.halted {
            return out;
        }
        let secret = self.identity.as_ref().map(|identity| &identity.secret);
        let epoch = self.epoch;
        let set = self.set.clone();
        match engine_for(&self.app, secret, epoch, &set, Some(proof), self.config.timing, now_ms) {
            Ok((engine, me, actions)) => {
                self.engine = engine;
                self.me = me;
                self.waiting_proposal = None;
                self.waiting_verifications.clear();
                self.perform(now_ms, actions, &mut out);
            }
            Err(error) => {
                self.halted = true;
                out.push(Output::Halt(format!("cannot re-anchor consensus after catching up: {error}")));
            }
        }
        out
    }

    /// The messages this validator signed in the current epoch after `view`,
    /// as its protection store recorded them.
    pub fn recorded_after(&self, view: View) -> Vec<Signable> {
        let Some(identity) = &self.identity else { return Vec::new() };
        identity
            .signer
            .store()
            .export()
            .records
            .iter()
            .filter(|record| record.epoch == self.epoch.0 && record.view > view.0)
            .filter_map(|record| record.to_signable().ok().flatten())
            .collect()
    }

    /// The current engine's view.
    pub fn view(&self) -> View {
        self.engine.view()
    }
}

/// A started engine, this node's index in its set, and its first actions.
type EngineStart = (Consensus<Bls>, Option<ValidatorIndex>, Vec<Action<Bls>>);

/// The engine of `epoch` for a node at the application's executed block.
fn engine_for(
    app: &App,
    secret: Option<&BlsSecretKey>,
    epoch: Epoch,
    set: &Arc<ValidatorSet<Bls>>,
    anchor_proof: Option<Certificate<Bls>>,
    timing: Timing,
    now_ms: u64,
) -> Result<EngineStart, String> {
    let me = secret.and_then(|secret| set.index_of(&bls::public_key(secret)));
    // An epoch's first instance is anchored at the previous epoch's last
    // block, whose finalization that epoch's validators signed: no proof of
    // this epoch covers it (after a restart at an epoch boundary, too).
    let anchor_proof = anchor_proof.filter(|_| app.executed().epoch == epoch);
    let config = Config {
        chain: app.info().consensus,
        epoch,
        validators: set.clone(),
        me,
        anchor: app.executed().clone(),
        anchor_proof,
        last_height: Some(vanna_consensus::Height(app.last_height(epoch))),
        timing,
        max_payload_bytes: MAX_PAYLOAD_BYTES,
        view_window: VIEW_WINDOW,
    };
    let (engine, actions) = Consensus::new(config, now_ms).map_err(|error| error.to_string())?;
    Ok((engine, me, actions))
}

/// The certificates of the most recent blocks, at most [`MAX_CERTIFICATES`]:
/// the lowest heights are forgotten first. (Keyed by hash alone, eviction
/// would forget the smallest hash, which is sometimes the newest block's,
/// and its child could never be proposed.)
#[derive(Debug)]
struct Recent<V> {
    by_height: BTreeMap<(u64, BlockHash), V>,
}

impl<V> Default for Recent<V> {
    fn default() -> Self {
        Recent { by_height: BTreeMap::new() }
    }
}

impl<V> Recent<V> {
    fn insert(&mut self, height: u64, block: BlockHash, value: V) {
        self.by_height.insert((height, block), value);
        while self.by_height.len() > MAX_CERTIFICATES {
            self.by_height.pop_first();
        }
    }

    fn get(&self, height: u64, block: BlockHash) -> Option<&V> {
        self.by_height.get(&(height, block))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_blocks_certificates_are_kept_whatever_their_hashes() {
        let mut recent = Recent::default();
        for height in 1..=(3 * MAX_CERTIFICATES as u64) {
            // Hashes in no order, some below every other.
            let mut hash = [0u8; 32];
            hash[..8].copy_from_slice(&height.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
            recent.insert(height, BlockHash(hash), height);
            assert_eq!(recent.get(height, BlockHash(hash)), Some(&height), "the certificate of block {height}");
        }
        assert_eq!(recent.by_height.len(), MAX_CERTIFICATES);
        let oldest = recent.by_height.keys().next().map(|(height, _)| *height);
        assert_eq!(oldest, Some(2 * MAX_CERTIFICATES as u64 + 1));
    }
}
