//! The signer round trip: what is asked for, and what its answers (proposals
//! and votes) set in motion.

use crate::messages::{Message, Signable, SignedProposal, SignedVote, VoteKind};
use crate::scheme::Scheme;

use super::{Action, Consensus};

impl<S: Scheme> Consensus<S> {
    /// Asks the signer, remembering the request: a signature that does not
    /// come back (the protection store's disk failed) is asked for again at
    /// the next retry tick; one it refused for good is refused again.
    pub(super) fn request_signature(&mut self, message: Signable) {
        let unsigned = &mut self.round(message.view()).unsigned;
        if !unsigned.contains(&message) {
            unsigned.push(message);
        }
        self.out.push(Action::Sign(message));
    }

    pub(super) fn on_signed(&mut self, message: Signable, signature: S::Signature) {
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
}
