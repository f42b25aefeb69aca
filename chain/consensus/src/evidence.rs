use crate::error::Error;
use crate::messages::{Signable, VoteKind};
use crate::scheme::Scheme;
use crate::types::{ChainId, Epoch, ValidatorIndex};
use crate::validators::ValidatorSet;

/// The offences the protocol defines; each is proven by two signed messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Offence {
    /// A leader proposed two different blocks (or parents) in one view.
    ConflictingProposals,
    /// A validator notarized two different blocks in one view.
    ConflictingNotarizes,
    /// A validator finalized two different blocks in one view.
    ConflictingFinalizes,
    /// A validator both finalized and nullified one view, which the finality
    /// rule forbids (finalize means "I did not time out").
    FinalizeAndNullify,
}

impl Offence {
    /// The offence two messages by one signer make together, if any. The
    /// slashing-protection store refuses to sign exactly these pairs.
    pub fn between(a: &Signable, b: &Signable) -> Option<Offence> {
        if a.epoch() != b.epoch() || a.view() != b.view() || a == b {
            return None;
        }
        match (a, b) {
            (Signable::Proposal { .. }, Signable::Proposal { .. }) => Some(Offence::ConflictingProposals),
            (Signable::Vote(x), Signable::Vote(y)) => match (x.kind, y.kind) {
                (VoteKind::Notarize { .. }, VoteKind::Notarize { .. }) => Some(Offence::ConflictingNotarizes),
                (VoteKind::Finalize { .. }, VoteKind::Finalize { .. }) => Some(Offence::ConflictingFinalizes),
                (VoteKind::Finalize { .. }, VoteKind::Nullify) | (VoteKind::Nullify, VoteKind::Finalize { .. }) => {
                    Some(Offence::FinalizeAndNullify)
                }
                _ => None,
            },
            _ => None,
        }
    }
}

/// A message with its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed<S: Scheme> {
    pub message: Signable,
    pub signature: S::Signature,
}

/// Proof that `offender` committed an offence: two messages it signed. Any
/// proposer may include it in a block; the staking ledger verifies and slashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence<S: Scheme> {
    pub offender: ValidatorIndex,
    pub first: Signed<S>,
    pub second: Signed<S>,
}

impl<S: Scheme> Evidence<S> {
    pub fn offence(&self) -> Option<Offence> {
        Offence::between(&self.first.message, &self.second.message)
    }

    /// Deterministic check against `validators`, the set of `epoch`: evidence
    /// from another epoch is refused, as indices and keys differ between sets.
    pub fn verify(&self, chain: ChainId, epoch: Epoch, validators: &ValidatorSet<S>) -> Result<Offence, Error> {
        let offence = self.offence().ok_or(Error::NoConflict)?;
        if self.first.message.epoch() != epoch {
            return Err(Error::WrongDomain);
        }
        let entry = validators.get(self.offender).ok_or(Error::UnknownValidator(self.offender.0))?;
        if offence == Offence::ConflictingProposals && validators.leader(self.first.message.view()) != self.offender {
            return Err(Error::NotLeader);
        }
        for signed in [&self.first, &self.second] {
            if !S::verify(&entry.public_key, &signed.message.signing_bytes(chain), &signed.signature) {
                return Err(Error::InvalidSignature);
            }
        }
        Ok(offence)
    }
}
