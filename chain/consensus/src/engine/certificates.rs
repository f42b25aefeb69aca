//! Certificates: checking those peers send, accepting them (formed here or
//! received), and what each kind moves: the view, the finality vote, the commit.

use crate::messages::{Certificate, Message, Signable, Vote, VoteKind};
use crate::scheme::Scheme;
use crate::types::{BlockHash, Header, Height, ValidatorIndex, View};

use super::{Action, Consensus, Fault};

impl<S: Scheme> Consensus<S> {
    /// A certificate from `from`: charged to it, and it is reported if the check fails.
    pub(super) fn verify_certificate(&mut self, from: ValidatorIndex, certificate: &Certificate<S>) -> bool {
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

    pub(super) fn is_new_certificate(&self, certificate: &Certificate<S>) -> bool {
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

    pub(super) fn on_certified_message(
        &mut self,
        from: ValidatorIndex,
        header: Option<Header>,
        certificate: Certificate<S>,
    ) {
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

    pub(super) fn certified(&self, view: View) -> Option<(BlockHash, Height)> {
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

    pub(super) fn nullified(&self, view: View) -> bool {
        self.rounds.get(&view).is_some_and(|r| r.nullification.is_some())
    }

    /// Hands an accepted notarization or finalization to the node's journal.
    fn journal(&mut self, certificate: &Certificate<S>, header: &Option<Header>, block: BlockHash) {
        let header = header.clone().or_else(|| self.blocks.get(&block).map(|b| b.header.clone()));
        self.out.push(Action::Certificate { header, certificate: certificate.clone() });
    }

    pub(super) fn on_certificate(&mut self, certificate: Certificate<S>, header: Option<Header>, formed_here: bool) {
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
}

pub(super) fn certificate_block<S: Scheme>(certificate: &Certificate<S>) -> Option<BlockHash> {
    match certificate.vote.kind {
        VoteKind::Notarize { block, .. } | VoteKind::Finalize { block, .. } => Some(block),
        VoteKind::Nullify => None,
    }
}
