//! Vanna's signature schemes, shared by the runtime, the consensus core, the
//! staking ledger, the oracle and clients: secp256k1 account keys
//! (transactions and oracle reports) in [`secp256k1`], BLS12-381 consensus
//! keys (votes, certificates, proofs of possession) in [`bls`].
//!
//! Pure: no IO, no clock, no randomness (keys come from the caller).

pub mod bls;
pub mod secp256k1;

pub use secp256k1::{PublicKey, SigningKey};

/// Why a key or a signature was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("public key is not a valid compressed secp256k1 point")]
    BadPublicKey,
    #[error("signature is not 64 bytes of r || s")]
    BadSignatureEncoding,
    #[error("signature has a high S value; sign with low-S (s <= n/2)")]
    HighS,
    #[error("signature does not verify for this body and public key")]
    BadSignature,
    /// A BLS key, signature or seed that does not decode.
    #[error("bad encoding: {0}")]
    Encoding(&'static str),
}
