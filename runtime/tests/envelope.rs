//! Envelope checks and limits: each refusal is exact and changes nothing.

mod common;

use common::*;
use k256::ecdsa::Signature;
use prost::Message;
use vanna_proto::v1::{self as wire, Side};
use vanna_runtime::TxError;
use vanna_runtime::events::{ActionOutcome, TxStatus};
use vanna_runtime::limits::*;
use vanna_runtime::sandbox::{DEMO_CHAIN_ID, Sandbox};
use vanna_runtime::tx::{Signer, limit_order, list_series, place, transfer};

fn rejected(chain: &mut Sandbox, bytes: Vec<u8>) -> TxError {
    let alice = chain.address("alice");
    let before = prost::Message::encode_to_vec(&chain.state.account_state(chain.state.account(&alice).unwrap().owner));
    chain.submit_raw(bytes);
    let block = chain.produce_block();
    let after = prost::Message::encode_to_vec(&chain.state.account_state(chain.state.account(&alice).unwrap().owner));
    assert_eq!(before, after, "a rejected transaction changes nothing");
    match &block.receipts[0].status {
        TxStatus::Rejected { error } => error.clone(),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

fn order_action() -> Vec<wire::Action> {
    vec![place(limit_order(CALL, Side::Buy, "100", "1"))]
}

#[test]
fn envelope_refusals_name_their_reason() {
    let mut chain = sandbox();
    let alice = chain.signer("alice").clone();
    assert_eq!(
        rejected(&mut chain, alice.sign("other-chain", 0, order_action())),
        TxError::WrongChainId { expected: DEMO_CHAIN_ID.into(), got: "other-chain".into() }
    );
    assert_eq!(
        rejected(&mut chain, alice.sign(DEMO_CHAIN_ID, 1, order_action())),
        TxError::FutureNonce { account: alice.address(), expected: 0, got: 1 }
    );
    assert_eq!(rejected(&mut chain, alice.sign(DEMO_CHAIN_ID, 0, vec![])), TxError::NoActions);
    let too_many =
        (0..=MAX_ACTIONS_PER_TRANSACTION).map(|_| transfer(chain.address("bob"), wire::Asset::Usd, "1")).collect();
    assert_eq!(
        rejected(&mut chain, alice.sign(DEMO_CHAIN_ID, 0, too_many)),
        TxError::TooManyActions { count: MAX_ACTIONS_PER_TRANSACTION + 1, max: MAX_ACTIONS_PER_TRANSACTION }
    );
    assert!(matches!(rejected(&mut chain, vec![0xff; 10]), TxError::Malformed(_)));
    assert!(matches!(
        rejected(&mut chain, vec![0; MAX_TRANSACTION_BYTES + 1]),
        TxError::TransactionTooLarge { size, max: MAX_TRANSACTION_BYTES } if size == MAX_TRANSACTION_BYTES + 1
    ));
    let stranger = Signer::from_seed("nobody");
    assert_eq!(
        rejected(&mut chain, stranger.sign(DEMO_CHAIN_ID, 0, order_action())),
        TxError::UnknownAccount(stranger.address())
    );

    // Tampering: a changed body, a high-S twin, a key that is not the sender's.
    let good = alice.sign(DEMO_CHAIN_ID, 0, order_action());
    let mut signed = wire::SignedTransaction::decode(good.as_slice()).unwrap();
    let mut tampered = signed.clone();
    *tampered.body.last_mut().unwrap() ^= 1;
    assert!(matches!(rejected(&mut chain, tampered.encode_to_vec()), TxError::BadSignature | TxError::Malformed(_)));
    let low = Signature::from_slice(&signed.signature).unwrap();
    let high = Signature::from_scalars(low.r(), -*low.s()).unwrap();
    let mut twin = signed.clone();
    twin.signature = high.to_bytes().to_vec();
    assert_eq!(rejected(&mut chain, twin.encode_to_vec()), TxError::HighS);
    let bob = chain.signer("bob").clone();
    let bob_signed = wire::SignedTransaction::decode(bob.sign(DEMO_CHAIN_ID, 0, order_action()).as_slice()).unwrap();
    let mut wrong_key = signed.clone();
    wrong_key.public_key = bob_signed.public_key;
    assert_eq!(
        rejected(&mut chain, wrong_key.encode_to_vec()),
        TxError::SenderMismatch { sender: alice.address(), derived: bob.address() }
    );
    let mut padded = good.clone();
    padded.extend_from_slice(&[0x7a, 0x01, 0x00]);
    assert!(matches!(rejected(&mut chain, padded), TxError::Malformed(_)), "an unknown trailing field is refused");
    signed.signature.truncate(63);
    assert_eq!(rejected(&mut chain, signed.encode_to_vec()), TxError::BadSignatureEncoding);

    // The genuine one applies once; its replay is stale.
    chain.submit_raw(good.clone());
    assert!(matches!(chain.produce_block().receipts[0].status, TxStatus::Included { .. }));
    assert_eq!(rejected(&mut chain, good), TxError::StaleNonce { account: alice.address(), expected: 1, got: 0 });
}

#[test]
fn a_failed_action_consumes_the_nonce_and_nothing_else() {
    let mut chain = sandbox();
    let (receipt, _) = run(&mut chain, "alice", vec![place(limit_order(CALL, Side::Buy, "100.3", "1"))]);
    assert_eq!(action_error(&receipt), TxError::OffTick { price: dec("100.3"), tick: dec("0.5") });
    let account = chain.state.account(&chain.address("alice")).unwrap();
    assert_eq!(account.nonce, 1);
    assert!(account.open_orders.is_empty() && account.usd_locked.is_zero());
    let (receipt, _) = run(&mut chain, "alice", vec![place(limit_order(CALL, Side::Buy, "100", "0.015"))]);
    assert_eq!(action_error(&receipt), TxError::OffLot { quantity: dec("0.015"), lot: dec("0.01") });
    let (receipt, _) = run(&mut chain, "alice", vec![place(limit_order("BTC-25DEC26-123-C", Side::Buy, "100", "1"))]);
    assert_eq!(action_error(&receipt), TxError::UnknownSeries("BTC-25DEC26-123-C".into()));
}

#[test]
fn transfers_move_only_free_funds() {
    let mut chain = sandbox();
    // A bid locks its premium and largest fee: 9 × 5,000 × 1.125.
    run(&mut chain, "alice", vec![place(limit_order(PUT, Side::Buy, "5000", "9"))]);
    let (alice, bob) = (chain.address("alice"), chain.address("bob"));
    let (receipt, _) = run(&mut chain, "alice", vec![transfer(bob, wire::Asset::Usd, "949376")]);
    assert_eq!(
        action_error(&receipt),
        TxError::InsufficientFunds { asset: "USD", needed: dec("949376"), available: dec("949375") }
    );
    let newcomer = Signer::from_seed("newcomer").address();
    let (receipt, _) = run(&mut chain, "alice", vec![transfer(newcomer, wire::Asset::Usd, "100000")]);
    assert_eq!(outcomes(&receipt)[0], Ok(ActionOutcome::Transferred));
    assert_eq!(chain.state.account(&newcomer).unwrap().usd.value(), dec("100000"));
    let (receipt, _) = run(&mut chain, "alice", vec![transfer(alice, wire::Asset::Usd, "1")]);
    assert_eq!(action_error(&receipt), TxError::SelfTransfer);
    let (receipt, _) = run(&mut chain, "alice", vec![transfer(newcomer, wire::Asset::Vanna, "1")]);
    assert_eq!(
        action_error(&receipt),
        TxError::InsufficientFunds { asset: "VANNA", needed: dec("1"), available: dec("0") }
    );
    let (receipt, _) = run(&mut chain, "alice", vec![transfer(newcomer, wire::Asset::Usd, "0.0000001")]);
    assert!(matches!(action_error(&receipt), TxError::TooPrecise { max_decimals: 6, .. }));
}

#[test]
fn only_the_listing_authority_lists_series() {
    let mut chain = sandbox();
    let (receipt, _) = run(&mut chain, "alice", vec![list_series("BTC-25DEC26-120000-C")]);
    assert_eq!(action_error(&receipt), TxError::NotAuthorized("list series"));
    let (receipt, _) = run(
        &mut chain,
        "authority",
        vec![list_series("BTC-25DEC26-120000-C"), list_series("BTC-25DEC26-120000-C"), list_series("BTC-1JAN26-1-C")],
    );
    let results = outcomes(&receipt);
    assert_eq!(results[0], Ok(ActionOutcome::SeriesListed));
    assert_eq!(results[1], Err(TxError::SeriesExists("BTC-25DEC26-120000-C".into())));
    assert!(matches!(results[2], Err(TxError::SeriesExpired { .. })));
    let (receipt, _) =
        run(&mut chain, "alice", vec![place(limit_order("BTC-25DEC26-120000-C", Side::Buy, "100", "1"))]);
    assert_eq!(order(&receipt).resting_contracts, dec("1"));
}

#[test]
fn order_limits_hold_at_their_edges() {
    let mut chain = sandbox();
    // Open orders per series: the 64th rests, the 65th is refused.
    let bids = |from: u32, count: u32| {
        (from..from + count)
            .map(|i| place(limit_order(CALL, Side::Buy, &format!("{}", 100 + i), "0.01")))
            .collect::<Vec<_>>()
    };
    run(&mut chain, "alice", bids(0, 32));
    run(&mut chain, "alice", bids(32, 32));
    let (receipt, _) = run(&mut chain, "alice", bids(64, 1));
    assert_eq!(action_error(&receipt), TxError::TooManyOpenOrdersInSeries { max: MAX_OPEN_ORDERS_PER_SERIES });
    // Open orders per account: fill up 4 × 64 across series, then one more is refused.
    for series in ["BTC-25DEC26-90000-C", "BTC-25DEC26-110000-C", "ETH-25DEC26-3000-C"] {
        for batch in 0..2 {
            let orders = (0..32)
                .map(|i| place(limit_order(series, Side::Buy, &format!("{}", 10 + batch * 32 + i), "1")))
                .collect();
            run(&mut chain, "alice", orders);
        }
    }
    assert_eq!(chain.state.account(&chain.address("alice")).unwrap().open_orders.len(), MAX_OPEN_ORDERS_PER_ACCOUNT);
    let (receipt, _) = run(&mut chain, "alice", vec![place(limit_order("ETH-25DEC26-3500-C", Side::Buy, "1", "1"))]);
    assert_eq!(action_error(&receipt), TxError::TooManyOpenOrders { max: MAX_OPEN_ORDERS_PER_ACCOUNT });
    // Price and size bounds.
    let (receipt, _) = run(&mut chain, "bob", vec![place(limit_order(CALL, Side::Buy, "10000000.5", "1"))]);
    assert!(matches!(action_error(&receipt), TxError::PriceTooHigh { .. }));
    let (receipt, _) = run(&mut chain, "bob", vec![place(limit_order(CALL, Side::Buy, "0.5", "1000000.01"))]);
    assert!(matches!(action_error(&receipt), TxError::QuantityTooLarge { .. }));
    let (receipt, _) = run(&mut chain, "bob", vec![place(limit_order(CALL, Side::Buy, "0.5", "1000000"))]);
    assert_eq!(order(&receipt).resting_contracts, dec("1000000"));
}

#[test]
fn one_order_sweeps_at_most_max_fills_resting_orders() {
    let (genesis, signers) = vanna_runtime::sandbox::demo_genesis(&[("maker", 100_000_000), ("taker", 100_000_000)]);
    let mut chain = Sandbox::new(&genesis, signers).unwrap();
    // An account rests at most 64 orders in a series: spread the asks over makers.
    let makers = (MAX_FILLS_PER_ORDER as usize).div_ceil(MAX_OPEN_ORDERS_PER_SERIES) + 1;
    for m in 0..makers {
        let signer = Signer::from_seed(&format!("maker-{m}"));
        chain.submit("maker", vec![transfer(signer.address(), wire::Asset::Usd, "1000000")]);
        chain.produce_block();
        for batch in 0..2 {
            let asks = (0..32)
                .map(|i| place(limit_order(PUT, Side::Sell, &format!("{}", 1000 + batch * 32 + i), "0.01")))
                .collect();
            let nonce = chain.next_nonce(&signer.address());
            chain.submit_raw(signer.sign(DEMO_CHAIN_ID, nonce, asks));
            chain.produce_block();
        }
    }
    let resting = chain.state.series(PUT).unwrap().book.len();
    assert!(resting > MAX_FILLS_PER_ORDER as usize);
    let (receipt, block) = run(&mut chain, "taker", vec![place(limit_order(PUT, Side::Buy, "2000", "100"))]);
    let outcome = order(&receipt);
    assert_eq!(fills(&block).len(), MAX_FILLS_PER_ORDER as usize);
    assert_eq!(outcome.cancelled, Some(vanna_runtime::events::CancelReason::MaxFills));
    assert_eq!(outcome.resting_contracts, dec("0"), "a capped sweep never rests into a crossed book");
}

#[test]
fn blocks_are_bounded_and_contexts_must_follow() {
    let mut chain = sandbox();
    let context = vanna_runtime::BlockContext { height: 5, time_ms: chain.state.time_ms, ..Default::default() };
    assert!(vanna_runtime::apply_block(&mut chain.state, &context, &[]).is_err());
    let context = vanna_runtime::BlockContext { height: 1, time_ms: chain.state.time_ms - 1, ..Default::default() };
    assert!(vanna_runtime::apply_block(&mut chain.state, &context, &[]).is_err());
    let context = vanna_runtime::BlockContext { height: 1, time_ms: chain.state.time_ms, ..Default::default() };
    let too_many = vec![Vec::new(); MAX_TRANSACTIONS_PER_BLOCK + 1];
    assert_eq!(
        vanna_runtime::apply_block(&mut chain.state, &context, &too_many).unwrap_err(),
        vanna_runtime::BlockError::TooManyTransactions {
            count: MAX_TRANSACTIONS_PER_BLOCK + 1,
            max: MAX_TRANSACTIONS_PER_BLOCK
        }
    );
    assert_eq!(chain.state.height, 0, "a refused block changes nothing");
}

#[test]
fn series_per_account_are_bounded() {
    let mut chain = sandbox();
    let strikes: Vec<String> =
        (1..=MAX_SERIES_PER_ACCOUNT as u32 + 1).map(|i| format!("BTC-25DEC26-{}-C", 200_000 + i)).collect();
    for batch in strikes.chunks(MAX_ACTIONS_PER_TRANSACTION) {
        run(&mut chain, "authority", batch.iter().map(|name| list_series(name)).collect());
    }
    for batch in strikes[..MAX_SERIES_PER_ACCOUNT].chunks(MAX_ACTIONS_PER_TRANSACTION) {
        let orders = batch.iter().map(|name| place(limit_order(name, Side::Buy, "1", "0.01"))).collect();
        run(&mut chain, "alice", orders);
    }
    assert_eq!(chain.state.account(&chain.address("alice")).unwrap().exposures.len(), MAX_SERIES_PER_ACCOUNT);
    let last = strikes.last().unwrap();
    let (receipt, _) = run(&mut chain, "alice", vec![place(limit_order(last, Side::Buy, "1", "0.01"))]);
    assert_eq!(action_error(&receipt), TxError::TooManyPositions { max: MAX_SERIES_PER_ACCOUNT });
}

#[test]
fn a_transaction_of_exactly_the_size_limit_is_not_refused_for_its_size() {
    let mut chain = sandbox();
    let alice = chain.signer("alice").clone();
    // A memo fills the transaction up to exactly the limit.
    let bob = chain.address("bob");
    let sign = |memo_len: usize| {
        let body = wire::TransactionBody {
            chain_id: DEMO_CHAIN_ID.into(),
            sender: alice.address().as_bytes().to_vec(),
            nonce: 0,
            actions: vec![transfer(bob, wire::Asset::Usd, "1")],
            memo: vec![b'm'; memo_len],
        };
        alice.sign_body(&body)
    };
    let overhead = sign(1000).len() - 1000;
    let bytes = sign(MAX_TRANSACTION_BYTES - overhead);
    assert_eq!(bytes.len(), MAX_TRANSACTION_BYTES);
    chain.submit_raw(bytes);
    let block = chain.produce_block();
    assert!(matches!(block.receipts[0].status, TxStatus::Included { .. }), "{:?}", block.receipts[0].status);
    let bytes = sign(MAX_TRANSACTION_BYTES - overhead + 1);
    assert_eq!(
        rejected(&mut chain, bytes),
        TxError::TransactionTooLarge { size: MAX_TRANSACTION_BYTES + 1, max: MAX_TRANSACTION_BYTES }
    );
}

/// A node that verified signatures at admission passes their hashes and the
/// runtime does not check them again: the block's receipts, events and root
/// are the ones a full check gives, bad signatures (not in the set) still
/// refused.
#[test]
fn signatures_verified_at_admission_are_not_checked_again_and_change_nothing() {
    let mut full = sandbox();
    let mut cached = sandbox();
    let mut transactions = Vec::new();
    for (name, price) in [("alice", "100"), ("bob", "110")] {
        let nonce = full.next_nonce(&full.address(name));
        let order = place(limit_order(CALL, Side::Buy, price, "1"));
        transactions.push(full.signer(name).sign(&full.state.params.chain_id, nonce, vec![order]));
    }
    let mut forged = transactions[1].clone();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    transactions.push(forged);
    let verified: std::collections::BTreeSet<[u8; 32]> =
        transactions[..2].iter().map(|bytes| vanna_runtime::tx::transaction_hash(bytes)).collect();
    let context = vanna_runtime::BlockContext::after(&full.state, 1_000);
    let expected = vanna_runtime::apply_block(&mut full.state, &context, &transactions).unwrap();
    let got =
        vanna_runtime::apply_block_with(&mut cached.state, &context, &transactions, &|hash| verified.contains(hash))
            .unwrap();
    assert_eq!(got.receipts, expected.receipts);
    assert_eq!(got.events, expected.events);
    assert_eq!(got.state_root, expected.state_root);
    assert!(got.receipts[2].first_error().is_some(), "a signature outside the set is still checked");
}
