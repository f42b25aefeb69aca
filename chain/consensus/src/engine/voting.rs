//! Votes: the tallies that collect them, lazy batch verification, and the
//! certificate a quorum forms.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::evidence::{Offence, Signed};
use crate::messages::{Certificate, Signable, SignedVote, SignerBitmap, Vote, VoteKind};
use crate::scheme::Scheme;
use crate::types::{BlockHash, ChainId, Height, ValidatorIndex, View};
use crate::validators::ValidatorSet;

use super::{Consensus, Fault};

/// Per-subject vote accumulation: votes wait unverified until, counted with
/// the verified ones, they could form a quorum; then the batch is checked with
/// one aggregate verification and single checks only if that fails.
#[derive(Debug)]
pub(super) struct Tally<S: Scheme> {
    verified: BTreeMap<ValidatorIndex, S::Signature>,
    verified_power: u64,
    pending: BTreeMap<ValidatorIndex, S::Signature>,
    pending_power: u64,
    pub(super) certified: bool,
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

/// The class of a vote for equivocation checks: notarize, finalize or nullify.
pub(super) fn class(kind: &VoteKind) -> u8 {
    match kind {
        VoteKind::Notarize { .. } => 0,
        VoteKind::Finalize { .. } => 1,
        VoteKind::Nullify => 2,
    }
}

impl<S: Scheme> Consensus<S> {
    pub(super) fn vote_notarize(&mut self, view: View, height: Height, block: BlockHash) {
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
    pub(super) fn on_peer_vote(&mut self, vote: SignedVote<S>) {
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
    pub(super) fn count_own_vote(&mut self, vote: SignedVote<S>) {
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
