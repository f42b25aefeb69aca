//! Expiry settlement through blocks: the TWAP settlement price, payouts at
//! intrinsic value that sum to zero, cancelled orders, retired series.

mod common;

use common::*;
use proptest::prelude::*;
use rust_decimal::Decimal;
use vanna_proto::v1::Side;
use vanna_runtime::events::{CancelReason, Event};
use vanna_runtime::sandbox::Sandbox;
use vanna_runtime::tx::{limit_order, list_series, place};
use vanna_runtime::{BlockOutput, TxError};

/// 2026-11-25 08:00 UTC: eight hours after the demo genesis.
const SHORT_PUT: &str = "BTC-25NOV26-95000-P";
const SHORT_CALL: &str = "BTC-25NOV26-95000-C";
const VALIDATORS: [&str; 2] = ["val-a", "val-b"];

fn expiry(chain: &Sandbox) -> u64 {
    chain.state.series(SHORT_PUT).unwrap().spec.expiry_ms
}

fn block(chain: &mut Sandbox) -> BlockOutput {
    let output = chain.produce_block();
    chain.state.check_invariants();
    assert_eq!(chain.state.state_root_from_scratch(), output.state_root, "incremental root equals a full one");
    output
}

/// Produces the next block at `time_ms`, with the validators reporting `spot` if given.
fn block_at(chain: &mut Sandbox, time_ms: u64, spot: Option<&str>) -> BlockOutput {
    chain.block_interval_ms = time_ms - chain.state.time_ms;
    if let Some(spot) = spot {
        chain.report_prices(&VALIDATORS, &[("BTC", spot)]);
    }
    let output = block(chain);
    chain.block_interval_ms = 1_000;
    output
}

fn listed() -> Sandbox {
    let mut chain = staked_sandbox();
    run(&mut chain, "authority", vec![list_series(SHORT_PUT), list_series(SHORT_CALL)]);
    chain
}

/// A settlement event's series, price, whether it came from the TWAP, and payouts.
type Settlement = (String, Decimal, bool, Vec<(vanna_runtime::Address, Decimal)>);

fn settled(output: &BlockOutput) -> Vec<Settlement> {
    output
        .events
        .iter()
        .filter_map(|event| match event {
            Event::SeriesSettled { series, settlement_price, from_twap, payouts } => {
                Some((series.to_string(), settlement_price.value(), *from_twap, payouts.clone()))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn an_expiry_settles_at_the_twap_with_exact_payouts() {
    let mut chain = listed();
    run(&mut chain, "bob", vec![place(limit_order(SHORT_PUT, Side::Sell, "1000", "2"))]);
    run(&mut chain, "alice", vec![place(limit_order(SHORT_PUT, Side::Buy, "1000", "2"))]);
    run(&mut chain, "carol", vec![place(limit_order(SHORT_PUT, Side::Buy, "500", "1"))]);
    // Bob's short put is margined, not cash-secured: nothing locked.
    assert_eq!(usd(&chain, "bob").1, dec("0"));
    let total = chain.state.total_usd();

    let expiry = expiry(&chain);
    // Validators report every 20 s: 90,000 from 31 minutes before expiry, then
    // 91,000 from 20 minutes before (a 1.1% move, within one step of the guard).
    // The first report follows a quiet spell, so it sets the index directly.
    block_at(&mut chain, expiry - 32 * 60_000, None);
    for at in (expiry - 31 * 60_000..expiry).step_by(20_000) {
        block_at(&mut chain, at, Some(if at < expiry - 20 * 60_000 { "90000" } else { "91000" }));
    }
    assert_eq!(chain.state.index_price("BTC").value(), dec("91000"));
    let output = block_at(&mut chain, expiry + 1_000, None);

    // TWAP over the last 30 minutes: (10 × 90,000 + 20 × 91,000) / 30 =
    // 90,666.666667, rounded to the 0.5 tick: 90,666.5. Intrinsic 4,333.5 per
    // contract, 43.335 per 0.01 lot, × 200 lots.
    let settlements = settled(&output);
    assert_eq!(settlements.len(), 2, "both short-dated series settle");
    let put = settlements.iter().find(|(name, ..)| name == SHORT_PUT).unwrap();
    assert_eq!(put.1, dec("90666.5"));
    assert!(put.2, "settled from the TWAP");
    let mut expected = vec![(chain.address("alice"), dec("8667")), (chain.address("bob"), dec("-8667"))];
    expected.sort();
    assert_eq!(put.3, expected);
    let call = settlements.iter().find(|(name, ..)| name == SHORT_CALL).unwrap();
    assert!(call.3.is_empty(), "nobody held the call");

    assert!(output.events.iter().any(|event| matches!(
        event,
        Event::OrderCancelled { owner, reason: CancelReason::Settled, .. } if *owner == chain.address("carol")
    )));
    assert_eq!(position(&chain, "alice", SHORT_PUT), Decimal::ZERO);
    assert_eq!(position(&chain, "bob", SHORT_PUT), Decimal::ZERO);
    assert_eq!(usd(&chain, "carol").1, Decimal::ZERO, "the cancelled bid's lock is released");
    assert_eq!(chain.state.total_usd(), total, "settlement moves funds, never creates them");
    assert_eq!(chain.state.series(SHORT_PUT).unwrap().settled_at.unwrap().value(), dec("90666.5"));

    // The series is retired: no new orders, and no second settlement.
    let (receipt, block) = run(&mut chain, "alice", vec![place(limit_order(SHORT_PUT, Side::Buy, "10", "1"))]);
    assert!(matches!(action_error(&receipt), TxError::SeriesExpired { .. }));
    assert!(settled(&block).is_empty());
}

#[test]
fn without_history_over_the_window_the_current_index_settles_and_says_so() {
    let (mut genesis, mut signers) =
        vanna_runtime::sandbox::demo_genesis(&[("alice", 1_000_000), ("bob", 1_000_000), ("carol", 1_000_000)]);
    signers.extend(vanna_runtime::sandbox::add_validators(
        &mut genesis,
        &[("val-a", 10_000, 0, "0.1"), ("val-b", 10_000, 0, "0.05")],
    ));
    // A window longer than the time from genesis to expiry: no history covers it.
    genesis.oracle.twap_window_ms = 9 * 3_600_000;
    genesis.oracle.history_retention_ms = 10 * 3_600_000;
    let mut chain = Sandbox::new(&genesis, signers).unwrap();
    run(&mut chain, "authority", vec![list_series(SHORT_PUT)]);
    run(&mut chain, "bob", vec![place(limit_order(SHORT_PUT, Side::Sell, "1000", "1"))]);
    run(&mut chain, "alice", vec![place(limit_order(SHORT_PUT, Side::Buy, "1000", "1"))]);
    let expiry = expiry(&chain);
    block_at(&mut chain, expiry - 120_000, None);
    block_at(&mut chain, expiry - 60_000, Some("94000.2"));
    let output = block_at(&mut chain, expiry, None);
    let settlements = settled(&output);
    let (_, price, from_twap, payouts) = &settlements[0];
    assert!(!from_twap);
    assert_eq!(*price, dec("94000"), "the index, rounded to the tick");
    assert_eq!(payouts.iter().map(|(_, payout)| payout).sum::<Decimal>(), Decimal::ZERO);
    assert!(payouts.contains(&(chain.address("alice"), dec("1000"))));
}

/// One random trade: seller, buyer, put or call strike index, price in ticks, lots.
fn trade() -> impl Strategy<Value = (usize, usize, usize, u32, u32)> {
    (0usize..3, 0usize..3, 0usize..3, 1u32..4_000, 1u32..300)
}

const TRADERS: [&str; 3] = ["alice", "bob", "carol"];
const STRIKES: [&str; 3] = ["90000", "95000", "100000"];

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Whatever positions are open and wherever the index goes, the payouts
    /// of each series sum to zero and the chain's USD is unchanged.
    #[test]
    fn settlement_conserves_funds(
        trades in prop::collection::vec(trade(), 1..12),
        path in prop::collection::vec(60_000u64..120_000, 1..4),
    ) {
        let mut chain = staked_sandbox();
        let names: Vec<String> = STRIKES.iter().map(|strike| format!("BTC-25NOV26-{strike}-P")).collect();
        run(&mut chain, "authority", names.iter().map(|name| list_series(name)).collect());
        for (seller, buyer, strike, ticks, lots) in trades {
            if seller == buyer {
                continue;
            }
            let price = (Decimal::from(ticks) / Decimal::from(2)).to_string();
            let quantity = (Decimal::from(lots) / Decimal::from(100)).to_string();
            chain.submit(TRADERS[seller], vec![place(limit_order(&names[strike], Side::Sell, &price, &quantity))]);
            chain.submit(TRADERS[buyer], vec![place(limit_order(&names[strike], Side::Buy, &price, &quantity))]);
            block(&mut chain);
        }
        let total = chain.state.total_usd();
        let holders = names
            .iter()
            .flat_map(|name| TRADERS.iter().map(move |trader| (name, trader)))
            .filter(|(name, trader)| !position(&chain, trader, name).is_zero())
            .count();
        let expiry = expiry_of(&chain, &names[0]);
        let step = 25 * 60_000 / path.len() as u64;
        for (index, spot) in path.iter().enumerate() {
            block_at(&mut chain, expiry - 25 * 60_000 + step * index as u64, Some(&spot.to_string()));
        }
        let output = block_at(&mut chain, expiry, None);
        let settlements = settled(&output);
        prop_assert_eq!(settlements.len(), STRIKES.len());
        prop_assert_eq!(settlements.iter().map(|(.., payouts)| payouts.len()).sum::<usize>(), holders);
        for (_, _, _, payouts) in &settlements {
            prop_assert_eq!(payouts.iter().map(|(_, payout)| *payout).sum::<Decimal>(), Decimal::ZERO);
        }
        prop_assert_eq!(chain.state.total_usd(), total);
        for name in &names {
            for trader in TRADERS {
                prop_assert_eq!(position(&chain, trader, name), Decimal::ZERO);
            }
        }
    }
}

fn expiry_of(chain: &Sandbox, name: &str) -> u64 {
    chain.state.series(name).unwrap().spec.expiry_ms
}

#[test]
fn a_short_that_cannot_pay_sells_its_longs_before_anyone_else_pays() {
    const DEC_PUT: &str = "BTC-25DEC26-100000-P";
    let mut chain = listed();
    // Bob holds a December put against the short-dated put he writes to alice...
    run(&mut chain, "carol", vec![place(limit_order(DEC_PUT, Side::Sell, "8000", "1"))]);
    run(&mut chain, "bob", vec![place(limit_order(DEC_PUT, Side::Buy, "8000", "1"))]);
    run(&mut chain, "alice", vec![place(limit_order(SHORT_PUT, Side::Buy, "1000", "1"))]);
    run(&mut chain, "bob", vec![place(limit_order(SHORT_PUT, Side::Sell, "1000", "1"))]);
    // ...and moves out all the cash margin lets him: the spread needs little.
    let bob = chain.state.account_index[&chain.address("bob")];
    let figures = chain.state.margin_figures(bob, &[], Decimal::ZERO).unwrap();
    // (Less a dollar: the next block's time moves the marks a little.)
    let free = chain.state.accounts[bob as usize].usd.value().min(figures.equity - figures.initial - Decimal::ONE);
    let out = free.round_dp_with_strategy(6, rust_decimal::RoundingStrategy::ToZero).to_string();
    let carol = chain.address("carol");
    let (receipt, _) =
        run(&mut chain, "bob", vec![vanna_runtime::tx::transfer(carol, vanna_proto::v1::Asset::Usd, &out)]);
    assert_eq!(receipt.first_error(), None, "{out} {figures:?}");
    let cash = usd(&chain, "bob").0;
    assert!(cash < dec("5000"), "bob keeps {cash}");
    let total = chain.state.total_usd();
    let fund_before = chain.state.accounts[chain.state.insurance_fund as usize].usd.value();

    // BTC sits at 90,000 for the whole TWAP window: the put settles 5,000 in the money.
    let expiry = expiry(&chain);
    for at in (expiry - 31 * 60_000..expiry).step_by(20_000) {
        block_at(&mut chain, at, Some("90000"));
    }
    let output = block_at(&mut chain, expiry + 1_000, None);
    assert!(!output.events.iter().any(|event| matches!(event, Event::SettlementShortfall { .. })));
    let put = settled(&output).into_iter().find(|(name, ..)| name == SHORT_PUT).unwrap();
    assert!(put.3.contains(&(chain.address("alice"), dec("5000"))), "alice is paid in full: {:?}", put.3);
    // Bob's December put was sold to pay; the fund paid its value, not his debt.
    assert!(output.events.iter().any(|event| matches!(
        event,
        Event::PositionLiquidated { account, series, .. } if *account == chain.address("bob") && &**series == DEC_PUT
    )));
    assert!(position(&chain, "bob", DEC_PUT) < dec("1"));
    // The fund bought the put at its mark: it holds it, and paid for it rather than for bob's debt.
    let fund = chain.state.insurance_fund as usize;
    let dec_put = chain.state.series(DEC_PUT).unwrap().id;
    let fund_lots = chain.state.accounts[fund].exposure(dec_put).position_lots;
    assert_eq!(chain.state.market(dec_put).signed_contracts(fund_lots), dec("1") - position(&chain, "bob", DEC_PUT));
    assert!(chain.state.accounts[fund].usd.value() < fund_before);
    assert_eq!(chain.state.total_usd(), total);
}

/// The December put that hedges the short-dated put in the default scenarios.
const HEDGE: &str = "BTC-25DEC26-90000-P";

/// A writer with `writer_usd` writes one short-dated 95,000 put to a holder
/// for 500 and trades `other` (series, buy?, price) against the maker, with a
/// keeper posting a 5% backstop offer if asked and the insurance fund at
/// `fund_usd`. Validators val-a and val-b report prices.
fn default_chain(writer_usd: u64, other: (&str, bool, &str), keeper: bool, fund_usd: u64) -> Sandbox {
    let (mut genesis, mut signers) = vanna_runtime::sandbox::demo_genesis(&[
        ("writer", writer_usd),
        ("holder", 1_000_000),
        ("maker", 1_000_000),
        ("keeper", 3_000_000),
    ]);
    signers.extend(vanna_runtime::sandbox::add_validators(
        &mut genesis,
        &[("val-a", 10_000, 0, "0.1"), ("val-b", 10_000, 0, "0.05")],
    ));
    let fund = genesis.accounts.iter_mut().find(|a| a.address == vanna_runtime::Address::insurance_fund()).unwrap();
    fund.usd = vanna_runtime::money::Amount::new(Decimal::from(fund_usd), vanna_runtime::error::Field::Amount).unwrap();
    let mut chain = Sandbox::new(&genesis, signers).unwrap();
    run(&mut chain, "authority", vec![list_series(SHORT_PUT)]);
    if keeper {
        let (receipt, _) =
            run(&mut chain, "keeper", vec![vanna_runtime::tx::register_backstop("BTC", "5000000", "0.05", "500000")]);
        assert_eq!(receipt.first_error(), None);
    }
    let (series, buy, price) = other;
    let (maker_side, writer_side) = if buy { (Side::Sell, Side::Buy) } else { (Side::Buy, Side::Sell) };
    run(&mut chain, "maker", vec![place(limit_order(series, maker_side, price, "1"))]);
    let (receipt, _) = run(&mut chain, "writer", vec![place(limit_order(series, writer_side, price, "1"))]);
    assert_eq!(receipt.first_error(), None);
    run(&mut chain, "holder", vec![place(limit_order(SHORT_PUT, Side::Buy, "500", "1"))]);
    let (receipt, _) = run(&mut chain, "writer", vec![place(limit_order(SHORT_PUT, Side::Sell, "500", "1"))]);
    assert_eq!(receipt.first_error(), None);
    chain
}

/// The chain is quiet past the short-dated expiry; the first block after it
/// carries reports at 60,000 (after a halt the first quorum sets the index
/// directly), so the 95,000 put owes 35,000 and settles in that block.
fn settle_after_a_halt_at_60000(chain: &mut Sandbox) -> BlockOutput {
    let total = chain.state.total_usd();
    let expiry = expiry(chain);
    let output = block_at(chain, expiry + 3_600_000, Some("60000"));
    assert_eq!(chain.state.index_price("BTC").value(), dec("60000"));
    assert_eq!(chain.state.total_usd(), total);
    output
}

/// The hedge's mark at 60,000 in the settlement block, per contract.
const HEDGE_MARK_AT_60000: &str = "30038.761252";

fn hedge_sale(
    output: &BlockOutput,
    writer: vanna_runtime::Address,
) -> (vanna_runtime::events::LiquidationStep, Decimal) {
    output
        .events
        .iter()
        .find_map(|event| match event {
            Event::PositionLiquidated { account, series, step, price, .. }
                if *account == writer && &**series == HEDGE =>
            {
                Some((*step, price.unwrap()))
            }
            _ => None,
        })
        .expect("the hedge is sold to pay")
}

/// Issue 11, scenario 1: an account with 22,000 USD writes the short-dated
/// put and holds a December put as a hedge. Settlement used to run before the
/// margin tables were rebuilt, so the hedge was sold at marks of the last
/// block before the halt (97,000): a 5% keeper bought it for 3,360 while it
/// was worth 30,039 at 60,000, and the put's holder was cut by 12,237; with
/// no keeper and an empty fund nobody bought it, the holder was cut by 15,597
/// and the writer kept the hedge. Now the hedge is sold at this block's
/// marks, whoever takes it, and the holder is paid in full.
#[test]
fn a_defaulting_shorts_hedge_is_sold_at_the_settlement_blocks_marks() {
    use vanna_runtime::events::LiquidationStep;
    let mark = dec(HEDGE_MARK_AT_60000);
    for (keeper, fund_usd, step, price) in [
        // The keeper's price: mark × 0.95, down to the tick.
        (true, 0, LiquidationStep::Backstop, dec("28536.5")),
        (false, 1_000_000, LiquidationStep::InsuranceFund, mark),
        // The maker, short the hedge, buys it back at mark.
        (false, 0, LiquidationStep::Deleverage, mark),
    ] {
        let mut chain = default_chain(22_000, (HEDGE, true, "3000"), keeper, fund_usd);
        let output = settle_after_a_halt_at_60000(&mut chain);
        let writer = chain.address("writer");
        assert_eq!(hedge_sale(&output, writer), (step, price), "keeper {keeper}, fund {fund_usd}");
        assert!(!output.events.iter().any(|event| matches!(event, Event::SettlementShortfall { .. })));
        let put = settled(&output).into_iter().find(|(name, ..)| name == SHORT_PUT).unwrap();
        assert!(put.3.contains(&(chain.address("holder"), dec("35000"))), "paid in full: {:?}", put.3);
        assert_eq!(position(&chain, "writer", HEDGE), dec("0"));
        // What the writer keeps: its cash and the hedge's price, less the 35,000.
        let (cash, _) = usd(&chain, "writer");
        assert!(cash > dec("12000"), "the writer keeps the rest: {cash}");
    }
}

/// A writer whose other position is a short (a December 110,000 call written
/// for 2,500) cannot pay the 35,000: it pays all it has, its other short is
/// handed on before the holder is cut, and the cut is only what remains.
#[test]
fn a_short_in_default_hands_on_everything_before_a_long_is_cut() {
    const CALL_110K: &str = "BTC-25DEC26-110000-C";
    let mut chain = default_chain(22_000, (CALL_110K, false, "2500"), false, 0);
    let output = settle_after_a_halt_at_60000(&mut chain);
    let writer = chain.address("writer");
    let default = output
        .events
        .iter()
        .find_map(|event| match event {
            Event::SettlementSales { account, owed, paid, equity, positions_left, .. } if *account == writer => {
                Some((owed.value(), paid.value(), equity.unwrap(), *positions_left))
            }
            _ => None,
        })
        .expect("the writer defaults");
    let (owed, paid, equity, left) = default;
    assert_eq!(owed, dec("35000"));
    assert_eq!(left, 0, "every position was handed on");
    assert!(equity < Decimal::ZERO);
    assert_eq!(usd(&chain, "writer").0, dec("0"), "it paid everything it had");
    assert_eq!(position(&chain, "writer", CALL_110K), dec("0"));
    assert!(output.events.iter().any(|event| matches!(
        event,
        Event::PositionLiquidated { account, series, .. } if *account == writer && &**series == CALL_110K
    )));
    let shortfall = output
        .events
        .iter()
        .find_map(|event| match event {
            Event::SettlementShortfall { haircut, insurance_paid, .. } => {
                Some((haircut.value(), insurance_paid.value()))
            }
            _ => None,
        })
        .expect("the holder is cut");
    assert_eq!(
        shortfall,
        (owed - paid, dec("0")),
        "an empty fund pays nothing; the cut is what the writer could not pay"
    );
    let put = settled(&output).into_iter().find(|(name, ..)| name == SHORT_PUT).unwrap();
    assert!(put.3.contains(&(chain.address("holder"), paid)), "{:?}", put.3);
}
