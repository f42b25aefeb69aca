//! The envelope checks that need no state: size, encoding, sender, chain id,
//! key, signature and action count. [`open_envelope`] runs them all, for a
//! node admitting a transaction before it reaches a block; the runtime runs
//! the same steps of [`Decoded`] with its account checks (sender known,
//! nonce) between them, so both refuse the same bytes with the same
//! [`TxError`] in the same order.

use prost::Message;
use vanna_crypto::PublicKey;
use vanna_proto::v1 as wire;

use crate::error::TxError;
use crate::ids::Address;
use crate::limits::{MAX_ACTIONS_PER_TRANSACTION, MAX_TRANSACTION_BYTES};
use crate::tx::transaction_hash;

/// A signed transaction decoded far enough to name its sender and nonce;
/// nothing about its chain, key or signature is checked yet.
#[derive(Clone, Debug)]
pub struct Decoded {
    signed: wire::SignedTransaction,
    body: wire::TransactionBody,
    sender: Address,
}

impl Decoded {
    /// Cheapest first: the size limit, the envelope decodes and is
    /// canonically encoded, the body decodes, the sender is an address.
    pub fn decode(bytes: &[u8]) -> Result<Self, TxError> {
        if bytes.len() > MAX_TRANSACTION_BYTES {
            return Err(TxError::TransactionTooLarge { size: bytes.len(), max: MAX_TRANSACTION_BYTES });
        }
        let signed = wire::SignedTransaction::decode(bytes).map_err(|e| TxError::Malformed(e.to_string()))?;
        // One encoding per signed content, so a transaction's hash is unique.
        if signed.encoded_len() != bytes.len() {
            return Err(TxError::Malformed("transaction is not canonically encoded".into()));
        }
        let body =
            wire::TransactionBody::decode(signed.body.as_slice()).map_err(|e| TxError::Malformed(e.to_string()))?;
        let sender = Address::from_slice(&body.sender)?;
        Ok(Decoded { signed, body, sender })
    }

    pub fn sender(&self) -> Address {
        self.sender
    }

    pub fn nonce(&self) -> u64 {
        self.body.nonce
    }

    pub fn check_chain_id(&self, chain_id: &str) -> Result<(), TxError> {
        if self.body.chain_id != chain_id {
            return Err(TxError::WrongChainId { expected: chain_id.to_string(), got: self.body.chain_id.clone() });
        }
        Ok(())
    }

    /// The signing key's bytes as sent, for a caller that keeps parsed keys.
    pub fn public_key_bytes(&self) -> &[u8] {
        &self.signed.public_key
    }

    /// Parses the signing key and checks that it is the sender's.
    pub fn public_key(&self) -> Result<PublicKey, TxError> {
        let key = PublicKey::from_compressed(&self.signed.public_key)?;
        let derived = Address(key.address());
        if derived != self.sender {
            return Err(TxError::SenderMismatch { sender: self.sender, derived });
        }
        Ok(key)
    }

    /// Checks the signature (low S) over the body's exact bytes with `key`,
    /// which the caller has checked is the sender's.
    pub fn verify_signature(&self, key: &PublicKey) -> Result<(), TxError> {
        Ok(key.verify(&self.signed.body, &self.signed.signature)?)
    }

    pub fn check_action_count(&self) -> Result<(), TxError> {
        let count = self.body.actions.len();
        if count == 0 {
            return Err(TxError::NoActions);
        }
        if count > MAX_ACTIONS_PER_TRANSACTION {
            return Err(TxError::TooManyActions { count, max: MAX_ACTIONS_PER_TRANSACTION });
        }
        Ok(())
    }

    pub fn into_actions(self) -> Vec<wire::Action> {
        self.body.actions
    }
}

/// A transaction that passed every check [`open_envelope`] makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// [`transaction_hash`] of the signed bytes.
    pub hash: [u8; 32],
    pub sender: Address,
    pub nonce: u64,
    /// Length of the signed bytes.
    pub size: usize,
}

/// Every envelope check that needs no state, in the runtime's order: size,
/// encoding, sender, chain id, key (the sender's), signature (low S), 1 to
/// [`MAX_ACTIONS_PER_TRANSACTION`] actions. What is left for the runtime is
/// whether the sender's account exists and the nonce is its next.
///
/// Costs one signature verification and one key decompression; a node runs
/// it off its event loop.
pub fn open_envelope(bytes: &[u8], chain_id: &str) -> Result<Envelope, TxError> {
    let decoded = Decoded::decode(bytes)?;
    decoded.check_chain_id(chain_id)?;
    let key = decoded.public_key()?;
    decoded.verify_signature(&key)?;
    decoded.check_action_count()?;
    Ok(Envelope { hash: transaction_hash(bytes), sender: decoded.sender, nonce: decoded.body.nonce, size: bytes.len() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tx::{Signer, transfer};

    const CHAIN: &str = "vanna-test";

    fn body(signer: &Signer, actions: usize) -> wire::TransactionBody {
        wire::TransactionBody {
            chain_id: CHAIN.into(),
            sender: signer.address().as_bytes().to_vec(),
            nonce: 4,
            actions: (0..actions).map(|_| transfer(Address([9; 20]), wire::Asset::Usd, "1")).collect(),
            memo: Vec::new(),
        }
    }

    #[test]
    fn a_good_transaction_opens_with_its_hash_sender_nonce_and_size() {
        let alice = Signer::from_seed("alice");
        let bytes = alice.sign_body(&body(&alice, 1));
        let envelope = open_envelope(&bytes, CHAIN).unwrap();
        assert_eq!(
            envelope,
            Envelope { hash: transaction_hash(&bytes), sender: alice.address(), nonce: 4, size: bytes.len() }
        );
    }

    #[test]
    fn each_stateless_check_refuses_with_its_reason() {
        let alice = Signer::from_seed("alice");
        let bob = Signer::from_seed("bob");
        assert_eq!(
            open_envelope(&vec![0; MAX_TRANSACTION_BYTES + 1], CHAIN),
            Err(TxError::TransactionTooLarge { size: MAX_TRANSACTION_BYTES + 1, max: MAX_TRANSACTION_BYTES })
        );
        assert!(matches!(open_envelope(&[0xff; 9], CHAIN), Err(TxError::Malformed(_))));
        let mut padded = alice.sign_body(&body(&alice, 1));
        padded.extend_from_slice(&[0x7a, 0x01, 0x00]);
        assert!(matches!(open_envelope(&padded, CHAIN), Err(TxError::Malformed(_))));
        let short_sender = wire::TransactionBody { sender: vec![1; 19], ..body(&alice, 1) };
        assert_eq!(open_envelope(&alice.sign_body(&short_sender), CHAIN), Err(TxError::BadAddress(19)));
        assert_eq!(
            open_envelope(&alice.sign_body(&body(&alice, 1)), "other"),
            Err(TxError::WrongChainId { expected: "other".into(), got: CHAIN.into() })
        );
        let mut signed = wire::SignedTransaction::decode(alice.sign_body(&body(&alice, 1)).as_slice()).unwrap();
        let good_key = signed.public_key.clone();
        signed.public_key = vec![5; 33];
        assert_eq!(open_envelope(&signed.encode_to_vec(), CHAIN), Err(TxError::BadPublicKey));
        signed.public_key =
            wire::SignedTransaction::decode(bob.sign_body(&body(&bob, 1)).as_slice()).unwrap().public_key;
        assert_eq!(
            open_envelope(&signed.encode_to_vec(), CHAIN),
            Err(TxError::SenderMismatch { sender: alice.address(), derived: bob.address() })
        );
        signed.public_key = good_key;
        signed.signature[10] ^= 1;
        assert!(matches!(
            open_envelope(&signed.encode_to_vec(), CHAIN),
            Err(TxError::BadSignature | TxError::HighS | TxError::BadSignatureEncoding)
        ));
        signed.signature.truncate(63);
        assert_eq!(open_envelope(&signed.encode_to_vec(), CHAIN), Err(TxError::BadSignatureEncoding));
        assert_eq!(open_envelope(&alice.sign_body(&body(&alice, 0)), CHAIN), Err(TxError::NoActions));
        assert_eq!(
            open_envelope(&alice.sign_body(&body(&alice, MAX_ACTIONS_PER_TRANSACTION + 1)), CHAIN),
            Err(TxError::TooManyActions { count: MAX_ACTIONS_PER_TRANSACTION + 1, max: MAX_ACTIONS_PER_TRANSACTION })
        );
        assert!(open_envelope(&alice.sign_body(&body(&alice, MAX_ACTIONS_PER_TRANSACTION)), CHAIN).is_ok());
    }

    #[test]
    fn an_earlier_check_wins_over_a_later_one() {
        // Wrong chain and no actions: the chain id is checked first, as the runtime does.
        let alice = Signer::from_seed("alice");
        let bytes = alice.sign_body(&wire::TransactionBody { chain_id: "x".into(), ..body(&alice, 0) });
        assert!(matches!(open_envelope(&bytes, CHAIN), Err(TxError::WrongChainId { .. })));
    }
}
