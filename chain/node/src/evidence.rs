//! Consensus evidence and certificates as a block's payload carries them,
//! and what the runtime makes of them.

use vanna_consensus::{
    BlockHash, Bls, Certificate, Epoch, Evidence, Height, Offence, Signable, Signed, SignerBitmap, ValidatorIndex,
    View, Vote, VoteKind,
};
use vanna_crypto::bls::BlsSignature;
use vanna_proto::v1 as wire;
use vanna_runtime::staking::{EvidenceRecord, Offence as LedgerOffence};

/// Why a payload's evidence or certificate does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("unknown consensus message kind {0}")]
    Kind(u32),
    #[error("block hash must be 32 bytes, got {0}")]
    Hash(usize),
    #[error("signature is not a BLS signature")]
    Signature,
    #[error("{0} is missing")]
    Missing(&'static str),
    #[error("certificate does not decode")]
    Certificate,
}

fn block(bytes: &[u8]) -> Result<BlockHash, RecordError> {
    Ok(BlockHash(bytes.try_into().map_err(|_| RecordError::Hash(bytes.len()))?))
}

fn vote_kind(kind: u32, height: u64, hash: &[u8]) -> Result<VoteKind, RecordError> {
    match kind {
        2 => Ok(VoteKind::Notarize { height: Height(height), block: block(hash)? }),
        3 => Ok(VoteKind::Finalize { height: Height(height), block: block(hash)? }),
        4 => Ok(VoteKind::Nullify),
        other => Err(RecordError::Kind(other)),
    }
}

fn message_fields(message: &Signable) -> wire::SignedConsensusMessage {
    match message {
        Signable::Proposal { epoch, view, parent_view, block } => wire::SignedConsensusMessage {
            kind: 1,
            epoch: epoch.0,
            view: view.0,
            parent_view: parent_view.0,
            height: 0,
            block: block.0.to_vec(),
            signature: Vec::new(),
            signers: Vec::new(),
        },
        Signable::Vote(vote) => vote_fields(vote),
    }
}

fn vote_fields(vote: &Vote) -> wire::SignedConsensusMessage {
    let (kind, height, block) = match vote.kind {
        VoteKind::Notarize { height, block } => (2, height.0, block.0.to_vec()),
        VoteKind::Finalize { height, block } => (3, height.0, block.0.to_vec()),
        VoteKind::Nullify => (4, 0, Vec::new()),
    };
    wire::SignedConsensusMessage {
        kind,
        epoch: vote.epoch.0,
        view: vote.view.0,
        parent_view: 0,
        height,
        block,
        signature: Vec::new(),
        signers: Vec::new(),
    }
}

fn signable(fields: &wire::SignedConsensusMessage) -> Result<Signable, RecordError> {
    let (epoch, view) = (Epoch(fields.epoch), View(fields.view));
    if fields.kind == 1 {
        return Ok(Signable::Proposal {
            epoch,
            view,
            parent_view: View(fields.parent_view),
            block: block(&fields.block)?,
        });
    }
    Ok(Signable::Vote(Vote { epoch, view, kind: vote_kind(fields.kind, fields.height, &fields.block)? }))
}

fn signed(fields: &wire::SignedConsensusMessage) -> Result<Signed<Bls>, RecordError> {
    let signature = BlsSignature::from_bytes(&fields.signature).map_err(|_| RecordError::Signature)?;
    Ok(Signed { message: signable(fields)?, signature })
}

pub fn encode_evidence(evidence: &Evidence<Bls>) -> wire::Evidence {
    let side = |signed: &Signed<Bls>| wire::SignedConsensusMessage {
        signature: signed.signature.to_bytes().to_vec(),
        ..message_fields(&signed.message)
    };
    wire::Evidence {
        offender: evidence.offender.0,
        first: Some(side(&evidence.first)),
        second: Some(side(&evidence.second)),
    }
}

pub fn decode_evidence(evidence: &wire::Evidence) -> Result<Evidence<Bls>, RecordError> {
    let first = evidence.first.as_ref().ok_or(RecordError::Missing("evidence's first message"))?;
    let second = evidence.second.as_ref().ok_or(RecordError::Missing("evidence's second message"))?;
    Ok(Evidence { offender: ValidatorIndex(evidence.offender), first: signed(first)?, second: signed(second)? })
}

/// The epoch of an encoded evidence record's messages.
pub fn evidence_epoch(evidence: &Evidence<Bls>) -> Epoch {
    evidence.first.message.epoch()
}

pub fn encode_certificate(certificate: &Certificate<Bls>) -> Vec<u8> {
    use prost::Message;
    wire::SignedConsensusMessage {
        signature: certificate.signature.to_bytes().to_vec(),
        signers: certificate.signers.0.clone(),
        ..vote_fields(&certificate.vote)
    }
    .encode_to_vec()
}

pub fn decode_certificate(bytes: &[u8]) -> Result<Certificate<Bls>, RecordError> {
    use prost::Message;
    let fields = wire::SignedConsensusMessage::decode(bytes).map_err(|_| RecordError::Certificate)?;
    if fields.encode_to_vec() != bytes {
        return Err(RecordError::Certificate);
    }
    let Signable::Vote(vote) = signable(&fields)? else { return Err(RecordError::Certificate) };
    let signature = BlsSignature::from_bytes(&fields.signature).map_err(|_| RecordError::Signature)?;
    Ok(Certificate { vote, signers: SignerBitmap(fields.signers), signature })
}

/// The ledger's view of verified evidence: the offender's key, the offence,
/// the height it is dated at and who reported it.
pub fn ledger_record(
    offence: Offence,
    consensus_key: [u8; 48],
    height: u64,
    reporter: Option<vanna_runtime::Address>,
) -> EvidenceRecord {
    let offence = match offence {
        Offence::ConflictingProposals => LedgerOffence::DoubleProposal,
        Offence::ConflictingNotarizes | Offence::ConflictingFinalizes => LedgerOffence::DoubleVote,
        Offence::FinalizeAndNullify => LedgerOffence::FinalityViolation,
    };
    EvidenceRecord { consensus_key, offence, height, reporter }
}
