//! Shared helpers for the runtime's integration tests.
#![allow(dead_code)]

use rust_decimal::Decimal;
use vanna_runtime::BlockOutput;
use vanna_runtime::events::{ActionOutcome, ActionResult, Event, OrderOutcome, Receipt, TxStatus};
use vanna_runtime::sandbox::{Sandbox, demo_genesis};

pub const CALL: &str = "BTC-25DEC26-100000-C";
pub const PUT: &str = "BTC-25DEC26-100000-P";

pub fn dec(text: &str) -> Decimal {
    text.parse().unwrap()
}

/// A sandbox with alice, bob and carol holding 1,000,000 USD each.
pub fn sandbox() -> Sandbox {
    let (genesis, signers) = demo_genesis(&[("alice", 1_000_000), ("bob", 1_000_000), ("carol", 1_000_000)]);
    Sandbox::new(&genesis, signers).unwrap()
}

/// Submits one transaction from `name` and produces a block; returns its receipt and the block.
pub fn run(sandbox: &mut Sandbox, name: &str, actions: Vec<vanna_proto::v1::Action>) -> (Receipt, BlockOutput) {
    sandbox.submit(name, actions);
    let block = sandbox.produce_block();
    sandbox.state.check_invariants();
    assert_eq!(
        sandbox.state.state_root_from_scratch(),
        block.state_root,
        "incremental root equals a full recomputation"
    );
    (block.receipts[0].clone(), block)
}

pub fn outcomes(receipt: &Receipt) -> Vec<Result<ActionOutcome, vanna_runtime::RuntimeError>> {
    match &receipt.status {
        TxStatus::Included { actions } => actions
            .iter()
            .map(|result| match result {
                ActionResult::Ok(outcome) => Ok(outcome.clone()),
                ActionResult::Failed { error } => Err(error.clone()),
            })
            .collect(),
        TxStatus::Rejected { error } => panic!("transaction rejected: {error}"),
    }
}

/// The one order outcome of a single-action transaction.
pub fn order(receipt: &Receipt) -> OrderOutcome {
    match outcomes(receipt).remove(0) {
        Ok(ActionOutcome::Order(outcome)) | Ok(ActionOutcome::Replaced(outcome)) => outcome,
        other => panic!("expected an order outcome, got {other:?}"),
    }
}

/// The one error of a single-action transaction.
pub fn action_error(receipt: &Receipt) -> vanna_runtime::RuntimeError {
    match outcomes(receipt).remove(0) {
        Err(error) => error,
        Ok(outcome) => panic!("expected an error, got {outcome:?}"),
    }
}

pub fn fills(block: &BlockOutput) -> Vec<vanna_runtime::events::Fill> {
    block
        .events
        .iter()
        .filter_map(|event| match event {
            Event::Filled(fill) => Some(fill.clone()),
            _ => None,
        })
        .collect()
}

pub fn usd(sandbox: &Sandbox, name: &str) -> (Decimal, Decimal) {
    let account = sandbox.state.account(&sandbox.address(name)).unwrap();
    (account.usd.value(), account.usd_locked.value())
}

pub fn position(sandbox: &Sandbox, name: &str, series: &str) -> Decimal {
    let state = &sandbox.state;
    let market = state.series(series).unwrap();
    let account = state.account(&sandbox.address(name)).unwrap();
    market.signed_contracts(account.exposure(market.id).position_lots)
}

/// A sandbox with two validators (val-a: 10,000 VANNA self-stake and 10%
/// commission; val-b: 10,000 and 5%) and alice, bob and carol holding
/// 1,000,000 USD and 50,000 VANNA each.
pub fn staked_sandbox() -> Sandbox {
    let (mut genesis, mut signers) =
        vanna_runtime::sandbox::demo_genesis(&[("alice", 1_000_000), ("bob", 1_000_000), ("carol", 1_000_000)]);
    for account in genesis.accounts.iter_mut().skip(1) {
        account.vanna = vanna_runtime::money::Amount::from_micro(50_000_000_000);
    }
    signers.extend(vanna_runtime::sandbox::add_validators(
        &mut genesis,
        &[("val-a", 10_000, 5_000, "0.1"), ("val-b", 10_000, 0, "0.05")],
    ));
    Sandbox::new(&genesis, signers).unwrap()
}

pub fn vanna(sandbox: &Sandbox, name: &str) -> Decimal {
    sandbox.state.account(&sandbox.address(name)).unwrap().vanna.value()
}

/// Like `run`, for actions that need to look at the chain to be built.
pub fn act(
    sandbox: &mut Sandbox,
    name: &str,
    build: impl FnOnce(&Sandbox) -> Vec<vanna_proto::v1::Action>,
) -> (Receipt, BlockOutput) {
    let actions = build(sandbox);
    run(sandbox, name, actions)
}
