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

pub fn outcomes(receipt: &Receipt) -> Vec<Result<ActionOutcome, vanna_runtime::TxError>> {
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
pub fn action_error(receipt: &Receipt) -> vanna_runtime::TxError {
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

/// A series' mark per contract in the current block (the margin tables are
/// built once per block, after the oracle update), read as the change in the
/// insurance fund's equity from holding 100 more contracts.
pub fn mark_per_contract(state: &vanna_runtime::State, series: &str) -> Decimal {
    let market = state.series(series).expect("a listed series");
    let lots = 10_000;
    let fund = state.insurance_fund;
    let base = state.margin_figures(fund, &[], Decimal::ZERO).unwrap().equity;
    let more = state.margin_figures(fund, &[(market.id, lots)], Decimal::ZERO).unwrap().equity;
    (more - base) / market.signed_contracts(lots)
}

/// Rounding dust allowed per liquidation or settlement step: prices and cash
/// round to the micro-dollar against the account.
const DUST_PER_STEP: Decimal = Decimal::from_parts(1, 0, 0, false, 4);

/// One account's liquidation or settlement sales so far in a block.
struct Ledger {
    start: Decimal,
    /// Equity at the start less what counterparties gained since.
    running: Decimal,
    fund_loss: Decimal,
    steps: u32,
}

impl Ledger {
    fn new(start: Decimal) -> Ledger {
        Ledger { start, running: start, fund_loss: Decimal::ZERO, steps: 0 }
    }

    /// A step in which the counterparty gained `gain` (mark value received
    /// less cash paid): never more than the account's equity at that point,
    /// so nobody takes a position at a price worse for the account than its
    /// bankruptcy price, nor at its expense once its equity is gone.
    fn step(&mut self, gain: Decimal, to_fund: bool, what: &str) {
        self.steps += 1;
        let dust = DUST_PER_STEP * Decimal::from(self.steps);
        assert!(
            gain <= self.running.max(Decimal::ZERO) + dust,
            "{what}: a counterparty gained {gain} from an account whose equity was {} at that point ({} at the start)",
            self.running,
            self.start
        );
        self.running -= gain;
        if to_fund {
            self.fund_loss -= gain;
        }
    }

    /// The fund lost no more than the account's negative equity at the start.
    fn check_fund(&self, what: &str) {
        let dust = DUST_PER_STEP * Decimal::from(self.steps);
        assert!(
            self.fund_loss <= (-self.start).max(Decimal::ZERO) + dust,
            "{what}: the insurance fund lost {} for an account whose equity was {} at the start",
            self.fund_loss,
            self.start
        );
    }
}

/// One settling series: what its defaulting shorts could cost the fund (their
/// negative equity), what the fund lost buying from them, and who defaulted
/// (with the positions no step could take).
#[derive(Default)]
struct SeriesDefaults {
    capacity: Decimal,
    fund_loss: Decimal,
    defaulted: Vec<(vanna_runtime::Address, u32)>,
}

/// What [`check_liquidation_and_settlement_prices`] saw in a block.
#[derive(Default, Debug)]
pub struct PriceChecks {
    pub settlement_sales: usize,
    pub defaults: usize,
    pub haircuts: usize,
    /// Defaults that left positions no step could take (the one exception).
    pub defaults_with_positions_left: usize,
}

/// The money properties of liquidation and settlement over one block's
/// events, against that block's own marks (so a step priced from an earlier
/// block's marks shows up as a gain): no counterparty (keeper, book maker,
/// fund, deleveraged account) gains more from a liquidated or settling
/// account than its equity at that point; the insurance fund loses no more
/// than the account's negative equity at the start (at settlement: with what
/// it owed, summed over the series' defaulting shorts, including the fund's
/// top-up); and a long is cut at settlement only when each defaulting short
/// has no cash and, unless reported as impossible to place, no positions left.
pub fn check_liquidation_and_settlement_prices(state: &vanna_runtime::State, events: &[Event]) -> PriceChecks {
    use std::collections::BTreeMap;
    use vanna_runtime::Address;
    let fund = state.accounts[state.insurance_fund as usize].address;
    let mut checks = PriceChecks::default();
    let mut liquidations: BTreeMap<Address, Ledger> = BTreeMap::new();
    // Settlement sales' steps come before their summary event.
    let mut sales: BTreeMap<Address, Vec<(Decimal, bool)>> = BTreeMap::new();
    let mut settling: BTreeMap<String, SeriesDefaults> = BTreeMap::new();
    let mut fund_top_ups: BTreeMap<Address, Vec<Decimal>> = BTreeMap::new();
    for event in events {
        match event {
            Event::LiquidationStarted { account, equity, .. } => {
                liquidations.insert(*account, Ledger::new(*equity));
            }
            Event::PositionLiquidated { account, series, contracts, cash, counterparty, .. } => {
                let gain = *contracts * mark_per_contract(state, series) - *cash;
                let to_fund = *counterparty == Some(fund);
                match liquidations.get_mut(account) {
                    Some(ledger) => ledger.step(gain, to_fund, &format!("liquidation of {account} in {series}")),
                    None => sales.entry(*account).or_default().push((gain, to_fund)),
                }
            }
            Event::Deleveraged { liquidated, insurance_paid, .. } => {
                // The fund's top-up to mark is its loss; the step's gain was
                // counted against the account already.
                if let Some(ledger) = liquidations.get_mut(liquidated) {
                    ledger.fund_loss += insurance_paid.value();
                } else {
                    fund_top_ups.entry(*liquidated).or_default().push(insurance_paid.value());
                }
            }
            Event::LiquidationFinished { account, .. } => {
                let ledger = liquidations.remove(account).expect("a liquidation finishes after it starts");
                ledger.check_fund(&format!("liquidation of {account}"));
            }
            Event::SettlementSales { account, series, owed, paid, equity, positions_left } => {
                checks.settlement_sales += 1;
                let equity = equity.expect("a settling account can be priced");
                let what = format!("settlement sales of {account} for {series}");
                let mut ledger = Ledger::new(equity);
                for (gain, to_fund) in sales.remove(account).unwrap_or_default() {
                    ledger.step(gain, to_fund, &what);
                }
                ledger.fund_loss += fund_top_ups.remove(account).unwrap_or_default().iter().sum::<Decimal>();
                let entry = settling.entry(series.to_string()).or_default();
                entry.capacity += (-equity).max(Decimal::ZERO);
                entry.fund_loss += ledger.fund_loss;
                if paid < owed {
                    checks.defaults += 1;
                    if *positions_left > 0 {
                        checks.defaults_with_positions_left += 1;
                    }
                    entry.defaulted.push((*account, *positions_left));
                }
            }
            Event::SettlementShortfall { series, insurance_paid, haircut, .. } => {
                let SeriesDefaults { capacity, fund_loss, defaulted } = settling.remove(&**series).unwrap_or_default();
                let fund_cost = fund_loss + insurance_paid.value();
                assert!(
                    fund_cost <= capacity + DUST_PER_STEP,
                    "settlement of {series}: the fund paid {fund_cost}, more than the defaulting shorts' negative equity {capacity}"
                );
                if !haircut.is_zero() {
                    checks.haircuts += 1;
                    assert!(!defaulted.is_empty(), "{series}: longs cut with no defaulting short");
                    for (address, positions_left) in defaulted {
                        let account = state.account(&address).unwrap();
                        assert!(account.usd.is_zero(), "{series}: longs cut while {address} keeps {} USD", account.usd);
                        assert!(
                            account.positions.is_empty() || positions_left > 0,
                            "{series}: longs cut while {address} keeps positions nobody was asked to take"
                        );
                    }
                }
            }
            _ => {}
        }
    }
    assert!(sales.is_empty(), "settlement sales without their summary: {sales:?}");
    assert!(fund_top_ups.is_empty(), "deleveraging outside a liquidation or settlement: {fund_top_ups:?}");
    assert!(liquidations.is_empty(), "liquidations that never finished");
    checks
}
