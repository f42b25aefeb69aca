//! BLS12-381 min_pk (keys in G1, signatures in G2) through blst, with the
//! proof-of-possession ciphersuite that makes same-message aggregation safe.

use blst::BLST_ERROR;
use blst::min_pk::{AggregatePublicKey, AggregateSignature, PublicKey, SecretKey, Signature};

use crate::error::Error;
use crate::scheme::Scheme;

/// Ciphersuite for every consensus signature.
pub const DST_SIGNATURE: &[u8] = b"BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_";
/// Ciphersuite for proofs of possession (a signature over the key's own bytes).
pub const DST_POP: &[u8] = b"BLS_POP_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_";

/// The BLS scheme marker for [`Scheme`].
#[derive(Debug, Clone, Copy)]
pub struct Bls;

#[derive(Clone)]
pub struct BlsSecretKey(SecretKey);

impl std::fmt::Debug for BlsSecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BlsSecretKey(..)")
    }
}

impl BlsSecretKey {
    /// Derives a key from at least 32 bytes of secret input keying material.
    pub fn from_seed(ikm: &[u8]) -> Result<Self, Error> {
        SecretKey::key_gen(ikm, &[]).map(Self).map_err(|_| Error::Encoding("seed shorter than 32 bytes"))
    }
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        SecretKey::from_bytes(bytes).map(Self).map_err(|_| Error::Encoding("secret key"))
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
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() != 48 {
            return Err(Error::Encoding("public key must be 48 compressed bytes"));
        }
        PublicKey::key_validate(bytes).map(Self).map_err(|_| Error::Encoding("public key"))
    }
    pub fn to_bytes(&self) -> [u8; 48] {
        self.0.compress()
    }
}

/// A validated G2 signature.
#[derive(Clone, PartialEq, Eq)]
pub struct BlsSignature(Signature);

impl std::fmt::Debug for BlsSignature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bytes = self.to_bytes();
        write!(f, "BlsSignature({:02x}{:02x}{:02x}{:02x}..)", bytes[0], bytes[1], bytes[2], bytes[3])
    }
}

impl BlsSignature {
    /// Decodes a compressed signature, rejecting bad encodings, points off the
    /// curve or outside the subgroup, and the identity.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() != 96 {
            return Err(Error::Encoding("signature must be 96 compressed bytes"));
        }
        Signature::sig_validate(bytes, true).map(Self).map_err(|_| Error::Encoding("signature"))
    }
    pub fn to_bytes(&self) -> [u8; 96] {
        self.0.compress()
    }
}

/// Proof of possession: the key signs its own compressed bytes under [`DST_POP`].
pub fn proof_of_possession(secret: &BlsSecretKey) -> BlsSignature {
    let public = secret.0.sk_to_pk().compress();
    BlsSignature(secret.0.sign(&public, DST_POP, &[]))
}

/// Checked by the staking ledger when a validator registers its key.
pub fn verify_proof_of_possession(key: &BlsPublicKey, proof: &BlsSignature) -> bool {
    proof.0.verify(false, &key.to_bytes(), DST_POP, &[], &key.0, false) == BLST_ERROR::BLST_SUCCESS
}

/// Verifies encoded key and signature under any ciphersuite tag; used by the
/// reference-vector tests, which also cover the basic (non-PoP) suite.
#[cfg(test)]
pub(crate) fn verify_encoded(key: &[u8], message: &[u8], signature: &[u8], dst: &[u8]) -> bool {
    let (Ok(key), Ok(signature)) = (BlsPublicKey::from_bytes(key), BlsSignature::from_bytes(signature)) else {
        return false;
    };
    signature.0.verify(false, message, dst, &[], &key.0, false) == BLST_ERROR::BLST_SUCCESS
}

impl Scheme for Bls {
    type SecretKey = BlsSecretKey;
    type PublicKey = BlsPublicKey;
    type Signature = BlsSignature;

    fn public_key(secret: &BlsSecretKey) -> BlsPublicKey {
        BlsPublicKey(secret.0.sk_to_pk())
    }
    fn public_key_bytes(key: &BlsPublicKey) -> Vec<u8> {
        key.to_bytes().to_vec()
    }
    fn sign(secret: &BlsSecretKey, message: &[u8]) -> BlsSignature {
        BlsSignature(secret.0.sign(message, DST_SIGNATURE, &[]))
    }
    fn verify(key: &BlsPublicKey, message: &[u8], signature: &BlsSignature) -> bool {
        // Key and signature were group-checked when decoded.
        signature.0.verify(false, message, DST_SIGNATURE, &[], &key.0, false) == BLST_ERROR::BLST_SUCCESS
    }
    fn aggregate(signatures: &[&BlsSignature]) -> Option<BlsSignature> {
        let raw: Vec<&Signature> = signatures.iter().map(|s| &s.0).collect();
        AggregateSignature::aggregate(&raw, false).ok().map(|a| BlsSignature(a.to_signature()))
    }
    fn verify_aggregate(keys: &[&BlsPublicKey], message: &[u8], aggregate: &BlsSignature) -> bool {
        let raw: Vec<&PublicKey> = keys.iter().map(|k| &k.0).collect();
        let Ok(aggregate_key) = AggregatePublicKey::aggregate(&raw, false) else {
            return false;
        };
        let key = aggregate_key.to_public_key();
        aggregate.0.verify(false, message, DST_SIGNATURE, &[], &key, false) == BLST_ERROR::BLST_SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::hash_bytes;

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
        BlsSecretKey::from_seed(&hash_bytes(b"test", &[i])).unwrap()
    }

    #[test]
    fn proof_of_possession_binds_the_key() {
        let (a, b) = (key(1), key(2));
        let (pa, pb) = (Bls::public_key(&a), Bls::public_key(&b));
        assert!(verify_proof_of_possession(&pa, &proof_of_possession(&a)));
        assert!(!verify_proof_of_possession(&pb, &proof_of_possession(&a)));
        // A consensus signature over the key bytes is not a proof of possession (different DST).
        let wrong_dst = Bls::sign(&a, &pa.to_bytes());
        assert!(!verify_proof_of_possession(&pa, &wrong_dst));
    }

    #[test]
    fn encodings_round_trip_and_reject_identity() {
        let secret = key(3);
        let public = Bls::public_key(&secret);
        assert_eq!(BlsPublicKey::from_bytes(&public.to_bytes()).unwrap(), public);
        let signature = Bls::sign(&secret, b"m");
        assert_eq!(BlsSignature::from_bytes(&signature.to_bytes()).unwrap(), signature);
        let mut identity_key = [0u8; 48];
        identity_key[0] = 0xc0;
        assert!(BlsPublicKey::from_bytes(&identity_key).is_err());
        let mut identity_signature = [0u8; 96];
        identity_signature[0] = 0xc0;
        assert!(BlsSignature::from_bytes(&identity_signature).is_err());
        assert_eq!(BlsSecretKey::from_bytes(&secret.to_bytes()).unwrap().to_bytes(), secret.to_bytes());
    }

    #[test]
    fn aggregate_verification_matches_single_checks() {
        let secrets: Vec<BlsSecretKey> = (0..5).map(key).collect();
        let publics: Vec<BlsPublicKey> = secrets.iter().map(Bls::public_key).collect();
        let signatures: Vec<BlsSignature> = secrets.iter().map(|s| Bls::sign(s, b"vote")).collect();
        let keys: Vec<&BlsPublicKey> = publics.iter().collect();
        let aggregate = Bls::aggregate(&signatures.iter().collect::<Vec<_>>()).unwrap();
        assert!(Bls::verify_aggregate(&keys, b"vote", &aggregate));
        assert!(!Bls::verify_aggregate(&keys[..4], b"vote", &aggregate));
        assert!(!Bls::verify_aggregate(&keys, b"other", &aggregate));
        assert!(Bls::aggregate(&[]).is_none());
    }
}
