//! `vanna bench liquidation`: the time from the price update to the last
//! liquidation in the block, on one core.
//!
//! Population (generated from `--seed` before the clock starts): `--accounts`
//! accounts each holding `--positions` BTC option positions (calls and puts,
//! three expiries, seven strikes), plus `--safe-accounts` accounts whose small
//! positions are so well collateralised that the crash cannot bring them near
//! maintenance margin, so the at-risk index never names them. Every position
//! is created by the real matching engine: a few market makers quote exactly
//! the size the accounts will take, and each account's orders go through
//! `vanna_runtime::tools::place_order` (the path of a signed `PlaceOrder`, minus
//! the signature). Each account's cash is drawn from its portfolio's figures
//! before and after the crash, read from two probe states: about
//! `--below-maintenance-share` of the `--accounts` get cash that the crash
//! leaves below maintenance margin, the rest enough to stay above it.
//!
//! Then, in signed transactions of block 1, a keeper registers a backstop offer
//! and a liquidity provider rests bids and offers near the post-crash marks;
//! block 1's end-of-block re-check evaluates and indexes every account.
//!
//! Measured: `State::begin_block` of block 2, whose context carries the
//! validators' signed reports moving BTC down by `--crash` in one update. It
//! verifies and applies the reports, rebuilds the margin tables and runs the
//! liquidation pass over the accounts whose band the move crossed: the time
//! from the price update to the last liquidation in the block. Goal from the
//! issue: at most 50 ms for 100,000 accounts with 5 positions; with 900,000
//! safe accounts more, at most twice that.

use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rust_decimal::Decimal;
use serde::Serialize;
use vanna_proto::v1::{Side, TimeInForce};
use vanna_runtime::events::{Event, LiquidationStep, TxStatus};
use vanna_runtime::genesis::GenesisAccount;
use vanna_runtime::ids::{Address, SeriesId};
use vanna_runtime::money::Amount;
use vanna_runtime::sandbox::{Sandbox, add_validators, demo_genesis};
use vanna_runtime::tx::{limit_order, place, register_backstop};
use vanna_runtime::{BlockContext, Genesis, State};

use crate::CliResult;

/// Expiries and strikes listed: 3 × 7 × calls and puts = 42 BTC series.
const EXPIRIES: [&str; 3] = ["25DEC26", "29JAN27", "26MAR27"];
const STRIKES: [u32; 7] = [70_000, 80_000, 90_000, 100_000, 110_000, 120_000, 130_000];
const SERIES: usize = EXPIRIES.len() * STRIKES.len() * 2;
/// The demo genesis' BTC index, tick and lot.
const SPOT: Decimal = Decimal::from_parts(97_000, 0, 0, false, 0);
const LOT: Decimal = Decimal::from_parts(1, 0, 0, false, 2);
const VALIDATORS: [&str; 3] = ["val-a", "val-b", "val-c"];
/// Market makers taking the other side of the accounts' trades.
const MARKET_MAKERS: u32 = 4;
const MARKET_MAKER_USD: u64 = 100_000_000_000;
/// Quotes the market makers trade at: mark ∓ 1 %.
const QUOTE_SPREAD: f64 = 0.01;
/// The liquidity provider rests this many lots a side per series, at the
/// post-crash mark ∓ 4 % (inside the engine's 10 % band).
const LIQUIDITY_LOTS: u64 = 500;
const LIQUIDITY_SPREAD: f64 = 0.04;
const LIQUIDITY_USD: u64 = 500_000_000;
/// The keeper's backstop offer: notional, discount, collateral (USD).
const KEEPER_USD: u64 = 3_000_000;
const BACKSTOP: (&str, &str, &str) = ("2000000", "0.05", "500000");
const INSURANCE_FUND_USD: u64 = 20_000_000;
/// Lots per position: accounts at risk 1 to 10 (0.01 to 0.1 BTC), safe accounts 1 to 3.
const AT_RISK_LOTS_MAX: i64 = 10;
const SAFE_LOTS_MAX: i64 = 3;
/// The at-risk index lets surplus fall at most (3 + 15 % + 1 %) per contract
/// per dollar of spot, after reserving time decay and volatility drift (at
/// most about 7,100 USD per contract for the longest expiry here): safe
/// accounts hold more than that for the crash plus 10 points.
const SAFE_SLOPE_PER_CONTRACT: f64 = 3.2;
const SAFE_ALLOWANCE_PER_CONTRACT: f64 = 8_000.0;
/// Block spacing, as the sandbox produces them.
const BLOCK_MS: u64 = 1_000;
/// Bounds on the flags: memory (about 3 KiB per account) and run time.
const ACCOUNTS_MAX: u64 = 2_000_000;
const GOAL_MS: f64 = 50.0;

/// `vanna bench liquidation` options.
#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// Accounts at risk: each holds `--positions` option positions.
    #[arg(long, default_value_t = 100_000, value_parser = crate::args::whole::<u32>(1, ACCOUNTS_MAX))]
    pub accounts: u32,
    /// Option positions per account, in distinct series of the 42 listed.
    #[arg(long, default_value_t = 5, value_parser = crate::args::whole::<u32>(1, SERIES as u64))]
    pub positions: u32,
    /// The index falls by this fraction in one oracle update (above 0, at most 0.5).
    #[arg(long, default_value_t = 0.30)]
    pub crash: f64,
    /// More accounts with positions, collateralised far beyond the crash: the
    /// at-risk index must keep them out of the pass.
    #[arg(long, default_value_t = 0, value_parser = crate::args::whole::<u32>(0, ACCOUNTS_MAX))]
    pub safe_accounts: u32,
    /// Share of `--accounts` given cash that the crash leaves below
    /// maintenance margin (among those whose portfolio loses in the crash).
    #[arg(long, default_value_t = 0.02)]
    pub below_maintenance_share: f64,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    #[arg(long)]
    pub json: bool,
}

impl Default for Args {
    fn default() -> Self {
        Args {
            accounts: 100_000,
            positions: 5,
            crash: 0.30,
            safe_accounts: 0,
            below_maintenance_share: 0.02,
            seed: 7,
            json: false,
        }
    }
}

/// Position closes by the step that took them.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Steps {
    pub backstop: u64,
    pub book: u64,
    pub insurance_fund: u64,
    pub deleverage: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// `begin_block` of the crash block: reports verified and applied, margin
    /// tables rebuilt, the liquidation pass.
    pub liquidation_ms: f64,
    /// `LiquidationStarted` events of the timed part (the pass).
    pub accounts_liquidated: u64,
    /// Liquidations in the crash block's end-of-block re-check (keepers,
    /// the fund or counterparties pushed below maintenance by the pass).
    pub accounts_liquidated_at_block_end: u64,
    /// Accounts the pass evaluated exactly: those whose spot band the move
    /// crossed, on the watch list or due for refresh.
    pub accounts_evaluated: u64,
    /// Of those, safe accounts (should be none).
    pub safe_accounts_evaluated: u64,
    /// Accounts whose cash was drawn to end below maintenance margin.
    pub accounts_planned_below_maintenance: u64,
    pub accounts: u32,
    pub safe_accounts: u32,
    pub positions: u32,
    pub crash: f64,
    pub index_before: String,
    pub index_after: String,
    pub series: usize,
    pub positions_closed: Steps,
    /// Population, trades through the matching engine and block 1, in seconds.
    pub setup_seconds: f64,
    pub goal_ms: f64,
    pub seed: u64,
}

/// One trade of an account's plan: lots signed (positive buys), at a market maker's quote.
#[derive(Clone, Copy, Debug)]
struct Trade {
    series: usize,
    lots: i64,
    price_ticks: u64,
}

/// The listing with its quotes and the figures the plans need.
struct Listing {
    names: Vec<String>,
    ids: Vec<SeriesId>,
    /// Market makers' ask and bid per series, in ticks, before the crash.
    quotes: Vec<(u64, u64)>,
    /// Marks per contract after the crash, for the liquidity provider.
    crash_marks: Vec<f64>,
}

/// The chain right before the crash block, and what the bench needs to know about it.
pub struct Population {
    pub sandbox: Sandbox,
    pub crash_spot: Decimal,
    /// Owners of the safe accounts: `safe.0..safe.1`.
    safe: (u64, u64),
    planned_below_maintenance: u64,
    setup_seconds: f64,
}

pub fn run(args: &Args) -> CliResult {
    let report = measure(args)?;
    crate::output::emit(args.json, &report, |r| {
        outln!(
            "liquidation: {} accounts x {} positions (+{} safe), BTC {} -> {} ({:.0}% crash) in one update",
            r.accounts,
            r.positions,
            r.safe_accounts,
            r.index_before,
            r.index_after,
            r.crash * 100.0
        );
        outln!(
            "  price update to last liquidation {:>9.3} ms (goal {} ms for 100,000 accounts)",
            r.liquidation_ms,
            r.goal_ms
        );
        outln!(
            "  accounts evaluated {} (safe {}), liquidated {} (planned {}; {} more at the block's end)",
            r.accounts_evaluated,
            r.safe_accounts_evaluated,
            r.accounts_liquidated,
            r.accounts_planned_below_maintenance,
            r.accounts_liquidated_at_block_end
        );
        let s = &r.positions_closed;
        outln!(
            "  position closes: backstop {}, book {}, insurance fund {}, deleveraging {}",
            s.backstop,
            s.book,
            s.insurance_fund,
            s.deleverage
        );
        outln!("  setup {:.1} s (not timed), seed {}", r.setup_seconds, r.seed);
    })
}

pub fn measure(args: &Args) -> Result<Report, Box<dyn std::error::Error>> {
    let mut population = populate(args)?;
    crash(args, &mut population)
}

fn check(args: &Args) -> Result<(), String> {
    let accounts = u64::from(args.accounts) + u64::from(args.safe_accounts);
    if accounts > ACCOUNTS_MAX {
        return Err(format!("--accounts + --safe-accounts is {accounts}, more than {ACCOUNTS_MAX}"));
    }
    if !(args.crash > 0.0 && args.crash <= 0.5) {
        return Err(format!("--crash must be a fraction above 0 and at most 0.5, got {}", args.crash));
    }
    if !(0.0..=1.0).contains(&args.below_maintenance_share) {
        return Err(format!("--below-maintenance-share must be between 0 and 1, got {}", args.below_maintenance_share));
    }
    Ok(())
}

fn series_names() -> Vec<String> {
    let mut names = Vec::new();
    for expiry in EXPIRIES {
        for strike in STRIKES {
            for kind in ["C", "P"] {
                names.push(format!("BTC-{expiry}-{strike}-{kind}"));
            }
        }
    }
    names
}

/// The demo chain with BTC only, the bench's listing, three validators, a
/// keeper and a liquidity provider, and an oracle that may move the whole
/// crash in one update.
fn base_genesis(args: &Args) -> (Genesis, Vec<(String, vanna_runtime::tx::Signer)>) {
    let (mut genesis, mut signers) = demo_genesis(&[("keeper", KEEPER_USD), ("liquidity", LIQUIDITY_USD)]);
    signers.extend(add_validators(
        &mut genesis,
        &[("val-a", 10_000, 0, "0.1"), ("val-b", 10_000, 0, "0.1"), ("val-c", 10_000, 0, "0.1")],
    ));
    genesis.underlyings.retain(|underlying| underlying.symbol == "BTC");
    genesis.series = series_names();
    let crash_bps = (args.crash * 10_000.0).ceil() as u32;
    genesis.oracle.max_move_per_update_bps = genesis.oracle.max_move_per_update_bps.max(crash_bps + 100);
    let fund = genesis.accounts.iter_mut().find(|a| a.address == Address::insurance_fund()).expect("demo fund");
    fund.usd = usd(INSURANCE_FUND_USD);
    (genesis, signers)
}

fn usd(amount: u64) -> Amount {
    Amount::new(Decimal::from(amount), vanna_runtime::error::Field::Genesis).expect("a valid amount")
}

fn synthetic_address(kind: u8, index: u32) -> Address {
    let mut bytes = [0u8; 20];
    bytes[..4].copy_from_slice(&index.to_be_bytes());
    bytes[4] = 0xb1;
    bytes[5] = kind;
    Address(bytes)
}

fn user_address(index: u32) -> Address {
    synthetic_address(1, index)
}

fn market_maker_address(index: u32) -> Address {
    synthetic_address(2, index)
}

/// Mark per contract of `series` in `state`'s tables.
fn mark(state: &State, series: SeriesId) -> f64 {
    let risk = state.risk.get("BTC").expect("BTC has tables");
    risk.tables.series(risk.rows[&series]).expect("a listed series has a row").greeks.price
}

/// Ticks are half dollars.
fn ticks_down(price: f64) -> u64 {
    ((price * 2.0).floor() as u64).max(1)
}

fn ticks_up(price: f64) -> u64 {
    ((price * 2.0).ceil() as u64).max(1)
}

fn ticks_text(ticks: u64) -> String {
    (Decimal::from(ticks) / Decimal::TWO).normalize().to_string()
}

fn lots_text(lots: u64) -> String {
    (LOT * Decimal::from(lots)).normalize().to_string()
}

/// Figures of a plan read from the probes: what placing it needs and the
/// cash at which the crash leaves it exactly at maintenance margin.
struct Needs {
    place: Decimal,
    survive: Decimal,
}

/// Evaluates a plan's trades, longs first, against the pre-crash probe (every
/// prefix must pass the order checks) and the crash probe.
fn needs(trades: &[Trade], listing: &Listing, before: &State, after: &State, probe: u64) -> Result<Needs, String> {
    let fees = &before.params.fees;
    let index = before.index_price("BTC");
    let mut adjust: Vec<(SeriesId, i64)> = Vec::with_capacity(trades.len());
    let mut cash_out = Decimal::ZERO;
    let mut place = Decimal::ZERO;
    let probe_usd = before.accounts[probe as usize].usd.value();
    for trade in trades {
        let price = Decimal::from(trade.price_ticks) / Decimal::TWO;
        let contracts = LOT * Decimal::from(trade.lots.unsigned_abs());
        let premium = Amount::new(price * contracts, vanna_runtime::error::Field::Amount).map_err(|e| e.to_string())?;
        let fee = fees.fee(fees.taker_rate, index, contracts, premium).value();
        // What the order itself needs before it fills: a buy locks premium and
        // the largest fee; a sell sets aside at most its premium and fee.
        let in_flight = premium.value() * (Decimal::ONE + fees.premium_cap) + Decimal::ONE;
        place = place.max(cash_out + in_flight);
        cash_out += if trade.lots > 0 { premium.value() + fee } else { fee - premium.value() };
        adjust.push((listing.ids[trade.series], trade.lots));
        let figures = before.margin_figures(probe, &adjust, Decimal::ZERO).map_err(|e| e.to_string())?;
        let value = figures.equity - probe_usd;
        place = place.max(figures.initial - value + cash_out + in_flight);
    }
    let figures = after.margin_figures(probe, &adjust, Decimal::ZERO).map_err(|e| e.to_string())?;
    let value = figures.equity - after.accounts[probe as usize].usd.value();
    Ok(Needs {
        place: place * Decimal::new(102, 2) + Decimal::from(100),
        survive: figures.maintenance - value + cash_out,
    })
}

/// Draws `count` portfolios of `positions` distinct series, longs first.
fn draw_trades(rng: &mut ChaCha8Rng, listing: &Listing, positions: u32, lots_max: i64) -> Vec<Trade> {
    let mut chosen: Vec<usize> = Vec::with_capacity(positions as usize);
    while chosen.len() < positions as usize {
        let series = rng.random_range(0..listing.names.len());
        if !chosen.contains(&series) {
            chosen.push(series);
        }
    }
    let mut trades: Vec<Trade> = chosen
        .into_iter()
        .map(|series| {
            let lots = rng.random_range(1..=lots_max);
            let (ask, bid) = listing.quotes[series];
            if rng.random_bool(0.5) {
                Trade { series, lots, price_ticks: ask }
            } else {
                Trade { series, lots: -lots, price_ticks: bid }
            }
        })
        .collect();
    trades.sort_by_key(|trade| std::cmp::Reverse(trade.lots.signum()));
    trades
}

/// Builds the chain right before the crash block.
pub fn populate(args: &Args) -> Result<Population, Box<dyn std::error::Error>> {
    check(args)?;
    let started = Instant::now();
    // One stream for the accounts at risk and another for the safe ones, so
    // that adding safe accounts leaves the accounts at risk exactly as they were.
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let mut safe_rng = ChaCha8Rng::seed_from_u64(args.seed);
    safe_rng.set_stream(1);
    let (base, signers) = base_genesis(args);
    let crash_spot = (SPOT * (Decimal::ONE - Decimal::try_from(args.crash)?)).round_dp(2);

    // Probes: the same listing at the setup's time and spot, and at the crash
    // block's time (block 2) and spot: their margin tables are the ones the
    // chain will build.
    let before = base.build()?;
    let after = Genesis {
        genesis_time_ms: base.genesis_time_ms + 2 * BLOCK_MS,
        underlyings: base
            .underlyings
            .iter()
            .map(|u| vanna_runtime::instrument::UnderlyingSpec {
                index_price: vanna_runtime::money::Price::new(crash_spot, vanna_runtime::error::Field::IndexPrice)
                    .expect("a valid index"),
                ..u.clone()
            })
            .collect(),
        ..base.clone()
    }
    .build()?;
    let names = series_names();
    let ids: Vec<SeriesId> = names.iter().map(|name| before.series(name).expect("listed").id).collect();
    let quotes = ids
        .iter()
        .map(|&id| {
            let mark = mark(&before, id);
            (ticks_up(mark * (1.0 + QUOTE_SPREAD)) + 1, ticks_down(mark * (1.0 - QUOTE_SPREAD)))
        })
        .collect();
    let crash_marks = ids.iter().map(|&id| mark(&after, id)).collect();
    let listing = Listing { names, ids, quotes, crash_marks };
    let probe = before.account(&signers[0].1.address()).expect("the authority's account").owner;

    // Plans: portfolios first, then cash from their figures.
    let total = args.accounts + args.safe_accounts;
    let mut plans: Vec<(Vec<Trade>, Needs)> = Vec::with_capacity(total as usize);
    for index in 0..total {
        let trades = if index < args.accounts {
            draw_trades(&mut rng, &listing, args.positions, AT_RISK_LOTS_MAX)
        } else {
            draw_trades(&mut safe_rng, &listing, args.positions, SAFE_LOTS_MAX)
        };
        let needs = needs(&trades, &listing, &before, &after, probe)?;
        plans.push((trades, needs));
    }
    let can_fall = |needs: &Needs| needs.survive > needs.place * Decimal::new(105, 2);
    let eligible = plans[..args.accounts as usize].iter().filter(|(_, needs)| can_fall(needs)).count();
    let wanted = (f64::from(args.accounts) * args.below_maintenance_share).round();
    let chance = if eligible == 0 { 0.0 } else { (wanted / eligible as f64).min(1.0) };
    let mut planned_below_maintenance = 0u64;
    let mut cash: Vec<Decimal> = Vec::with_capacity(plans.len());
    for (index, (trades, needs)) in plans.iter().enumerate() {
        let enough = needs.place.max(needs.survive);
        let amount = if index >= args.accounts as usize {
            let contracts: i64 = trades.iter().map(|trade| trade.lots.abs()).sum();
            let per_contract = SAFE_SLOPE_PER_CONTRACT * vanna_pricing::decimal_to_f64(SPOT) * (args.crash + 0.1)
                + SAFE_ALLOWANCE_PER_CONTRACT;
            enough + Decimal::try_from(per_contract * contracts as f64 / 100.0)?.round() + Decimal::ONE_HUNDRED
        } else if can_fall(needs) && rng.random_bool(chance) {
            planned_below_maintenance += 1;
            let fraction = Decimal::try_from(rng.random_range(0.05..0.95))?;
            needs.place + (needs.survive - needs.place) * fraction
        } else {
            let cushion = Decimal::try_from(rng.random_range(0.03..0.6))?;
            enough + enough.abs() * cushion + Decimal::ONE_HUNDRED
        };
        cash.push(amount.round_dp(0));
    }
    drop((before, after));

    // The chain: users and market makers funded at genesis.
    let mut genesis = base;
    for (index, amount) in cash.iter().enumerate() {
        genesis.accounts.push(GenesisAccount {
            address: user_address(index as u32),
            usd: Amount::new(*amount, vanna_runtime::error::Field::Genesis)?,
            vanna: Amount::ZERO,
        });
    }
    drop(cash);
    for maker in 0..MARKET_MAKERS {
        genesis.accounts.push(GenesisAccount {
            address: market_maker_address(maker),
            usd: usd(MARKET_MAKER_USD),
            vanna: Amount::ZERO,
        });
    }
    let mut sandbox = Sandbox::new(&genesis, signers)?;
    drop(genesis);
    let owner = |address: Address| sandbox.state.account(&address).expect("a genesis account").owner;
    let safe_end = owner(market_maker_address(0));
    let safe = (safe_end - u64::from(args.safe_accounts), safe_end);

    // Market makers quote exactly what the accounts will take.
    let mut demand = vec![(0u64, 0u64); listing.names.len()];
    for (trades, _) in &plans {
        for trade in trades {
            let (buys, sells) = &mut demand[trade.series];
            if trade.lots > 0 { *buys += trade.lots as u64 } else { *sells += trade.lots.unsigned_abs() }
        }
    }
    let mut events = Vec::new();
    for (series, &(buys, sells)) in demand.iter().enumerate() {
        let maker = market_maker_address(series as u32 % MARKET_MAKERS);
        let (ask, bid) = listing.quotes[series];
        for (side, lots, ticks) in [(Side::Sell, buys, ask), (Side::Buy, sells, bid)] {
            if lots == 0 {
                continue;
            }
            let order = limit_order(&listing.names[series], side, &ticks_text(ticks), &lots_text(lots));
            vanna_runtime::tools::place_order(&mut sandbox.state, &maker, &order, &mut events)
                .map_err(|e| format!("market maker quote in {}: {e}", listing.names[series]))?;
            events.clear();
        }
    }

    // Every account takes its trades.
    for (index, (trades, _)) in plans.iter().enumerate() {
        let address = user_address(index as u32);
        for trade in trades {
            let side = if trade.lots > 0 { Side::Buy } else { Side::Sell };
            let order = vanna_proto::v1::PlaceOrder {
                time_in_force: TimeInForce::Ioc as i32,
                ..limit_order(
                    &listing.names[trade.series],
                    side,
                    &ticks_text(trade.price_ticks),
                    &lots_text(trade.lots.unsigned_abs()),
                )
            };
            let outcome = vanna_runtime::tools::place_order(&mut sandbox.state, &address, &order, &mut events)
                .map_err(|e| format!("account {index}'s order in {}: {e}", listing.names[trade.series]))?;
            if outcome.cancelled.is_some() {
                return Err(
                    format!("account {index}'s order in {} did not fill in full", listing.names[trade.series]).into()
                );
            }
            events.clear();
        }
    }
    drop(plans);
    if !sandbox.state.orders.is_empty() {
        return Err("market makers' quotes were not taken in full".into());
    }

    // Block 1: the keeper's backstop offer and the liquidity provider's
    // orders near the post-crash marks, signed; its end re-checks and indexes
    // every account that traded.
    let (notional, discount, collateral) = BACKSTOP;
    sandbox.submit("keeper", vec![register_backstop("BTC", notional, discount, collateral)]);
    let mut actions = Vec::new();
    for (series, name) in listing.names.iter().enumerate() {
        let mark = listing.crash_marks[series];
        let ask = ticks_up(mark * (1.0 + LIQUIDITY_SPREAD));
        let bid = ticks_down(mark * (1.0 - LIQUIDITY_SPREAD));
        actions.push(place(limit_order(name, Side::Sell, &ticks_text(ask), &lots_text(LIQUIDITY_LOTS))));
        if mark * (1.0 - LIQUIDITY_SPREAD) >= 0.5 {
            actions.push(place(limit_order(name, Side::Buy, &ticks_text(bid), &lots_text(LIQUIDITY_LOTS))));
        }
    }
    for chunk in actions.chunks(vanna_runtime::limits::MAX_ACTIONS_PER_TRANSACTION) {
        sandbox.submit("liquidity", chunk.to_vec());
    }
    let output = sandbox.produce_block();
    for receipt in &output.receipts {
        match &receipt.status {
            TxStatus::Rejected { error } => return Err(format!("block 1 transaction rejected: {error}").into()),
            TxStatus::Included { .. } => {
                if let Some(error) = receipt.first_error() {
                    return Err(format!("block 1 action failed: {error}").into());
                }
            }
        }
    }
    if output.events.iter().any(|event| matches!(event, Event::LiquidationStarted { .. })) {
        return Err("an account was liquidated before the crash".into());
    }
    Ok(Population {
        sandbox,
        crash_spot,
        safe,
        planned_below_maintenance,
        setup_seconds: started.elapsed().as_secs_f64(),
    })
}

/// Block 2: the validators report the crash; `begin_block` is timed, then the
/// block ends as usual.
pub fn crash(args: &Args, population: &mut Population) -> Result<Report, Box<dyn std::error::Error>> {
    let sandbox = &mut population.sandbox;
    let index_before = sandbox.state.index_price("BTC").value();
    sandbox.report_prices(&VALIDATORS, &[("BTC", &population.crash_spot.to_string())]);
    let context = BlockContext {
        signers: Some(sandbox.state.staking.active.iter().map(|member| member.consensus_key).collect()),
        oracle_reports: std::mem::take(&mut sandbox.oracle_reports),
        ..BlockContext::after(&sandbox.state, sandbox.block_interval_ms)
    };
    // What the pass will evaluate, read from the index before it changes: the
    // accounts whose band the new spot crossed and those due for refresh (the
    // volatility is the genesis default, so no rescan; block 1's re-check left
    // no account changed but unchecked).
    let spot = vanna_pricing::decimal_to_f64(population.crash_spot);
    let mut evaluated = sandbox.state.at_risk.candidates("BTC", spot);
    evaluated.extend(sandbox.state.at_risk.due(context.time_ms));
    evaluated.sort_unstable();
    evaluated.dedup();
    let (safe_from, safe_end) = population.safe;
    let safe_evaluated = evaluated.iter().filter(|&&owner| (safe_from..safe_end).contains(&owner)).count();

    let started = Instant::now();
    let events = sandbox.state.begin_block(&context)?;
    let liquidation_ms = started.elapsed().as_secs_f64() * 1e3;
    let mut end_events = Vec::new();
    sandbox.state.end_block(&context, &mut end_events);
    sandbox.state.state_root();
    let liquidated_at_block_end =
        end_events.iter().filter(|event| matches!(event, Event::LiquidationStarted { .. })).count() as u64;

    let index_after = sandbox.state.index_price("BTC").value();
    if index_after != population.crash_spot {
        return Err(format!("the index moved to {index_after}, not {}", population.crash_spot).into());
    }
    let mut steps = Steps::default();
    let mut liquidated = 0u64;
    for event in &events {
        match event {
            Event::LiquidationStarted { .. } => liquidated += 1,
            Event::PositionLiquidated { step, .. } => match step {
                LiquidationStep::Backstop => steps.backstop += 1,
                LiquidationStep::Book => steps.book += 1,
                LiquidationStep::InsuranceFund => steps.insurance_fund += 1,
                LiquidationStep::Deleverage => steps.deleverage += 1,
            },
            _ => {}
        }
    }
    let report = Report {
        liquidation_ms,
        accounts_liquidated: liquidated,
        accounts_liquidated_at_block_end: liquidated_at_block_end,
        accounts_evaluated: evaluated.len() as u64,
        safe_accounts_evaluated: safe_evaluated as u64,
        accounts_planned_below_maintenance: population.planned_below_maintenance,
        accounts: args.accounts,
        safe_accounts: args.safe_accounts,
        positions: args.positions,
        crash: args.crash,
        index_before: index_before.to_string(),
        index_after: index_after.to_string(),
        series: SERIES,
        positions_closed: steps,
        setup_seconds: population.setup_seconds,
        goal_ms: GOAL_MS,
        seed: args.seed,
    };
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_crash_liquidates_some_accounts_and_conserves_funds() {
        let args = Args { accounts: 300, safe_accounts: 100, below_maintenance_share: 0.1, ..Args::default() };
        let mut population = populate(&args).unwrap();
        population.sandbox.state.check_invariants();
        let total = population.sandbox.state.total_usd();
        let report = crash(&args, &mut population).unwrap();
        let state = &mut population.sandbox.state;
        state.check_invariants();
        assert_eq!(state.total_usd(), total, "the crash block moves USD, never creates or destroys it");
        assert_eq!(state.state_root(), state.state_root_from_scratch(), "incremental root equals a full one");
        assert!(report.accounts_liquidated > 0, "some accounts are liquidated");
        assert!(report.accounts_liquidated < u64::from(args.accounts), "most survive");
        assert_eq!(report.accounts_liquidated, report.accounts_planned_below_maintenance);
        assert_eq!(report.safe_accounts_evaluated, 0, "the index keeps safe accounts out of the pass");
        assert!(report.accounts_evaluated >= report.accounts_liquidated);
    }
}
