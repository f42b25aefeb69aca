//! The consensus [`Scheme`] over `vanna-crypto`'s BLS12-381: what the node,
//! the certificate tests and a share of simulator seeds run.

pub use vanna_crypto::bls::{
    BlsPublicKey, BlsSecretKey, BlsSignature, DST_POP, DST_SIGNATURE, proof_of_possession, verify_proof_of_possession,
};

use crate::scheme::Scheme;

/// The BLS scheme marker for [`Scheme`]. Comparable so that messages over it are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bls;

impl Scheme for Bls {
    type SecretKey = BlsSecretKey;
    type PublicKey = BlsPublicKey;
    type Signature = BlsSignature;

    fn public_key(secret: &BlsSecretKey) -> BlsPublicKey {
        vanna_crypto::bls::public_key(secret)
    }
    fn public_key_bytes(key: &BlsPublicKey) -> Vec<u8> {
        key.to_bytes().to_vec()
    }
    fn sign(secret: &BlsSecretKey, message: &[u8]) -> BlsSignature {
        vanna_crypto::bls::sign(secret, message)
    }
    fn verify(key: &BlsPublicKey, message: &[u8], signature: &BlsSignature) -> bool {
        vanna_crypto::bls::verify(key, message, signature)
    }
    fn aggregate(signatures: &[&BlsSignature]) -> Option<BlsSignature> {
        vanna_crypto::bls::aggregate(signatures)
    }
    fn verify_aggregate(keys: &[&BlsPublicKey], message: &[u8], aggregate: &BlsSignature) -> bool {
        vanna_crypto::bls::verify_aggregate(keys, message, aggregate)
    }
}
