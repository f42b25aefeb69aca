//! The canonical wire codec of [`Message`] for the BLS scheme the node runs:
//! protobuf `vanna.v1.ConsensusMessage` (proto/vanna/v1/consensus.proto).
//!
//! One encoding per message: [`decode`] accepts exactly the bytes [`encode`]
//! writes. It checks, cheapest first: the kind (the envelope's first byte)
//! and that kind's size limit, the framing (nothing after the envelope; a
//! block response's number of blocks), the protobuf, each field (lengths,
//! counts, signature encodings), and last that re-encoding what it decoded
//! gives back the same bytes, which refuses unknown fields, fields written at
//! their default value, repeated or reordered fields and over-long varints.
//! A signature is decoded without the subgroup check: its verification does
//! that, so junk costs no more than its decompression.

use prost::Message as _;
use vanna_crypto::CryptoError;
use vanna_proto::v1 as pb;
use vanna_proto::v1::consensus_message::Body;

use crate::bls::{Bls, BlsSignature};
use crate::limits::{
    MAX_BLOCK_REQUEST_BYTES, MAX_BLOCK_RESPONSE_BYTES, MAX_BLOCKS_PER_RESPONSE, MAX_CERTIFIED_BYTES,
    MAX_NULLIFICATION_BYTES, MAX_PAYLOAD_BYTES, MAX_PROPOSAL_BYTES, MAX_SIGNER_BITMAP_BYTES, MAX_STATUS_BYTES,
    MAX_VOTE_BYTES,
};
use crate::messages::{Certificate, Message, SignedProposal, SignedVote, SignerBitmap, Vote, VoteKind};
use crate::types::{BlockHash, Epoch, Header, Height, ValidatorIndex, View};

/// Why bytes from a peer are not a consensus message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("no bytes")]
    Empty,
    #[error("first byte {0:#04x} names no kind of consensus message")]
    UnknownKind(u8),
    #[error("{kind} of {bytes} bytes is over its limit of {limit}")]
    TooLarge { kind: &'static str, bytes: usize, limit: usize },
    #[error("not protobuf: {0}")]
    NotProtobuf(prost::DecodeError),
    #[error("not the canonical encoding of the message it decodes to")]
    NotCanonical,
    #[error("field {0} is missing")]
    MissingField(&'static str),
    #[error("{field} has {bytes} bytes instead of {expected}")]
    WrongLength { field: &'static str, bytes: usize, expected: usize },
    #[error("{field} is not a signature: {source}")]
    BadSignature { field: &'static str, source: CryptoError },
    /// `count` is where counting stopped, so for blocks it is one over the limit.
    #[error("{what}: {count}, over the limit of {limit}")]
    OverLimit { what: &'static str, count: usize, limit: usize },
    #[error("certificate signer bitmap names no signer")]
    NoSigners,
    #[error("{message} carries a certificate of the wrong kind of vote")]
    WrongCertificateKind { message: &'static str },
}

/// Wire type of a length-delimited field (a message or bytes) in a protobuf key.
const LENGTH_DELIMITED: u8 = 2;
/// Key of `BlockResponse.blocks`: field 1, length-delimited.
const BLOCKS_KEY: u8 = (1 << 3) | LENGTH_DELIMITED;

/// The kinds of message: the field numbers of `ConsensusMessage.body`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Proposal,
    Vote,
    Certified,
    Nullification,
    Status,
    BlockRequest,
    BlockResponse,
}

impl Kind {
    /// A canonical encoding is one field of the envelope, so it starts with
    /// that field's one-byte key: the kind's field number, length-delimited.
    fn of(first: u8) -> Option<Kind> {
        if first & 0x07 != LENGTH_DELIMITED {
            return None;
        }
        Some(match first >> 3 {
            1 => Kind::Proposal,
            2 => Kind::Vote,
            3 => Kind::Certified,
            4 => Kind::Nullification,
            5 => Kind::Status,
            6 => Kind::BlockRequest,
            7 => Kind::BlockResponse,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Proposal => "proposal",
            Kind::Vote => "vote",
            Kind::Certified => "certified",
            Kind::Nullification => "nullification",
            Kind::Status => "status",
            Kind::BlockRequest => "block request",
            Kind::BlockResponse => "block response",
        }
    }

    fn limit(self) -> usize {
        match self {
            Kind::Proposal => MAX_PROPOSAL_BYTES,
            Kind::Vote => MAX_VOTE_BYTES,
            Kind::Certified => MAX_CERTIFIED_BYTES,
            Kind::Nullification => MAX_NULLIFICATION_BYTES,
            Kind::Status => MAX_STATUS_BYTES,
            Kind::BlockRequest => MAX_BLOCK_REQUEST_BYTES,
            Kind::BlockResponse => MAX_BLOCK_RESPONSE_BYTES,
        }
    }
}

/// The canonical encoding of `message`. Total: a message over the limits
/// (which the engine never sends) encodes, and [`decode`] refuses it.
pub fn encode(message: &Message<Bls>) -> Vec<u8> {
    pb::ConsensusMessage { body: Some(wire_body(message)) }.encode_to_vec()
}

/// The message `bytes` canonically encode, or why they do not; never panics.
pub fn decode(bytes: &[u8]) -> Result<Message<Bls>, WireError> {
    let (&first, rest) = bytes.split_first().ok_or(WireError::Empty)?;
    let kind = Kind::of(first).ok_or(WireError::UnknownKind(first))?;
    if bytes.len() > kind.limit() {
        return Err(WireError::TooLarge { kind: kind.name(), bytes: bytes.len(), limit: kind.limit() });
    }
    let mut body = rest;
    let declared = prost::decode_length_delimiter(&mut body).map_err(WireError::NotProtobuf)?;
    // Bytes after the envelope's field would decode as more fields merged
    // into it (a block response's blocks appended): refuse them unread.
    if declared < body.len() {
        return Err(WireError::NotCanonical);
    }
    if kind == Kind::BlockResponse {
        check_block_count(body)?;
    }
    let decoded = pb::ConsensusMessage::decode(bytes).map_err(WireError::NotProtobuf)?;
    let message = message(decoded.body.ok_or(WireError::MissingField("body"))?)?;
    if encode(&message) != bytes {
        return Err(WireError::NotCanonical);
    }
    Ok(message)
}

/// Counts a block response's blocks before anything is decoded: an empty
/// entry takes two bytes, so within the size limit a peer could otherwise
/// make the decoder allocate millions of blocks. A truncated body is counted
/// as far as it goes; the protobuf decoder refuses it next.
fn check_block_count(mut body: &[u8]) -> Result<(), WireError> {
    let mut blocks = 0;
    while let Some((&key, rest)) = body.split_first() {
        if key != BLOCKS_KEY {
            return Err(WireError::NotCanonical);
        }
        body = rest;
        let length = prost::decode_length_delimiter(&mut body).map_err(WireError::NotProtobuf)?;
        blocks += 1;
        if blocks > MAX_BLOCKS_PER_RESPONSE {
            return Err(WireError::OverLimit {
                what: "blocks in a response",
                count: blocks,
                limit: MAX_BLOCKS_PER_RESPONSE,
            });
        }
        body = body.get(length..).unwrap_or_default();
    }
    Ok(())
}

fn wire_body(message: &Message<Bls>) -> Body {
    match message {
        Message::Proposal(proposal) => Body::Proposal(pb::Proposal {
            view: proposal.view.0,
            parent_view: proposal.parent_view.0,
            header: Some(wire_header(&proposal.header)),
            payload: proposal.payload.clone(),
            signature: proposal.signature.to_bytes().to_vec(),
        }),
        Message::Vote(vote) => Body::Vote(pb::SignedVote {
            vote: Some(wire_vote(&vote.vote)),
            signer: vote.signer.0,
            signature: vote.signature.to_bytes().to_vec(),
        }),
        Message::Certified { header, certificate } => Body::Certified(pb::Certified {
            header: header.as_ref().map(wire_header),
            certificate: Some(wire_certificate(certificate)),
        }),
        Message::Nullification(certificate) => Body::Nullification(wire_certificate(certificate)),
        Message::Status { epoch, view, finalized } => {
            Body::Status(pb::ConsensusStatus { epoch: epoch.0, view: view.0, finalized: finalized.0 })
        }
        Message::BlockRequest { block } => Body::BlockRequest(pb::BlockRequest { block: block.0.to_vec() }),
        Message::BlockResponse { blocks } => Body::BlockResponse(pb::BlockResponse {
            blocks: blocks
                .iter()
                .map(|(header, payload)| pb::Block { header: Some(wire_header(header)), payload: payload.clone() })
                .collect(),
        }),
    }
}

fn wire_header(header: &Header) -> pb::BlockHeader {
    pb::BlockHeader {
        parent: header.parent.0.to_vec(),
        height: header.height.0,
        epoch: header.epoch.0,
        view: header.view.0,
        proposer: header.proposer.0,
        block_time_ms: header.block_time_ms,
        state_root: header.state_root.to_vec(),
        transactions_root: header.transactions_root.to_vec(),
        payload_hash: header.payload_hash.to_vec(),
    }
}

fn wire_vote(vote: &Vote) -> pb::Vote {
    let subject = |height: Height, block: BlockHash| pb::VoteSubject { height: height.0, block: block.0.to_vec() };
    let kind = match vote.kind {
        VoteKind::Notarize { height, block } => pb::vote::Kind::Notarize(subject(height, block)),
        VoteKind::Finalize { height, block } => pb::vote::Kind::Finalize(subject(height, block)),
        VoteKind::Nullify => pb::vote::Kind::Nullify(pb::Nullify {}),
    };
    pb::Vote { epoch: vote.epoch.0, view: vote.view.0, kind: Some(kind) }
}

fn wire_certificate(certificate: &Certificate<Bls>) -> pb::Certificate {
    pb::Certificate {
        vote: Some(wire_vote(&certificate.vote)),
        signers: certificate.signers.0.clone(),
        signature: certificate.signature.to_bytes().to_vec(),
    }
}

fn message(body: Body) -> Result<Message<Bls>, WireError> {
    Ok(match body {
        Body::Proposal(proposal) => {
            check_payload(&proposal.payload)?;
            Message::Proposal(SignedProposal {
                view: View(proposal.view),
                parent_view: View(proposal.parent_view),
                header: header(proposal.header.ok_or(WireError::MissingField("proposal.header"))?)?,
                signature: signature(&proposal.signature, "proposal.signature")?,
                payload: proposal.payload,
            })
        }
        Body::Vote(vote) => Message::Vote(SignedVote {
            vote: self::vote(vote.vote.ok_or(WireError::MissingField("vote.vote"))?)?,
            signer: ValidatorIndex(vote.signer),
            signature: signature(&vote.signature, "vote.signature")?,
        }),
        Body::Certified(certified) => {
            let certificate =
                certificate(certified.certificate.ok_or(WireError::MissingField("certified.certificate"))?)?;
            if certificate.vote.kind == VoteKind::Nullify {
                return Err(WireError::WrongCertificateKind { message: "certified" });
            }
            Message::Certified { header: certified.header.map(header).transpose()?, certificate }
        }
        Body::Nullification(certificate) => {
            let certificate = self::certificate(certificate)?;
            if certificate.vote.kind != VoteKind::Nullify {
                return Err(WireError::WrongCertificateKind { message: "nullification" });
            }
            Message::Nullification(certificate)
        }
        Body::Status(status) => {
            Message::Status { epoch: Epoch(status.epoch), view: View(status.view), finalized: Height(status.finalized) }
        }
        Body::BlockRequest(request) => {
            Message::BlockRequest { block: BlockHash(hash(&request.block, "block_request.block")?) }
        }
        Body::BlockResponse(response) => Message::BlockResponse {
            blocks: response
                .blocks
                .into_iter()
                .map(|block| {
                    check_payload(&block.payload)?;
                    Ok((header(block.header.ok_or(WireError::MissingField("block.header"))?)?, block.payload))
                })
                .collect::<Result<_, WireError>>()?,
        },
    })
}

fn header(header: pb::BlockHeader) -> Result<Header, WireError> {
    Ok(Header {
        parent: BlockHash(hash(&header.parent, "header.parent")?),
        height: Height(header.height),
        epoch: Epoch(header.epoch),
        view: View(header.view),
        proposer: ValidatorIndex(header.proposer),
        block_time_ms: header.block_time_ms,
        state_root: hash(&header.state_root, "header.state_root")?,
        transactions_root: hash(&header.transactions_root, "header.transactions_root")?,
        payload_hash: hash(&header.payload_hash, "header.payload_hash")?,
    })
}

fn vote(vote: pb::Vote) -> Result<Vote, WireError> {
    let kind = match vote.kind.ok_or(WireError::MissingField("vote.kind"))? {
        pb::vote::Kind::Notarize(subject) => {
            VoteKind::Notarize { height: Height(subject.height), block: BlockHash(hash(&subject.block, "vote.block")?) }
        }
        pb::vote::Kind::Finalize(subject) => {
            VoteKind::Finalize { height: Height(subject.height), block: BlockHash(hash(&subject.block, "vote.block")?) }
        }
        pb::vote::Kind::Nullify(pb::Nullify {}) => VoteKind::Nullify,
    };
    Ok(Vote { epoch: Epoch(vote.epoch), view: View(vote.view), kind })
}

/// Only what holds for any validator set: the bitmap's exact length and the
/// signers' quorum are checked against the epoch's set by `Certificate::verify`.
fn certificate(certificate: pb::Certificate) -> Result<Certificate<Bls>, WireError> {
    let vote = vote(certificate.vote.ok_or(WireError::MissingField("certificate.vote"))?)?;
    if certificate.signers.len() > MAX_SIGNER_BITMAP_BYTES {
        return Err(WireError::OverLimit {
            what: "signer bitmap bytes",
            count: certificate.signers.len(),
            limit: MAX_SIGNER_BITMAP_BYTES,
        });
    }
    if certificate.signers.iter().all(|byte| *byte == 0) {
        return Err(WireError::NoSigners);
    }
    Ok(Certificate {
        vote,
        signers: SignerBitmap(certificate.signers),
        signature: signature(&certificate.signature, "certificate.signature")?,
    })
}

fn check_payload(payload: &[u8]) -> Result<(), WireError> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(WireError::OverLimit { what: "payload bytes", count: payload.len(), limit: MAX_PAYLOAD_BYTES });
    }
    Ok(())
}

fn hash(bytes: &[u8], field: &'static str) -> Result<[u8; 32], WireError> {
    bytes.try_into().map_err(|_| WireError::WrongLength { field, bytes: bytes.len(), expected: 32 })
}

fn signature(bytes: &[u8], field: &'static str) -> Result<BlsSignature, WireError> {
    BlsSignature::from_bytes(bytes).map_err(|source| WireError::BadSignature { field, source })
}
