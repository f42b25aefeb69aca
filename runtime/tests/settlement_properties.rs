//! Property tests of settlement when shorts cannot pay: random writers of a
//! short-dated put, each with random other positions (hedges, other shorts)
//! and random cash, keepers with random backstop offers, an insurance fund
//! from empty to large; then the index lands anywhere at expiry, either after
//! a halt (the first quorum sets it directly) or stepped there by reports.
//!
//! After every block: the state's invariants, the incremental root against a
//! full one, USD conserved, and the money properties of
//! `common::check_liquidation_and_settlement_prices`: every settlement sale
//! is priced at that block's marks, nobody gains from a defaulting short
//! beyond its equity, the fund pays no more than the defaulters' negative
//! equity, and a long is cut only once each defaulter has nothing left.
//!
//! `PROPTEST_CASES` sets the number of cases (default 64); the long mode is
//! e.g. `PROPTEST_CASES=20000 cargo test --release -p vanna-runtime --test
//! settlement_properties`.

mod common;

use common::*;
use proptest::prelude::*;
use rust_decimal::Decimal;
use vanna_proto::v1::{Action, Side, TimeInForce};
use vanna_runtime::BlockOutput;
use vanna_runtime::sandbox::Sandbox;
use vanna_runtime::tx::{limit_order, list_series, place, register_backstop};

/// Expires 2026-11-25 08:00 UTC, eight hours after the demo genesis.
const SHORT_DATED: &str = "BTC-25NOV26-95000-P";
/// The December series the writers hedge with or write too.
const DECEMBER: [&str; 4] =
    ["BTC-25DEC26-90000-P", "BTC-25DEC26-100000-P", "BTC-25DEC26-110000-C", "BTC-25DEC26-90000-C"];
/// Prices at the genesis index (97,000) around which trades are set.
const DECEMBER_PRICE: [u32; 4] = [3_000, 7_500, 2_500, 10_000];
const WRITERS: [&str; 3] = ["writer-0", "writer-1", "writer-2"];
const KEEPERS: [&str; 2] = ["keeper-0", "keeper-1"];
const VALIDATORS: [&str; 2] = ["val-a", "val-b"];
/// The halving sizes (lots) in which a writer writes more until initial margin refuses.
const MAX_OUT_LOTS: [u32; 9] = [256, 128, 64, 32, 16, 8, 4, 2, 1];

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|value| value.parse().ok()).unwrap_or(64)
}

#[derive(Clone, Debug)]
struct Other {
    series: usize,
    buy: bool,
    lots: u32,
}

#[derive(Clone, Debug)]
struct Writer {
    usd: u64,
    /// Lots (0.01 BTC) of the short-dated put written at 500 a contract
    /// before writing as many more as margin allows.
    lots: u32,
    others: Vec<Other>,
}

#[derive(Clone, Debug)]
struct Scenario {
    writers: Vec<Writer>,
    /// Backstop offers: (discount in percent, max notional).
    offers: Vec<(u32, u64)>,
    fund_usd: u64,
    /// The index at expiry.
    spot: u64,
    /// Stepped there by reports every 20 s over the last 40 minutes, rather
    /// than set by the first quorum after a halt.
    stepped: bool,
}

fn writer() -> impl Strategy<Value = Writer> {
    let other =
        (0..DECEMBER.len(), any::<bool>(), 1..200u32).prop_map(|(series, buy, lots)| Other { series, buy, lots });
    (2_000..80_000u64, 1..100u32, prop::collection::vec(other, 0..=3)).prop_map(|(usd, lots, others)| Writer {
        usd,
        lots,
        others,
    })
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        prop::collection::vec(writer(), 1..=WRITERS.len()),
        prop::collection::vec((0..=20u32, 1_000..2_000_000u64), 0..=KEEPERS.len()),
        prop_oneof![Just(0u64), 0..50_000u64, 50_000..2_000_000u64],
        prop_oneof![3 => 40_000..95_000u64, 1 => 95_000..130_000u64],
        prop::bool::weighted(0.25),
    )
        .prop_map(|(writers, offers, fund_usd, spot, stepped)| Scenario {
            writers,
            offers,
            fund_usd,
            spot,
            stepped,
        })
}

struct Run {
    chain: Sandbox,
    total_usd: vanna_runtime::money::Amount,
    checks: PriceChecks,
}

impl Run {
    fn new(scenario: &Scenario) -> Run {
        let mut accounts: Vec<(&str, u64)> = vec![("maker", 5_000_000), ("holder", 5_000_000)];
        accounts.extend(WRITERS.iter().zip(&scenario.writers).map(|(name, writer)| (*name, writer.usd)));
        accounts.extend(KEEPERS.iter().zip(&scenario.offers).map(|(name, _)| (*name, 3_000_000)));
        let (mut genesis, mut signers) = vanna_runtime::sandbox::demo_genesis(&accounts);
        signers.extend(vanna_runtime::sandbox::add_validators(
            &mut genesis,
            &[("val-a", 10_000, 0, "0.1"), ("val-b", 10_000, 0, "0.05")],
        ));
        genesis.oracle.max_move_per_update_bps = 4_000;
        let fund = genesis.accounts.iter_mut().find(|a| a.address == vanna_runtime::Address::insurance_fund()).unwrap();
        fund.usd =
            vanna_runtime::money::Amount::new(Decimal::from(scenario.fund_usd), vanna_runtime::error::Field::Amount)
                .unwrap();
        let chain = Sandbox::new(&genesis, signers).unwrap();
        let total_usd = chain.state.total_usd();
        Run { chain, total_usd, checks: PriceChecks::default() }
    }

    fn block(&mut self) -> BlockOutput {
        let output = self.chain.produce_block();
        let state = &self.chain.state;
        state.check_invariants();
        assert_eq!(state.state_root_from_scratch(), output.state_root, "incremental root equals a full one");
        assert_eq!(state.total_usd(), self.total_usd, "USD is conserved");
        let checks = check_liquidation_and_settlement_prices(state, &output.events);
        self.checks.settlement_sales += checks.settlement_sales;
        self.checks.defaults += checks.defaults;
        self.checks.haircuts += checks.haircuts;
        self.checks.defaults_with_positions_left += checks.defaults_with_positions_left;
        output
    }

    fn block_at(&mut self, time_ms: u64, spot: Option<u64>) -> BlockOutput {
        self.chain.block_interval_ms = time_ms - self.chain.state.time_ms;
        if let Some(spot) = spot {
            self.chain.report_prices(&VALIDATORS, &[("BTC", &spot.to_string())]);
        }
        let output = self.block();
        self.chain.block_interval_ms = 1_000;
        output
    }

    fn run(mut self, scenario: &Scenario) -> PriceChecks {
        self.chain.submit("authority", vec![list_series(SHORT_DATED)]);
        for (name, (discount, max_notional)) in KEEPERS.iter().zip(&scenario.offers) {
            let discount = Decimal::new(i64::from(*discount), 2).normalize().to_string();
            self.chain.submit(name, vec![register_backstop("BTC", &max_notional.to_string(), &discount, "500000")]);
        }
        self.block();
        // The maker rests the other side of every December trade and the
        // holder bids for the short-dated puts; writers cross, as far as
        // their margin lets them.
        let mut maker = Vec::new();
        let mut holder = Vec::new();
        for writer in &scenario.writers {
            for other in &writer.others {
                let side = if other.buy { Side::Sell } else { Side::Buy };
                maker.push(order(
                    DECEMBER[other.series],
                    side,
                    DECEMBER_PRICE[other.series],
                    other.lots,
                    TimeInForce::Gtc,
                ));
            }
            holder.push(order(
                SHORT_DATED,
                Side::Buy,
                500,
                writer.lots + MAX_OUT_LOTS.iter().sum::<u32>(),
                TimeInForce::Gtc,
            ));
        }
        if !maker.is_empty() {
            self.chain.submit("maker", maker);
        }
        self.chain.submit("holder", holder);
        self.block();
        for (name, writer) in WRITERS.iter().zip(&scenario.writers) {
            let mut orders: Vec<Action> = writer
                .others
                .iter()
                .map(|other| {
                    let side = if other.buy { Side::Buy } else { Side::Sell };
                    order(DECEMBER[other.series], side, DECEMBER_PRICE[other.series], other.lots, TimeInForce::Ioc)
                })
                .collect();
            orders.push(order(SHORT_DATED, Side::Sell, 500, writer.lots, TimeInForce::Ioc));
            // Then as many more as initial margin lets it write, in halving sizes.
            orders.extend(MAX_OUT_LOTS.iter().map(|&lots| order(SHORT_DATED, Side::Sell, 500, lots, TimeInForce::Ioc)));
            self.chain.submit(name, orders);
        }
        self.block();

        let expiry = self.chain.state.series(SHORT_DATED).unwrap().spec.expiry_ms;
        if scenario.stepped {
            // Reports every 20 s from 40 minutes before expiry, a bounded step each.
            let mut at = expiry - 40 * 60_000;
            while at < expiry {
                self.block_at(at, Some(scenario.spot));
                at += 20_000;
            }
            self.block_at(expiry + 1_000, Some(scenario.spot));
        } else {
            self.block_at(expiry + 3_600_000, Some(scenario.spot));
        }
        assert!(self.chain.state.series(SHORT_DATED).unwrap().settled_at.is_some());
        // One quiet block: the end-of-block re-checks have settled.
        self.block();
        self.checks
    }
}

fn order(series: &str, side: Side, price: u32, lots: u32, time_in_force: TimeInForce) -> Action {
    let quantity = (Decimal::from(lots) / Decimal::from(100)).to_string();
    place(vanna_proto::v1::PlaceOrder {
        time_in_force: time_in_force as i32,
        ..limit_order(series, side, &price.to_string(), &quantity)
    })
}

/// The generator is only useful if defaults happen: over a fixed set of
/// scenarios, shorts sell to pay, default, and longs are cut.
#[test]
fn the_generated_scenarios_reach_sales_defaults_and_haircuts() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut seen = PriceChecks::default();
    for _ in 0..32 {
        let scenario = scenario().new_tree(&mut runner).unwrap().current();
        let checks = Run::new(&scenario).run(&scenario);
        seen.settlement_sales += checks.settlement_sales;
        seen.defaults += checks.defaults;
        seen.haircuts += checks.haircuts;
    }
    assert!(seen.settlement_sales >= 5, "{seen:?}");
    assert!(seen.defaults >= 3, "{seen:?}");
    assert!(seen.haircuts >= 1, "{seen:?}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn settlement_defaults_cost_others_no_more_than_the_defaulters_negative_equity(scenario in scenario()) {
        Run::new(&scenario).run(&scenario);
    }
}
