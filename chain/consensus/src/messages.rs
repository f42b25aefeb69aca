use crate::error::Error;
use crate::scheme::Scheme;
use crate::types::{BlockHash, ChainId, Epoch, Header, Height, ValidatorIndex, View};
use crate::validators::ValidatorSet;

/// Prefix of every signed consensus message.
const SIGNING_DOMAIN: &[u8] = b"vanna/consensus/v1";

/// What a vote says about its view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum VoteKind {
    /// "This is the valid proposal of the view": first stage.
    Notarize { height: Height, block: BlockHash },
    /// "I saw the block notarized and did not time out": the finality vote.
    Finalize { height: Height, block: BlockHash },
    /// "The view timed out for me."
    Nullify,
}

/// The signed content of a vote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Vote {
    pub epoch: Epoch,
    pub view: View,
    pub kind: VoteKind,
}

/// Anything a validator signs. The signing bytes name the chain and the
/// message type, so a signature is never valid for anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Signable {
    /// A leader's proposal of `block` in `view`, extending the block certified in `parent_view`.
    Proposal {
        epoch: Epoch,
        view: View,
        parent_view: View,
        block: BlockHash,
    },
    Vote(Vote),
}

impl Signable {
    pub fn epoch(&self) -> Epoch {
        match self {
            Signable::Proposal { epoch, .. } => *epoch,
            Signable::Vote(vote) => vote.epoch,
        }
    }
    pub fn view(&self) -> View {
        match self {
            Signable::Proposal { view, .. } => *view,
            Signable::Vote(vote) => vote.view,
        }
    }

    /// Canonical, domain-separated bytes that get signed.
    pub fn signing_bytes(&self, chain: ChainId) -> Vec<u8> {
        let mut out = Vec::with_capacity(SIGNING_DOMAIN.len() + 8 + 1 + 8 + 8 + 8 + 32);
        out.extend_from_slice(SIGNING_DOMAIN);
        out.extend_from_slice(&chain.0.to_be_bytes());
        match self {
            Signable::Proposal { epoch, view, parent_view, block } => {
                out.push(1);
                out.extend_from_slice(&epoch.0.to_be_bytes());
                out.extend_from_slice(&view.0.to_be_bytes());
                out.extend_from_slice(&parent_view.0.to_be_bytes());
                out.extend_from_slice(&block.0);
            }
            Signable::Vote(vote) => {
                let (tag, subject) = match vote.kind {
                    VoteKind::Notarize { height, block } => (2, Some((height, block))),
                    VoteKind::Finalize { height, block } => (3, Some((height, block))),
                    VoteKind::Nullify => (4, None),
                };
                out.push(tag);
                out.extend_from_slice(&vote.epoch.0.to_be_bytes());
                out.extend_from_slice(&vote.view.0.to_be_bytes());
                if let Some((height, block)) = subject {
                    out.extend_from_slice(&height.0.to_be_bytes());
                    out.extend_from_slice(&block.0);
                }
            }
        }
        out
    }
}

/// A vote with its signer and signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedVote<S: Scheme> {
    pub vote: Vote,
    pub signer: ValidatorIndex,
    pub signature: S::Signature,
}

/// A leader's proposal: the header and payload it commits to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedProposal<S: Scheme> {
    pub view: View,
    pub parent_view: View,
    pub header: Header,
    /// Opaque to consensus (the application's transactions), bounded by
    /// `Config::max_payload_bytes` (and on the wire by [`crate::MAX_PAYLOAD_BYTES`]).
    /// Empty for a re-proposal at an epoch's end.
    pub payload: Vec<u8>,
    pub signature: S::Signature,
}

impl<S: Scheme> SignedProposal<S> {
    pub fn signable(&self) -> Signable {
        Signable::Proposal {
            epoch: self.header.epoch,
            view: self.view,
            parent_view: self.parent_view,
            block: self.header.hash(),
        }
    }
}

/// Which validators signed, one bit each in set order (bit i of byte i/8, LSB first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignerBitmap(pub Vec<u8>);

impl SignerBitmap {
    pub fn new(validators: usize) -> Self {
        Self(vec![0; validators.div_ceil(8)])
    }
    pub fn set(&mut self, index: ValidatorIndex) {
        let i = index.0 as usize;
        if let Some(byte) = self.0.get_mut(i / 8) {
            *byte |= 1 << (i % 8);
        }
    }
    pub fn contains(&self, index: ValidatorIndex) -> bool {
        let i = index.0 as usize;
        self.0.get(i / 8).is_some_and(|byte| byte & (1 << (i % 8)) != 0)
    }
    /// Signer indices in ascending order, after checking the bitmap fits a set of
    /// `validators` members exactly (no stray bits, no extra bytes).
    pub fn signers(&self, validators: usize) -> Result<Vec<ValidatorIndex>, Error> {
        if self.0.len() != validators.div_ceil(8) {
            return Err(Error::BadBitmap);
        }
        let mut out = Vec::new();
        for (byte_index, byte) in self.0.iter().enumerate() {
            let mut bits = *byte;
            while bits != 0 {
                let bit = bits.trailing_zeros() as usize;
                let index = byte_index * 8 + bit;
                if index >= validators {
                    return Err(Error::BadBitmap);
                }
                out.push(ValidatorIndex(index as u32));
                bits &= bits - 1;
            }
        }
        Ok(out)
    }
}

/// A quorum certificate: more than two thirds of the stake signed `vote`.
/// Notarization, finalization or nullification according to the vote's kind.
/// Self-contained: anyone holding the validator set verifies it with one
/// aggregate signature check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate<S: Scheme> {
    pub vote: Vote,
    pub signers: SignerBitmap,
    pub signature: S::Signature,
}

impl<S: Scheme> Certificate<S> {
    /// Checks the domain, the bitmap, the quorum and then the aggregate signature
    /// once against the sum of the signers' public keys.
    pub fn verify(&self, chain: ChainId, epoch: Epoch, validators: &ValidatorSet<S>) -> Result<(), Error> {
        if self.vote.epoch != epoch {
            return Err(Error::WrongDomain);
        }
        let signers = self.signers.signers(validators.len())?;
        let mut power: u64 = 0;
        let mut keys = Vec::with_capacity(signers.len());
        for index in &signers {
            let entry = validators.get(*index).ok_or(Error::UnknownValidator(index.0))?;
            power = power.saturating_add(entry.power);
            keys.push(&entry.public_key);
        }
        if !validators.is_quorum(power) {
            return Err(Error::NoQuorum);
        }
        let message = Signable::Vote(self.vote).signing_bytes(chain);
        if S::verify_aggregate(&keys, &message, &self.signature) { Ok(()) } else { Err(Error::InvalidSignature) }
    }
}

/// Everything validators send each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<S: Scheme> {
    Proposal(SignedProposal<S>),
    Vote(SignedVote<S>),
    /// A notarization or finalization with the header of its block when the
    /// sender knows it, so receivers learn the chain even if they missed the proposal.
    Certified {
        header: Option<Header>,
        certificate: Certificate<S>,
    },
    Nullification(Certificate<S>),
    /// Sent by a validator stuck in a view: peers that finalized further reply
    /// with their latest finalization, so a restarted or partitioned node catches up.
    Status {
        epoch: Epoch,
        view: View,
        finalized: Height,
    },
    /// Asks a peer for a block (header and payload) by hash.
    BlockRequest {
        block: BlockHash,
    },
    /// The requested block first, then as many of its ancestors as the sender
    /// has (at most [`crate::MAX_BLOCKS_PER_RESPONSE`]), each the parent of the one before.
    BlockResponse {
        blocks: Vec<(Header, Vec<u8>)>,
    },
}
