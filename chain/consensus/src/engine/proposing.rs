//! Proposals: building one as leader, receiving one from the leader, and
//! deciding whether to notarize it.

use crate::evidence::{Offence, Signed};
use crate::messages::{Signable, SignedProposal};
use crate::scheme::Scheme;
use crate::types::{BlockHash, Header, Height, Root, View};

use super::{Action, Consensus, Fault, Verification};

impl<S: Scheme> Consensus<S> {
    /// Work that may become possible after any change: propose, or vote on the
    /// current view's proposal.
    pub(super) fn progress(&mut self) {
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

    pub(super) fn on_payload(
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

    /// A proposal from its leader (checked by the caller) or our own.
    pub(super) fn on_proposal(&mut self, proposal: SignedProposal<S>, own: bool) {
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

    pub(super) fn on_verified(&mut self, view: View, block: BlockHash, valid: bool) {
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
}
