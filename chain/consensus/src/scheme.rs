use std::fmt::Debug;

use crate::types::hash_bytes;

/// A signature scheme with same-message aggregation. The engine is generic over
/// it so the simulator can run thousands of seeds with [`TestScheme`] while the
/// node, the certificate tests and a share of simulator seeds use [`crate::Bls`].
pub trait Scheme: Clone + Debug + 'static {
    type SecretKey: Clone + Debug;
    /// Holds only validated keys (on the curve, in the subgroup, not identity).
    type PublicKey: Clone + Debug + Eq;
    /// Holds only validated signatures (decoding performs the group checks).
    type Signature: Clone + Debug + Eq;

    fn public_key(secret: &Self::SecretKey) -> Self::PublicKey;
    /// Canonical bytes; the validator set is ordered by them.
    fn public_key_bytes(key: &Self::PublicKey) -> Vec<u8>;
    fn sign(secret: &Self::SecretKey, message: &[u8]) -> Self::Signature;
    fn verify(key: &Self::PublicKey, message: &[u8], signature: &Self::Signature) -> bool;
    /// Sums signatures; `None` only for an empty slice.
    fn aggregate(signatures: &[&Self::Signature]) -> Option<Self::Signature>;
    /// One check that `aggregate` is the sum of signatures by `keys` on `message`.
    /// Safe against rogue keys only because every key proved possession.
    fn verify_aggregate(keys: &[&Self::PublicKey], message: &[u8], aggregate: &Self::Signature) -> bool;
}

/// A cheap, deterministic and INSECURE scheme for bulk simulation: anyone who
/// knows a public key can forge its signatures. The simulator's byzantine
/// validators never forge (they only sign conflicting messages with their own
/// keys), so protocol behaviour is the same as under BLS at a fraction of the cost.
#[derive(Debug, Clone, Copy)]
pub struct TestScheme;

impl TestScheme {
    fn tag(key: u64, message: &[u8]) -> u64 {
        let mut input = Vec::with_capacity(8 + message.len());
        input.extend_from_slice(&key.to_be_bytes());
        input.extend_from_slice(message);
        let digest = hash_bytes(b"vanna/test-scheme", &input);
        u64::from_be_bytes([digest[0], digest[1], digest[2], digest[3], digest[4], digest[5], digest[6], digest[7]])
    }
}

impl Scheme for TestScheme {
    type SecretKey = u64;
    type PublicKey = u64;
    /// Aggregation is wrapping addition of the per-signer tags.
    type Signature = u64;

    fn public_key(secret: &u64) -> u64 {
        *secret
    }
    fn public_key_bytes(key: &u64) -> Vec<u8> {
        key.to_be_bytes().to_vec()
    }
    fn sign(secret: &u64, message: &[u8]) -> u64 {
        Self::tag(*secret, message)
    }
    fn verify(key: &u64, message: &[u8], signature: &u64) -> bool {
        Self::tag(*key, message) == *signature
    }
    fn aggregate(signatures: &[&u64]) -> Option<u64> {
        if signatures.is_empty() {
            return None;
        }
        Some(signatures.iter().fold(0u64, |sum, s| sum.wrapping_add(**s)))
    }
    fn verify_aggregate(keys: &[&u64], message: &[u8], aggregate: &u64) -> bool {
        if keys.is_empty() {
            return false;
        }
        let expected = keys.iter().fold(0u64, |sum, k| sum.wrapping_add(Self::tag(**k, message)));
        expected == *aggregate
    }
}
