//! Trading scenarios through signed transactions and `apply_block`.

mod common;

use common::*;
use vanna_proto::v1::{SelfTradePrevention, Side, TimeInForce, cancel_all::Scope};
use vanna_runtime::TxError;
use vanna_runtime::events::{ActionOutcome, CancelReason, Event};
use vanna_runtime::tx::{cancel, cancel_all, cancel_by_client_id, limit_order, market_order, place, replace};

#[test]
fn a_cross_moves_premium_and_fees_exactly() {
    let mut chain = sandbox();
    let (receipt, _) = run(&mut chain, "bob", vec![place(limit_order(PUT, Side::Sell, "4000", "1"))]);
    assert_eq!(order(&receipt).resting_contracts, dec("1"));
    // A put writer locks no cash: portfolio margin covers the short.
    assert_eq!(usd(&chain, "bob"), (dec("1000000"), dec("0")));
    let (receipt, block) = run(&mut chain, "alice", vec![place(limit_order(PUT, Side::Buy, "4100", "1"))]);
    let outcome = order(&receipt);
    assert_eq!(outcome.filled_contracts, dec("1"));
    assert_eq!(outcome.resting_contracts, dec("0"));
    let fill = &fills(&block)[0];
    // Maker's price; fees on 97,000 of notional: taker 0.05%, maker 0.02%.
    assert_eq!(fill.price.value(), dec("4000"));
    assert_eq!(fill.taker_fee.value(), dec("48.5"));
    assert_eq!(fill.maker_fee.value(), dec("19.4"));
    assert_eq!(usd(&chain, "alice"), (dec("995951.5"), dec("0")));
    assert_eq!(usd(&chain, "bob"), (dec("1003980.6"), dec("0")));
    assert_eq!(chain.state.fee_pool.value(), dec("67.9"));
    assert_eq!(position(&chain, "alice", PUT), dec("1"));
    assert_eq!(position(&chain, "bob", PUT), dec("-1"));
}

#[test]
fn fees_are_capped_at_a_fraction_of_the_premium_and_rounded_up() {
    let mut chain = sandbox();
    // A deep out-of-the-money put: premium 10 per contract, 0.13 contracts.
    let series = "BTC-25DEC26-90000-P";
    run(&mut chain, "bob", vec![place(limit_order(series, Side::Sell, "10", "0.13"))]);
    let (_, block) = run(&mut chain, "alice", vec![place(limit_order(series, Side::Buy, "10", "0.13"))]);
    let fill = &fills(&block)[0];
    assert_eq!(fill.premium.value(), dec("1.3"));
    // 12.5% of 1.3 = 0.1625 < 0.05% of 97,000 × 0.13.
    assert_eq!(fill.taker_fee.value(), dec("0.1625"));
    assert_eq!(fill.maker_fee.value(), dec("0.1625"));
}

#[test]
fn buyers_must_hold_premium_plus_fees() {
    let (genesis, signers) = vanna_runtime::sandbox::demo_genesis(&[("poor", 1_000), ("bob", 1_000_000)]);
    let mut chain = vanna_runtime::sandbox::Sandbox::new(&genesis, signers).unwrap();
    // 900 premium + 12.5% cap = 1012.5 > 1000.
    let (receipt, _) = run(&mut chain, "poor", vec![place(limit_order(CALL, Side::Buy, "900", "1"))]);
    assert_eq!(
        action_error(&receipt),
        TxError::InsufficientFunds { asset: "USD", needed: dec("1012.5"), available: dec("1000") }
    );
    let (receipt, _) = run(&mut chain, "poor", vec![place(limit_order(CALL, Side::Buy, "888", "1"))]);
    assert_eq!(order(&receipt).resting_contracts, dec("1"));
    assert_eq!(usd(&chain, "poor"), (dec("1000"), dec("999")));
}

#[test]
fn short_options_need_initial_margin_and_closing_always_goes_through() {
    let (genesis, signers) =
        vanna_runtime::sandbox::demo_genesis(&[("small", 2_000), ("alice", 1_000_000), ("bob", 1_000_000)]);
    let mut chain = vanna_runtime::sandbox::Sandbox::new(&genesis, signers).unwrap();
    // A naked call on 1 BTC needs far more than 2,000 USD of initial margin: refused with the figures.
    let (receipt, _) = run(&mut chain, "small", vec![place(limit_order(CALL, Side::Sell, "5000", "1"))]);
    match action_error(&receipt) {
        TxError::InsufficientMargin { action: "order", equity, initial_margin } => {
            assert_eq!(equity, dec("2000"));
            assert!(initial_margin > dec("10000"), "initial margin {initial_margin}");
        }
        other => panic!("expected insufficient margin, got {other}"),
    }
    // A small short is within margin; bob writes calls with no cash locked.
    let (receipt, _) = run(&mut chain, "small", vec![place(limit_order(CALL, Side::Sell, "5000", "0.01"))]);
    assert_eq!(order(&receipt).resting_contracts, dec("0.01"));
    run(&mut chain, "bob", vec![place(limit_order(CALL, Side::Sell, "5000", "2"))]);
    assert_eq!(usd(&chain, "bob").1, dec("0"));
    // Small's order came first, so alice's 2.01 lift both.
    run(&mut chain, "alice", vec![place(limit_order(CALL, Side::Buy, "5000", "2.01"))]);
    assert_eq!(position(&chain, "bob", CALL), dec("-2"));
    // Bob cannot move out the cash that margins his short calls...
    let all = vanna_runtime::tx::transfer(chain.address("alice"), vanna_proto::v1::Asset::Usd, "1000000");
    let (receipt, _) = run(&mut chain, "bob", vec![all]);
    assert!(matches!(action_error(&receipt), TxError::InsufficientMargin { action: "transfer", .. }));
    // ...but buying them back only reduces risk and always goes through.
    run(&mut chain, "alice", vec![place(limit_order(CALL, Side::Sell, "5200", "2"))]);
    let (receipt, _) = run(&mut chain, "bob", vec![place(limit_order(CALL, Side::Buy, "5200", "2"))]);
    assert_eq!(order(&receipt).filled_contracts, dec("2"));
    assert_eq!(position(&chain, "bob", CALL), dec("0"));
}

#[test]
fn post_only_ioc_fok_and_market_orders() {
    let mut chain = sandbox();
    run(
        &mut chain,
        "bob",
        vec![place(limit_order(PUT, Side::Sell, "4000", "1")), place(limit_order(PUT, Side::Sell, "4010", "1"))],
    );
    let post_only = vanna_proto::v1::PlaceOrder { post_only: true, ..limit_order(PUT, Side::Buy, "4000", "1") };
    let (receipt, _) = run(&mut chain, "alice", vec![place(post_only)]);
    assert_eq!(action_error(&receipt), TxError::PostOnlyWouldCross { side: "ask", best: dec("4000") });

    let fok = vanna_proto::v1::PlaceOrder {
        time_in_force: TimeInForce::Fok as i32,
        ..limit_order(PUT, Side::Buy, "4010", "3")
    };
    let before = chain.state.state_root_from_scratch();
    let (receipt, _) = run(&mut chain, "alice", vec![place(fok)]);
    assert_eq!(action_error(&receipt), TxError::FillOrKillUnfilled { wanted: dec("3"), available: dec("2") });
    assert_eq!(chain.state.series(PUT).unwrap().book.len(), 2, "a refused FOK touches no order");
    assert_ne!(before, chain.state.state_root_from_scratch(), "only the nonce and block values moved");

    let ioc = vanna_proto::v1::PlaceOrder {
        time_in_force: TimeInForce::Ioc as i32,
        ..limit_order(PUT, Side::Buy, "4000", "3")
    };
    let (receipt, _) = run(&mut chain, "alice", vec![place(ioc)]);
    let outcome = order(&receipt);
    assert_eq!(
        (outcome.filled_contracts, outcome.resting_contracts, outcome.cancelled),
        (dec("1"), dec("0"), Some(CancelReason::Unfilled))
    );

    let (receipt, block) = run(&mut chain, "carol", vec![place(market_order(PUT, Side::Buy, "5"))]);
    assert_eq!(order(&receipt).filled_contracts, dec("1"));
    assert_eq!(fills(&block)[0].price.value(), dec("4010"));
    let (receipt, _) = run(&mut chain, "carol", vec![place(market_order(PUT, Side::Buy, "1"))]);
    assert_eq!(action_error(&receipt), TxError::NoLiquidity);
    assert_eq!(usd(&chain, "carol").1, dec("0"), "nothing stays locked after an IOC");
}

#[test]
fn good_til_time_orders_expire_by_block_time() {
    let mut chain = sandbox();
    let now = chain.state.time_ms;
    let gtt = vanna_proto::v1::PlaceOrder {
        time_in_force: TimeInForce::Gtt as i32,
        expire_at_ms: now + 2_500,
        ..limit_order(CALL, Side::Buy, "100", "1")
    };
    let (receipt, _) = run(&mut chain, "alice", vec![place(gtt)]);
    assert_eq!(order(&receipt).resting_contracts, dec("1"));
    let block = chain.produce_block();
    assert!(block.events.is_empty());
    let block = chain.produce_block();
    assert!(matches!(block.events[0], Event::OrderCancelled { reason: CancelReason::Expired, .. }));
    assert_eq!(usd(&chain, "alice").1, dec("0"));
    let stale = vanna_proto::v1::PlaceOrder {
        time_in_force: TimeInForce::Gtt as i32,
        expire_at_ms: 1,
        ..limit_order(CALL, Side::Buy, "100", "1")
    };
    let (receipt, _) = run(&mut chain, "alice", vec![place(stale)]);
    assert!(matches!(action_error(&receipt), TxError::BadExpiry { .. }));
}

#[test]
fn cancel_by_id_client_id_and_cancel_all_scopes() {
    let mut chain = sandbox();
    let with_client = |id, series: &str| vanna_proto::v1::PlaceOrder {
        client_order_id: id,
        ..limit_order(series, Side::Buy, "100", "1")
    };
    let (receipt, _) = run(
        &mut chain,
        "alice",
        vec![
            place(with_client(1, CALL)),
            place(with_client(2, CALL)),
            place(with_client(3, PUT)),
            place(with_client(4, "ETH-25DEC26-3000-C")),
            place(with_client(5, "ETH-25DEC26-3000-P")),
        ],
    );
    let first = match &outcomes(&receipt)[0] {
        Ok(ActionOutcome::Order(outcome)) => outcome.order,
        other => panic!("{other:?}"),
    };
    let (receipt, _) = run(&mut chain, "alice", vec![place(with_client(1, CALL))]);
    assert_eq!(action_error(&receipt), TxError::DuplicateClientOrderId(1));
    let (receipt, _) = run(&mut chain, "alice", vec![cancel(first.0), cancel_by_client_id(2), cancel_by_client_id(2)]);
    let results = outcomes(&receipt);
    assert_eq!(results[0], Ok(ActionOutcome::Cancelled { orders: 1 }));
    assert_eq!(results[1], Ok(ActionOutcome::Cancelled { orders: 1 }));
    assert_eq!(results[2], Err(TxError::UnknownClientOrderId(2)));
    let (receipt, _) = run(&mut chain, "bob", vec![cancel(first.0 + 2)]);
    assert_eq!(
        action_error(&receipt),
        TxError::UnknownOrder(vanna_runtime::OrderId(first.0 + 2)),
        "bob cannot cancel alice's order"
    );
    let (receipt, _) = run(&mut chain, "alice", vec![cancel_all(Scope::Series(PUT.into()))]);
    assert_eq!(outcomes(&receipt)[0], Ok(ActionOutcome::Cancelled { orders: 1 }));
    let (receipt, _) = run(&mut chain, "alice", vec![cancel_all(Scope::Underlying("ETH".into()))]);
    assert_eq!(outcomes(&receipt)[0], Ok(ActionOutcome::Cancelled { orders: 2 }));
    run(&mut chain, "alice", vec![place(with_client(6, CALL)), place(with_client(7, PUT))]);
    let (receipt, _) = run(&mut chain, "alice", vec![cancel_all(Scope::Everything(true))]);
    assert_eq!(outcomes(&receipt)[0], Ok(ActionOutcome::Cancelled { orders: 2 }));
    assert_eq!(usd(&chain, "alice").1, dec("0"));
}

#[test]
fn replace_keeps_priority_only_for_a_pure_size_decrease() {
    let mut chain = sandbox();
    let (receipt, _) = run(&mut chain, "alice", vec![place(limit_order(CALL, Side::Buy, "100", "3"))]);
    let alice = order(&receipt).order;
    let (receipt, _) = run(&mut chain, "bob", vec![place(limit_order(CALL, Side::Buy, "100", "3"))]);
    let bob = order(&receipt).order;
    let (receipt, _) = run(&mut chain, "alice", vec![replace(alice.0, "", "2")]);
    assert_eq!(outcomes(&receipt)[0], Ok(ActionOutcome::Reduced { order: alice, remaining: dec("2") }));
    let book = &chain.state.series(CALL).unwrap().book;
    let queue: Vec<u64> = book.level_orders(vanna_book::Side::Buy, 200).map(|o| o.id).collect();
    assert_eq!(queue, vec![alice.0, bob.0], "a size decrease keeps alice first");
    let (receipt, _) = run(&mut chain, "alice", vec![replace(alice.0, "", "4")]);
    assert_eq!(order(&receipt).order, alice, "the id survives a replace");
    let book = &chain.state.series(CALL).unwrap().book;
    let queue: Vec<u64> = book.level_orders(vanna_book::Side::Buy, 200).map(|o| o.id).collect();
    assert_eq!(queue, vec![bob.0, alice.0], "a size increase goes to the back");
    let (receipt, _) = run(&mut chain, "alice", vec![replace(alice.0, "100", "4")]);
    assert_eq!(action_error(&receipt), TxError::EmptyReplace);
    let (receipt, _) = run(&mut chain, "alice", vec![replace(alice.0, "100.25", "")]);
    assert!(matches!(action_error(&receipt), TxError::OffTick { .. }));
    let (receipt, _) = run(&mut chain, "alice", vec![replace(alice.0, "101", "")]);
    assert_eq!(order(&receipt).resting_contracts, dec("4"));
    // 4 × (101 + 12.625) for alice.
    assert_eq!(usd(&chain, "alice").1, dec("454.5"));
}

#[test]
fn self_trade_prevention_modes() {
    for (mode, expect_resting_left, expect_incoming_rests) in [
        (SelfTradePrevention::CancelResting, false, true),
        (SelfTradePrevention::CancelIncoming, true, false),
        (SelfTradePrevention::CancelBoth, false, false),
    ] {
        let mut chain = sandbox();
        run(&mut chain, "alice", vec![place(limit_order(PUT, Side::Sell, "4000", "1"))]);
        let incoming = vanna_proto::v1::PlaceOrder {
            self_trade_prevention: mode as i32,
            ..limit_order(PUT, Side::Buy, "4000", "1")
        };
        let (receipt, block) = run(&mut chain, "alice", vec![place(incoming)]);
        let outcome = order(&receipt);
        assert!(fills(&block).is_empty(), "{mode:?}: never trades with itself");
        let asks = chain.state.series(PUT).unwrap().book.best_ask().is_some();
        assert_eq!(asks, expect_resting_left, "{mode:?}");
        assert_eq!(outcome.resting_contracts == dec("1"), expect_incoming_rests, "{mode:?}");
    }
}

#[test]
fn reduce_only_orders_are_clipped_and_trimmed() {
    let mut chain = sandbox();
    let reduce_only = |side, price: &str, quantity: &str| vanna_proto::v1::PlaceOrder {
        reduce_only: true,
        ..limit_order(PUT, side, price, quantity)
    };
    let (receipt, _) = run(&mut chain, "alice", vec![place(reduce_only(Side::Sell, "4000", "1"))]);
    assert_eq!(action_error(&receipt), TxError::ReduceOnlyWouldIncrease { position: dec("0") });
    run(&mut chain, "bob", vec![place(limit_order(PUT, Side::Sell, "4000", "2"))]);
    run(&mut chain, "alice", vec![place(limit_order(PUT, Side::Buy, "4000", "2"))]);
    // Long 2: a reduce-only sell of 5 is clipped to 2.
    let (receipt, _) = run(&mut chain, "alice", vec![place(reduce_only(Side::Sell, "5000", "5"))]);
    assert_eq!(order(&receipt).resting_contracts, dec("2"));
    // A plain sell that fills shrinks the position; the reduce-only order is trimmed.
    run(&mut chain, "alice", vec![place(limit_order(PUT, Side::Sell, "4500", "1"))]);
    let (_, block) = run(&mut chain, "carol", vec![place(limit_order(PUT, Side::Buy, "4500", "1"))]);
    assert!(block.events.iter().any(|e| matches!(e, Event::OrderReduced { reason: CancelReason::ReduceOnly, .. })));
    let alice = chain.state.account(&chain.address("alice")).unwrap();
    let remaining: u64 = alice
        .open_orders
        .iter()
        .map(|id| chain.state.series(PUT).unwrap().book.get(id.0).unwrap().remaining_lots)
        .sum();
    assert_eq!(remaining, 100, "one contract = 100 lots left, the size of the position");
}

#[test]
fn sweeps_take_levels_in_price_then_time_order() {
    let mut chain = sandbox();
    run(&mut chain, "bob", vec![place(limit_order(PUT, Side::Sell, "4010", "1"))]);
    run(&mut chain, "carol", vec![place(limit_order(PUT, Side::Sell, "4000", "1"))]);
    run(&mut chain, "bob", vec![place(limit_order(PUT, Side::Sell, "4000", "1"))]);
    let (receipt, block) = run(&mut chain, "alice", vec![place(limit_order(PUT, Side::Buy, "4010", "2.5"))]);
    let sellers: Vec<_> = fills(&block).iter().map(|f| (f.maker, f.price.value(), f.contracts)).collect();
    assert_eq!(
        sellers,
        vec![
            (chain.address("carol"), dec("4000"), dec("1")),
            (chain.address("bob"), dec("4000"), dec("1")),
            (chain.address("bob"), dec("4010"), dec("0.5")),
        ]
    );
    assert_eq!(order(&receipt).filled_contracts, dec("2.5"));
}

#[test]
fn fill_or_kill_counts_self_trade_cancels_against_the_fill_bound() {
    use vanna_runtime::limits::{MAX_FILLS_PER_ORDER, MAX_OPEN_ORDERS_PER_SERIES};
    let makers: Vec<String> =
        (0..(MAX_FILLS_PER_ORDER as usize / MAX_OPEN_ORDERS_PER_SERIES)).map(|i| format!("m{i}")).collect();
    let mut accounts: Vec<(&str, u64)> = makers.iter().map(|n| (n.as_str(), 1_000_000)).collect();
    accounts.push(("alice", 10_000_000));
    let (genesis, signers) = vanna_runtime::sandbox::demo_genesis(&accounts);
    let mut chain = vanna_runtime::sandbox::Sandbox::new(&genesis, signers).unwrap();
    // Alice's own ask rests first; then MAX_FILLS_PER_ORDER one-lot asks of others.
    run(&mut chain, "alice", vec![place(limit_order(PUT, Side::Sell, "4000", "0.01"))]);
    for name in &makers {
        for _ in 0..2 {
            run(&mut chain, name, (0..32).map(|_| place(limit_order(PUT, Side::Sell, "4000", "0.01"))).collect());
        }
    }
    let fok = vanna_proto::v1::PlaceOrder {
        time_in_force: TimeInForce::Fok as i32,
        ..limit_order(PUT, Side::Buy, "4000", "5.12")
    };
    let (receipt, block) = run(&mut chain, "alice", vec![place(fok)]);
    // Cancelling her own ask uses one of the 512 steps: 5.11 could fill, so nothing does.
    assert_eq!(action_error(&receipt), TxError::FillOrKillUnfilled { wanted: dec("5.12"), available: dec("5.11") });
    assert!(fills(&block).is_empty());
}

#[test]
fn no_order_trades_in_an_expired_series() {
    let mut chain = sandbox();
    run(&mut chain, "bob", vec![place(limit_order(PUT, Side::Sell, "4000", "1"))]);
    let (receipt, _) = run(&mut chain, "alice", vec![place(limit_order(PUT, Side::Buy, "3000", "1"))]);
    let bid = order(&receipt).order;
    let expiry = chain.state.series(PUT).unwrap().spec.expiry_ms;
    chain.block_interval_ms = expiry - chain.state.time_ms;
    chain.produce_block();
    chain.block_interval_ms = 1_000;
    // The first block at expiry settled the series and cancelled its orders.
    let (receipt, block) = run(&mut chain, "alice", vec![replace(bid.0, "4000", "")]);
    assert_eq!(action_error(&receipt), TxError::UnknownOrder(bid));
    assert!(fills(&block).is_empty());
    let (receipt, _) = run(&mut chain, "alice", vec![place(limit_order(PUT, Side::Buy, "4000", "1"))]);
    assert!(matches!(action_error(&receipt), TxError::SeriesExpired { .. }));
}
