//! Vanna's consensus core: Simplex-style stake-weighted BFT with a BLS finality
//! gadget, written as a pure state machine (events in, actions out).
//!
//! Owns: ids, block headers, signed messages and their domain-separated bytes,
//! quorum certificates, validator sets and leader rotation, equivocation
//! evidence, and the per-validator protocol engine.
//!
//! Must not: do IO, read a clock, use randomness, spawn tasks or hold secret
//! keys. Time comes in with each event; signatures come back from the signer
//! (chain/signer) as events. Nothing a peer sends may panic it. Iteration order
//! never depends on hashing (BTreeMap / sorted Vec only). See chain/CONSENSUS.md.

mod bls;
mod engine;
mod error;
mod evidence;
mod messages;
mod scheme;
mod types;
mod validators;

pub use bls::{
    Bls, BlsPublicKey, BlsSecretKey, BlsSignature, DST_POP, DST_SIGNATURE, proof_of_possession,
    verify_proof_of_possession,
};
pub use engine::{Action, Config, Consensus, Event, Fault, MAX_BLOCKS_PER_RESPONSE, TimerKind, Timing, verify_votes};
pub use error::Error;
pub use evidence::{Evidence, Offence, Signed};
pub use messages::{Certificate, Message, Signable, SignedProposal, SignedVote, SignerBitmap, Vote, VoteKind};
pub use scheme::{Scheme, TestScheme};
pub use types::{BlockHash, ChainId, Epoch, Header, Height, Root, ValidatorIndex, View, hash_bytes};
pub use validators::{ValidatorEntry, ValidatorSet};
