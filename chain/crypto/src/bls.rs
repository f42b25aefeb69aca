//! BLS12-381 min_pk (keys in G1, signatures in G2) through blst, with the
//! proof-of-possession ciphersuite that makes same-message aggregation safe:
//! validators' consensus keys, their votes and the certificates that
//! aggregate them.

use blst::BLST_ERROR;
use blst::min_pk::{AggregatePublicKey, AggregateSignature, PublicKey, SecretKey, Signature};

use crate::CryptoError;

/// Ciphersuite for every consensus signature.
pub const DST_SIGNATURE: &[u8] = b"BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_";
/// Ciphersuite for proofs of possession (a signature over the key's own bytes).
pub const DST_POP: &[u8] = b"BLS_POP_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_";

#[derive(Clone)]
pub struct BlsSecretKey(SecretKey);

impl std::fmt::Debug for BlsSecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BlsSecretKey(..)")
    }
}

impl BlsSecretKey {
    /// Derives a key from at least 32 bytes of secret input keying material.
    pub fn from_seed(ikm: &[u8]) -> Result<Self, CryptoError> {
        SecretKey::key_gen(ikm, &[]).map(Self).map_err(|_| CryptoError::Encoding("seed shorter than 32 bytes"))
    }
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        SecretKey::from_bytes(bytes).map(Self).map_err(|_| CryptoError::Encoding("secret key"))
    }
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }
}

/// A validated G1 public key.
#[derive(Clone, PartialEq, Eq)]
pub struct BlsPublicKey(PublicKey);

impl std::fmt::Debug for BlsPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bytes = self.to_bytes();
        write!(f, "BlsPublicKey({:02x}{:02x}{:02x}{:02x}..)", bytes[0], bytes[1], bytes[2], bytes[3])
    }
}

impl BlsPublicKey {
    /// Decodes a compressed key, rejecting bad encodings, points off the curve
    /// or outside the subgroup, and the identity.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        if bytes.len() != 48 {
            return Err(CryptoError::Encoding("public key must be 48 compressed bytes"));
        }
        PublicKey::key_validate(bytes).map(Self).map_err(|_| CryptoError::Encoding("public key"))
    }
    pub fn to_bytes(&self) -> [u8; 48] {
        self.0.compress()
    }
}

/// A G2 signature on the curve, not the identity. Decoding skips the subgroup
/// check (it is as costly as a good share of a verification, and would be paid
/// for every message, valid or not); the verification of a decoded signature
/// performs it instead. Signatures made or aggregated here from checked ones
/// are in the subgroup by construction and skip it.
#[derive(Clone)]
pub struct BlsSignature {
    point: Signature,
    /// In the subgroup for sure (made by `sign`, or aggregated from such).
    checked: bool,
}

impl PartialEq for BlsSignature {
    fn eq(&self, other: &Self) -> bool {
        self.point == other.point
    }
}

impl Eq for BlsSignature {}

impl std::fmt::Debug for BlsSignature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bytes = self.to_bytes();
        write!(f, "BlsSignature({:02x}{:02x}{:02x}{:02x}..)", bytes[0], bytes[1], bytes[2], bytes[3])
    }
}

impl BlsSignature {
    /// Decodes a compressed signature, rejecting bad encodings, points off the
    /// curve and the identity. The subgroup check comes with verification.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        if bytes.len() != 96 {
            return Err(CryptoError::Encoding("signature must be 96 compressed bytes"));
        }
        if bytes[0] & 0x40 != 0 {
            // The infinity flag: the identity "signs" nothing.
            return Err(CryptoError::Encoding("signature is the identity"));
        }
        let point = Signature::from_bytes(bytes).map_err(|_| CryptoError::Encoding("signature"))?;
        Ok(Self { point, checked: false })
    }
    pub fn to_bytes(&self) -> [u8; 96] {
        self.point.compress()
    }

    fn verify(&self, message: &[u8], dst: &[u8], key: &PublicKey) -> bool {
        self.point.verify(!self.checked, message, dst, &[], key, false) == BLST_ERROR::BLST_SUCCESS
    }
}

/// Proof of possession: the key signs its own compressed bytes under [`DST_POP`].
pub fn proof_of_possession(secret: &BlsSecretKey) -> BlsSignature {
    let public = secret.0.sk_to_pk().compress();
    BlsSignature { point: secret.0.sign(&public, DST_POP, &[]), checked: true }
}

/// Checked by the staking ledger when a validator registers its key.
pub fn verify_proof_of_possession(key: &BlsPublicKey, proof: &BlsSignature) -> bool {
    proof.verify(&key.to_bytes(), DST_POP, &key.0)
}

/// Verifies encoded key and signature under any ciphersuite tag; used by the
/// reference-vector tests, which also cover the basic (non-PoP) suite.
#[cfg(test)]
fn verify_encoded(key: &[u8], message: &[u8], signature: &[u8], dst: &[u8]) -> bool {
    let (Ok(key), Ok(signature)) = (BlsPublicKey::from_bytes(key), BlsSignature::from_bytes(signature)) else {
        return false;
    };
    signature.verify(message, dst, &key.0)
}

/// The public key of a secret key.
pub fn public_key(secret: &BlsSecretKey) -> BlsPublicKey {
    BlsPublicKey(secret.0.sk_to_pk())
}

/// Signs `message` under [`DST_SIGNATURE`].
pub fn sign(secret: &BlsSecretKey, message: &[u8]) -> BlsSignature {
    BlsSignature { point: secret.0.sign(message, DST_SIGNATURE, &[]), checked: true }
}

/// Verifies one signature under [`DST_SIGNATURE`].
pub fn verify(key: &BlsPublicKey, message: &[u8], signature: &BlsSignature) -> bool {
    // The key was group-checked when decoded; the signature is checked here if it was decoded.
    signature.verify(message, DST_SIGNATURE, &key.0)
}

/// Sums signatures; `None` only for an empty slice.
pub fn aggregate(signatures: &[&BlsSignature]) -> Option<BlsSignature> {
    let raw: Vec<&Signature> = signatures.iter().map(|s| &s.point).collect();
    let checked = signatures.iter().all(|s| s.checked);
    // Unchecked inputs leave the sum unchecked: its verification does the subgroup check.
    AggregateSignature::aggregate(&raw, false).ok().map(|a| BlsSignature { point: a.to_signature(), checked })
}

/// One check that `aggregate` is the sum of signatures by `keys` on
/// `message`. Safe against rogue keys only because every key proved
/// possession ([`verify_proof_of_possession`]).
pub fn verify_aggregate(keys: &[&BlsPublicKey], message: &[u8], aggregate: &BlsSignature) -> bool {
    let raw: Vec<&PublicKey> = keys.iter().map(|k| &k.0).collect();
    let Ok(aggregate_key) = AggregatePublicKey::aggregate(&raw, false) else {
        return false;
    };
    aggregate.verify(message, DST_SIGNATURE, &aggregate_key.to_public_key())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    const BASIC_DST: &[u8] = b"BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_NUL_";

    fn vectors(file: &str) -> serde_json::Value {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors").join(file);
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    }

    /// Every case of a Wycheproof BLS file: key, message and signature are hex
    /// in `testGroups[].publicKey.pk`, `tests[].msg` and `tests[].sig`.
    fn check_file(file: &str, dst: &[u8]) -> usize {
        let json = vectors(file);
        let mut cases = 0;
        for group in json["testGroups"].as_array().unwrap() {
            assert_eq!(group["ciphersuite"].as_str().unwrap().as_bytes(), dst, "{file}: ciphersuite");
            let key = hex::decode(group["publicKey"]["pk"].as_str().unwrap()).unwrap();
            for case in group["tests"].as_array().unwrap() {
                let message = hex::decode(case["msg"].as_str().unwrap()).unwrap();
                let signature = hex::decode(case["sig"].as_str().unwrap()).unwrap();
                let expected = match case["result"].as_str().unwrap() {
                    "valid" => true,
                    "invalid" => false,
                    other => panic!("{file}: unexpected result {other}"),
                };
                let id = &case["tcId"];
                assert_eq!(
                    verify_encoded(&key, &message, &signature, dst),
                    expected,
                    "{file} case {id}: {}",
                    case["comment"]
                );
                cases += 1;
            }
        }
        assert_eq!(cases as u64, json["numberOfTests"].as_u64().unwrap_or(cases as u64), "{file}: case count");
        cases
    }

    #[test]
    fn agrees_with_every_wycheproof_pop_case() {
        assert_eq!(check_file("bls_sig_g2_pop_verify_test.json", DST_SIGNATURE), 26);
    }

    #[test]
    fn agrees_with_every_wycheproof_basic_case() {
        assert!(check_file("bls_sig_g2_basic_verify_test.json", BASIC_DST) >= 88);
    }

    fn key(i: u8) -> BlsSecretKey {
        BlsSecretKey::from_seed(&Sha256::new().chain_update(b"test").chain_update([i]).finalize()).unwrap()
    }

    #[test]
    fn proof_of_possession_binds_the_key() {
        let (a, b) = (key(1), key(2));
        let (pa, pb) = (public_key(&a), public_key(&b));
        assert!(verify_proof_of_possession(&pa, &proof_of_possession(&a)));
        assert!(!verify_proof_of_possession(&pb, &proof_of_possession(&a)));
        // A consensus signature over the key bytes is not a proof of possession (different DST).
        let wrong_dst = sign(&a, &pa.to_bytes());
        assert!(!verify_proof_of_possession(&pa, &wrong_dst));
    }

    #[test]
    fn encodings_round_trip_and_reject_identity() {
        let secret = key(3);
        let public = public_key(&secret);
        assert_eq!(BlsPublicKey::from_bytes(&public.to_bytes()).unwrap(), public);
        let signature = sign(&secret, b"m");
        assert_eq!(BlsSignature::from_bytes(&signature.to_bytes()).unwrap(), signature);
        let mut identity_key = [0u8; 48];
        identity_key[0] = 0xc0;
        assert!(BlsPublicKey::from_bytes(&identity_key).is_err());
        let mut identity_signature = [0u8; 96];
        identity_signature[0] = 0xc0;
        assert!(BlsSignature::from_bytes(&identity_signature).is_err());
        assert_eq!(BlsSecretKey::from_bytes(&secret.to_bytes()).unwrap().to_bytes(), secret.to_bytes());
    }

    /// Decoding skips the subgroup check; verification of a decoded signature does it.
    #[test]
    fn a_decoded_signature_outside_the_subgroup_never_verifies() {
        let secret = key(4);
        let public = public_key(&secret);
        let decoded = BlsSignature::from_bytes(&sign(&secret, b"m").to_bytes()).unwrap();
        assert!(!decoded.checked);
        assert!(verify(&public, b"m", &decoded));
        assert!(verify_aggregate(&[&public], b"m", &aggregate(&[&decoded]).unwrap()));
        // A point on the curve but outside the G2 subgroup, found by trying small x.
        let mut outside = None;
        for x in 0u8..=255 {
            let mut bytes = [0u8; 96];
            bytes[0] = 0x80;
            bytes[95] = x;
            if let Ok(signature) = BlsSignature::from_bytes(&bytes)
                && signature.point.validate(true).is_err()
            {
                outside = Some(signature);
                break;
            }
        }
        let outside = outside.expect("a non-subgroup point among the first x values");
        assert!(!verify(&public, b"m", &outside));
        let sum = aggregate(&[&decoded, &outside]).unwrap();
        assert!(!verify_aggregate(&[&public], b"m", &sum));
    }

    #[test]
    fn aggregate_verification_matches_single_checks() {
        let secrets: Vec<BlsSecretKey> = (0..5).map(key).collect();
        let publics: Vec<BlsPublicKey> = secrets.iter().map(public_key).collect();
        let signatures: Vec<BlsSignature> = secrets.iter().map(|s| sign(s, b"vote")).collect();
        let keys: Vec<&BlsPublicKey> = publics.iter().collect();
        let sum = aggregate(&signatures.iter().collect::<Vec<_>>()).unwrap();
        assert!(verify_aggregate(&keys, b"vote", &sum));
        assert!(!verify_aggregate(&keys[..4], b"vote", &sum));
        assert!(!verify_aggregate(&keys, b"other", &sum));
        assert!(aggregate(&[]).is_none());
    }
}
