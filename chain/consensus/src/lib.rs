//! Vanna's consensus core: Simplex-style stake-weighted BFT with a BLS finality
//! gadget, written as a pure state machine (events in, actions out).
//!
//! Owns: ids, block headers, signed messages and their domain-separated bytes,
//! quorum certificates, validator sets and leader rotation, equivocation
//! evidence, the per-validator protocol engine, and the canonical wire codec
//! of its messages with their size limits (`wire`, `limits`).
//!
//! Must not: do IO, read a clock, use randomness, spawn tasks or hold secret
//! keys. Time comes in with each event; signatures come back from the signer
//! (chain/signer) as events. Nothing a peer sends may panic it. Iteration order
//! never depends on hashing (BTreeMap / sorted Vec only). See chain/CONSENSUS.md.

mod bls;
mod engine;
mod error;
mod evidence;
mod limits;
mod messages;
mod scheme;
mod types;
mod validators;
pub mod wire;

pub use bls::{
    Bls, BlsPublicKey, BlsSecretKey, BlsSignature, DST_POP, DST_SIGNATURE, proof_of_possession,
    verify_proof_of_possession,
};
pub use engine::{Action, Config, Consensus, Event, Fault, TimerKind, Timing, verify_votes};
pub use error::Error;
pub use evidence::{Evidence, Offence, Signed};
pub use limits::{
    MAX_BLOCK_REQUEST_BYTES, MAX_BLOCK_RESPONSE_BYTES, MAX_BLOCKS_PER_RESPONSE, MAX_CERTIFIED_BYTES, MAX_MESSAGE_BYTES,
    MAX_NULLIFICATION_BYTES, MAX_PAYLOAD_BYTES, MAX_PROPOSAL_BYTES, MAX_SIGNER_BITMAP_BYTES, MAX_STATUS_BYTES,
    MAX_VOTE_BYTES,
};
pub use messages::{Certificate, Message, Signable, SignedProposal, SignedVote, SignerBitmap, Vote, VoteKind};
pub use scheme::{Scheme, TestScheme};
pub use types::{BlockHash, ChainId, Epoch, Header, Height, Root, ValidatorIndex, View, hash_bytes};
pub use validators::{ValidatorEntry, ValidatorSet};
