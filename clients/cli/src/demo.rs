//! `vanna demo`: a scripted trading session through the runtime, block by
//! block: market makers quote, takers cross, orders are cancelled and
//! replaced, refusals are shown with their reasons, and the books, fills,
//! positions, fees and balances are printed. Then the validators' signed
//! oracle reports move BTC, marks and margins follow, and a short-dated put
//! expires and settles at the TWAP of the index. Last, BTC crashes 30% in one
//! block and the liquidation engine closes the accounts it pushed below
//! maintenance margin in that same block: backstop keeper, book, insurance
//! fund and auto-deleveraging.

use prost::Message;
use rust_decimal::Decimal;
use vanna_proto::v1 as wire;
use vanna_proto::v1::action::Kind;
use vanna_proto::v1::{PlaceOrder, Side, TimeInForce, cancel_all::Scope};
use vanna_runtime::BlockOutput;
use vanna_runtime::events::{
    ActionOutcome, ActionResult, CancelReason, Event, LiquidationStep, OrderOutcome, TxStatus,
};
use vanna_runtime::sandbox::Sandbox;
use vanna_runtime::staking::{EvidenceRecord, Offence};
use vanna_runtime::tx::{
    action, cancel_all, cancel_by_client_id, limit_order, market_order, place, register_backstop, replace, transfer,
};

use crate::CliResult;
use crate::genesis::SHORT_DATED_PUT;

#[derive(clap::Args)]
pub struct Args {
    /// Print each block's output in full (receipts, events, state root) as one
    /// JSON line per block, and nothing else, instead of the summary.
    #[arg(long)]
    pub json: bool,
}

/// Prints a line of the human summary; with `--json` nothing but blocks is printed.
macro_rules! say {
    ($args:expr) => {
        if !$args.json {
            outln!()
        }
    };
    ($args:expr, $($arg:tt)*) => {
        if !$args.json {
            outln!($($arg)*)
        }
    };
}

const TRADERS: [&str; 4] = ["mm-north", "mm-south", "alice", "bob"];
/// The crash's cast: the makers, the backstop keeper and three leveraged writers.
const CRASH_ACCOUNTS: [&str; 6] = ["mm-north", "mm-south", "keeper", "carol", "dave", "erin"];
/// The three writers: (name, contracts of the 90,000 put each writes).
const WRITERS: [(&str, &str); 3] = [("carol", "1.2"), ("dave", "2"), ("erin", "2.5")];
const CRASH_PUT: &str = "BTC-25DEC26-90000-P";
const VALIDATORS: [&str; 3] = ["validator-1", "validator-2", "validator-3"];
const NAMED: [&str; 12] = [
    "mm-north",
    "mm-south",
    "alice",
    "bob",
    "keeper",
    "carol",
    "dave",
    "erin",
    "authority",
    "validator-1",
    "validator-2",
    "validator-3",
];

pub fn run(args: &Args) -> CliResult {
    session(args).map(|_| ())
}

/// The whole session; returns the crash block, for the tests.
fn session(args: &Args) -> Result<BlockOutput, Box<dyn std::error::Error>> {
    let (genesis, signers) = crate::genesis::demo();
    let mut chain = Sandbox::new(&genesis, signers)?;
    say!(
        args,
        "Vanna demo: chain {}, genesis {} accounts, {} series listed",
        genesis.chain_id,
        genesis.accounts.len(),
        genesis.series.len()
    );
    say!(
        args,
        "fees: maker {} / taker {} of underlying notional, capped at {} of premium\n",
        genesis.fees.maker_rate,
        genesis.fees.taker_rate,
        genesis.fees.premium_cap
    );

    step(
        &mut chain,
        args,
        "Delegators bond: the authority funds alice and bob with VANNA and they delegate",
        |chain| {
            let (alice, bob) = (chain.address("alice"), chain.address("bob"));
            chain.submit(
                "authority",
                vec![transfer(alice, wire::Asset::Vanna, "5000"), transfer(bob, wire::Asset::Vanna, "8000")],
            );
            let delegate = |chain: &Sandbox, validator: &str, amount: &str| {
                action(Kind::Delegate(wire::Delegate {
                    validator: chain.address(validator).as_bytes().to_vec(),
                    amount: amount.into(),
                }))
            };
            let (to_1, to_3) = (delegate(chain, "validator-1", "5000"), delegate(chain, "validator-3", "8000"));
            chain.submit("alice", vec![to_1]);
            chain.submit("bob", vec![to_3]);
        },
    )?;
    step(
        &mut chain,
        args,
        "Market makers quote puts on both sides (shorts are margined) and bid for calls",
        |chain| {
            let quote = |series: &str, side, price: &str, size: &str, client| {
                place(PlaceOrder { client_order_id: client, ..limit_order(series, side, price, size) })
            };
            chain.submit(
                "mm-north",
                vec![
                    quote("BTC-25DEC26-100000-P", Side::Buy, "6100", "2", 1),
                    quote("BTC-25DEC26-100000-P", Side::Sell, "6300", "2", 2),
                    quote("BTC-25DEC26-90000-P", Side::Buy, "2650", "3", 3),
                    quote("BTC-25DEC26-90000-P", Side::Sell, "2800", "3", 4),
                    quote("BTC-25DEC26-100000-C", Side::Buy, "8900", "1.5", 5),
                    quote("ETH-25DEC26-3500-P", Side::Buy, "210", "10", 6),
                    quote("ETH-25DEC26-3500-P", Side::Sell, "225", "10", 7),
                ],
            );
            chain.submit(
                "mm-south",
                vec![
                    quote("BTC-25DEC26-100000-P", Side::Buy, "6150", "1", 1),
                    quote("BTC-25DEC26-100000-P", Side::Sell, "6300", "1", 2),
                    quote("BTC-25DEC26-100000-P", Side::Sell, "6350", "4", 3),
                    quote("BTC-25DEC26-110000-C", Side::Buy, "5100", "2", 4),
                ],
            );
        },
    )?;
    step(
        &mut chain,
        args,
        "Takers cross: alice buys 2.5 puts at the best ask, 6300, which two makers quote (mm-north fills first: it quoted first); bob sells a put into the best bid",
        |chain| {
            chain.submit("alice", vec![place(limit_order("BTC-25DEC26-100000-P", Side::Buy, "6350", "2.5"))]);
            chain.submit(
                "bob",
                vec![place(PlaceOrder {
                    time_in_force: TimeInForce::Ioc as i32,
                    ..limit_order("BTC-25DEC26-100000-P", Side::Sell, "6100", "1")
                })],
            );
        },
    )?;
    step(&mut chain, args, "Short-dated: mm-south sells alice 2 puts expiring today at 08:00 UTC", |chain| {
        chain.submit("mm-south", vec![place(limit_order(SHORT_DATED_PUT, Side::Sell, "900", "2"))]);
        chain.submit("alice", vec![place(limit_order(SHORT_DATED_PUT, Side::Buy, "900", "2"))]);
    })?;
    let mm_south_ask = open_order(&chain, "mm-south", 3)?;
    let mm_north_bid = open_order(&chain, "mm-north", 1)?;
    step(
        &mut chain,
        args,
        "Amends: mm-south re-prices its ask (loses priority), mm-north shrinks its bid (keeps it) and pulls a call bid by client id",
        |chain| {
            chain.submit("mm-south", vec![replace(mm_south_ask, "6250", "")]);
            chain.submit("mm-north", vec![replace(mm_north_bid, "", "1"), cancel_by_client_id(5)]);
        },
    )?;
    step(
        &mut chain,
        args,
        "Refusals change nothing: naked calls beyond the margin, a post-only that would cross, a price off the tick, a buy beyond the cash",
        |chain| {
            chain.submit("alice", vec![place(limit_order("BTC-25DEC26-100000-C", Side::Sell, "8900", "40"))]);
            chain.submit(
                "alice",
                vec![place(PlaceOrder {
                    post_only: true,
                    ..limit_order("BTC-25DEC26-100000-P", Side::Buy, "6300", "1")
                })],
            );
            chain.submit("bob", vec![place(limit_order("BTC-25DEC26-90000-P", Side::Buy, "2650.25", "1"))]);
            chain.submit("alice", vec![place(limit_order("BTC-25DEC26-90000-P", Side::Buy, "2800", "100"))]);
        },
    )?;
    step(
        &mut chain,
        args,
        "alice sells half her puts back with a reduce-only market order, at a loss: she paid 6300 and the best bid, 6100, is for 1 contract, so the rest is cancelled; bob buys ETH puts",
        |chain| {
            chain.submit(
                "alice",
                vec![place(PlaceOrder {
                    reduce_only: true,
                    ..market_order("BTC-25DEC26-100000-P", Side::Sell, "1.25")
                })],
            );
            chain.submit("bob", vec![place(market_order("ETH-25DEC26-3500-P", Side::Buy, "4"))]);
        },
    )?;
    step(&mut chain, args, "mm-north cancels everything it quotes on ETH", |chain| {
        chain.submit("mm-north", vec![cancel_all(Scope::Underlying("ETH".into()))]);
    })?;

    step(&mut chain, args, "validator-3 signs two conflicting votes: alice reports the evidence", |chain| {
        let key = chain.state.staking.validators[&chain.address("validator-3")].consensus_key;
        let height = chain.state.height - 1;
        chain.evidence.push(EvidenceRecord {
            consensus_key: key,
            offence: Offence::DoubleVote,
            height,
            reporter: Some(chain.address("alice")),
        });
    })?;
    step(&mut chain, args, "Delegators and operators claim their rewards", |chain| {
        let claim = |chain: &Sandbox, validator: &str| {
            action(Kind::ClaimRewards(wire::ClaimRewards { validator: chain.address(validator).as_bytes().to_vec() }))
        };
        let claims = [
            ("alice", "validator-1"),
            ("bob", "validator-3"),
            ("validator-1", "validator-1"),
            ("validator-2", "validator-2"),
            ("validator-3", "validator-3"),
        ];
        for (who, validator) in claims {
            let claim = claim(chain, validator);
            chain.submit(who, vec![claim]);
        }
    })?;
    while !chain.state.height.is_multiple_of(chain.state.staking.params.epoch_blocks) {
        step(&mut chain, args, "No transactions: blocks to the end of the epoch", |_| {})?;
    }

    if !args.json {
        print_books(&chain);
        print_accounts(&chain, &TRADERS);
        print_staking(&chain);
    }

    say!(args, "\n== the oracle: validators sign BTC and ETH reports, which blocks carry before their transactions");
    step(
        &mut chain,
        args,
        "All three validators report; validator-3 left the active set, so its report does not count",
        |chain| {
            chain.report_prices(&VALIDATORS, &[("BTC", "97500"), ("ETH", "3550")]);
        },
    )?;
    print_margins(&chain, args, &TRADERS)?;
    step(
        &mut chain,
        args,
        &format!(
            "BTC falls: the validators report 93000; the index follows in one block (this chain's guard allows {}% per update)",
            genesis.oracle.max_move_per_update_bps / 100
        ),
        |chain| {
            chain.report_prices(&VALIDATORS, &[("BTC", "93000"), ("ETH", "3550")]);
        },
    )?;
    print_margins(&chain, args, &TRADERS)?;

    say!(args, "== expiry: {SHORT_DATED_PUT} settles at the 30-minute TWAP of the index before 08:00 UTC");
    let expiry_ms = chain.state.series(SHORT_DATED_PUT).ok_or("the short-dated put is listed")?.spec.expiry_ms;
    let at = |chain: &mut Sandbox, time_ms: u64| chain.block_interval_ms = time_ms - chain.state.time_ms;
    at(&mut chain, expiry_ms - 40 * 60_000);
    step(&mut chain, args, "07:20 UTC: the validators report BTC at 93,000", |chain| {
        chain.report_prices(&VALIDATORS, &[("BTC", "93000")]);
    })?;
    // A price held through silence is no price: validators keep reporting, one
    // block every 20 seconds, so the settlement window is live throughout.
    say!(args, "   ... validators report every 20 s: BTC 93,000 until 07:45 UTC, then 92,000 (blocks not shown)\n");
    chain.block_interval_ms = 20_000;
    while chain.state.time_ms + chain.block_interval_ms < expiry_ms {
        let spot =
            if chain.state.time_ms + chain.block_interval_ms < expiry_ms - 15 * 60_000 { "93000" } else { "92000" };
        chain.report_prices(&VALIDATORS, &[("BTC", spot)]);
        let block = chain.produce_block();
        if args.json {
            outln!("{}", serde_json::to_string(&block)?);
        }
    }
    at(&mut chain, expiry_ms);
    step(
        &mut chain,
        args,
        "08:00 UTC: the first block at expiry settles the series (TWAP 92,500: 15 minutes at each)",
        |_| {},
    )?;
    chain.block_interval_ms = 1_000;
    if !args.json {
        print_accounts(&chain, &TRADERS);
    }

    let crash_block = crash(&mut chain, args, &genesis)?;

    let root = chain.state.state_root();
    let alice = chain.address("alice");
    let proof = chain.state.prove_account(&alice).ok_or("alice has no account")?.encode_to_vec();
    let proven = vanna_runtime::verify_account_proof(&root, &alice, &proof)?;
    say!(args, "\nstate root after height {}: {}", chain.state.height, hex::encode(root));
    say!(
        args,
        "proof for alice ({} bytes) checks against the root alone: usd {} locked {}, {} position(s), {} open order(s)",
        proof.len(),
        proven.usd,
        proven.usd_locked,
        proven.positions.len(),
        proven.open_orders.len()
    );
    chain.state.check_invariants();
    Ok(crash_block)
}

/// A 30% crash in one block, and everything the liquidation engine does
/// about it in that same block, before any transaction of the block.
fn crash(
    chain: &mut Sandbox,
    args: &Args,
    genesis: &vanna_runtime::Genesis,
) -> Result<BlockOutput, Box<dyn std::error::Error>> {
    let spot_before = chain.state.index_price("BTC").value();
    let spot_after = (spot_before * Decimal::new(70, 2)).normalize();
    let guard_bps = genesis.oracle.max_move_per_update_bps;
    // How many updates the default guard of 2% would need for the same fall.
    let mut default_steps = 0;
    let mut spot = spot_before;
    while spot > spot_after {
        spot *= Decimal::new(98, 2);
        default_steps += 1;
    }
    say!(args, "\n== a crash in one block: BTC falls 30%, and the accounts it breaks are liquidated in that block");
    say!(
        args,
        "   this chain's genesis sets oracle.max_move_per_update_bps = {guard_bps} ({}% per update; the default 200 would take {default_steps} blocks), so one update carries the whole fall",
        guard_bps / 100
    );
    say!(
        args,
        "   the insurance fund holds {} USD; mark = Black-Scholes at the index; margined shorts pay no cash up front\n",
        chain.state.accounts[chain.state.insurance_fund as usize].usd
    );
    step(
        chain,
        args,
        "The makers refresh their BTC quotes: mm-north bids for the 90,000 put, mm-south rests a crash offer far above today's mark; keeper posts a backstop offer",
        |chain| {
            chain.report_prices(&VALIDATORS, &[("BTC", &spot_before.to_string())]);
            chain.submit(
                "mm-north",
                vec![
                    cancel_all(Scope::Underlying("BTC".into())),
                    place(limit_order(CRASH_PUT, Side::Buy, "5200", "6")),
                ],
            );
            chain.submit(
                "mm-south",
                vec![
                    cancel_all(Scope::Underlying("BTC".into())),
                    place(limit_order(CRASH_PUT, Side::Sell, "27000", "0.5")),
                ],
            );
            chain.submit("keeper", vec![register_backstop("BTC", "160000", "0.05", "20000")]);
        },
    )?;
    step(
        chain,
        args,
        "Leveraged writers sell the 90,000 put into mm-north's bid, margined rather than cash-secured",
        |chain| {
            chain.report_prices(&VALIDATORS, &[("BTC", &spot_before.to_string())]);
            for (name, contracts) in WRITERS {
                chain.submit(name, vec![place(limit_order(CRASH_PUT, Side::Sell, "5200", contracts))]);
            }
        },
    )?;
    print_margins(chain, args, &CRASH_ACCOUNTS)?;
    let fund_before = chain.state.accounts[chain.state.insurance_fund as usize].usd.value();
    let block = step(
        chain,
        args,
        &format!("CRASH: the validators report BTC at {spot_after}; everything below happens in this one block"),
        |chain| chain.report_prices(&VALIDATORS, &[("BTC", &spot_after.to_string())]),
    )?;
    if !args.json {
        print_crash_summary(chain, &block, spot_before, fund_before)?;
    }
    Ok(block)
}

/// What the crash block did, in totals, and where everyone stands after it.
fn print_crash_summary(chain: &Sandbox, block: &BlockOutput, spot_before: Decimal, fund_before: Decimal) -> CliResult {
    let spot_after = chain.state.index_price("BTC").value();
    outln!(
        "== the crash block {}, in sum: BTC {spot_before} -> {spot_after} ({}%)",
        chain.state.height,
        ((spot_after / spot_before - Decimal::ONE) * Decimal::ONE_HUNDRED).round_dp(2)
    );
    outln!("  accounts below maintenance margin after the oracle update, worst first:");
    for event in &block.events {
        if let Event::LiquidationStarted { account, equity, maintenance_margin, .. } = event {
            outln!(
                "    {:<9} equity {:>14} maintenance margin {:>14}",
                name_of(chain, account),
                equity.to_string(),
                maintenance_margin.to_string()
            );
        }
    }
    let mut by_step = [Decimal::ZERO; 4];
    let (mut shortfall, mut penalties, mut to_keepers, mut to_fund) =
        (Decimal::ZERO, Decimal::ZERO, Decimal::ZERO, Decimal::ZERO);
    for event in &block.events {
        match event {
            Event::PositionLiquidated { step, contracts, .. } => {
                let at = match step {
                    LiquidationStep::Backstop => 0,
                    LiquidationStep::Book => 1,
                    LiquidationStep::InsuranceFund => 2,
                    LiquidationStep::Deleverage => 3,
                };
                by_step[at] += contracts.abs();
            }
            Event::InsuranceFundUsed { amount, .. } => shortfall += amount.value(),
            Event::LiquidationPenalty { total, keepers, insurance_amount, .. } => {
                penalties += total.value();
                to_keepers += keepers.iter().map(|(_, amount)| amount.value()).sum::<Decimal>();
                to_fund += insurance_amount.value();
            }
            _ => {}
        }
    }
    outln!(
        "  contracts closed: {} to the backstop keeper, {} in the book, {} to the insurance fund, {} by auto-deleveraging",
        by_step[0],
        by_step[1],
        by_step[2],
        by_step[3]
    );
    if by_step[3].is_zero() {
        outln!("  auto-deleveraging was not needed: the earlier steps took every position");
    }
    outln!(
        "  penalties {penalties} USD: {to_keepers} to keepers, {to_fund} to the insurance fund; the fund absorbed {shortfall} USD of shortfalls"
    );
    let fund = &chain.state.accounts[chain.state.insurance_fund as usize];
    let fund_risk = chain.state.account_margin(&vanna_runtime::Address::insurance_fund())?;
    outln!(
        "  insurance fund: {fund_before} -> {} USD, equity {} against maintenance margin {} (it holds the positions it took, at mark)",
        fund.usd,
        fund_risk.equity,
        fund_risk.maintenance
    );
    outln!("\n== after the crash: equity and maintenance margin at the marks of {}", indices(chain));
    print_stale_underlyings(chain);
    outln!("  {:<14} {:>14} {:>10} {:>14} {:>12}  positions", "account", "USD", "locked", "equity", "maintenance");
    let mut rows: Vec<(String, vanna_runtime::Address)> =
        CRASH_ACCOUNTS.iter().map(|name| (name.to_string(), chain.address(name))).collect();
    rows.push(("insurance fund".to_string(), vanna_runtime::Address::insurance_fund()));
    for (label, address) in rows {
        let account = chain.state.account(&address).ok_or("unknown demo account")?;
        let risk = chain.state.account_margin(&address)?;
        let positions: Vec<String> =
            risk.positions.iter().map(|position| format!("{} {:+}", position.series, position.contracts)).collect();
        outln!(
            "  {:<14} {:>14} {:>10} {:>14} {:>12}  {}",
            label,
            account.usd.to_string(),
            account.usd_locked.to_string(),
            risk.equity.to_string(),
            risk.maintenance.to_string(),
            if positions.is_empty() { "-".to_string() } else { positions.join(", ") }
        );
    }
    let below = chain.state.at_risk_accounts(1).into_iter().find(|(_, _, figures)| figures.below_maintenance());
    match below {
        None => outln!(
            "  no account with positions is below maintenance margin; USD in existence {}, unchanged since genesis",
            chain.state.total_usd()
        ),
        Some((address, _, figures)) => outln!(
            "  {} is still below maintenance margin: equity {} vs {}",
            name_of(chain, &address),
            figures.equity,
            figures.maintenance
        ),
    }
    Ok(())
}

/// The order id behind one of `name`'s client order ids.
fn open_order(chain: &Sandbox, name: &str, client_order_id: u64) -> Result<u64, Box<dyn std::error::Error>> {
    let account = chain.state.account(&chain.address(name)).ok_or("unknown demo account")?;
    let id = account.client_orders.get(&client_order_id).ok_or("demo order is no longer open")?;
    Ok(id.0)
}

/// Queues what `submit` sends, produces the block and prints it: under
/// `title` with each action's result in words, or as one JSON line.
fn step(
    chain: &mut Sandbox,
    args: &Args,
    title: &str,
    submit: impl FnOnce(&mut Sandbox),
) -> Result<BlockOutput, Box<dyn std::error::Error>> {
    submit(chain);
    let sent = chain.pending().iter().map(|bytes| actions_of(bytes)).collect::<Result<Vec<_>, _>>()?;
    let block = chain.produce_block();
    if args.json {
        outln!("{}", serde_json::to_string(&block)?);
        return Ok(block);
    }
    outln!("== block {}: {title}", chain.state.height);
    print_block(chain, &block, &sent);
    outln!();
    Ok(block)
}

/// The actions of a signed transaction, to say what each result answers.
fn actions_of(bytes: &[u8]) -> Result<Vec<wire::Action>, prost::DecodeError> {
    let signed = wire::SignedTransaction::decode(bytes)?;
    Ok(wire::TransactionBody::decode(signed.body.as_slice())?.actions)
}

fn name_of(chain: &Sandbox, address: &vanna_runtime::Address) -> String {
    if *address == vanna_runtime::Address::insurance_fund() {
        return "insurance fund".to_string();
    }
    NAMED
        .iter()
        .find(|name| chain.address(name) == *address)
        .map_or_else(|| address.to_string(), |name| name.to_string())
}

/// A block's receipts, each action's result in words (`sent` holds the
/// block's transactions' actions, in block order), then its events.
fn print_block(chain: &Sandbox, block: &BlockOutput, sent: &[Vec<wire::Action>]) {
    for (index, receipt) in block.receipts.iter().enumerate() {
        let who = receipt.sender.map(|sender| name_of(chain, &sender)).unwrap_or_default();
        match &receipt.status {
            TxStatus::Rejected { error } => {
                outln!("  {who}: transaction rejected [{}] {error}", error.code())
            }
            TxStatus::Included { actions } => {
                for (position, result) in actions.iter().enumerate() {
                    let action =
                        sent.get(index).and_then(|actions| actions.get(position)).and_then(|a| a.kind.as_ref());
                    match result {
                        ActionResult::Ok(outcome) => outln!("  {who}: {}", describe(chain, action, outcome)),
                        ActionResult::Failed { error } => {
                            outln!("  {who}: refused [{}] {error}", error.code())
                        }
                    }
                }
            }
        }
    }
    for event in &block.events {
        match event {
            Event::Filled(fill) => outln!(
                "    fill {} {} @ {}: {} buys from {}, premium {} USD, fees maker {} taker {}",
                fill.series,
                fill.contracts,
                fill.price,
                name_of(
                    chain,
                    if fill.taker_side == vanna_runtime::events::OrderSide::Buy { &fill.taker } else { &fill.maker }
                ),
                name_of(
                    chain,
                    if fill.taker_side == vanna_runtime::events::OrderSide::Buy { &fill.maker } else { &fill.taker }
                ),
                fill.premium,
                fill.maker_fee,
                fill.taker_fee
            ),
            Event::OrderCancelled { order, owner, series, remaining, reason } => {
                outln!(
                    "    cancelled {order} of {} in {series}, {remaining} contracts: {}",
                    name_of(chain, owner),
                    cancel_reason(*reason)
                )
            }
            Event::Delegated { delegator, validator, amount } => {
                outln!("    {} delegates {amount} VANNA to {}", name_of(chain, delegator), name_of(chain, validator))
            }
            Event::FeesDistributed { amount, remaining_in_pool } => {
                outln!(
                    "    fees: {amount} USD paid to the active validators ({remaining_in_pool} USD carried in the pool)"
                )
            }
            Event::Slashed {
                validator,
                offence,
                infraction_height,
                bonded,
                unbonding,
                redelegated,
                reporter_reward,
                burned,
                ..
            } => outln!(
                "    SLASHED {} for {} at height {infraction_height}: {bonded} VANNA bonded, {unbonding} unbonding, {redelegated} redelegated; reporter gets {reporter_reward}, {burned} burned",
                name_of(chain, validator),
                offence_text(*offence)
            ),
            Event::Jailed { validator, offence, until_ms, .. } => outln!(
                "    JAILED {} for {}{}",
                name_of(chain, validator),
                offence_text(*offence),
                if *until_ms == u64::MAX {
                    ", tombstoned: its key can never return".to_string()
                } else {
                    format!(" until {until_ms}")
                }
            ),
            Event::RewardsPaid { delegator, validator, amount } => {
                outln!(
                    "    {} receives {amount} USD of rewards from {}",
                    name_of(chain, delegator),
                    name_of(chain, validator)
                )
            }
            Event::CommissionPaid { validator, amount } => {
                outln!("    {} receives {amount} USD of commission", name_of(chain, validator))
            }
            Event::ValidatorSetChanged { epoch, validators } => outln!(
                "    epoch {epoch}: active set {}",
                validators
                    .iter()
                    .map(|v| format!(
                        "{} ({} VANNA)",
                        name_of(chain, &v.operator),
                        vanna_runtime::money::Amount::from_micro(v.power)
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Event::IndexUpdated { underlying, index, aggregate, clamped, covered_stake, total_stake } => outln!(
                "    oracle: {underlying} index {index}{} ({}% of active stake reported)",
                if *clamped { format!(" (stepping toward the median {aggregate})") } else { String::new() },
                covered_stake * 100 / (*total_stake).max(1)
            ),
            Event::UnderlyingStale { underlying } => {
                outln!("    oracle: {underlying} is stale: its markets take only reduce-only orders")
            }
            Event::UnderlyingFresh { underlying } => outln!("    oracle: {underlying} has fresh prices again"),
            Event::OracleQuorumMissed { underlying, covered_stake, total_stake } => outln!(
                "    oracle: {underlying} reports cover {covered_stake} of {total_stake} stake, not more than two thirds"
            ),
            Event::OracleReportIgnored { reporter, underlying, reason } => {
                outln!("    oracle: report of {} for {underlying} ignored: {reason}", name_of(chain, reporter))
            }
            Event::OracleReportRejected { position, reason } => {
                outln!("    oracle: report #{position} rejected: {reason}")
            }
            Event::SeriesSettled { series, settlement_price, from_twap, payouts } => {
                outln!(
                    "    SETTLED {series} at {settlement_price} ({})",
                    if *from_twap { "TWAP of the index" } else { "index at expiry: no history over the window" }
                );
                for (account, payout) in payouts {
                    outln!("      {:<9} {payout:+} USD", name_of(chain, account));
                }
            }
            Event::OrderReduced { order, owner, remaining, reason } => {
                outln!(
                    "    reduced {order} of {} to {remaining} contracts: {}",
                    name_of(chain, owner),
                    cancel_reason(*reason)
                )
            }
            Event::SettlementShortfall { series, shortfall, insurance_paid, haircut } => outln!(
                "    SHORTFALL in {series}: shorts could not pay {shortfall} USD; the insurance fund paid {insurance_paid}, longs' payouts cut by {haircut}"
            ),
            Event::BackstopRegistered { offer, keeper, underlying, max_notional, discount, collateral } => outln!(
                "    {} posts backstop offer #{offer} on {underlying}: up to {max_notional} USD of underlying notional at {}% from mark, {collateral} USD collateral locked",
                name_of(chain, keeper),
                (discount * Decimal::ONE_HUNDRED).normalize()
            ),
            Event::BackstopCancelled { offer, keeper, collateral_released } => outln!(
                "    backstop offer #{offer} of {} withdrawn, {collateral_released} USD collateral released",
                name_of(chain, keeper)
            ),
            Event::LiquidationStarted { account, equity, maintenance_margin, initial_margin, full, keeper } => {
                outln!(
                    "    LIQUIDATING {}: equity {equity} < maintenance margin {maintenance_margin} (initial {initial_margin}); {}{}",
                    name_of(chain, account),
                    if *full {
                        "equity is below half of maintenance, so every position closes"
                    } else {
                        "positions close until equity is back above initial margin"
                    },
                    keeper.map(|k| format!(", at the request of {}", name_of(chain, &k))).unwrap_or_default()
                )
            }
            Event::PositionLiquidated { account, series, step, contracts, counterparty, price, cash } => {
                let name = name_of(chain, account);
                let paid = if cash.is_sign_negative() {
                    format!("{name} pays {} USD", -cash)
                } else {
                    format!("{name} receives {cash} USD")
                };
                let to = counterparty.map(|c| name_of(chain, &c)).unwrap_or_default();
                let price = price.map(per_contract).unwrap_or_default();
                match step {
                    LiquidationStep::Backstop => outln!(
                        "      backstop: {contracts} {series} to {to} at {price}, its backstop offer's price; {paid}"
                    ),
                    LiquidationStep::Book => outln!(
                        "      book: {contracts} {series} closed by an immediate-or-cancel order within the band (fills above); {paid}"
                    ),
                    LiquidationStep::InsuranceFund => {
                        outln!("      insurance fund: {contracts} {series} to the fund at {price}; {paid}")
                    }
                    LiquidationStep::Deleverage => outln!(
                        "      auto-deleveraging: {contracts} {series} closed against {to}'s opposite position at {price} (the bankruptcy price, at most mark; the fund makes the difference up while it can); {paid}"
                    ),
                }
            }
            Event::InsuranceFundUsed { account, series, amount } => outln!(
                "      insurance fund covers {amount} USD of {series} that {} could not pay",
                name_of(chain, account)
            ),
            Event::Deleveraged { counterparty, series, contracts, price, insurance_paid, .. } => outln!(
                "      ADL: {}'s position in {series} changes by {contracts} at {}{}",
                name_of(chain, counterparty),
                per_contract(*price),
                if insurance_paid.is_zero() {
                    String::new()
                } else {
                    format!(", and the insurance fund adds {insurance_paid} USD so that it is paid mark")
                }
            ),
            Event::SettlementSales { account, series, owed, paid, equity, positions_left } => outln!(
                "    {} owed {owed} USD at the settlement of {series} and had to sell its other positions (equity less what it owed: {}); it paid {paid}{}",
                name_of(chain, account),
                equity.map_or_else(|| "unknown".to_string(), |e| e.to_string()),
                if *positions_left == 0 {
                    String::new()
                } else {
                    format!(", {positions_left} position(s) no step could take")
                }
            ),
            Event::LiquidationPenalty { account, total, keepers, insurance_amount } => outln!(
                "      penalty {total} USD from {}: {}{insurance_amount} to the insurance fund",
                name_of(chain, account),
                keepers
                    .iter()
                    .map(|(keeper, amount)| format!("{amount} to {}, ", name_of(chain, keeper)))
                    .collect::<String>()
            ),
            Event::LiquidationFinished { account, equity, maintenance_margin, cash, positions_left } => outln!(
                "      done: {} has equity {}, maintenance margin {}, cash {cash} USD{}",
                name_of(chain, account),
                equity.map_or_else(|| "unknown (unpriceable)".to_string(), |e| e.to_string()),
                maintenance_margin.map_or_else(|| "unknown".to_string(), |m| m.to_string()),
                if *positions_left == 0 {
                    String::new()
                } else {
                    format!(", {positions_left} position(s) no step could take")
                }
            ),
            _ => {}
        }
    }
}

/// What an action did, in words: the outcome says what the chain did, the
/// action (when known) what was asked.
fn describe(chain: &Sandbox, action: Option<&Kind>, outcome: &ActionOutcome) -> String {
    let validator = |bytes: &[u8]| {
        vanna_runtime::Address::from_slice(bytes).map_or_else(|_| "an unknown validator".into(), |v| name_of(chain, &v))
    };
    match outcome {
        ActionOutcome::Order(order) => {
            let asked = match action {
                Some(Kind::PlaceOrder(place)) => {
                    let side = if place.side == Side::Buy as i32 { "buys" } else { "sells" };
                    let price = if place.price.is_empty() {
                        "at market".to_string()
                    } else {
                        format!("at {} or better", place.price)
                    };
                    let reduce_only = if place.reduce_only { ", reduce-only" } else { "" };
                    format!("{side} {} {} {price}{reduce_only}", place.quantity, place.series)
                }
                _ => "places an order".to_string(),
            };
            format!("{asked}: order {}", fills(order))
        }
        ActionOutcome::Replaced(order) => format!("amends order {}", fills(order)),
        ActionOutcome::Reduced { order, remaining } => {
            format!("shrinks order {order} to a size of {remaining}, keeping its place in the queue")
        }
        ActionOutcome::Cancelled { orders } => match action {
            Some(Kind::CancelAll(wire::CancelAll { scope: Some(Scope::Underlying(symbol)) })) => {
                format!("cancels its {orders} open order(s) on {symbol}")
            }
            _ => format!("cancels {orders} order(s)"),
        },
        ActionOutcome::Transferred => match action {
            Some(Kind::Transfer(transfer)) => {
                let asset = if transfer.asset == wire::Asset::Vanna as i32 { "VANNA" } else { "USD" };
                let to = vanna_runtime::Address::from_slice(&transfer.to)
                    .map_or_else(|_| "an unknown account".into(), |to| name_of(chain, &to));
                format!("transfers {} {asset} to {to}", transfer.amount)
            }
            _ => "makes a transfer".to_string(),
        },
        ActionOutcome::SeriesListed => match action {
            Some(Kind::ListSeries(list)) => format!("lists {}", list.series),
            _ => "lists a series".to_string(),
        },
        ActionOutcome::Staked => match action {
            Some(Kind::Delegate(delegate)) => {
                format!("delegates {} VANNA to {}", delegate.amount, validator(&delegate.validator))
            }
            Some(Kind::Undelegate(undelegate)) => {
                format!("undelegates {} VANNA from {}", undelegate.amount, validator(&undelegate.validator))
            }
            Some(Kind::Redelegate(redelegate)) => format!(
                "moves {} VANNA of delegation from {} to {}",
                redelegate.amount,
                validator(&redelegate.from_validator),
                validator(&redelegate.to_validator)
            ),
            Some(Kind::ClaimRewards(claim)) => format!("claims its rewards from {}", validator(&claim.validator)),
            Some(Kind::WithdrawUnbonded(_)) => "withdraws its unbonded VANNA".to_string(),
            Some(Kind::RegisterValidator(register)) => format!("registers validator {}", register.moniker),
            Some(Kind::EditValidator(_)) => "edits its validator".to_string(),
            Some(Kind::Unjail(_)) => "unjails its validator".to_string(),
            _ => "changes its stake".to_string(),
        },
        ActionOutcome::BackstopRegistered { offer } => format!("registers backstop offer #{offer} (details below)"),
        ActionOutcome::BackstopCancelled { offer } => format!("withdraws backstop offer #{offer}"),
        ActionOutcome::Liquidated { positions_closed } => {
            format!("has the account liquidated: {positions_closed} position(s) closed")
        }
        ActionOutcome::AlreadyLiquidated => {
            "asks for a liquidation: the account was already liquidated in this block, so nothing changes".to_string()
        }
    }
}

/// An order's id and what became of it.
fn fills(order: &OrderOutcome) -> String {
    let rest = match order.cancelled {
        Some(reason) => format!(", the rest cancelled: {}", cancel_reason(reason)),
        None if order.resting_contracts.is_zero() => String::new(),
        None => format!(", {} resting in the book", order.resting_contracts),
    };
    format!("{}: {} filled{rest}", order.order, order.filled_contracts)
}

/// Why an order, or its rest, left the book.
fn cancel_reason(reason: CancelReason) -> &'static str {
    match reason {
        CancelReason::User => "by its owner",
        CancelReason::Unfilled => "the unfilled rest of an immediate order",
        CancelReason::Expired => "its time in force ran out",
        CancelReason::SelfTrade => "it would have traded with its own account",
        CancelReason::ReduceOnly => "reduce-only, and larger than the position left",
        CancelReason::MaxFills => "it took the most fills one order may",
        CancelReason::Replaced => "replaced by its amended order",
        CancelReason::Settled => "its series settled",
        CancelReason::Liquidation => "its account is being liquidated",
        CancelReason::SettlementPayment => "to free cash for a settlement payment",
    }
}

fn offence_text(offence: Offence) -> &'static str {
    match offence {
        Offence::DoubleProposal => "two proposals in one view",
        Offence::DoubleVote => "a double vote",
        Offence::FinalityViolation => "votes that break the finality rule",
        Offence::Downtime => "downtime",
    }
}

/// A price per contract or a mark, in USD: one rounding, to the cent, wherever it is printed.
fn per_contract(price: Decimal) -> String {
    format!("{:.2}", price.round_dp(2))
}

fn print_books(chain: &Sandbox) {
    outln!("== order books (price x contracts, best first)");
    for market in &chain.state.markets {
        if market.book.is_empty() {
            continue;
        }
        let side = |side| {
            market
                .book
                .depth(side, 5)
                .iter()
                .map(|(ticks, lots)| format!("{} x {}", market.price_of(*ticks), market.contracts(*lots)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        outln!(
            "  {:<22} bids [{}]  asks [{}]",
            market.spec.name,
            side(vanna_book::Side::Buy),
            side(vanna_book::Side::Sell)
        );
    }
}

fn print_accounts(chain: &Sandbox, names: &[&str]) {
    outln!("\n== accounts");
    outln!("  {:<9} {:>14} {:>12} {:>14}  positions", "account", "USD", "locked", "free");
    for name in names {
        let account = chain.state.account(&chain.address(name)).expect("demo account");
        let positions: Vec<String> = account
            .exposures
            .iter()
            .filter(|(_, exposure)| exposure.position_lots != 0)
            .map(|(series, exposure)| {
                let market = chain.state.market(*series);
                format!("{} {:+}", market.spec.name, market.signed_contracts(exposure.position_lots))
            })
            .collect();
        outln!(
            "  {:<9} {:>14} {:>12} {:>14}  {}",
            name,
            account.usd.to_string(),
            account.usd_locked.to_string(),
            account.usd_free().to_string(),
            if positions.is_empty() { "-".to_string() } else { positions.join(", ") }
        );
    }
    let total: Decimal = chain.state.total_usd().value();
    outln!(
        "  fee pool {} USD (what did not divide evenly among validators, carried to the next block); USD in existence {total}, unchanged since genesis",
        chain.state.fee_pool
    );
}

fn print_margins(chain: &Sandbox, args: &Args, names: &[&str]) -> CliResult {
    if args.json {
        return Ok(());
    }
    outln!("== margin at {}; marks: Black-Scholes at the oracle spot and volatility", indices(chain));
    print_stale_underlyings(chain);
    outln!("  {:<9} {:>16} {:>14} {:>14} {:>8}", "account", "equity", "initial", "maintenance", "ratio");
    for name in names {
        let risk = chain.state.account_margin(&chain.address(name))?;
        outln!(
            "  {:<9} {:>16} {:>14} {:>14} {:>8}",
            name,
            risk.equity.to_string(),
            risk.initial.to_string(),
            risk.maintenance.to_string(),
            risk.margin_ratio.map_or_else(|| "-".to_string(), |ratio| ratio.round_dp(4).to_string())
        );
        for position in &risk.positions {
            outln!(
                "    {:<22} {:>+7} mark {:>10} delta {:>+9} gamma {:>+.8} vega {:>+9} theta/day {:>+9}{}",
                position.series,
                position.contracts,
                per_contract(position.mark),
                position.delta.round_dp(4),
                position.gamma,
                position.vega_per_vol_point.round_dp(2),
                position.theta_per_day.round_dp(2),
                if series_is_stale(chain, &position.series) { "  (stale index)" } else { "" }
            );
        }
    }
    outln!();
    Ok(())
}

/// Every underlying's index, as "BTC 92000 / ETH 3550 (stale)".
fn indices(chain: &Sandbox) -> String {
    chain
        .state
        .underlyings
        .keys()
        .map(|symbol| {
            let stale = if chain.state.is_stale(symbol) { " (stale)" } else { "" };
            format!("{symbol} {}{stale}", chain.state.index_price(symbol))
        })
        .collect::<Vec<_>>()
        .join(" / ")
}

/// What a stale underlying means for the figures printed next to it.
fn print_stale_underlyings(chain: &Sandbox) {
    let quiet_ms = chain.state.oracle.params().stale_after_ms;
    for symbol in chain.state.underlyings.keys().filter(|symbol| chain.state.is_stale(symbol)) {
        outln!(
            "  {symbol} is stale (no index update for {} s or more): its markets take only reduce-only orders, and its marks, equity and margins here use its last index, {}",
            quiet_ms / 1_000,
            chain.state.index_price(symbol)
        );
    }
}

fn series_is_stale(chain: &Sandbox, series: &str) -> bool {
    chain.state.series(series).is_some_and(|series| chain.state.is_stale(&series.spec.underlying))
}

fn print_staking(chain: &Sandbox) {
    use vanna_runtime::money::Amount;
    let staking = &chain.state.staking;
    outln!("\n== staking ledger (epoch {}, {} VANNA burned)", staking.epoch, Amount::from_micro(staking.burned));
    outln!(
        "  {:<12} {:>12} {:>11} {:>14} {:>16}  status",
        "validator",
        "bonded",
        "commission",
        "unclaimed",
        "pool for stake"
    );
    for name in ["validator-1", "validator-2", "validator-3"] {
        let v = &staking.validators[&chain.address(name)];
        let status = if v.tombstoned {
            "tombstoned"
        } else if v.jailed {
            "jailed"
        } else if staking.active.iter().any(|m| m.operator == v.operator) {
            "active"
        } else {
            "inactive"
        };
        outln!(
            "  {:<12} {:>12} {:>11} {:>14} {:>16}  {status}",
            name,
            Amount::from_micro(v.tokens).to_string(),
            v.commission_rate.to_string(),
            Amount::from_micro(v.commission_pending).to_string(),
            Amount::from_micro(v.reward_pool).to_string()
        );
    }
    for name in ["alice", "bob"] {
        let address = chain.address(name);
        for (validator, _, tokens) in staking.delegations_of(&address) {
            outln!(
                "  {name} delegates {} VANNA to {}, {} USD of rewards pending",
                Amount::from_micro(tokens),
                name_of(chain, &validator),
                Amount::from_micro(staking.pending_rewards(&address, &validator))
            );
        }
    }
    outln!(
        "  VANNA in existence {} (liquid + bonded + unbonding + burned), USD {}: both unchanged since genesis",
        chain.state.total_vanna(),
        chain.state.total_usd()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The demo runs to its proof, and its crash block shows what it says:
    /// every liquidation step, the fund's shortfall, and nobody left below
    /// maintenance margin.
    #[test]
    fn the_demo_runs_and_its_crash_reaches_every_liquidation_step() {
        let block = session(&Args { json: true }).expect("the demo runs");
        let steps: Vec<LiquidationStep> = block
            .events
            .iter()
            .filter_map(|event| match event {
                Event::PositionLiquidated { step, .. } => Some(*step),
                _ => None,
            })
            .collect();
        for step in [
            LiquidationStep::Backstop,
            LiquidationStep::Book,
            LiquidationStep::InsuranceFund,
            LiquidationStep::Deleverage,
        ] {
            assert!(steps.contains(&step), "the crash reaches {step:?}: {steps:?}");
        }
        let liquidated = block.events.iter().filter(|event| matches!(event, Event::LiquidationStarted { .. })).count();
        assert_eq!(liquidated, WRITERS.len(), "the three writers and nobody else fall below maintenance margin");
        assert!(block.events.iter().any(|event| matches!(event, Event::InsuranceFundUsed { .. })));
        assert!(block.events.iter().any(|event| matches!(event, Event::Deleveraged { .. })));
        let keeper_share = block.events.iter().any(
            |event| matches!(event, Event::LiquidationPenalty { keepers, .. } if keepers.iter().any(|(_, a)| !a.is_zero())),
        );
        assert!(keeper_share, "a keeper earns a share of a penalty");
    }
}
