use thiserror::Error;

/// Everything that can go wrong in the consensus core. Peers' faults surface
/// as values of this type (and are then ignored), never as panics.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Error {
    #[error("validator set is empty")]
    EmptyValidatorSet,
    #[error("validator set has {0} members, more than the limit of {1}")]
    TooManyValidators(usize, usize),
    #[error("validator {0} has zero voting power")]
    ZeroPower(usize),
    #[error("total voting power overflows")]
    PowerOverflow,
    #[error("public key appears twice in the validator set")]
    DuplicateKey,
    #[error("validator index {0} is not in the set")]
    UnknownValidator(u32),
    #[error("malformed encoding: {0}")]
    Encoding(&'static str),
    #[error("invalid signature")]
    InvalidSignature,
    #[error("signer bitmap is malformed")]
    BadBitmap,
    #[error("certificate signers hold no quorum")]
    NoQuorum,
    #[error("wrong chain or epoch")]
    WrongDomain,
    #[error("evidence messages do not conflict")]
    NoConflict,
    #[error("evidence signer is not the view's leader")]
    NotLeader,
    #[error("anchor proof is not a finalization of this epoch covering the anchor")]
    BadAnchor,
}
