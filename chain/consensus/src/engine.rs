//! The per-validator protocol engine (Simplex, see chain/CONSENSUS.md).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::error::Error;
use crate::evidence::{Evidence, Offence, Signed};
use crate::messages::{Certificate, Message, Signable, SignedProposal, SignedVote, SignerBitmap, Vote, VoteKind};
use crate::scheme::Scheme;
use crate::types::{BlockHash, ChainId, Epoch, Header, Height, Root, ValidatorIndex, View};
use crate::validators::ValidatorSet;

/// Finalized blocks kept to answer peers' block requests; older ones are the
/// node's block store's business.
const SERVED_FINALIZED_BLOCKS: usize = 256;
/// Nullifications rebroadcast at most per retry tick (the ones since the
/// highest certified block, which a peer needs to validate new proposals).
const REBROADCAST_NULLIFICATIONS: usize = 256;
/// Outstanding block requests at most; more waits for the next retry.
const MAX_WANTED_BLOCKS: usize = 64;
/// Blocks in one response, so a node that fell behind walks back quickly.
pub const MAX_BLOCKS_PER_RESPONSE: usize = 32;
/// Signature verifications one peer may cause per view. An honest peer causes
/// at most seven (its proposal as leader, its three votes, and the first copy
/// of each of the view's three certificates); the rest is junk.
const MAX_VERIFICATIONS_PER_PEER_PER_VIEW: u32 = 16;

/// Timer settings. The backoff doubles the leader timeout for each consecutive
/// nullified view so that, after the network stabilises, timeouts eventually
/// exceed the real delay (the liveness condition).
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub leader_timeout_ms: u64,
    pub retry_ms: u64,
    pub max_backoff_exponent: u32,
    /// How far a block time may run ahead of the voter's own clock.
    pub max_clock_drift_ms: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Self { leader_timeout_ms: 1_000, retry_ms: 500, max_backoff_exponent: 5, max_clock_drift_ms: 500 }
    }
}

/// One epoch of one participant. A new epoch (new validator set) is a new
/// [`Consensus`] anchored at the last block of the previous epoch.
#[derive(Debug, Clone)]
pub struct Config<S: Scheme> {
    pub chain: ChainId,
    pub epoch: Epoch,
    pub validators: Arc<ValidatorSet<S>>,
    /// `None` for an observer (follows and finalizes, never signs).
    pub me: Option<ValidatorIndex>,
    /// The last finalized block (genesis, the previous epoch's last block, or
    /// after a restart the node's last committed block).
    pub anchor: Header,
    /// The finalization certificate that was made durable with `anchor`:
    /// `None` at an epoch's start (the anchor is view 0), otherwise the
    /// `proof` of `anchor`'s `Action::Finalized`, which may finalize a
    /// descendant when the node stopped part-way through a batch. Its view is
    /// where the engine resumes, and that view certified the proof's block.
    pub anchor_proof: Option<Certificate<S>>,
    /// The epoch's last height; past it leaders re-propose that block so it can
    /// still be finalized in a later view. `None`: the epoch never ends.
    pub last_height: Option<Height>,
    pub timing: Timing,
    pub max_payload_bytes: usize,
    /// How many views ahead of the current one votes and proposals are kept.
    pub view_window: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerKind {
    /// No certificate for the view in time: nullify it.
    Leader,
    /// Still stuck: rebroadcast own votes and recent certificates, re-request blocks.
    Retry,
}

/// Inputs. `now_ms` comes with each call to [`Consensus::handle`].
#[derive(Debug, Clone)]
pub enum Event<S: Scheme> {
    /// A message from a peer; `from` is the authenticated connection it came
    /// in on. A proposal or vote must come from its signer; certificates and
    /// blocks authenticate themselves and may come from anyone.
    Message {
        from: ValidatorIndex,
        message: Message<S>,
    },
    Timeout {
        view: View,
        kind: TimerKind,
    },
    /// The application's answer to [`Action::RequestProposal`].
    ProposalPayload {
        view: View,
        block_time_ms: u64,
        state_root: Root,
        transactions_root: Root,
        payload: Vec<u8>,
    },
    /// The application's answer to [`Action::VerifyProposal`].
    ProposalVerified {
        view: View,
        block: BlockHash,
        valid: bool,
    },
    /// A block from the node's own block store, which keeps every block it
    /// proposed or found valid: after a restart the node feeds back those
    /// above the anchor, as the engine's memory of them is gone. Checked
    /// against its header like any block.
    Block {
        header: Header,
        payload: Vec<u8>,
    },
    /// A certificate from the node's journal after a restart (see
    /// `Action::Certificate`); verified like any.
    Certificate {
        header: Option<Header>,
        certificate: Certificate<S>,
    },
    /// The signer's answer to [`Action::Sign`] (absent when it refused).
    /// After a restart the node also feeds back this way the votes its
    /// protection store recorded after the anchor (re-signing one is allowed),
    /// so what it said before the crash is heard again: with more than a
    /// third of the validators restarting at once, nothing else may recover it.
    Signed {
        message: Signable,
        signature: S::Signature,
    },
}

/// Outputs, in the order they must be performed.
#[derive(Debug, Clone)]
pub enum Action<S: Scheme> {
    Broadcast(Message<S>),
    Send {
        to: ValidatorIndex,
        message: Message<S>,
    },
    /// Deliver `Event::Timeout { view, kind }` after `after_ms`.
    ScheduleTimeout {
        view: View,
        kind: TimerKind,
        after_ms: u64,
    },
    /// Build a payload on `parent` (the application may compute the state root
    /// after `parent` speculatively; it commits only on `Finalized`).
    RequestProposal {
        view: View,
        parent: Header,
    },
    /// Check the state root, transactions root and payload of a proposal.
    VerifyProposal {
        view: View,
        parent: Header,
        header: Header,
        payload: Vec<u8>,
    },
    /// Ask the slashing-protected signer; it answers with `Event::Signed`.
    Sign(Signable),
    /// Execute this block: final, in height order, exactly once per engine.
    /// `proof` finalizes this block or a descendant (linked by parent hashes).
    Finalized {
        header: Header,
        payload: Vec<u8>,
        proof: Certificate<S>,
    },
    Evidence(Evidence<S>),
    /// A certificate the engine accepted (formed or received), with its
    /// block's header when known. The node journals it until finality passes
    /// its view and feeds it back with `Event::Certificate` after a restart:
    /// when more than a third restart at once, the certificates they had may
    /// exist nowhere else but with byzantine validators.
    Certificate {
        header: Option<Header>,
        certificate: Certificate<S>,
    },
    /// `peer` sent something no honest validator sends: the node should
    /// disconnect it. Reported once per peer; the engine ignores it from then on.
    Misbehaving {
        peer: ValidatorIndex,
        fault: Fault,
    },
}

/// What a misbehaving peer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// Sent a proposal or vote signed by someone else.
    NotSigner,
    /// A signature (its own, or a certificate's) that does not verify.
    InvalidSignature,
    /// A proposal whose payload does not hash to its header's payload hash.
    PayloadMismatch,
    /// A block response that breaks its hash chain or carries a wrong payload.
    BadBlockResponse,
    /// A payload or response over the limits.
    TooLarge,
    /// More signature verifications in one view than an honest peer causes.
    OverBudget,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verification {
    NotYet,
    Requested,
    Valid,
    Invalid,
}

/// Per-subject vote accumulation: votes wait unverified until, counted with
/// the verified ones, they could form a quorum; then the batch is checked with
/// one aggregate verification and single checks only if that fails.
#[derive(Debug)]
struct Tally<S: Scheme> {
    verified: BTreeMap<ValidatorIndex, S::Signature>,
    verified_power: u64,
    pending: BTreeMap<ValidatorIndex, S::Signature>,
    pending_power: u64,
    certified: bool,
}

impl<S: Scheme> Default for Tally<S> {
    fn default() -> Self {
        Self {
            verified: BTreeMap::new(),
            verified_power: 0,
            pending: BTreeMap::new(),
            pending_power: 0,
            certified: false,
        }
    }
}

#[derive(Debug)]
struct Round<S: Scheme> {
    proposal: Option<SignedProposal<S>>,
    verification: Verification,
    proposed: bool,
    payload_requested: Option<(View, Header)>,
    voted_notarize: bool,
    voted_finalize: bool,
    voted_nullify: bool,
    my_votes: Vec<SignedVote<S>>,
    /// First vote of each class (notarize, finalize, nullify) per signer, kept for equivocation checks.
    first_votes: BTreeMap<(ValidatorIndex, u8), SignedVote<S>>,
    tallies: BTreeMap<VoteKind, Tally<S>>,
    notarization: Option<Certificate<S>>,
    finalization: Option<Certificate<S>>,
    nullification: Option<Certificate<S>>,
    reported: BTreeSet<(ValidatorIndex, Offence)>,
    /// Signature verifications each peer caused in this view.
    work: BTreeMap<ValidatorIndex, u32>,
    /// Signatures asked for that did not come back yet (at most one per kind of message).
    unsigned: Vec<Signable>,
}

impl<S: Scheme> Default for Round<S> {
    fn default() -> Self {
        Self {
            proposal: None,
            verification: Verification::NotYet,
            proposed: false,
            payload_requested: None,
            voted_notarize: false,
            voted_finalize: false,
            voted_nullify: false,
            my_votes: Vec::new(),
            first_votes: BTreeMap::new(),
            tallies: BTreeMap::new(),
            notarization: None,
            finalization: None,
            nullification: None,
            reported: BTreeSet::new(),
            work: BTreeMap::new(),
            unsigned: Vec::new(),
        }
    }
}

#[derive(Debug, Clone)]
struct Block {
    header: Header,
    payload: Option<Vec<u8>>,
}

#[derive(Debug, Clone)]
struct Finalized<S: Scheme> {
    view: View,
    hash: BlockHash,
    header: Header,
    certificate: Option<Certificate<S>>,
    /// The block `view` certified: the finalized block itself, except after a
    /// restart part-way through a batch, when it is a descendant still to commit.
    certified: (BlockHash, Height),
}

/// The consensus state machine of one participant for one epoch.
#[derive(Debug)]
pub struct Consensus<S: Scheme> {
    config: Config<S>,
    now_ms: u64,
    view: View,
    consecutive_nullified: u32,
    finalized: Finalized<S>,
    /// Highest finalization certificate not yet committed (missing blocks).
    finalize_target: Option<Certificate<S>>,
    rounds: BTreeMap<View, Round<S>>,
    blocks: BTreeMap<BlockHash, Block>,
    committed: BTreeMap<Height, BlockHash>,
    wanted: BTreeMap<BlockHash, u32>,
    own_proposal: Option<(View, View, Header, Vec<u8>)>,
    done: bool,
    last_reply_ms: BTreeMap<ValidatorIndex, u64>,
    finalized_at_last_tick: Option<Height>,
    /// Peers reported misbehaving: nothing they send is looked at again, so
    /// junk costs at most one verification per peer.
    muted: BTreeSet<ValidatorIndex>,
    out: Vec<Action<S>>,
}

fn class(kind: &VoteKind) -> u8 {
    match kind {
        VoteKind::Notarize { .. } => 0,
        VoteKind::Finalize { .. } => 1,
        VoteKind::Nullify => 2,
    }
}

impl<S: Scheme> Consensus<S> {
    /// Starts at the view after the anchor's; returns the first actions.
    /// Fails if the anchor proof is not a finalization of this epoch that
    /// covers the anchor's height (and the anchor itself at that height).
    pub fn new(config: Config<S>, now_ms: u64) -> Result<(Self, Vec<Action<S>>), Error> {
        let anchor_hash = config.anchor.hash();
        let (anchor_view, certified) = match &config.anchor_proof {
            None => (View(0), (anchor_hash, config.anchor.height)),
            Some(proof) => match proof.vote.kind {
                VoteKind::Finalize { height, block }
                    if proof.vote.epoch == config.epoch
                        && height >= config.anchor.height
                        && (height > config.anchor.height || block == anchor_hash) =>
                {
                    (proof.vote.view, (block, height))
                }
                _ => return Err(Error::BadAnchor),
            },
        };
        let anchor_certificate = config.anchor_proof.clone().filter(|_| certified.0 == anchor_hash);
        let pending_target = config.anchor_proof.clone().filter(|_| certified.0 != anchor_hash);
        let mut blocks = BTreeMap::new();
        blocks.insert(anchor_hash, Block { header: config.anchor.clone(), payload: None });
        let mut committed = BTreeMap::new();
        committed.insert(config.anchor.height, anchor_hash);
        let done = config.last_height.is_some_and(|last| config.anchor.height >= last);
        let mut engine = Self {
            finalized: Finalized {
                view: anchor_view,
                hash: anchor_hash,
                header: config.anchor.clone(),
                certificate: anchor_certificate,
                certified,
            },
            config,
            now_ms,
            view: anchor_view,
            consecutive_nullified: 0,
            finalize_target: pending_target,
            rounds: BTreeMap::new(),
            blocks,
            committed,
            wanted: BTreeMap::new(),
            own_proposal: None,
            done,
            last_reply_ms: BTreeMap::new(),
            finalized_at_last_tick: None,
            muted: BTreeSet::new(),
            out: Vec::new(),
        };
        if !engine.done {
            engine.enter_view(View(anchor_view.0.saturating_add(1)), true);
            let after_ms = engine.config.timing.retry_ms;
            engine.out.push(Action::ScheduleTimeout { view: engine.view, kind: TimerKind::Retry, after_ms });
            // The rest of a batch cut short by a restart: fetch and commit it.
            engine.try_commit();
            engine.progress();
        }
        let actions = std::mem::take(&mut engine.out);
        Ok((engine, actions))
    }

    pub fn view(&self) -> View {
        self.view
    }
    pub fn finalized_height(&self) -> Height {
        self.finalized.header.height
    }
    pub fn finalized_hash(&self) -> BlockHash {
        self.finalized.hash
    }
    /// The view whose certificate finalized the last committed block.
    pub fn finalized_view(&self) -> View {
        self.finalized.view
    }
    /// True once the epoch's last block is final; the node starts the next epoch.
    pub fn is_done(&self) -> bool {
        self.done
    }
    /// Whether messages for `view` are still processed (and equivocations in it detected).
    pub fn tracks_view(&self, view: View) -> bool {
        !self.done && view > self.finalized.view && view.0 <= self.view.0.saturating_add(self.config.view_window)
    }
    pub fn config(&self) -> &Config<S> {
        &self.config
    }

    /// Feeds one event; returns the actions it causes.
    pub fn handle(&mut self, now_ms: u64, event: Event<S>) -> Vec<Action<S>> {
        self.now_ms = self.now_ms.max(now_ms);
        if self.done {
            if let Event::Message { from, message } = event {
                self.on_message_when_done(from, message);
            }
            return std::mem::take(&mut self.out);
        }
        match event {
            Event::Message { from, message } => self.on_message(from, message),
            Event::Timeout { view, kind } => self.on_timeout(view, kind),
            Event::ProposalPayload { view, block_time_ms, state_root, transactions_root, payload } => {
                self.on_payload(view, block_time_ms, state_root, transactions_root, payload)
            }
            Event::ProposalVerified { view, block, valid } => self.on_verified(view, block, valid),
            Event::Signed { message, signature } => self.on_signed(message, signature),
            Event::Certificate { header, certificate } => {
                let valid = certificate.verify(self.config.chain, self.config.epoch, self.validators()).is_ok();
                if valid && self.is_new_certificate(&certificate) {
                    let header = header.filter(|h| certificate_block(&certificate) == Some(h.hash()));
                    self.on_certificate(certificate, header, false);
                }
            }
            Event::Block { header, payload } => {
                if payload.len() <= self.config.max_payload_bytes {
                    self.wanted.remove(&header.hash());
                    self.store_block(header, payload);
                    self.try_commit();
                }
            }
        }
        if !self.done {
            self.progress();
        }
        std::mem::take(&mut self.out)
    }

    fn validators(&self) -> &ValidatorSet<S> {
        &self.config.validators
    }

    fn on_message(&mut self, from: ValidatorIndex, message: Message<S>) {
        if self.validators().get(from).is_none() || Some(from) == self.config.me || self.muted.contains(&from) {
            return;
        }
        match message {
            Message::Proposal(proposal) => {
                if from != self.validators().leader(proposal.view) {
                    self.misbehaving(from, Fault::NotSigner);
                    return;
                }
                self.on_proposal(proposal, false);
            }
            Message::Vote(vote) => {
                if from != vote.signer {
                    self.misbehaving(from, Fault::NotSigner);
                    return;
                }
                self.on_peer_vote(vote);
            }
            Message::Certified { header, certificate } => self.on_certified_message(from, header, certificate),
            Message::Nullification(certificate) => {
                if certificate.vote.kind != VoteKind::Nullify || !self.is_new_certificate(&certificate) {
                    return;
                }
                if self.verify_certificate(from, &certificate) {
                    self.on_certificate(certificate, None, false);
                }
            }
            Message::Status { epoch, finalized, .. } => {
                if epoch == self.config.epoch && finalized < self.finalized.header.height {
                    self.reply_with_finalization(from);
                }
            }
            Message::BlockRequest { block } => self.serve_block(from, block),
            Message::BlockResponse { blocks } => self.on_block_response(from, blocks),
        }
    }

    fn misbehaving(&mut self, peer: ValidatorIndex, fault: Fault) {
        if self.muted.insert(peer) {
            self.out.push(Action::Misbehaving { peer, fault });
        }
    }

    /// Views outside the window are charged to its edges, so the budget's
    /// record stays bounded.
    fn budget_view(&self, view: View) -> View {
        let edge = View(self.view.0.saturating_add(self.config.view_window));
        view.clamp(View(self.finalized.view.0.saturating_add(1)), edge)
    }

    /// Charges `count` signature verifications to `peer` in `view`; false (and
    /// the peer reported) once it is over its budget.
    fn charge(&mut self, peer: ValidatorIndex, view: View, count: u32) -> bool {
        let view = self.budget_view(view);
        let work = self.round(view).work.entry(peer).or_default();
        *work = work.saturating_add(count);
        if *work > MAX_VERIFICATIONS_PER_PEER_PER_VIEW {
            self.misbehaving(peer, Fault::OverBudget);
            return false;
        }
        true
    }

    /// A certificate from `from`: charged to it, and it is reported if the check fails.
    fn verify_certificate(&mut self, from: ValidatorIndex, certificate: &Certificate<S>) -> bool {
        let view = certificate.vote.view;
        if !self.charge(from, view, 1) {
            return false;
        }
        if certificate.verify(self.config.chain, self.config.epoch, self.validators()).is_ok() {
            return true;
        }
        self.misbehaving(from, Fault::InvalidSignature);
        false
    }

    /// After the epoch's end, peers still in it get the final certificate
    /// (rate-limited per peer) so they can finish too.
    fn on_message_when_done(&mut self, from: ValidatorIndex, message: Message<S>) {
        if self.validators().get(from).is_none() {
            return;
        }
        if let Message::BlockRequest { block } = message {
            self.serve_block(from, block);
            return;
        }
        self.reply_with_finalization(from);
    }

    /// Sends our latest finalization to a peer that is behind, at most once per retry period.
    fn reply_with_finalization(&mut self, from: ValidatorIndex) {
        let Some(certificate) = self.finalized.certificate.clone() else {
            return;
        };
        let last = self.last_reply_ms.get(&from).copied();
        if last.is_some_and(|t| self.now_ms < t.saturating_add(self.config.timing.retry_ms)) {
            return;
        }
        self.last_reply_ms.insert(from, self.now_ms);
        let header = Some(self.finalized.header.clone());
        self.out.push(Action::Send { to: from, message: Message::Certified { header, certificate } });
    }

    fn is_new_certificate(&self, certificate: &Certificate<S>) -> bool {
        let view = certificate.vote.view;
        if certificate.vote.epoch != self.config.epoch || view <= self.finalized.view {
            return false;
        }
        let Some(round) = self.rounds.get(&view) else {
            return true;
        };
        match certificate.vote.kind {
            VoteKind::Notarize { .. } => round.notarization.is_none(),
            VoteKind::Finalize { .. } => round.finalization.is_none(),
            VoteKind::Nullify => round.nullification.is_none(),
        }
    }

    fn on_certified_message(&mut self, from: ValidatorIndex, header: Option<Header>, certificate: Certificate<S>) {
        let block = match certificate.vote.kind {
            VoteKind::Notarize { block, .. } | VoteKind::Finalize { block, .. } => block,
            VoteKind::Nullify => return,
        };
        let header = header.filter(|h| h.hash() == block);
        if !self.is_new_certificate(&certificate) {
            if let Some(header) = header {
                self.store_header(header);
                self.try_commit();
            }
            return;
        }
        if self.verify_certificate(from, &certificate) {
            self.on_certificate(certificate, header, false);
        }
    }

    fn store_header(&mut self, header: Header) {
        let hash = header.hash();
        if header.height > self.finalized.header.height {
            self.blocks.entry(hash).or_insert(Block { header, payload: None });
        }
    }

    /// Stores a payload only if it hashes to its header's payload hash, and
    /// never over one already stored: a bad copy cannot displace the genuine one.
    fn store_block(&mut self, header: Header, payload: Vec<u8>) {
        if header.payload_hash != Header::payload_hash_of(&payload) {
            return;
        }
        let hash = header.hash();
        if header.height > self.finalized.header.height {
            let block = self.blocks.entry(hash).or_insert(Block { header, payload: None });
            block.payload.get_or_insert(payload);
        }
    }

    fn certified(&self, view: View) -> Option<(BlockHash, Height)> {
        if view == self.finalized.view {
            return Some(self.finalized.certified);
        }
        let round = self.rounds.get(&view)?;
        let certificate = round.notarization.as_ref().or(round.finalization.as_ref())?;
        match certificate.vote.kind {
            VoteKind::Notarize { height, block } | VoteKind::Finalize { height, block } => Some((block, height)),
            VoteKind::Nullify => None,
        }
    }

    fn nullified(&self, view: View) -> bool {
        self.rounds.get(&view).is_some_and(|r| r.nullification.is_some())
    }

    fn enter_view(&mut self, view: View, after_notarization: bool) {
        if view <= self.view {
            return;
        }
        self.view = view;
        self.consecutive_nullified = if after_notarization { 0 } else { self.consecutive_nullified.saturating_add(1) };
        let exponent = self.consecutive_nullified.min(self.config.timing.max_backoff_exponent);
        let after_ms = self.config.timing.leader_timeout_ms.saturating_mul(1u64 << exponent.min(20));
        self.rounds.entry(view).or_default();
        self.out.push(Action::ScheduleTimeout { view, kind: TimerKind::Leader, after_ms });
        // Views advance while blocks are missing; ask again (another peer) as they do.
        self.retry_block_requests();
    }

    /// Work that may become possible after any change: propose, or vote on the
    /// current view's proposal.
    fn progress(&mut self) {
        self.try_propose();
        self.evaluate_proposal();
    }

    /// The parent a proposal in `view` must extend: the block certified in the
    /// highest earlier view such that every view in between is nullified.
    fn parent_for(&self, view: View) -> Option<(View, BlockHash, Height)> {
        let mut candidate = View(view.0.checked_sub(1)?);
        loop {
            if candidate < self.finalized.view {
                return None;
            }
            if let Some((hash, height)) = self.certified(candidate) {
                return Some((candidate, hash, height));
            }
            if !self.nullified(candidate) {
                return None;
            }
            candidate = View(candidate.0.checked_sub(1)?);
        }
    }

    fn try_propose(&mut self) {
        let Some(me) = self.config.me else { return };
        let view = self.view;
        if self.validators().leader(view) != me {
            return;
        }
        let Some(round) = self.rounds.get(&view) else {
            return;
        };
        if round.proposed || round.voted_nullify || round.payload_requested.is_some() {
            return;
        }
        let Some((parent_view, parent_hash, parent_height)) = self.parent_for(view) else {
            return;
        };
        let Some(parent) = self.blocks.get(&parent_hash).map(|b| b.header.clone()) else {
            self.want(parent_hash);
            return;
        };
        debug_assert_eq!(parent.height, parent_height);
        let epoch = self.config.epoch;
        if self.config.last_height == Some(parent.height) {
            // The epoch is full: re-propose its last block so a later view can finalize it.
            self.own_proposal = Some((view, parent_view, parent, Vec::new()));
            self.round(view).proposed = true;
            self.request_signature(Signable::Proposal { epoch, view, parent_view, block: parent_hash });
            return;
        }
        self.round(view).payload_requested = Some((parent_view, parent.clone()));
        self.out.push(Action::RequestProposal { view, parent });
    }

    fn round(&mut self, view: View) -> &mut Round<S> {
        self.rounds.entry(view).or_default()
    }

    fn on_payload(
        &mut self,
        view: View,
        block_time_ms: u64,
        state_root: Root,
        transactions_root: Root,
        payload: Vec<u8>,
    ) {
        let Some(me) = self.config.me else { return };
        if view != self.view || payload.len() > self.config.max_payload_bytes {
            return;
        }
        let round = self.round(view);
        let Some((parent_view, parent)) = round.payload_requested.clone() else {
            return;
        };
        if round.proposed || round.voted_nullify {
            return;
        }
        round.proposed = true;
        let header = Header {
            parent: parent.hash(),
            height: Height(parent.height.0.saturating_add(1)),
            epoch: self.config.epoch,
            view,
            proposer: me,
            // Monotonic even if the application's clock is behind the parent's.
            block_time_ms: block_time_ms.max(parent.block_time_ms),
            state_root,
            transactions_root,
            payload_hash: Header::payload_hash_of(&payload),
        };
        let block = header.hash();
        self.own_proposal = Some((view, parent_view, header, payload));
        let epoch = self.config.epoch;
        self.request_signature(Signable::Proposal { epoch, view, parent_view, block });
    }

    /// Asks the signer, remembering the request: a signature that does not
    /// come back (the protection store's disk failed) is asked for again at
    /// the next retry tick; one it refused for good is refused again.
    fn request_signature(&mut self, message: Signable) {
        let unsigned = &mut self.round(message.view()).unsigned;
        if !unsigned.contains(&message) {
            unsigned.push(message);
        }
        self.out.push(Action::Sign(message));
    }

    fn on_signed(&mut self, message: Signable, signature: S::Signature) {
        let Some(me) = self.config.me else { return };
        if let Some(round) = self.rounds.get_mut(&message.view()) {
            round.unsigned.retain(|m| *m != message);
        }
        match message {
            Signable::Proposal { view, parent_view, block, .. } => {
                let Some((own_view, own_parent_view, header, payload)) = self.own_proposal.clone() else {
                    return;
                };
                if own_view != view || own_parent_view != parent_view || header.hash() != block {
                    return;
                }
                let proposal = SignedProposal { view, parent_view, header, payload, signature };
                self.out.push(Action::Broadcast(Message::Proposal(proposal.clone())));
                self.on_proposal(proposal, true);
            }
            Signable::Vote(vote) => {
                let signed = SignedVote { vote, signer: me, signature };
                self.out.push(Action::Broadcast(Message::Vote(signed.clone())));
                if self.tracks_view(vote.view) {
                    // Also a vote signed before a restart and fed back: the
                    // engine then never asks for what it may no longer sign.
                    let round = self.round(vote.view);
                    match vote.kind {
                        VoteKind::Notarize { .. } => round.voted_notarize = true,
                        VoteKind::Finalize { .. } => round.voted_finalize = true,
                        VoteKind::Nullify => round.voted_nullify = true,
                    }
                    if !round.my_votes.iter().any(|v| v.vote == signed.vote && v.signature == signed.signature) {
                        round.my_votes.push(signed.clone());
                    }
                    self.count_own_vote(signed);
                }
            }
        }
    }

    /// A proposal from its leader (checked by the caller) or our own.
    fn on_proposal(&mut self, proposal: SignedProposal<S>, own: bool) {
        let view = proposal.view;
        if proposal.header.epoch != self.config.epoch || !self.tracks_view(view) {
            return;
        }
        let leader = self.validators().leader(view);
        if proposal.payload.len() > self.config.max_payload_bytes {
            self.misbehaving(leader, Fault::TooLarge);
            return;
        }
        let is_reproposal = proposal.header.view != view;
        // The signature covers the header only: a payload that does not match it
        // is never stored, so it cannot stand in for the genuine one.
        if !is_reproposal && proposal.header.payload_hash != Header::payload_hash_of(&proposal.payload) {
            self.misbehaving(leader, Fault::PayloadMismatch);
            return;
        }
        let signable = proposal.signable();
        if let Some(existing) = self.rounds.get(&view).and_then(|r| r.proposal.as_ref()) {
            if existing.signable() == signable {
                return;
            }
            let first = Signed { message: existing.signable(), signature: existing.signature.clone() };
            if self
                .round(view)
                .reported
                .iter()
                .any(|(who, offence)| *who == leader && *offence == Offence::ConflictingProposals)
                || !self.charge(leader, view, 1)
            {
                return;
            }
            if self.verify_single(leader, &signable, &proposal.signature) {
                self.report(view, leader, first, Signed { message: signable, signature: proposal.signature });
            } else {
                self.misbehaving(leader, Fault::InvalidSignature);
            }
            return;
        }
        if !own {
            if !self.charge(leader, view, 1) {
                return;
            }
            if !self.verify_single(leader, &signable, &proposal.signature) {
                self.misbehaving(leader, Fault::InvalidSignature);
                return;
            }
        }
        if is_reproposal {
            self.store_header(proposal.header.clone());
        } else {
            self.store_block(proposal.header.clone(), proposal.payload.clone());
        }
        self.round(view).proposal = Some(proposal);
    }

    fn verify_single(&self, signer: ValidatorIndex, message: &Signable, signature: &S::Signature) -> bool {
        self.validators()
            .get(signer)
            .is_some_and(|entry| S::verify(&entry.public_key, &message.signing_bytes(self.config.chain), signature))
    }

    fn report(&mut self, view: View, offender: ValidatorIndex, first: Signed<S>, second: Signed<S>) {
        let Some(offence) = Offence::between(&first.message, &second.message) else {
            return;
        };
        if self.round(view).reported.insert((offender, offence)) {
            self.out.push(Action::Evidence(Evidence { offender, first, second }));
        }
    }

    /// Votes on the current view's proposal once it is valid and justified.
    fn evaluate_proposal(&mut self) {
        if self.config.me.is_none() {
            return;
        }
        let view = self.view;
        let Some(round) = self.rounds.get(&view) else {
            return;
        };
        if round.voted_notarize || round.voted_nullify || round.verification != Verification::NotYet {
            return;
        }
        let Some(proposal) = round.proposal.clone() else {
            return;
        };
        let hash = proposal.header.hash();
        if proposal.parent_view >= view {
            self.round(view).verification = Verification::Invalid;
            return;
        }
        let Some((parent_hash, parent_height)) = self.certified(proposal.parent_view) else {
            return;
        };
        let mut between = View(proposal.parent_view.0 + 1);
        while between < view {
            if !self.nullified(between) {
                return;
            }
            between = View(between.0 + 1);
        }
        if hash == parent_hash {
            // A re-proposal is valid only for the epoch's last block.
            if self.config.last_height == Some(parent_height) {
                self.round(view).verification = Verification::Valid;
                self.vote_notarize(view, parent_height, hash);
            } else {
                self.round(view).verification = Verification::Invalid;
            }
            return;
        }
        let header = &proposal.header;
        let structurally_valid = header.parent == parent_hash
            && header.view == view
            && header.proposer == self.validators().leader(view)
            && header.height.0 == parent_height.0.saturating_add(1)
            && self.config.last_height.is_none_or(|last| header.height <= last)
            && header.payload_hash == Header::payload_hash_of(&proposal.payload);
        if !structurally_valid {
            self.round(view).verification = Verification::Invalid;
            return;
        }
        let Some(parent) = self.blocks.get(&parent_hash).map(|b| b.header.clone()) else {
            self.want(parent_hash);
            return;
        };
        if header.block_time_ms < parent.block_time_ms {
            self.round(view).verification = Verification::Invalid;
            return;
        }
        if header.block_time_ms > self.now_ms.saturating_add(self.config.timing.max_clock_drift_ms) {
            // Too far ahead of our clock; maybe not later (re-checked on the next event).
            return;
        }
        let own = self.own_proposal.as_ref().is_some_and(|(v, _, h, _)| *v == view && h.hash() == hash);
        if own {
            self.round(view).verification = Verification::Valid;
            self.vote_notarize(view, header.height, hash);
        } else {
            self.round(view).verification = Verification::Requested;
            let header = proposal.header.clone();
            self.out.push(Action::VerifyProposal { view, parent, header, payload: proposal.payload });
        }
    }

    fn on_verified(&mut self, view: View, block: BlockHash, valid: bool) {
        let Some(round) = self.rounds.get_mut(&view) else {
            return;
        };
        if round.verification != Verification::Requested {
            return;
        }
        let Some(height) = round.proposal.as_ref().filter(|p| p.header.hash() == block).map(|p| p.header.height) else {
            return;
        };
        round.verification = if valid { Verification::Valid } else { Verification::Invalid };
        if valid && view == self.view {
            self.vote_notarize(view, height, block);
        }
    }

    fn vote_notarize(&mut self, view: View, height: Height, block: BlockHash) {
        let epoch = self.config.epoch;
        let round = self.round(view);
        if round.voted_notarize || round.voted_nullify {
            return;
        }
        round.voted_notarize = true;
        self.request_signature(Signable::Vote(Vote { epoch, view, kind: VoteKind::Notarize { height, block } }));
    }

    /// A vote from its signer's connection (checked by the caller). Checked
    /// lazily: it waits in its tally until it could complete a quorum.
    fn on_peer_vote(&mut self, vote: SignedVote<S>) {
        let view = vote.vote.view;
        let signer = vote.signer;
        let power = self.validators().power(signer);
        if vote.vote.epoch != self.config.epoch || power == 0 || !self.tracks_view(view) {
            return;
        }
        let signable = Signable::Vote(vote.vote);
        let new_class = class(&vote.vote.kind);
        if let Some(previous) = self.round(view).first_votes.get(&(signer, new_class)).cloned()
            && previous.vote == vote.vote
        {
            // A duplicate only if the signature is the same too; otherwise at
            // most one of the two is genuine, and a verified one is kept.
            if previous.signature == vote.signature || self.is_verified(&previous) || !self.charge(signer, view, 1) {
                return;
            }
            if !self.verify_single(signer, &signable, &vote.signature) {
                self.misbehaving(signer, Fault::InvalidSignature);
                return;
            }
            self.forget_vote(view, &previous);
            self.count_verified(vote);
            return;
        }
        let mut counted = true;
        for previous_class in 0..3u8 {
            let Some(previous) = self.round(view).first_votes.get(&(signer, previous_class)).cloned() else {
                continue;
            };
            let previous_signable = Signable::Vote(previous.vote);
            if previous_class == new_class {
                counted = false;
            }
            let Some(offence) = Offence::between(&previous_signable, &signable) else {
                continue;
            };
            // Once reported, further conflicts of the same kind cost nothing.
            if self.round(view).reported.contains(&(signer, offence)) || !self.charge(signer, view, 2) {
                continue;
            }
            // Conflicts are rare: check both signatures one by one.
            if !self.verify_single(signer, &signable, &vote.signature) {
                self.misbehaving(signer, Fault::InvalidSignature);
                return;
            }
            if !self.verify_single(signer, &previous_signable, &previous.signature) {
                // The earlier one was bad: forget it, count the genuine vote.
                self.forget_vote(view, &previous);
                if previous_class == new_class {
                    counted = true;
                }
                continue;
            }
            let first = Signed { message: previous_signable, signature: previous.signature.clone() };
            self.report(view, signer, first, Signed { message: signable, signature: vote.signature.clone() });
        }
        if !counted || !self.charge(signer, view, 1) {
            return;
        }
        let round = self.round(view);
        round.first_votes.insert((signer, new_class), vote.clone());
        let tally = round.tallies.entry(vote.vote.kind).or_default();
        if tally.certified {
            return;
        }
        tally.pending.insert(signer, vote.signature);
        tally.pending_power = tally.pending_power.saturating_add(power);
        self.check_tally(vote.vote);
    }

    fn is_verified(&self, vote: &SignedVote<S>) -> bool {
        self.rounds
            .get(&vote.vote.view)
            .and_then(|round| round.tallies.get(&vote.vote.kind))
            .is_some_and(|tally| tally.verified.get(&vote.signer) == Some(&vote.signature))
    }

    /// Our own vote counts as verified and takes the place of anything held
    /// under our name (peers' copies of it are never accepted).
    fn count_own_vote(&mut self, vote: SignedVote<S>) {
        let view = vote.vote.view;
        if let Some(previous) = self.round(view).first_votes.get(&(vote.signer, class(&vote.vote.kind))).cloned() {
            self.forget_vote(view, &previous);
        }
        self.count_verified(vote);
    }

    fn count_verified(&mut self, vote: SignedVote<S>) {
        let power = self.validators().power(vote.signer);
        let round = self.round(vote.vote.view);
        round.first_votes.insert((vote.signer, class(&vote.vote.kind)), vote.clone());
        let tally = round.tallies.entry(vote.vote.kind).or_default();
        if tally.certified || tally.verified.contains_key(&vote.signer) {
            return;
        }
        tally.verified.insert(vote.signer, vote.signature);
        tally.verified_power = tally.verified_power.saturating_add(power);
        self.check_tally(vote.vote);
    }

    fn forget_vote(&mut self, view: View, vote: &SignedVote<S>) {
        let power = self.validators().power(vote.signer);
        let round = self.round(view);
        round.first_votes.remove(&(vote.signer, class(&vote.vote.kind)));
        if let Some(tally) = round.tallies.get_mut(&vote.vote.kind)
            && tally.pending.remove(&vote.signer).is_some()
        {
            tally.pending_power = tally.pending_power.saturating_sub(power);
        }
    }

    /// Verifies pending votes once they could complete a quorum, then forms the certificate.
    fn check_tally(&mut self, vote: Vote) {
        let chain = self.config.chain;
        let validators = Arc::clone(&self.config.validators);
        let Some(tally) = self.rounds.get_mut(&vote.view).and_then(|r| r.tallies.get_mut(&vote.kind)) else {
            return;
        };
        if !validators.is_quorum(tally.verified_power.saturating_add(tally.pending_power)) {
            return;
        }
        let message = Signable::Vote(vote).signing_bytes(chain);
        let pending = std::mem::take(&mut tally.pending);
        tally.pending_power = 0;
        let mut rejected = Vec::new();
        if !batch_verify::<S>(&validators, &message, &pending) {
            for (signer, signature) in &pending {
                let valid = validators.get(*signer).is_some_and(|e| S::verify(&e.public_key, &message, signature));
                if !valid {
                    rejected.push(*signer);
                }
            }
        }
        for (signer, signature) in pending {
            if !rejected.contains(&signer) {
                tally.verified_power = tally.verified_power.saturating_add(validators.power(signer));
                tally.verified.insert(signer, signature);
            }
        }
        let certificate = if validators.is_quorum(tally.verified_power) {
            tally.certified = true;
            let mut signers = SignerBitmap::new(validators.len());
            for signer in tally.verified.keys() {
                signers.set(*signer);
            }
            let signatures: Vec<&S::Signature> = tally.verified.values().collect();
            S::aggregate(&signatures).map(|signature| Certificate { vote, signers, signature })
        } else {
            None
        };
        // Rejected votes are forgotten so a genuine copy can still count; they
        // came from their signer's own connection, so the signer is to blame.
        if let Some(round) = self.rounds.get_mut(&vote.view) {
            for signer in &rejected {
                round.first_votes.remove(&(*signer, class(&vote.kind)));
            }
        }
        for signer in rejected {
            self.misbehaving(signer, Fault::InvalidSignature);
        }
        if let Some(certificate) = certificate {
            self.on_certificate(certificate, None, true);
        }
    }

    /// Hands an accepted notarization or finalization to the node's journal.
    fn journal(&mut self, certificate: &Certificate<S>, header: &Option<Header>, block: BlockHash) {
        let header = header.clone().or_else(|| self.blocks.get(&block).map(|b| b.header.clone()));
        self.out.push(Action::Certificate { header, certificate: certificate.clone() });
    }

    fn on_certificate(&mut self, certificate: Certificate<S>, header: Option<Header>, formed_here: bool) {
        let view = certificate.vote.view;
        if let Some(header) = header.clone() {
            self.store_header(header);
        }
        match certificate.vote.kind {
            VoteKind::Notarize { height, block } => {
                let round = self.round(view);
                if round.notarization.is_some() {
                    return;
                }
                round.notarization = Some(certificate.clone());
                self.journal(&certificate, &header, block);
                let round = self.round(view);
                if let Some(tally) = round.tallies.get_mut(&certificate.vote.kind) {
                    tally.certified = true;
                }
                if formed_here {
                    let header = header.or_else(|| self.blocks.get(&block).map(|b| b.header.clone()));
                    self.out.push(Action::Broadcast(Message::Certified { header, certificate }));
                }
                // The finality vote: only if this view did not time out for us.
                let epoch = self.config.epoch;
                let is_validator = self.config.me.is_some();
                let round = self.round(view);
                if !round.voted_nullify && !round.voted_finalize && is_validator {
                    round.voted_finalize = true;
                    let kind = VoteKind::Finalize { height, block };
                    self.request_signature(Signable::Vote(Vote { epoch, view, kind }));
                }
                self.enter_view(View(view.0.saturating_add(1)), true);
            }
            VoteKind::Finalize { height, block } => {
                let round = self.round(view);
                if round.finalization.is_some() {
                    return;
                }
                round.finalization = Some(certificate.clone());
                self.journal(&certificate, &header, block);
                let round = self.round(view);
                if let Some(tally) = round.tallies.get_mut(&certificate.vote.kind) {
                    tally.certified = true;
                }
                if formed_here {
                    let header = header.or_else(|| self.blocks.get(&block).map(|b| b.header.clone()));
                    self.out.push(Action::Broadcast(Message::Certified { header, certificate: certificate.clone() }));
                }
                let target_height = self.finalize_target.as_ref().map_or(Height(0), |c| match c.vote.kind {
                    VoteKind::Finalize { height, .. } => height,
                    _ => Height(0),
                });
                if height > self.finalized.header.height && height > target_height {
                    self.finalize_target = Some(certificate);
                }
                self.enter_view(View(view.0.saturating_add(1)), true);
                self.try_commit();
            }
            VoteKind::Nullify => {
                let round = self.round(view);
                if round.nullification.is_some() {
                    return;
                }
                round.nullification = Some(certificate.clone());
                self.out.push(Action::Certificate { header: None, certificate: certificate.clone() });
                if formed_here {
                    self.out.push(Action::Broadcast(Message::Nullification(certificate)));
                }
                self.enter_view(View(view.0.saturating_add(1)), false);
            }
        }
    }

    /// Commits the chain up to the highest finalization certificate once every
    /// block on the way is known; asks peers for missing ones.
    fn try_commit(&mut self) {
        let Some(certificate) = self.finalize_target.clone() else {
            return;
        };
        let VoteKind::Finalize { height, block } = certificate.vote.kind else {
            return;
        };
        if height <= self.finalized.header.height {
            self.finalize_target = None;
            return;
        }
        let mut chain = Vec::new();
        let mut missing = Vec::new();
        let mut cursor = block;
        while cursor != self.finalized.hash {
            let Some(stored) = self.blocks.get(&cursor) else {
                missing.push(cursor);
                break;
            };
            if stored.header.height <= self.finalized.header.height {
                // Does not extend our finalized block: only possible with more than
                // a third of the stake byzantine. Refuse to execute; the operator must act.
                return;
            }
            if stored.payload.is_none() {
                missing.push(cursor);
            }
            chain.push(cursor);
            cursor = stored.header.parent;
        }
        if !missing.is_empty() {
            for hash in missing {
                self.want(hash);
            }
            return;
        }
        for hash in chain.into_iter().rev() {
            let Some(stored) = self.blocks.get(&hash) else {
                return;
            };
            let Some(payload) = stored.payload.clone() else {
                return;
            };
            // Checked when stored; checked again because executing a payload
            // its header does not commit to is the worst thing a node can do.
            assert_eq!(
                stored.header.payload_hash,
                Header::payload_hash_of(&payload),
                "stored payload matches its header"
            );
            let header = stored.header.clone();
            self.committed.insert(header.height, hash);
            self.out.push(Action::Finalized { header, payload, proof: certificate.clone() });
        }
        let header = self.blocks.get(&block).map(|b| b.header.clone()).unwrap_or_else(|| self.finalized.header.clone());
        self.finalized = Finalized {
            view: certificate.vote.view,
            hash: block,
            header,
            certificate: Some(certificate.clone()),
            certified: (block, height),
        };
        self.finalize_target = None;
        self.prune();
        if self.config.last_height.is_some_and(|last| height >= last) {
            self.done = true;
            return;
        }
        self.enter_view(View(certificate.vote.view.0.saturating_add(1)), true);
    }

    fn prune(&mut self) {
        let finalized_view = self.finalized.view;
        let finalized_height = self.finalized.header.height;
        self.rounds.retain(|view, _| *view > finalized_view);
        while self.committed.len() > SERVED_FINALIZED_BLOCKS {
            self.committed.pop_first();
        }
        let committed: BTreeSet<BlockHash> = self.committed.values().copied().collect();
        self.blocks.retain(|hash, block| block.header.height > finalized_height || committed.contains(hash));
        let blocks = &self.blocks;
        self.wanted.retain(|hash, _| blocks.get(hash).is_none_or(|b| b.payload.is_none()));
    }

    fn want(&mut self, hash: BlockHash) {
        if self.wanted.contains_key(&hash) || self.wanted.len() >= MAX_WANTED_BLOCKS {
            return;
        }
        self.wanted.insert(hash, 0);
        self.request_block(hash, 0);
    }

    /// Asks a different peer on each attempt.
    fn request_block(&mut self, block: BlockHash, attempt: u32) {
        let n = self.validators().len() as u64;
        let me = self.config.me.map_or(0, |m| u64::from(m.0));
        let mut peer = (me + 1 + u64::from(attempt)) % n;
        if Some(ValidatorIndex(peer as u32)) == self.config.me {
            peer = (peer + 1) % n;
        }
        if Some(ValidatorIndex(peer as u32)) == self.config.me {
            // A set of one: nobody to ask (the node feeds its own blocks with `Event::Block`).
            return;
        }
        self.out.push(Action::Send { to: ValidatorIndex(peer as u32), message: Message::BlockRequest { block } });
    }

    fn serve_block(&mut self, to: ValidatorIndex, block: BlockHash) {
        let mut blocks = Vec::new();
        let mut cursor = block;
        while blocks.len() < MAX_BLOCKS_PER_RESPONSE {
            let Some(Block { header, payload: Some(payload) }) = self.blocks.get(&cursor) else {
                break;
            };
            blocks.push((header.clone(), payload.clone()));
            cursor = header.parent;
        }
        if !blocks.is_empty() {
            self.out.push(Action::Send { to, message: Message::BlockResponse { blocks } });
        }
    }

    /// Accepts the first block only if we asked for it, and each further one
    /// only if it is the parent of the previous: the hashes authenticate them
    /// all, and each payload must hash to its header's payload hash. A late
    /// answer (no longer wanted) is not a fault; a broken one is.
    fn on_block_response(&mut self, from: ValidatorIndex, blocks: Vec<(Header, Vec<u8>)>) {
        if blocks.len() > MAX_BLOCKS_PER_RESPONSE {
            self.misbehaving(from, Fault::TooLarge);
            return;
        }
        let mut expected: Option<BlockHash> = None;
        for (header, payload) in blocks {
            let hash = header.hash();
            match expected {
                None if !self.wanted.contains_key(&hash) => break,
                Some(parent) if parent != hash => {
                    self.misbehaving(from, Fault::BadBlockResponse);
                    break;
                }
                _ => {}
            }
            if payload.len() > self.config.max_payload_bytes || header.payload_hash != Header::payload_hash_of(&payload)
            {
                self.misbehaving(from, Fault::BadBlockResponse);
                break;
            }
            if header.height <= self.finalized.header.height {
                break;
            }
            expected = Some(header.parent);
            self.wanted.remove(&hash);
            self.store_block(header, payload);
        }
        if expected.is_some() {
            self.try_commit();
        }
    }

    fn on_timeout(&mut self, view: View, kind: TimerKind) {
        match kind {
            TimerKind::Leader => {
                if view != self.view {
                    return;
                }
                let epoch = self.config.epoch;
                let is_validator = self.config.me.is_some();
                let round = self.round(view);
                if is_validator && !round.voted_nullify {
                    round.voted_nullify = true;
                    let vote = Vote { epoch, view, kind: VoteKind::Nullify };
                    self.request_signature(Signable::Vote(vote));
                }
            }
            TimerKind::Retry => {
                // A periodic tick, whatever the view: rebroadcast only when
                // finality made no progress since the previous tick.
                let finalized = self.finalized.header.height;
                if self.finalized_at_last_tick == Some(finalized) {
                    self.rebroadcast(self.view);
                    let unsigned: Vec<Signable> =
                        self.rounds.values().flat_map(|r| r.unsigned.iter().copied()).collect();
                    self.out.extend(unsigned.into_iter().map(Action::Sign));
                }
                self.finalized_at_last_tick = Some(finalized);
                let after_ms = self.config.timing.retry_ms;
                self.out.push(Action::ScheduleTimeout { view: self.view, kind: TimerKind::Retry, after_ms });
            }
        }
    }

    /// What a stuck peer may be missing: our votes in the current view, the
    /// highest certified block, every nullification after it (needed to
    /// validate proposals extending it), our latest finalization, our status.
    fn rebroadcast(&mut self, view: View) {
        let mut messages = Vec::new();
        if let Some(round) = self.rounds.get(&view) {
            messages.extend(round.my_votes.iter().cloned().map(Message::Vote));
        }
        let mut nullifications = Vec::new();
        for (_, round) in self.rounds.range(..view).rev() {
            if let Some(certificate) = round.finalization.as_ref().or(round.notarization.as_ref()) {
                let header = match certificate.vote.kind {
                    VoteKind::Notarize { block, .. } | VoteKind::Finalize { block, .. } => {
                        self.blocks.get(&block).map(|b| b.header.clone())
                    }
                    VoteKind::Nullify => None,
                };
                messages.push(Message::Certified { header, certificate: certificate.clone() });
                break;
            }
            match &round.nullification {
                Some(certificate) if nullifications.len() < REBROADCAST_NULLIFICATIONS => {
                    nullifications.push(Message::Nullification(certificate.clone()));
                }
                _ => break,
            }
        }
        messages.extend(nullifications);
        if let Some(certificate) = self.finalized.certificate.clone() {
            messages.push(Message::Certified { header: Some(self.finalized.header.clone()), certificate });
        }
        let (epoch, finalized) = (self.config.epoch, self.finalized.header.height);
        messages.push(Message::Status { epoch, view, finalized });
        self.out.extend(messages.into_iter().map(Action::Broadcast));
        self.retry_block_requests();
    }

    fn retry_block_requests(&mut self) {
        let wanted: Vec<(BlockHash, u32)> = self.wanted.iter().map(|(h, a)| (*h, *a)).collect();
        for (hash, attempt) in wanted {
            self.wanted.insert(hash, attempt + 1);
            self.request_block(hash, attempt + 1);
        }
    }
}

fn certificate_block<S: Scheme>(certificate: &Certificate<S>) -> Option<BlockHash> {
    match certificate.vote.kind {
        VoteKind::Notarize { block, .. } | VoteKind::Finalize { block, .. } => Some(block),
        VoteKind::Nullify => None,
    }
}

/// One aggregate check for a batch of votes on the same message.
fn batch_verify<S: Scheme>(
    validators: &ValidatorSet<S>,
    message: &[u8],
    votes: &BTreeMap<ValidatorIndex, S::Signature>,
) -> bool {
    let mut keys = Vec::with_capacity(votes.len());
    for signer in votes.keys() {
        let Some(entry) = validators.get(*signer) else {
            return false;
        };
        keys.push(&entry.public_key);
    }
    let signatures: Vec<&S::Signature> = votes.values().collect();
    let Some(aggregate) = S::aggregate(&signatures) else {
        return true;
    };
    S::verify_aggregate(&keys, message, &aggregate)
}

/// Exposed for the benchmark: aggregate-then-verify of one batch, falling back
/// to single checks; returns the signers whose votes are valid.
pub fn verify_votes<S: Scheme>(
    chain: ChainId,
    validators: &ValidatorSet<S>,
    vote: Vote,
    votes: &BTreeMap<ValidatorIndex, S::Signature>,
) -> Vec<ValidatorIndex> {
    let message = Signable::Vote(vote).signing_bytes(chain);
    if batch_verify(validators, &message, votes) {
        return votes.keys().copied().collect();
    }
    votes
        .iter()
        .filter(|(signer, signature)| {
            validators.get(**signer).is_some_and(|e| S::verify(&e.public_key, &message, signature))
        })
        .map(|(signer, _)| *signer)
        .collect()
}
