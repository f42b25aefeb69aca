//! A peer's hello and proof, as two frames of arbitrary bytes, checked by a
//! validator's side of the handshake: never a panic, and never a proved key
//! (nobody but the test key's holder can sign, and it signs nothing here).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use vanna_crypto::bls::BlsSecretKey;
use vanna_network::handshake::{Identity, Local, check_hello, check_proof};
use vanna_network::wire::{Received, decode};

fn identity() -> &'static Identity {
    static IDENTITY: OnceLock<Identity> = OnceLock::new();
    IDENTITY.get_or_init(|| Identity::new(BlsSecretKey::from_seed(&[42; 32]).unwrap()))
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else { return };
    let (hello, proof) = rest.split_at(usize::from(split).min(rest.len()));
    let local = Local {
        chain_id: "vanna-fuzz",
        genesis_hash: [1; 32],
        identity: Some(identity()),
        instance: [2; 16],
        challenge: [3; 32],
    };
    let Ok(Received::Hello(hello)) = decode(bytes::Bytes::copy_from_slice(hello)) else { return };
    let Ok(remote) = check_hello(&local, &hello) else { return };
    let Ok(Received::Proof(proof)) = decode(bytes::Bytes::copy_from_slice(proof)) else { return };
    if let Ok(Some(key)) = check_proof(&local, &remote, &proof) {
        panic!("a proof nobody signed passed for {key:?}");
    }
});
