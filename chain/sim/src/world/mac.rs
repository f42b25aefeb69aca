//! A cheap signature scheme that cannot be forged without the key: a
//! signature is a keyed hash (a MAC) of the message. The verifier needs the
//! MAC key, so a public key carries it, in a field private to this module;
//! the attacker code (`crate::adversary`) can neither read it nor build a
//! secret key, so the only signatures it can make are its own. Aggregation is
//! wrapping addition of the 64-bit tags, as BLS adds points: subtracting a
//! known tag from an aggregate is possible here exactly as it is there.

use vanna_consensus::{Scheme, hash_bytes};

#[derive(Clone)]
pub(crate) struct MacScheme;

impl std::fmt::Debug for MacScheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MacScheme")
    }
}

#[derive(Clone)]
pub(crate) struct MacSecretKey {
    key: [u8; 32],
}

impl std::fmt::Debug for MacSecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MacSecretKey(..)")
    }
}

#[derive(Clone, PartialEq, Eq)]
pub(crate) struct MacPublicKey {
    /// What the key is known by (and the validator set is ordered by).
    id: [u8; 8],
    key: [u8; 32],
}

impl std::fmt::Debug for MacPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MacPublicKey({:02x}{:02x}{:02x}{:02x})", self.id[0], self.id[1], self.id[2], self.id[3])
    }
}

/// The key of validator `index` in seed `seed`; only the world calls this.
pub(super) fn derive(seed: u64, index: usize) -> MacSecretKey {
    let mut input = seed.to_be_bytes().to_vec();
    input.extend_from_slice(&(index as u64).to_be_bytes());
    MacSecretKey { key: hash_bytes(b"vanna/sim/mac-key", &input) }
}

fn tag(key: &[u8; 32], message: &[u8]) -> u64 {
    let mut input = Vec::with_capacity(32 + message.len());
    input.extend_from_slice(key);
    input.extend_from_slice(message);
    let digest = hash_bytes(b"vanna/sim/mac", &input);
    u64::from_be_bytes([digest[0], digest[1], digest[2], digest[3], digest[4], digest[5], digest[6], digest[7]])
}

impl Scheme for MacScheme {
    type SecretKey = MacSecretKey;
    type PublicKey = MacPublicKey;
    type Signature = u64;

    fn public_key(secret: &MacSecretKey) -> MacPublicKey {
        let digest = hash_bytes(b"vanna/sim/mac-id", &secret.key);
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        MacPublicKey { id, key: secret.key }
    }
    fn public_key_bytes(key: &MacPublicKey) -> Vec<u8> {
        key.id.to_vec()
    }
    fn sign(secret: &MacSecretKey, message: &[u8]) -> u64 {
        tag(&secret.key, message)
    }
    fn verify(key: &MacPublicKey, message: &[u8], signature: &u64) -> bool {
        tag(&key.key, message) == *signature
    }
    fn aggregate(signatures: &[&u64]) -> Option<u64> {
        if signatures.is_empty() {
            return None;
        }
        Some(signatures.iter().fold(0u64, |sum, s| sum.wrapping_add(**s)))
    }
    fn verify_aggregate(keys: &[&MacPublicKey], message: &[u8], aggregate: &u64) -> bool {
        if keys.is_empty() {
            return false;
        }
        keys.iter().fold(0u64, |sum, k| sum.wrapping_add(tag(&k.key, message))) == *aggregate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_only_under_their_key_and_aggregate() {
        let (a, b) = (derive(1, 0), derive(1, 1));
        let (pa, pb) = (MacScheme::public_key(&a), MacScheme::public_key(&b));
        let (sa, sb) = (MacScheme::sign(&a, b"m"), MacScheme::sign(&b, b"m"));
        assert!(MacScheme::verify(&pa, b"m", &sa));
        assert!(!MacScheme::verify(&pb, b"m", &sa));
        assert!(!MacScheme::verify(&pa, b"n", &sa));
        let sum = MacScheme::aggregate(&[&sa, &sb]).unwrap();
        assert!(MacScheme::verify_aggregate(&[&pa, &pb], b"m", &sum));
        assert!(!MacScheme::verify_aggregate(&[&pa], b"m", &sum));
        // The debug form and the ordering bytes show the id, never the key.
        assert_eq!(format!("{pa:?}").len(), "MacPublicKey(01234567)".len());
        assert_eq!(MacScheme::public_key_bytes(&pa).len(), 8);
    }
}
