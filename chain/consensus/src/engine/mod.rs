//! The per-validator protocol engine (Simplex, see chain/CONSENSUS.md).
//!
//! This module holds the state, the inputs and outputs, and the dispatch of
//! events; each concern of the protocol lives in a submodule that adds its
//! methods to [`Consensus`].

mod certificates;
mod fetching;
mod finalization;
mod peers;
mod proposing;
mod signing;
mod views;
mod voting;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::error::Error;
use crate::evidence::{Evidence, Offence};
use crate::messages::{Certificate, Message, Signable, SignedProposal, SignedVote, VoteKind};
use crate::scheme::Scheme;
use crate::types::{BlockHash, ChainId, Epoch, Header, Height, Root, ValidatorIndex, View};
use crate::validators::ValidatorSet;
use certificates::certificate_block;
use voting::Tally;

pub use voting::verify_votes;

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

    fn round(&mut self, view: View) -> &mut Round<S> {
        self.rounds.entry(view).or_default()
    }
}
