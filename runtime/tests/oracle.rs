//! The oracle through blocks: validators' signed reports in the block context
//! move the index under a two-thirds quorum and the per-update guard; without
//! updates an underlying turns stale and its markets reduce-only; bad reports
//! are dropped with a reason.

mod common;

use common::*;
use vanna_proto::v1::Side;
use vanna_runtime::events::Event;
use vanna_runtime::limits::MAX_ORACLE_REPORTS_PER_BLOCK;
use vanna_runtime::sandbox::{Sandbox, add_validators, demo_genesis, sign_oracle_report};
use vanna_runtime::tx::{cancel, limit_order, place};
use vanna_runtime::{BlockContext, BlockOutput, TxError};

const VALIDATORS: [&str; 3] = ["val-a", "val-b", "val-c"];

/// Three validators of equal power, so two of them hold exactly two thirds.
fn chain() -> Sandbox {
    let (mut genesis, mut signers) = demo_genesis(&[("alice", 1_000_000), ("bob", 1_000_000)]);
    signers.extend(add_validators(
        &mut genesis,
        &[("val-a", 10_000, 0, "0.1"), ("val-b", 10_000, 0, "0.1"), ("val-c", 10_000, 0, "0.1")],
    ));
    Sandbox::new(&genesis, signers).unwrap()
}

/// Produces a block and checks the invariants and the incremental root.
fn block(chain: &mut Sandbox) -> BlockOutput {
    let output = chain.produce_block();
    chain.state.check_invariants();
    assert_eq!(chain.state.state_root_from_scratch(), output.state_root, "incremental root equals a full one");
    output
}

fn btc(chain: &Sandbox) -> rust_decimal::Decimal {
    chain.state.index_price("BTC").value()
}

#[test]
fn more_than_two_thirds_of_stake_moves_the_index_within_the_guard() {
    let mut chain = chain();
    assert_eq!(btc(&chain), dec("97000"));
    chain.report_prices(&VALIDATORS, &[("BTC", "98000")]);
    let output = block(&mut chain);
    assert_eq!(btc(&chain), dec("98000"));
    assert!(output.events.iter().any(|event| matches!(
        event,
        Event::IndexUpdated { underlying, clamped: false, .. } if underlying == "BTC"
    )));
    // A jump beyond 2% per update is followed in steps: 98,000 × 1.02.
    chain.report_prices(&VALIDATORS, &[("BTC", "120000")]);
    let output = block(&mut chain);
    assert_eq!(btc(&chain), dec("99960"));
    assert!(output.events.iter().any(|event| matches!(
        event,
        Event::IndexUpdated { clamped: true, aggregate, .. } if *aggregate == dec("120000")
    )));
    // The reports stay counted while fresh, so the next block steps again.
    block(&mut chain);
    assert_eq!(btc(&chain), dec("101959.2"));
    // The TWAP history is kept and committed with the index.
    let history = chain.state.oracle.history(&vanna_oracle::Underlying::new("BTC").unwrap()).unwrap();
    assert_eq!(history.len(), 4);
}

#[test]
fn two_thirds_of_stake_is_not_a_quorum() {
    let mut chain = chain();
    chain.report_prices(&VALIDATORS[..2], &[("BTC", "98000")]);
    let output = block(&mut chain);
    assert_eq!(btc(&chain), dec("97000"));
    assert!(output.events.iter().any(|event| matches!(
        event,
        Event::OracleQuorumMissed { underlying, covered_stake, total_stake }
            if underlying == "BTC" && covered_stake * 3 == total_stake * 2
    )));
    // Fees use the oracle's index: 0.05% of 97,000 for the taker.
    chain.submit("bob", vec![place(limit_order(PUT, Side::Sell, "4000", "1"))]);
    block(&mut chain);
    chain.submit("alice", vec![place(limit_order(PUT, Side::Buy, "4000", "1"))]);
    let output = block(&mut chain);
    assert_eq!(fills(&output)[0].taker_fee.value(), dec("48.5"));
}

#[test]
fn a_stale_underlying_is_reduce_only_until_fresh_prices_return() {
    let mut chain = chain();
    chain.submit("bob", vec![place(limit_order(PUT, Side::Sell, "4000", "2"))]);
    block(&mut chain);
    chain.submit("alice", vec![place(limit_order(PUT, Side::Buy, "4000", "2"))]);
    block(&mut chain);
    assert_eq!(position(&chain, "alice", PUT), dec("2"));
    let stale_after = chain.state.oracle.params().stale_after_ms / chain.block_interval_ms;
    let mut became_stale = 0;
    for _ in 0..stale_after {
        let output = block(&mut chain);
        became_stale += output
            .events
            .iter()
            .filter(|event| matches!(event, Event::UnderlyingStale { underlying } if underlying == "BTC"))
            .count();
    }
    assert_eq!(became_stale, 1);
    assert!(chain.state.is_stale("BTC"));

    chain.submit("alice", vec![place(limit_order(PUT, Side::Buy, "3000", "1"))]);
    let output = block(&mut chain);
    assert!(matches!(
        output.receipts[0].first_error(),
        Some(TxError::UnderlyingStale { underlying, .. }) if underlying == "BTC"
    ));
    // Reduce-only orders and cancels still go through.
    let reduce = vanna_proto::v1::PlaceOrder { reduce_only: true, ..limit_order(PUT, Side::Sell, "5000", "1") };
    chain.submit("alice", vec![place(reduce)]);
    let output = block(&mut chain);
    let outcome = order(&output.receipts[0]);
    assert_eq!(outcome.resting_contracts, dec("1"));
    chain.submit("alice", vec![cancel(outcome.order.0)]);
    let output = block(&mut chain);
    assert_eq!(output.receipts[0].first_error(), None);

    // Fresh prices from a quorum restore trading, unguarded: the old index is no reference.
    chain.report_prices(&VALIDATORS, &[("BTC", "80000")]);
    let output = block(&mut chain);
    assert!(
        output.events.iter().any(|event| matches!(event, Event::UnderlyingFresh { underlying } if underlying == "BTC"))
    );
    assert_eq!(btc(&chain), dec("80000"));
    assert!(!chain.state.is_stale("BTC"));
    assert!(chain.state.is_stale("ETH"), "ETH had no reports");
    chain.submit("alice", vec![place(limit_order(PUT, Side::Buy, "3000", "1"))]);
    let output = block(&mut chain);
    assert_eq!(output.receipts[0].first_error(), None);
}

#[test]
fn forged_foreign_and_unstaked_reports_are_ignored_with_a_reason() {
    let mut chain = chain();
    let price = |observed_at_ms| vanna_oracle::PriceReport {
        underlying: vanna_oracle::Underlying::new("BTC").unwrap(),
        spot: vanna_oracle::IndexPrice::parse("50000").unwrap(),
        observed_at_ms,
        surface: None,
    };
    let at = chain.state.time_ms + chain.block_interval_ms;
    let foreign = sign_oracle_report(chain.signer("val-a"), "another-chain", &[price(at)]);
    let mut forged = sign_oracle_report(chain.signer("val-b"), &chain.state.params.chain_id, &[price(at)]);
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let unstaked = sign_oracle_report(chain.signer("alice"), &chain.state.params.chain_id, &[price(at)]);
    chain.oracle_reports = vec![foreign, forged, unstaked];
    let output = block(&mut chain);
    assert_eq!(btc(&chain), dec("97000"));
    let rejected: Vec<_> = output
        .events
        .iter()
        .filter_map(|event| match event {
            Event::OracleReportRejected { position, reason } => Some((*position, reason.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(rejected.len(), 2);
    assert_eq!(rejected[0].0, 0);
    assert!(rejected[0].1.contains("another-chain"), "{}", rejected[0].1);
    assert_eq!(rejected[1].0, 1);
    assert!(output.events.iter().any(|event| matches!(
        event,
        Event::OracleReportIgnored { reporter, reason, .. }
            if *reporter == chain.address("alice") && reason.contains("active set")
    )));
}

#[test]
fn reports_per_block_are_bounded() {
    let mut chain = chain();
    let too_many = BlockContext {
        oracle_reports: vec![Vec::new(); MAX_ORACLE_REPORTS_PER_BLOCK + 1],
        ..BlockContext::after(&chain.state, 1_000)
    };
    assert_eq!(
        vanna_runtime::apply_block(&mut chain.state, &too_many, &[]).err(),
        Some(vanna_runtime::BlockError::TooManyOracleReports {
            count: MAX_ORACLE_REPORTS_PER_BLOCK + 1,
            max: MAX_ORACLE_REPORTS_PER_BLOCK
        })
    );
    let at_limit = BlockContext {
        oracle_reports: vec![Vec::new(); MAX_ORACLE_REPORTS_PER_BLOCK],
        ..BlockContext::after(&chain.state, 1_000)
    };
    let output = vanna_runtime::apply_block(&mut chain.state, &at_limit, &[]).unwrap();
    let rejected = output.events.iter().filter(|event| matches!(event, Event::OracleReportRejected { .. })).count();
    assert_eq!(rejected, MAX_ORACLE_REPORTS_PER_BLOCK);
}

#[test]
fn after_a_halt_the_first_quorum_sets_the_index_directly() {
    let mut chain = chain();
    // No block for a minute, more than `stale_after_ms`: the old index is no
    // reference, so the first aggregate is not stepped toward.
    chain.block_interval_ms = 60_000;
    chain.report_prices(&VALIDATORS, &[("BTC", "120000")]);
    let output = block(&mut chain);
    assert_eq!(btc(&chain), dec("120000"));
    let stale =
        output.events.iter().position(|e| matches!(e, Event::UnderlyingStale { underlying } if underlying == "BTC"));
    let fresh =
        output.events.iter().position(|e| matches!(e, Event::UnderlyingFresh { underlying } if underlying == "BTC"));
    assert!(stale.unwrap() < fresh.unwrap(), "stale first, then fresh again: {:?}", output.events);
    assert!(chain.state.is_stale("ETH"), "ETH had no reports");
}

#[test]
fn in_a_stale_market_no_maker_takes_on_new_risk_either() {
    let (mut genesis, mut signers) = demo_genesis(&[("alice", 1_000_000), ("bob", 1_000_000), ("carol", 1_000_000)]);
    signers.extend(add_validators(&mut genesis, &[("val-a", 10_000, 0, "0.1")]));
    let mut chain = Sandbox::new(&genesis, signers).unwrap();
    // Alice buys 2 puts from carol; bob, flat, bids for 3: every lot he buys is new risk.
    chain.submit("carol", vec![place(limit_order(PUT, Side::Sell, "4000", "2"))]);
    block(&mut chain);
    chain.submit("alice", vec![place(limit_order(PUT, Side::Buy, "4000", "2"))]);
    chain.submit("bob", vec![place(limit_order(PUT, Side::Buy, "3900", "3"))]);
    block(&mut chain);
    let stale_after = chain.state.oracle.params().stale_after_ms / chain.block_interval_ms;
    for _ in 0..stale_after {
        block(&mut chain);
    }
    assert!(chain.state.is_stale("BTC"));
    // Alice may still reduce, but not by handing bob new risk at a stale price.
    let reduce = vanna_proto::v1::PlaceOrder {
        reduce_only: true,
        time_in_force: vanna_proto::v1::TimeInForce::Ioc as i32,
        ..limit_order(PUT, Side::Sell, "3900", "2")
    };
    chain.submit("alice", vec![place(reduce)]);
    let output = block(&mut chain);
    assert_eq!(order(&output.receipts[0]).filled_contracts, dec("0"));
    assert_eq!(position(&chain, "bob", PUT), dec("0"));
    // Carol, short 2, buys back from alice's reduce-only ask: both sides reduce.
    let ask = vanna_proto::v1::PlaceOrder { reduce_only: true, ..limit_order(PUT, Side::Sell, "4100", "2") };
    chain.submit("alice", vec![place(ask)]);
    block(&mut chain);
    let close = vanna_proto::v1::PlaceOrder { reduce_only: true, ..limit_order(PUT, Side::Buy, "4100", "2") };
    chain.submit("carol", vec![place(close)]);
    let output = block(&mut chain);
    assert_eq!(order(&output.receipts[0]).filled_contracts, dec("2"));
    assert_eq!(position(&chain, "alice", PUT), dec("0"));
    assert_eq!(position(&chain, "carol", PUT), dec("0"));
}

#[test]
fn a_jailed_validator_loses_its_oracle_weight_at_once() {
    let mut chain = chain();
    let key = chain.state.staking.validators[&chain.address("val-c")].consensus_key;
    chain.evidence.push(vanna_runtime::staking::EvidenceRecord {
        consensus_key: key,
        offence: vanna_runtime::staking::Offence::DoubleVote,
        height: chain.state.height,
        reporter: None,
    });
    block(&mut chain);
    // val-a and val-b hold 2/3 of the epoch's power, but with val-c jailed they
    // are all of the stake that counts: their reports make a quorum.
    chain.report_prices(&["val-a", "val-b"], &[("BTC", "97500")]);
    block(&mut chain);
    assert_eq!(btc(&chain), dec("97500"));
}
