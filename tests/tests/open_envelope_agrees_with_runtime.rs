//! `open_envelope` (what a node checks before its mempool) and the runtime's
//! envelope checks agree on the same bytes: where the runtime refuses for a
//! reason that needs no state, `open_envelope` refuses with the same error;
//! where it includes, `open_envelope` accepts with the same sender and nonce;
//! where it refuses for a reason of state (unknown account, nonce), the
//! stateless verdict is one the runtime checks only later, or acceptance.

use std::cell::RefCell;

use k256::ecdsa::Signature;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use prost::Message;
use vanna_proto::v1 as wire;
use vanna_runtime::State;
use vanna_runtime::events::TxStatus;
use vanna_runtime::limits::MAX_ACTIONS_PER_TRANSACTION;
use vanna_runtime::tx::{Signer, cancel};
use vanna_runtime::{Address, TxError};
use vanna_types::open_envelope;

/// How one case bends a good transaction of alice's.
#[derive(Clone, Debug)]
struct Bend {
    stranger: bool,
    nonce_offset: i64,
    actions: usize,
    wrong_chain: bool,
    sender: u8,
    key: u8,
    signature: u8,
    bytes: u8,
    position: usize,
}

/// Each part of the transaction is bent in about a quarter of the cases,
/// so that some cases bend nothing (and are included) and some bend several
/// parts at once (and show which check comes first).
fn bend() -> impl Strategy<Value = Bend> {
    // Codes below `good` bend the part; `good` leaves it as signed.
    let mostly = |good: u8| prop_oneof![3 => Just(good), 1 => 0..good];
    (
        prop::bool::weighted(0.2),
        prop_oneof![3 => Just(0), 1 => -1i64..=1],
        prop_oneof![3 => Just(1), 1 => prop_oneof![Just(0), Just(2), Just(MAX_ACTIONS_PER_TRANSACTION + 1)]],
        prop::bool::weighted(0.2),
        mostly(2),
        mostly(3),
        mostly(4),
        mostly(4),
        any::<usize>(),
    )
        .prop_map(|(stranger, nonce_offset, actions, wrong_chain, sender, key, signature, bytes, position)| Bend {
            stranger,
            nonce_offset,
            actions,
            wrong_chain,
            sender,
            key,
            signature,
            bytes,
            position,
        })
}

/// Signs the bent body with the signer's key, then bends the envelope.
fn build(bend: &Bend, alice: &Signer, bob: &Signer, stranger: &Signer, chain_id: &str, nonce: u64) -> Vec<u8> {
    let signer = if bend.stranger { stranger } else { alice };
    let sender = match bend.sender {
        0 => vec![7; 19],
        1 => bob.address().as_bytes().to_vec(),
        _ => signer.address().as_bytes().to_vec(),
    };
    let body = wire::TransactionBody {
        chain_id: if bend.wrong_chain { "elsewhere".into() } else { chain_id.into() },
        sender,
        nonce: nonce.saturating_add_signed(bend.nonce_offset),
        actions: (0..bend.actions).map(|i| cancel(i as u64 + 1)).collect(),
        memo: Vec::new(),
    };
    let mut signed = wire::SignedTransaction::decode(signer.sign_body(&body).as_slice()).unwrap();
    match bend.key {
        0 => signed.public_key = vec![5; 33],
        1 => {
            signed.public_key =
                wire::SignedTransaction::decode(bob.sign(chain_id, 0, vec![]).as_slice()).unwrap().public_key
        }
        2 => signed.public_key.truncate(32),
        _ => {}
    }
    match bend.signature {
        0 => {
            let low = Signature::from_slice(&signed.signature).unwrap();
            signed.signature = Signature::from_scalars(low.r(), -*low.s()).unwrap().to_bytes().to_vec();
        }
        1 => signed.signature[bend.position % 64] ^= 1 << (bend.position % 8),
        2 => signed.signature.truncate(63),
        3 => signed.body.push(0),
        _ => {}
    }
    let mut bytes = signed.encode_to_vec();
    match bend.bytes {
        0 => {
            let at = bend.position % bytes.len();
            bytes[at] ^= 1 << (bend.position % 8);
        }
        1 => bytes.truncate(bend.position % bytes.len()),
        2 => bytes.extend_from_slice(&[0x7a, 0x01, 0x00]),
        3 => bytes.resize(vanna_runtime::limits::MAX_TRANSACTION_BYTES + 1, 0),
        _ => {}
    }
    bytes
}

/// Errors the runtime checks after an unknown account / after the nonce.
fn after_account(error: &TxError) -> bool {
    matches!(
        error,
        TxError::BadPublicKey
            | TxError::SenderMismatch { .. }
            | TxError::BadSignatureEncoding
            | TxError::HighS
            | TxError::BadSignature
    ) || after_nonce(error)
}

fn after_nonce(error: &TxError) -> bool {
    matches!(error, TxError::NoActions | TxError::TooManyActions { .. })
}

fn compare(state: &mut State, bytes: &[u8]) -> Result<(), TestCaseError> {
    let chain_id = state.params.chain_id.clone();
    let opened = open_envelope(bytes, &chain_id);
    let receipt = state.apply_transaction(bytes, &mut Vec::new());
    match (&receipt.status, &opened) {
        (TxStatus::Included { .. }, Ok(envelope)) => {
            prop_assert_eq!(receipt.sender, Some(envelope.sender));
            prop_assert_eq!(receipt.nonce, Some(envelope.nonce));
            prop_assert_eq!(receipt.tx_hash, envelope.hash);
        }
        (TxStatus::Included { .. }, Err(error)) => prop_assert!(false, "runtime includes, open_envelope says {error}"),
        (TxStatus::Rejected { error: TxError::UnknownAccount(_) }, opened) => {
            prop_assert!(opened.as_ref().err().is_none_or(after_account), "{opened:?}");
        }
        (TxStatus::Rejected { error: TxError::StaleNonce { .. } | TxError::FutureNonce { .. } }, opened) => {
            prop_assert!(opened.as_ref().err().is_none_or(after_nonce), "{opened:?}");
        }
        (TxStatus::Rejected { error }, opened) => prop_assert_eq!(opened, &Err(error.clone())),
    }
    Ok(())
}

#[test]
fn open_envelope_agrees_with_the_runtime_on_the_same_bytes() {
    let (genesis, signers) = vanna_runtime::devnet::demo_genesis(&[("alice", 1_000_000), ("bob", 1_000_000)]);
    let named = |name: &str| signers.iter().find(|(n, _)| n == name).unwrap().1.clone();
    let (alice, bob, stranger) = (named("alice"), named("bob"), Signer::from_seed("nobody"));
    let state = RefCell::new(genesis.build().unwrap());
    let mut runner = TestRunner::new(Config { cases: 768, ..Config::default() });
    runner
        .run(&bend(), |bend| {
            let mut state = state.borrow_mut();
            let alice_address: Address = alice.address();
            let nonce = state.account(&alice_address).unwrap().nonce;
            let bytes = build(&bend, &alice, &bob, &stranger, &state.params.chain_id.clone(), nonce);
            compare(&mut state, &bytes)
        })
        .unwrap();
    // The bends reached inclusion often enough to test the agreement on acceptance.
    let state = state.borrow();
    assert!(state.account(&alice.address()).unwrap().nonce >= 20, "few cases were included");
}
