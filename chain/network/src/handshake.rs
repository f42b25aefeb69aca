//! The handshake that opens every link, in both directions at once:
//!
//! 1. each side sends a [`Hello`]: chain id, genesis hash, protocol version,
//!    32 fresh random bytes from the operating system (its challenge), its
//!    BLS consensus key if it claims one, and its instance number;
//! 2. on the other's hello ([`check_hello`]: same chain, genesis and version,
//!    well-formed fields, not itself), each side sends a [`Proof`]: its BLS
//!    signature over [`signed_message`], which binds the chain, both
//!    challenges and both keys, so a proof is good for this one link only;
//! 3. each side checks the other's proof ([`check_proof`]). A side that
//!    claimed no key sends an empty proof and is anonymous (a full node).
//!
//! The signature uses the consensus ciphersuite with its own first bytes
//! ([`HANDSHAKE_DOMAIN`]), which no consensus message starts with
//! (`vanna/consensus/v1`), so a handshake proof never passes for a vote nor a
//! vote for a proof.

use bytes::Bytes;
use vanna_crypto::bls::{self, BlsPublicKey, BlsSecretKey, BlsSignature};
use vanna_proto::v1::peer_frame::{Hello, Proof};

use crate::{MAX_CHAIN_ID_BYTES, NetworkError, PROTOCOL_VERSION};

/// First bytes of every signed handshake message.
pub const HANDSHAKE_DOMAIN: &[u8] = b"vanna/handshake/v1";
pub const CHALLENGE_BYTES: usize = 32;
pub const INSTANCE_BYTES: usize = 16;
const KEY_BYTES: usize = 48;
const SIGNATURE_BYTES: usize = 96;

/// A node's consensus key pair, as the handshake uses it.
#[derive(Debug, Clone)]
pub struct Identity {
    secret: BlsSecretKey,
    public: BlsPublicKey,
}

impl Identity {
    pub fn new(secret: BlsSecretKey) -> Self {
        let public = bls::public_key(&secret);
        Self { secret, public }
    }
    pub fn public(&self) -> &BlsPublicKey {
        &self.public
    }
}

/// This side of one handshake.
#[derive(Debug, Clone)]
pub struct Local<'a> {
    pub chain_id: &'a str,
    pub genesis_hash: [u8; 32],
    pub identity: Option<&'a Identity>,
    /// Fixed for the life of the node.
    pub instance: [u8; INSTANCE_BYTES],
    /// Fresh for this link.
    pub challenge: [u8; CHALLENGE_BYTES],
}

/// What a checked hello says.
#[derive(Debug, Clone)]
pub struct RemoteHello {
    pub key: Option<BlsPublicKey>,
    pub challenge: [u8; CHALLENGE_BYTES],
}

/// Our hello.
pub fn hello(local: &Local<'_>) -> Hello {
    Hello {
        chain_id: local.chain_id.to_string(),
        genesis_hash: Bytes::copy_from_slice(&local.genesis_hash),
        protocol_version: PROTOCOL_VERSION,
        challenge: Bytes::copy_from_slice(&local.challenge),
        consensus_key: local.identity.map(|i| Bytes::copy_from_slice(&i.public.to_bytes())).unwrap_or_default(),
        instance: Bytes::copy_from_slice(&local.instance),
    }
}

/// Checks the other side's hello against ours.
pub fn check_hello(local: &Local<'_>, hello: &Hello) -> Result<RemoteHello, NetworkError> {
    if hello.chain_id.len() > MAX_CHAIN_ID_BYTES {
        return Err(NetworkError::BadHandshake("chain id"));
    }
    if hello.chain_id != local.chain_id {
        return Err(NetworkError::WrongChain { expected: local.chain_id.to_string(), got: hello.chain_id.clone() });
    }
    if hello.protocol_version != PROTOCOL_VERSION {
        return Err(NetworkError::WrongVersion { expected: PROTOCOL_VERSION, got: hello.protocol_version });
    }
    if hello.genesis_hash[..] != local.genesis_hash[..] {
        return Err(NetworkError::WrongGenesis);
    }
    let challenge: [u8; CHALLENGE_BYTES] =
        hello.challenge[..].try_into().map_err(|_| NetworkError::BadHandshake("challenge"))?;
    let instance: [u8; INSTANCE_BYTES] =
        hello.instance[..].try_into().map_err(|_| NetworkError::BadHandshake("instance"))?;
    if instance == local.instance {
        return Err(NetworkError::SelfConnection);
    }
    let key = match hello.consensus_key.len() {
        0 => None,
        _ => Some(BlsPublicKey::from_bytes(&hello.consensus_key).map_err(|_| NetworkError::BadHandshake("key"))?),
    };
    if let (Some(key), Some(identity)) = (&key, local.identity)
        && *key == identity.public
    {
        // Another node holding our key: letting it in would make two
        // validators sign as one.
        return Err(NetworkError::SelfConnection);
    }
    Ok(RemoteHello { key, challenge })
}

/// Our proof for the other side, empty if we hold no key.
pub fn prove(local: &Local<'_>, remote: &RemoteHello) -> Proof {
    let Some(identity) = local.identity else { return Proof::default() };
    let message = signed_message(
        local.chain_id,
        &local.genesis_hash,
        &remote.challenge,
        &local.challenge,
        &identity.public,
        remote.key.as_ref(),
    );
    Proof { signature: Bytes::copy_from_slice(&bls::sign(&identity.secret, &message).to_bytes()) }
}

/// Checks the other side's proof; returns the key it proved, if it claimed one.
pub fn check_proof(
    local: &Local<'_>,
    remote: &RemoteHello,
    proof: &Proof,
) -> Result<Option<BlsPublicKey>, NetworkError> {
    let Some(key) = &remote.key else {
        return if proof.signature.is_empty() { Ok(None) } else { Err(NetworkError::BadHandshake("proof")) };
    };
    if proof.signature.len() != SIGNATURE_BYTES {
        return Err(NetworkError::BadHandshake("proof"));
    }
    let signature = BlsSignature::from_bytes(&proof.signature).map_err(|_| NetworkError::BadSignature)?;
    let message = signed_message(
        local.chain_id,
        &local.genesis_hash,
        &local.challenge,
        &remote.challenge,
        key,
        local.identity.map(Identity::public),
    );
    if bls::verify(key, &message, &signature) { Ok(Some(key.clone())) } else { Err(NetworkError::BadSignature) }
}

/// What the signer signs for the verifier: the domain, the chain id
/// (length-prefixed), the genesis hash, the protocol version, the verifier's
/// challenge, the signer's challenge, the signer's key, and the verifier's
/// key behind a presence byte.
pub fn signed_message(
    chain_id: &str,
    genesis_hash: &[u8; 32],
    verifier_challenge: &[u8; CHALLENGE_BYTES],
    signer_challenge: &[u8; CHALLENGE_BYTES],
    signer_key: &BlsPublicKey,
    verifier_key: Option<&BlsPublicKey>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(HANDSHAKE_DOMAIN.len() + 1 + chain_id.len() + 32 + 4 + 64 + 1 + 2 * KEY_BYTES);
    out.extend_from_slice(HANDSHAKE_DOMAIN);
    // check_hello bounds a chain id to 64 bytes, so its length fits one byte.
    out.push(chain_id.len().min(usize::from(u8::MAX)) as u8);
    out.extend_from_slice(chain_id.as_bytes());
    out.extend_from_slice(genesis_hash);
    out.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    out.extend_from_slice(verifier_challenge);
    out.extend_from_slice(signer_challenge);
    out.extend_from_slice(&signer_key.to_bytes());
    match verifier_key {
        Some(key) => {
            out.push(1);
            out.extend_from_slice(&key.to_bytes());
        }
        None => out.push(0),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn identity(seed: u8) -> Identity {
        Identity::new(BlsSecretKey::from_seed(&Sha256::digest([seed])).unwrap())
    }

    fn local<'a>(identity: Option<&'a Identity>, salt: u8) -> Local<'a> {
        Local {
            chain_id: "vanna-test",
            genesis_hash: [9; 32],
            identity,
            instance: [salt; INSTANCE_BYTES],
            challenge: [salt.wrapping_add(100); CHALLENGE_BYTES],
        }
    }

    /// Runs both halves: returns what `b` concluded about `a`.
    fn run(a: &Local<'_>, b: &Local<'_>) -> Result<Option<BlsPublicKey>, NetworkError> {
        let a_seen_by_b = check_hello(b, &hello(a))?;
        let b_seen_by_a = check_hello(a, &hello(b))?;
        check_proof(b, &a_seen_by_b, &prove(a, &b_seen_by_a))
    }

    #[test]
    fn validators_and_full_nodes_prove_what_they_claim() {
        let (ia, ib) = (identity(1), identity(2));
        assert_eq!(run(&local(Some(&ia), 1), &local(Some(&ib), 2)).unwrap(), Some(ia.public.clone()));
        assert_eq!(run(&local(Some(&ia), 1), &local(None, 2)).unwrap(), Some(ia.public.clone()));
        assert_eq!(run(&local(None, 1), &local(Some(&ib), 2)).unwrap(), None);
        assert_eq!(run(&local(None, 1), &local(None, 2)).unwrap(), None);
    }

    #[test]
    fn a_recorded_proof_fails_for_a_fresh_challenge() {
        let (ia, ib) = (identity(1), identity(2));
        let (a, b) = (local(Some(&ia), 1), local(Some(&ib), 2));
        let recorded = prove(&a, &check_hello(&a, &hello(&b)).unwrap());
        let fresh_b = Local { challenge: [77; CHALLENGE_BYTES], ..b.clone() };
        let a_seen = check_hello(&fresh_b, &hello(&a)).unwrap();
        assert_eq!(check_proof(&fresh_b, &a_seen, &recorded), Err(NetworkError::BadSignature));
        // The same proof shown to a third validator fails too: it names b's key.
        let ic = identity(3);
        let c = Local { identity: Some(&ic), ..b.clone() };
        let a_seen = check_hello(&c, &hello(&a)).unwrap();
        assert_eq!(check_proof(&c, &a_seen, &recorded), Err(NetworkError::BadSignature));
    }

    #[test]
    fn a_claimed_key_without_its_secret_is_refused() {
        let (ia, ib, impostor) = (identity(1), identity(2), identity(3));
        let b = local(Some(&ib), 2);
        // The impostor claims a's key but can only sign with its own.
        let mut claim = hello(&local(Some(&impostor), 1));
        claim.consensus_key = Bytes::copy_from_slice(&ia.public.to_bytes());
        let seen = check_hello(&b, &claim).unwrap();
        let forged = prove(&local(Some(&impostor), 1), &check_hello(&local(Some(&impostor), 1), &hello(&b)).unwrap());
        assert_eq!(check_proof(&b, &seen, &forged), Err(NetworkError::BadSignature));
        assert_eq!(check_proof(&b, &seen, &Proof::default()), Err(NetworkError::BadHandshake("proof")));
        let junk = Proof { signature: Bytes::from(vec![0xa5; SIGNATURE_BYTES]) };
        assert_eq!(check_proof(&b, &seen, &junk), Err(NetworkError::BadSignature));
        // A keyless hello with a signature is malformed.
        let keyless = check_hello(&b, &hello(&local(None, 1))).unwrap();
        assert_eq!(check_proof(&b, &keyless, &forged), Err(NetworkError::BadHandshake("proof")));
    }

    #[test]
    fn hellos_of_other_chains_versions_or_ourselves_are_refused() {
        let ia = identity(1);
        let me = local(Some(&ia), 1);
        let other = local(None, 2);
        let with = |edit: fn(&mut Hello)| {
            let mut h = hello(&other);
            edit(&mut h);
            check_hello(&me, &h).map(|_| ())
        };
        assert!(matches!(with(|h| h.chain_id = "other".into()), Err(NetworkError::WrongChain { .. })));
        assert_eq!(with(|h| h.chain_id = "x".repeat(65)), Err(NetworkError::BadHandshake("chain id")));
        assert_eq!(with(|h| h.genesis_hash = Bytes::from_static(&[0; 32])), Err(NetworkError::WrongGenesis));
        assert_eq!(with(|h| h.protocol_version = 2), Err(NetworkError::WrongVersion { expected: 1, got: 2 }));
        assert_eq!(with(|h| h.challenge = Bytes::from_static(&[1; 31])), Err(NetworkError::BadHandshake("challenge")));
        assert_eq!(with(|h| h.instance = Bytes::new()), Err(NetworkError::BadHandshake("instance")));
        assert_eq!(with(|h| h.consensus_key = Bytes::from_static(&[1; 48])), Err(NetworkError::BadHandshake("key")));
        assert_eq!(with(|h| h.instance = Bytes::from_static(&[1; 16])), Err(NetworkError::SelfConnection));
        let twin = local(Some(&ia), 3);
        assert_eq!(check_hello(&me, &hello(&twin)).map(|_| ()), Err(NetworkError::SelfConnection));
        assert!(with(|_| ()).is_ok());
    }
}
