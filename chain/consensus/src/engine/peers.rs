//! Peer accounting: the verification budget each peer may spend per view,
//! single-signature checks, and reports of misbehaviour and equivocation.

use crate::evidence::{Evidence, Offence, Signed};
use crate::messages::Signable;
use crate::scheme::Scheme;
use crate::types::{ValidatorIndex, View};

use super::{Action, Consensus, Fault};

/// Signature verifications one peer may cause per view. An honest peer causes
/// at most seven (its proposal as leader, its three votes, and the first copy
/// of each of the view's three certificates); the rest is junk.
const MAX_VERIFICATIONS_PER_PEER_PER_VIEW: u32 = 16;

impl<S: Scheme> Consensus<S> {
    pub(super) fn misbehaving(&mut self, peer: ValidatorIndex, fault: Fault) {
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
    pub(super) fn charge(&mut self, peer: ValidatorIndex, view: View, count: u32) -> bool {
        let view = self.budget_view(view);
        let work = self.round(view).work.entry(peer).or_default();
        *work = work.saturating_add(count);
        if *work > MAX_VERIFICATIONS_PER_PEER_PER_VIEW {
            self.misbehaving(peer, Fault::OverBudget);
            return false;
        }
        true
    }

    pub(super) fn verify_single(&self, signer: ValidatorIndex, message: &Signable, signature: &S::Signature) -> bool {
        self.validators()
            .get(signer)
            .is_some_and(|entry| S::verify(&entry.public_key, &message.signing_bytes(self.config.chain), signature))
    }

    pub(super) fn report(&mut self, view: View, offender: ValidatorIndex, first: Signed<S>, second: Signed<S>) {
        let Some(offence) = Offence::between(&first.message, &second.message) else {
            return;
        };
        if self.round(view).reported.insert((offender, offence)) {
            self.out.push(Action::Evidence(Evidence { offender, first, second }));
        }
    }
}
