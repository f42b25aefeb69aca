//! Property tests of state snapshots over random scenarios: a maker rests
//! GTC and GTT quotes, leveraged traders cross them and write options,
//! orders are cancelled, validators move BTC by up to ±35% a block (so
//! accounts are liquidated), a keeper offers a backstop, a validator
//! delegates, redelegates, undelegates and claims across epochs of three
//! blocks, and time jumps, at the latest at the end, past a short-dated
//! series' expiry (settlement).
//!
//! After every block, the state goes through `snapshot` and `from_snapshot`:
//! the restored state's full root is the block's root, its invariants hold,
//! and its own snapshot is the same bytes. Every restored state is kept and
//! given each later block too: its receipts, events and roots must be the
//! original's, block after block. Damaged snapshots (truncated, bit-flipped,
//! garbage, inconsistent) give a typed error and never panic.
//!
//! `PROPTEST_CASES` sets the number of cases (default 32); the long mode is
//! e.g. `PROPTEST_CASES=2000 cargo test --release -p vanna-runtime --test
//! snapshot_properties`.

use proptest::prelude::*;
use rust_decimal::Decimal;
use vanna_proto::v1::action::Kind;
use vanna_proto::v1::{self as wire, Side, TimeInForce};
use vanna_runtime::sandbox::{DEMO_GENESIS_TIME_MS, Sandbox, add_validators, demo_genesis};
use vanna_runtime::snapshot::{MAX_SNAPSHOT_BYTES, SNAPSHOT_MAGIC};
use vanna_runtime::tx::{action, cancel_by_client_id, limit_order, list_series, place, register_backstop};
use vanna_runtime::{BlockContext, SnapshotError, State, apply_block};

const VALIDATORS: [&str; 3] = ["val-a", "val-b", "val-c"];
const TRADERS: [&str; 3] = ["trader-0", "trader-1", "trader-2"];
/// Expires 2026-11-25 08:00 UTC, eight hours after the demo genesis.
const SHORT_DATED: &str = "BTC-25NOV26-95000-P";
/// Series and a price near their value at the genesis index (97,000).
const SERIES: [(&str, u32); 5] = [
    ("BTC-25DEC26-90000-P", 3_000),
    ("BTC-25DEC26-100000-P", 7_500),
    ("BTC-25DEC26-110000-C", 2_500),
    ("BTC-25DEC26-90000-C", 10_000),
    (SHORT_DATED, 500),
];

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|value| value.parse().ok()).unwrap_or(32)
}

#[derive(Clone, Debug)]
enum Op {
    /// The maker rests a post-only bid and ask `offset` steps of 10 USD
    /// either side of the series' price, good-til-time if `gtt_s` is set.
    Quote {
        series: usize,
        offset: i32,
        lots: u32,
        gtt_s: Option<u32>,
    },
    /// A trader takes (IOC at 30% through the price) or rests (GTC at the
    /// price) an order; mostly sells, which writes options on margin.
    Trade {
        trader: usize,
        series: usize,
        buy: bool,
        lots: u32,
        rest: bool,
    },
    /// Cancels the maker's `nth` quote, if it still rests.
    Cancel {
        nth: usize,
    },
    /// Validators report BTC at the index times (1 + percent / 100): mostly
    /// falls, which put the writers of puts under water.
    Move {
        percent: i32,
    },
    Stake(StakeOp),
    Backstop {
        discount_percent: u32,
    },
    /// Block time jumps: by minutes, or to just past the short-dated expiry.
    Wait {
        minutes: u32,
        to_expiry: bool,
    },
}

#[derive(Clone, Copy, Debug)]
enum StakeOp {
    Delegate { to: usize, vanna: u32 },
    Undelegate { from: usize, vanna: u32 },
    Redelegate { from: usize, to: usize, vanna: u32 },
    Claim { from: usize },
}

fn op() -> impl Strategy<Value = Op> {
    let series = 0..SERIES.len();
    prop_oneof![
        4 => (series.clone(), 1..20i32, 1..400u32, prop::option::of(1..600u32))
            .prop_map(|(series, offset, lots, gtt_s)| Op::Quote { series, offset, lots, gtt_s }),
        8 => (0..TRADERS.len(), series, prop::bool::weighted(0.3), 1..150u32, prop::bool::weighted(0.2))
            .prop_map(|(trader, series, buy, lots, rest)| Op::Trade { trader, series, buy, lots, rest }),
        1 => (0..64usize).prop_map(|nth| Op::Cancel { nth }),
        3 => (-35..20i32).prop_map(|percent| Op::Move { percent }),
        2 => stake_op().prop_map(Op::Stake),
        1 => (0..10u32).prop_map(|discount_percent| Op::Backstop { discount_percent }),
        1 => (1..120u32, prop::bool::weighted(0.3)).prop_map(|(minutes, to_expiry)| Op::Wait { minutes, to_expiry }),
    ]
}

fn stake_op() -> impl Strategy<Value = StakeOp> {
    prop_oneof![
        (1..3usize, 1..2_000u32).prop_map(|(to, vanna)| StakeOp::Delegate { to, vanna }),
        (1..3usize, 1..2_000u32).prop_map(|(from, vanna)| StakeOp::Undelegate { from, vanna }),
        (1..3usize, 1..3usize, 1..2_000u32).prop_map(|(from, to, vanna)| StakeOp::Redelegate { from, to, vanna }),
        (0..3usize).prop_map(|from| StakeOp::Claim { from }),
    ]
}

/// Blocks of operations; the first blocks always set up a market.
fn scenario() -> impl Strategy<Value = (Vec<u64>, Vec<Vec<Op>>)> {
    (
        prop::collection::vec(5_000..150_000u64, TRADERS.len()),
        prop::collection::vec(prop::collection::vec(op(), 0..5), 4..10),
    )
}

fn chain(trader_usd: &[u64]) -> Sandbox {
    let mut accounts = vec![("maker", 20_000_000), ("keeper", 3_000_000)];
    accounts.extend(TRADERS.iter().copied().zip(trader_usd.iter().copied()));
    let (mut genesis, mut signers) = demo_genesis(&accounts);
    signers.extend(add_validators(
        &mut genesis,
        &[("val-a", 10_000, 20_000, "0.1"), ("val-b", 10_000, 0, "0.05"), ("val-c", 10_000, 0, "0.2")],
    ));
    genesis.oracle.max_move_per_update_bps = 3_500;
    genesis.staking.params.epoch_blocks = 3;
    Sandbox::new(&genesis, signers).unwrap()
}

fn order(series: usize, side: Side, price: u32, lots: u32, time_in_force: TimeInForce) -> wire::PlaceOrder {
    let quantity = (Decimal::from(lots) / Decimal::from(100)).to_string();
    wire::PlaceOrder {
        time_in_force: time_in_force as i32,
        ..limit_order(SERIES[series].0, side, &price.to_string(), &quantity)
    }
}

/// Queues `op` on the sandbox (transactions, reports or a time step).
fn queue(chain: &mut Sandbox, op: &Op, quotes: &mut u64) {
    match *op {
        Op::Quote { series, offset, lots, gtt_s } => {
            let (time_in_force, expire_at_ms) = match gtt_s {
                Some(seconds) => (TimeInForce::Gtt, chain.state.time_ms + u64::from(seconds) * 1_000),
                None => (TimeInForce::Gtc, 0),
            };
            let price = SERIES[series].1;
            let spread = 10 * offset as u32;
            let mut quote = |side, price| {
                *quotes += 1;
                place(wire::PlaceOrder {
                    post_only: true,
                    client_order_id: *quotes,
                    expire_at_ms,
                    ..order(series, side, price, lots, time_in_force)
                })
            };
            let bid = quote(Side::Buy, price.saturating_sub(spread).max(10));
            let ask = quote(Side::Sell, price + spread);
            chain.submit("maker", vec![bid, ask]);
        }
        Op::Trade { trader, series, buy, lots, rest } => {
            // Through the maker's quotes, within what margin allows.
            let (side, limit) =
                if buy { (Side::Buy, SERIES[series].1 * 13 / 10) } else { (Side::Sell, SERIES[series].1 * 7 / 10) };
            let (time_in_force, limit) =
                if rest { (TimeInForce::Gtc, SERIES[series].1) } else { (TimeInForce::Ioc, limit) };
            chain.submit(TRADERS[trader], vec![place(order(series, side, limit, lots, time_in_force))]);
        }
        Op::Cancel { nth } => {
            if *quotes > 0 {
                chain.submit("maker", vec![cancel_by_client_id(1 + nth as u64 % *quotes)]);
            }
        }
        Op::Move { percent } => {
            let index = chain.state.index_price("BTC").value();
            let spot =
                (index * Decimal::from(100 + percent) / Decimal::from(100)).round_dp(2).max(Decimal::from(1_000));
            chain.report_prices(&VALIDATORS, &[("BTC", &spot.to_string())]);
        }
        Op::Stake(stake) => {
            let validator = |index: usize| chain.address(VALIDATORS[index]).as_bytes().to_vec();
            let amount = |vanna: u32| vanna.to_string();
            let kind = match stake {
                StakeOp::Delegate { to, vanna } => {
                    Kind::Delegate(wire::Delegate { validator: validator(to), amount: amount(vanna) })
                }
                StakeOp::Undelegate { from, vanna } => {
                    Kind::Undelegate(wire::Undelegate { validator: validator(from), amount: amount(vanna) })
                }
                StakeOp::Redelegate { from, to, vanna } => Kind::Redelegate(wire::Redelegate {
                    from_validator: validator(from),
                    to_validator: validator(to),
                    amount: amount(vanna),
                }),
                StakeOp::Claim { from } => Kind::ClaimRewards(wire::ClaimRewards { validator: validator(from) }),
            };
            chain.submit("val-a", vec![action(kind)]);
        }
        Op::Backstop { discount_percent } => {
            let discount = Decimal::new(i64::from(discount_percent), 2).normalize().to_string();
            chain.submit("keeper", vec![register_backstop("BTC", "500000", &discount, "200000")]);
        }
        Op::Wait { minutes, to_expiry } => {
            let expiry = DEMO_GENESIS_TIME_MS + 8 * 3_600_000;
            let now = chain.state.time_ms;
            chain.block_interval_ms =
                if to_expiry && now < expiry { expiry + 1_000 - now } else { u64::from(minutes) * 60_000 };
        }
    }
}

/// The context `produce_block` is about to build, so that the same block can
/// be applied to restored states.
fn next_context(chain: &Sandbox) -> BlockContext {
    BlockContext {
        signers: Some(chain.state.staking.active.iter().map(|member| member.consensus_key).collect()),
        evidence: chain.evidence.clone(),
        oracle_reports: chain.oracle_reports.clone(),
        ..BlockContext::after(&chain.state, chain.block_interval_ms)
    }
}

/// Loads a snapshot and checks it against the state it was taken of.
fn restore(state: &State) -> State {
    let bytes = state.snapshot();
    let mut restored = State::from_snapshot(&bytes).unwrap();
    restored.check_invariants();
    assert_eq!(restored.state_root_from_scratch(), state.state_root_from_scratch(), "restored root");
    assert_eq!(restored.state_root(), state.state_root_from_scratch(), "restored incremental root");
    assert_eq!(restored.snapshot(), bytes, "a restored state snapshots to the same bytes");
    restored
}

/// What a scenario went through: fills, liquidations, settlements, delegations.
#[derive(Debug, Default)]
struct Seen {
    fills: usize,
    liquidations: usize,
    settlements: usize,
    delegations: usize,
}

fn run(trader_usd: &[u64], blocks: &[Vec<Op>]) -> Seen {
    let mut chain = chain(trader_usd);
    chain.state.state_root();
    let mut restored = vec![restore(&chain.state)];
    let mut quotes = 0;
    let mut seen = Seen::default();
    // A short-dated series and a first market, then the scenario.
    let setup: Vec<Op> = (0..SERIES.len() - 1)
        .map(|series| Op::Quote { series, offset: 1 + series as i32, lots: 300, gtt_s: (series == 3).then_some(30) })
        .collect();
    // Then past the short-dated expiry, and a quiet block after settlement.
    let settle = vec![Op::Wait { minutes: 1, to_expiry: true }, Op::Move { percent: 0 }];
    chain.submit("authority", vec![list_series(SHORT_DATED)]);
    for ops in std::iter::once(&setup).chain(blocks).chain([&settle, &Vec::new()]) {
        chain.block_interval_ms = 1_000;
        for op in ops {
            queue(&mut chain, op, &mut quotes);
        }
        let context = next_context(&chain);
        let transactions = chain.pending().to_vec();
        let output = chain.produce_block();
        for event in &output.events {
            use vanna_runtime::events::Event;
            match event {
                Event::Filled(_) => seen.fills += 1,
                Event::LiquidationStarted { .. } => seen.liquidations += 1,
                Event::SeriesSettled { .. } => seen.settlements += 1,
                Event::Delegated { .. } => seen.delegations += 1,
                _ => {}
            }
        }
        for (at, copy) in restored.iter_mut().enumerate() {
            let replayed = apply_block(copy, &context, &transactions).unwrap();
            let height = context.height;
            assert_eq!(replayed.receipts, output.receipts, "receipts of block {height}, restored after block {at}");
            assert_eq!(replayed.events, output.events, "events of block {height}, restored after block {at}");
            assert_eq!(replayed.state_root, output.state_root, "root of block {height}, restored after block {at}");
        }
        restored.push(restore(&chain.state));
    }
    seen
}

/// The generator is only useful if the scenarios trade, liquidate, settle and delegate.
#[test]
fn the_generated_scenarios_trade_liquidate_settle_and_delegate() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut total = Seen::default();
    for _ in 0..16 {
        let (trader_usd, blocks) = scenario().new_tree(&mut runner).unwrap().current();
        let seen = run(&trader_usd, &blocks);
        total.fills += seen.fills;
        total.liquidations += seen.liquidations;
        total.settlements += seen.settlements;
        total.delegations += seen.delegations;
    }
    assert!(
        total.fills >= 20 && total.liquidations >= 1 && total.settlements >= 16 && total.delegations >= 1,
        "{total:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn a_restored_state_executes_every_later_block_exactly_as_the_original((trader_usd, blocks) in scenario()) {
        run(&trader_usd, &blocks);
    }
}

/// A state with orders, positions and staking, snapshotted.
fn sample() -> (State, Vec<u8>) {
    let blocks = vec![
        vec![Op::Trade { trader: 0, series: 0, buy: false, lots: 100, rest: false }],
        vec![Op::Move { percent: -10 }, Op::Stake(StakeOp::Delegate { to: 1, vanna: 500 })],
    ];
    let mut chain = chain(&[50_000, 50_000, 50_000]);
    let mut quotes = 0;
    for ops in &blocks {
        queue(&mut chain, &Op::Quote { series: 0, offset: 1, lots: 200, gtt_s: Some(60) }, &mut quotes);
        for op in ops {
            queue(&mut chain, op, &mut quotes);
        }
        chain.produce_block();
    }
    let bytes = chain.state.snapshot();
    (chain.state, bytes)
}

#[test]
fn damaged_snapshots_are_refused_with_a_typed_error() {
    let (mut state, bytes) = sample();
    State::from_snapshot(&bytes).unwrap();
    // Every truncation.
    let step = (bytes.len() / 300).max(1);
    for cut in (0..bytes.len()).step_by(step).chain(bytes.len() - 40..bytes.len()) {
        assert!(
            matches!(
                State::from_snapshot(&bytes[..cut]),
                Err(SnapshotError::Truncated { .. } | SnapshotError::BadMagic)
            ),
            "cut at {cut}"
        );
    }
    // Bit flips anywhere: header fields, the checksum, the body.
    let mut random = Xorshift(0x9E37_79B9_7F4A_7C15);
    for round in 0..400 {
        let at = if round < 120 { round } else { random.below(bytes.len()) };
        let mut flipped = bytes.clone();
        flipped[at] ^= 1 << (round % 8);
        assert!(State::from_snapshot(&flipped).is_err(), "a flip at byte {at} went unnoticed");
    }
    // Garbage, behind the magic or not.
    for length in [0, 7, 8, 100, 10_000] {
        let garbage: Vec<u8> = (0..length).map(|_| random.below(256) as u8).collect();
        assert!(State::from_snapshot(&garbage).is_err());
        let behind_magic = [SNAPSHOT_MAGIC.as_slice(), &garbage].concat();
        assert!(State::from_snapshot(&behind_magic).is_err());
    }
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert!(matches!(State::from_snapshot(&trailing), Err(SnapshotError::TrailingBytes { count: 1, .. })));
    let mut version = bytes.clone();
    version[8] = 9;
    assert!(matches!(State::from_snapshot(&version), Err(SnapshotError::UnsupportedVersion { found: 9, .. })));
    // Header: chain id (1 + 10 bytes), height, time, then the root.
    let root_at = 8 + 4 + 1 + "vanna-demo".len() + 16;
    let mut root = bytes.clone();
    root[root_at] ^= 1;
    assert!(matches!(State::from_snapshot(&root), Err(SnapshotError::RootMismatch { .. })));
    let mut height = bytes.clone();
    height[root_at - 16] ^= 1;
    assert!(matches!(State::from_snapshot(&height), Err(SnapshotError::HeaderMismatch { field: "height", .. })));
    let too_large = vec![0; MAX_SNAPSHOT_BYTES + 1];
    assert!(matches!(State::from_snapshot(&too_large), Err(SnapshotError::TooLarge { .. })));
    // A well-formed body whose handles name nothing.
    let fund = state.insurance_fund;
    state.insurance_fund = state.accounts.len() as u64;
    assert!(matches!(State::from_snapshot(&state.snapshot()), Err(SnapshotError::Inconsistent(_))));
    state.insurance_fund = fund;
    let (_, info) = state.orders.iter_mut().next().expect("the sample rests orders");
    info.account = 10_000;
    assert!(matches!(State::from_snapshot(&state.snapshot()), Err(SnapshotError::Inconsistent(_))));
}

/// Positions and bytes for the damage test, the same on every run.
struct Xorshift(u64);

impl Xorshift {
    fn below(&mut self, bound: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % bound as u64) as usize
    }
}
