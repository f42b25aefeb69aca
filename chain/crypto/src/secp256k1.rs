//! Account keys and their signatures: ECDSA over secp256k1 with SHA-256 of
//! the exact message bytes, low-S only (as Bitcoin), through k256. An
//! account's address is the first 20 bytes of SHA-256 of its compressed key.

use k256::ecdsa::signature::hazmat::PrehashVerifier;
use k256::ecdsa::{Signature, VerifyingKey};
use k256::elliptic_curve::scalar::IsHigh;
use sha2::{Digest, Sha256};

pub use k256::ecdsa::SigningKey;

use crate::CryptoError;

/// A parsed public key kept with its compressed bytes: decompressing a point
/// costs a field square root, so callers keep the parsed key after first use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
    compressed: [u8; 33],
}

impl PublicKey {
    /// Parses a 33-byte compressed SEC1 key.
    pub fn from_compressed(bytes: &[u8]) -> Result<Self, CryptoError> {
        let compressed: [u8; 33] = bytes.try_into().map_err(|_| CryptoError::BadPublicKey)?;
        let key = VerifyingKey::from_sec1_bytes(&compressed).map_err(|_| CryptoError::BadPublicKey)?;
        Ok(PublicKey { key, compressed })
    }

    pub fn compressed(&self) -> &[u8; 33] {
        &self.compressed
    }

    /// The 20-byte address of this key.
    pub fn address(&self) -> [u8; 20] {
        address_of(&self.compressed)
    }

    /// Checks `signature` (64 bytes r || s) over SHA-256 of `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), CryptoError> {
        verify_prehash(&self.key, &Sha256::digest(message).into(), signature)
    }
}

/// The 20-byte address of a compressed public key.
pub fn address_of(compressed: &[u8; 33]) -> [u8; 20] {
    let digest = Sha256::digest(compressed);
    let mut address = [0u8; 20];
    address.copy_from_slice(&digest[..20]);
    address
}

/// Verifies a 64-byte r || s signature over a SHA-256 digest, refusing high S.
fn verify_prehash(key: &VerifyingKey, digest: &[u8; 32], signature: &[u8]) -> Result<(), CryptoError> {
    let signature = Signature::from_slice(signature).map_err(|_| CryptoError::BadSignatureEncoding)?;
    // k256 also refuses high S; checking first gives the signer a precise reason.
    if bool::from(signature.s().is_high()) {
        return Err(CryptoError::HighS);
    }
    key.verify_prehash(digest, &signature).map_err(|_| CryptoError::BadSignature)
}

/// Signs SHA-256 of `message` and returns the 64-byte low-S r || s form.
pub fn sign(key: &SigningKey, message: &[u8]) -> [u8; 64] {
    let digest: [u8; 32] = Sha256::digest(message).into();
    let (signature, _) = key.sign_prehash_recoverable(&digest).expect("signing a 32-byte digest cannot fail");
    let signature = signature.normalize_s().unwrap_or(signature);
    signature.to_bytes().into()
}

/// The compressed public key of a signing key.
pub fn public_key_of(key: &SigningKey) -> [u8; 33] {
    let point = key.verifying_key().to_encoded_point(true);
    point.as_bytes().try_into().expect("a compressed point is 33 bytes")
}

/// A signing key derived from a human-readable seed: SHA-256 of the seed and
/// a big-endian counter, the first that is a valid scalar. For test
/// accounts, the demo and the localnet only, never for real funds.
pub fn signing_key_from_seed(seed: &str) -> SigningKey {
    let mut counter = 0u32;
    loop {
        let digest = Sha256::new().chain_update(seed.as_bytes()).chain_update(counter.to_be_bytes()).finalize();
        if let Ok(key) = SigningKey::from_bytes(&digest) {
            return key;
        }
        counter += 1;
    }
}

#[cfg(test)]
mod tests {
    use k256::ecdsa::Signature;

    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32].into()).unwrap()
    }

    #[test]
    fn sign_then_verify() {
        let signing = key(7);
        let public = PublicKey::from_compressed(&public_key_of(&signing)).unwrap();
        let signature = sign(&signing, b"body");
        assert_eq!(public.verify(b"body", &signature), Ok(()));
        assert_eq!(public.verify(b"other", &signature), Err(CryptoError::BadSignature));
        assert_eq!(public.verify(b"body", &signature[..63]), Err(CryptoError::BadSignatureEncoding));
    }

    #[test]
    fn high_s_is_refused_with_its_own_reason() {
        let signing = key(9);
        let public = PublicKey::from_compressed(&public_key_of(&signing)).unwrap();
        let low = Signature::from_slice(&sign(&signing, b"m")).unwrap();
        let high = Signature::from_scalars(low.r(), -*low.s()).unwrap();
        assert_eq!(public.verify(b"m", &high.to_bytes()), Err(CryptoError::HighS));
    }

    #[test]
    fn bad_public_keys_are_refused() {
        assert_eq!(PublicKey::from_compressed(&[2; 32]), Err(CryptoError::BadPublicKey));
        assert_eq!(PublicKey::from_compressed(&[5; 33]), Err(CryptoError::BadPublicKey));
    }
}
