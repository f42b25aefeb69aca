//! The state commitment's keys and hashing rules, and the check of an account
//! proof against a state root with nothing else: what a light client, an
//! exchange or the SDK does. The tree itself is `vanna-merkle`.

use prost::Message;
use sha2::{Digest, Sha256};
use vanna_merkle::Hash;
use vanna_proto::v1 as wire;

use crate::error::TxError;
use crate::ids::Address;

/// The tree key of a leaf: SHA-256 of a tag naming its kind and its id.
pub fn leaf_key(tag: &[u8], id: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update(tag);
    hasher.update(id);
    hasher.finalize().into()
}

/// The tree key of an account's leaf.
pub fn account_key(address: &Address) -> Hash {
    leaf_key(b"vanna/account", address.as_bytes())
}

/// A leaf's value: SHA-256 of the canonical encoding of its state.
pub fn value_hash(bytes: &[u8]) -> Hash {
    Sha256::digest(bytes).into()
}

/// Checks an encoded `AccountProof` against a state root and returns the
/// proven account. Refuses a proof whose bytes are not the canonical
/// encoding, so no byte of an accepted proof can be changed.
pub fn verify_account_proof(root: &Hash, address: &Address, proof_bytes: &[u8]) -> Result<wire::AccountState, TxError> {
    let refuse = |why: &str| TxError::Malformed(format!("account proof refused: {why}"));
    let proof = wire::AccountProof::decode(proof_bytes).map_err(|_| refuse("not an AccountProof"))?;
    if proof.encode_to_vec() != proof_bytes {
        return Err(refuse("not canonically encoded"));
    }
    let account =
        wire::AccountState::decode(proof.account.as_slice()).map_err(|_| refuse("account bytes do not decode"))?;
    if account.encode_to_vec() != proof.account {
        return Err(refuse("account bytes not canonically encoded"));
    }
    if account.address != address.as_bytes() {
        return Err(refuse("proof is for another account"));
    }
    let mut siblings = Vec::with_capacity(proof.siblings.len());
    for sibling in &proof.siblings {
        let hash: Hash = sibling.as_slice().try_into().map_err(|_| refuse("sibling is not 32 bytes"))?;
        siblings.push(hash);
    }
    if !vanna_merkle::verify_inclusion(root, &account_key(address), &value_hash(&proof.account), &siblings) {
        return Err(refuse("does not match the state root"));
    }
    Ok(account)
}
