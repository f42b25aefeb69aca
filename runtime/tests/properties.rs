//! Property tests over random transaction sequences: conservation, book
//! ordering, determinism, nonces and account proofs.

mod common;

use common::*;
use proptest::prelude::*;
use vanna_proto::v1::{Action, PlaceOrder, SelfTradePrevention, Side, TimeInForce};
use vanna_runtime::events::TxStatus;
use vanna_runtime::sandbox::Sandbox;
use vanna_runtime::tx::{cancel, cancel_all, limit_order, market_order, place, replace, transfer};

const ACCOUNTS: [&str; 3] = ["alice", "bob", "carol"];
const SERIES: [&str; 4] = [PUT, PUT, "ETH-25DEC26-3500-P", CALL];
/// Index in SERIES of the one ETH series (other lot and tick sizes).
const ETH: usize = 2;

#[derive(Clone, Debug)]
enum Op {
    Limit {
        account: usize,
        series: usize,
        buy: bool,
        price_steps: u32,
        lots: u32,
        tif: u8,
        post_only: bool,
        reduce_only: bool,
        stp: u8,
    },
    Market {
        account: usize,
        series: usize,
        buy: bool,
        lots: u32,
    },
    Cancel {
        account: usize,
        pick: u64,
    },
    Replace {
        account: usize,
        pick: u64,
        price_steps: u32,
        lots: u32,
    },
    CancelAll {
        account: usize,
    },
    Transfer {
        account: usize,
        to: usize,
        amount: u32,
    },
    EndBlock,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        14 => (0..3usize, 0..4usize, any::<bool>(), 1..7u32, 1..150u32, 0..7u8, prop::bool::weighted(0.15), prop::bool::weighted(0.08), 0..3u8)
            .prop_map(|(account, series, buy, price_steps, lots, tif, post_only, reduce_only, stp)| Op::Limit { account, series, buy, price_steps, lots, tif, post_only, reduce_only, stp }),
        1 => (0..3usize, 0..4usize, any::<bool>(), 1..300u32).prop_map(|(account, series, buy, lots)| Op::Market { account, series, buy, lots }),
        2 => (0..3usize, any::<u64>()).prop_map(|(account, pick)| Op::Cancel { account, pick }),
        1 => (0..3usize, any::<u64>(), 1..7u32, 1..150u32).prop_map(|(account, pick, price_steps, lots)| Op::Replace { account, pick, price_steps, lots }),
        1 => (0..3usize).prop_map(|account| Op::CancelAll { account }),
        1 => (0..3usize, 0..3usize, 1..50_000u32).prop_map(|(account, to, amount)| Op::Transfer { account, to, amount }),
        2 => Just(Op::EndBlock),
    ]
}

/// Prices in steps of 250 USD around 500 (BTC) or of 10 around 50 (ETH); sizes in lots.
fn price(series: usize, steps: u32) -> String {
    if series == ETH { format!("{}", steps * 10) } else { format!("{}", steps * 250) }
}

fn quantity(series: usize, lots: u32) -> String {
    let lot = if series == ETH { rust_decimal::Decimal::new(1, 1) } else { rust_decimal::Decimal::new(1, 2) };
    (lot * rust_decimal::Decimal::from(lots)).normalize().to_string()
}

fn open_order(chain: &Sandbox, account: &str, pick: u64) -> Option<u64> {
    let orders = &chain.state.account(&chain.address(account))?.open_orders;
    if orders.is_empty() {
        return None;
    }
    orders.iter().nth((pick % orders.len() as u64) as usize).map(|id| id.0)
}

fn action(chain: &Sandbox, op: &Op) -> Option<(usize, Action)> {
    Some(match op {
        Op::Limit { account, series, buy, price_steps, lots, tif, post_only, reduce_only, stp } => {
            let side = if *buy { Side::Buy } else { Side::Sell };
            let tif = [
                TimeInForce::Gtc,
                TimeInForce::Gtc,
                TimeInForce::Gtc,
                TimeInForce::Gtc,
                TimeInForce::Gtc,
                TimeInForce::Ioc,
                TimeInForce::Fok,
            ][*tif as usize];
            let stp = [
                SelfTradePrevention::CancelResting,
                SelfTradePrevention::CancelIncoming,
                SelfTradePrevention::CancelBoth,
            ][*stp as usize];
            let order = PlaceOrder {
                time_in_force: tif as i32,
                post_only: *post_only && tif == TimeInForce::Gtc,
                reduce_only: *reduce_only,
                self_trade_prevention: stp as i32,
                ..limit_order(SERIES[*series], side, &price(*series, *price_steps), &quantity(*series, *lots))
            };
            (*account, place(order))
        }
        Op::Market { account, series, buy, lots } => {
            let side = if *buy { Side::Buy } else { Side::Sell };
            (*account, place(market_order(SERIES[*series], side, &quantity(*series, *lots))))
        }
        Op::Cancel { account, pick } => (*account, cancel(open_order(chain, ACCOUNTS[*account], *pick)?)),
        Op::Replace { account, pick, price_steps, lots } => {
            let id = open_order(chain, ACCOUNTS[*account], *pick)?;
            let info = &chain.state.orders[&vanna_runtime::OrderId(id)];
            let series = if chain.state.market(info.series).spec.underlying == "ETH" { ETH } else { 0 };
            (*account, replace(id, &price(series, *price_steps), &quantity(series, *lots)))
        }
        Op::CancelAll { account } => (*account, cancel_all(vanna_proto::v1::cancel_all::Scope::Everything(true))),
        Op::Transfer { account, to, amount } => {
            (*account, transfer(chain.address(ACCOUNTS[*to]), vanna_proto::v1::Asset::Usd, &amount.to_string()))
        }
        Op::EndBlock => return None,
    })
}

fn small_sandbox() -> Sandbox {
    let (mut genesis, signers) =
        vanna_runtime::sandbox::demo_genesis(&[("alice", 1_000_000), ("bob", 800_000), ("carol", 1_500_000)]);
    // Nobody reports prices here (no validators), and a run is longer than the
    // default 30 s before an underlying turns stale and reduce-only; staleness
    // has its own tests (tests/oracle.rs), these runs are about trading.
    genesis.oracle.stale_after_ms = 86_400_000;
    Sandbox::new(&genesis, signers).unwrap()
}

#[derive(Default)]
struct Activity {
    fills: usize,
    refused_actions: usize,
}

/// Runs the ops, checking invariants after every block; returns the roots.
fn run_ops(ops: &[Op]) -> (Sandbox, Vec<[u8; 32]>) {
    let (chain, roots, _) = run_ops_counting(ops);
    (chain, roots)
}

fn run_ops_counting(ops: &[Op]) -> (Sandbox, Vec<[u8; 32]>, Activity) {
    let mut chain = small_sandbox();
    let total = chain.state.total_usd();
    let mut roots = Vec::new();
    let mut activity = Activity::default();
    let mut end_block = |chain: &mut Sandbox| {
        let block = chain.produce_block();
        activity.fills += fills(&block).len();
        activity.refused_actions += block.receipts.iter().filter(|receipt| receipt.first_error().is_some()).count();
        for receipt in &block.receipts {
            assert!(
                matches!(receipt.status, TxStatus::Included { .. }),
                "sandbox transactions are well formed: {receipt:?}"
            );
        }
        chain.state.check_invariants();
        assert_eq!(chain.state.total_usd(), total, "USD is conserved");
        for market in &chain.state.markets {
            assert!(!market.book.is_crossed(), "book {} left crossed", market.spec.name);
        }
        assert_eq!(block.state_root, chain.state.state_root_from_scratch());
        roots.push(block.state_root);
    };
    for op in ops {
        match action(&chain, op) {
            Some((account, action)) => chain.submit(ACCOUNTS[account], vec![action]),
            None => end_block(&mut chain),
        }
        // Ops on open orders need them to exist: keep blocks short.
        if chain.state.height.is_multiple_of(3) {
            end_block(&mut chain);
        }
    }
    end_block(&mut chain);
    (chain, roots, activity)
}

/// The generator is only useful if it trades: check that, over a fixed set of
/// sequences, it produces fills and refusals.
#[test]
fn the_generator_exercises_matching_and_refusals() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut total = Activity::default();
    for _ in 0..20 {
        let ops = prop::collection::vec(op(), 40..60).new_tree(&mut runner).unwrap().current();
        let (_, _, activity) = run_ops_counting(&ops);
        total.fills += activity.fills;
        total.refused_actions += activity.refused_actions;
    }
    assert!(total.fills >= 80, "only {} fills", total.fills);
    assert!(total.refused_actions >= 20, "only {} refusals", total.refused_actions);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn conservation_books_and_roots_hold(ops in prop::collection::vec(op(), 1..100)) {
        run_ops(&ops);
    }

    #[test]
    fn the_same_transactions_give_the_same_roots(ops in prop::collection::vec(op(), 1..40)) {
        let (_, first) = run_ops(&ops);
        let (_, second) = run_ops(&ops);
        prop_assert_eq!(first, second);
    }

    #[test]
    fn no_transaction_applies_twice(ops in prop::collection::vec(op(), 1..20)) {
        let (mut chain, _) = run_ops(&ops);
        // Replay every transaction of a fresh block: each is refused as stale.
        let alice = chain.address("alice");
        let nonce = chain.next_nonce(&alice);
        chain.submit("alice", vec![transfer(chain.address("bob"), vanna_proto::v1::Asset::Usd, "1")]);
        let signed = chain.signer("alice").sign(vanna_runtime::sandbox::DEMO_CHAIN_ID, nonce, vec![transfer(chain.address("bob"), vanna_proto::v1::Asset::Usd, "1")]);
        let first = chain.produce_block();
        let included = matches!(first.receipts[0].status, TxStatus::Included { .. });
        prop_assert!(included);
        chain.submit_raw(signed);
        let again = chain.produce_block();
        let refused = matches!(again.receipts[0].status, TxStatus::Rejected { error: vanna_runtime::TxError::StaleNonce { .. } });
        prop_assert!(refused, "{:?}", again.receipts[0]);
    }

    #[test]
    fn account_proofs_verify_and_tampering_is_refused(ops in prop::collection::vec(op(), 1..40), flip in any::<prop::sample::Index>(), bit in 0u8..8) {
        let (mut chain, roots) = run_ops(&ops);
        let root = *roots.last().unwrap();
        let other_root = roots[0];
        for name in ACCOUNTS {
            let address = chain.address(name);
            let proof = prost::Message::encode_to_vec(&chain.state.prove_account(&address).unwrap());
            let account = vanna_runtime::verify_account_proof(&root, &address, &proof).unwrap();
            prop_assert_eq!(account.address, address.as_bytes().to_vec());
            if other_root != root {
                prop_assert!(vanna_runtime::verify_account_proof(&other_root, &address, &proof).is_err());
            }
            let mut tampered = proof.clone();
            let index = flip.index(tampered.len());
            tampered[index] ^= 1 << bit;
            prop_assert!(vanna_runtime::verify_account_proof(&root, &address, &tampered).is_err(), "byte {} bit {} flipped", index, bit);
        }
    }
}
