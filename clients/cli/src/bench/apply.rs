//! `vanna bench apply`: full transaction application (decode, signature check,
//! nonce, order matching, fees, collateral) per second on one core, against
//! raw k256 verification of the same transactions measured in the same run,
//! plus the state-root cost of each block.
//!
//! The stream is deterministic (`--seed`) and signed before the clock starts:
//! `--accounts` funded accounts send one order each per transaction, blocks of
//! `--block-size` transactions, on six put series and their call bids, priced
//! around a mid so that about half the orders cross.

use std::time::{Duration, Instant};

use k256::ecdsa::signature::Verifier;
use k256::ecdsa::{Signature, VerifyingKey};
use prost::Message;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use vanna_proto::v1::{self as wire, PlaceOrder, Side, TimeInForce};
use vanna_runtime::devnet::demo_genesis;
use vanna_runtime::events::{ActionResult, Event, TxStatus};
use vanna_runtime::genesis::GenesisAccount;
use vanna_runtime::limits::MAX_TRANSACTIONS_PER_BLOCK;
use vanna_runtime::money::Amount;
use vanna_runtime::tx::{Signer, limit_order, place};
use vanna_runtime::{BlockContext, Genesis};

use crate::CliResult;

/// Largest `--accounts`: each is a signing key and a funded account, derived
/// before the clock starts.
const ACCOUNTS_MAX: u64 = 1_000_000;
/// Largest `--blocks`, and of `--blocks` × `--block-size`: every transaction
/// is signed and held in memory (about 500 bytes with its parsed key) before
/// the clock starts.
const BLOCKS_MAX: u64 = 1_000;
const TRANSACTIONS_MAX: u64 = 1_000_000;

#[derive(clap::Args)]
pub struct Args {
    /// Funded accounts sending orders.
    #[arg(long, default_value_t = 2_000, value_parser = crate::args::whole::<u32>(1, ACCOUNTS_MAX))]
    pub accounts: u32,
    /// Transactions per block (at most the runtime's limit per block).
    #[arg(long, default_value_t = 10_000,
          value_parser = crate::args::whole::<u32>(1, MAX_TRANSACTIONS_PER_BLOCK as u64))]
    pub block_size: u32,
    /// Blocks to apply; all of them are signed before the clock starts.
    #[arg(long, default_value_t = 5, value_parser = crate::args::whole::<u32>(1, BLOCKS_MAX))]
    pub blocks: u32,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Report {
    transactions: u64,
    blocks: u32,
    block_size: u32,
    accounts: u32,
    /// Transactions applied per second, state-root updates included.
    tx_per_sec: f64,
    /// Raw k256 verifications (SHA-256 of the body and ECDSA verify, keys
    /// already parsed) per second over the same transactions.
    raw_verify_per_sec: f64,
    ratio_to_raw_verify: f64,
    /// Average time to bring the state root up to date after a block.
    root_ms_per_block: f64,
    orders_accepted: u64,
    fills: u64,
    actions_failed: u64,
    seed: u64,
}

const SERIES: [(&str, u32, &str); 6] = [
    ("BTC-25DEC26-90000-P", 5_000, "0.1"),
    ("BTC-25DEC26-100000-P", 12_000, "0.1"),
    ("BTC-25DEC26-110000-P", 20_000, "0.1"),
    ("ETH-25DEC26-3000-P", 1_000, "1"),
    ("ETH-25DEC26-3500-P", 2_500, "1"),
    ("ETH-25DEC26-4000-P", 4_000, "1"),
];

pub fn run(args: &Args) -> CliResult {
    let transactions = u64::from(args.blocks) * u64::from(args.block_size);
    if transactions > TRANSACTIONS_MAX {
        return Err(format!(
            "--blocks {} x --block-size {} is {transactions} transactions, more than {TRANSACTIONS_MAX}: \
             all are signed and held in memory before the clock starts; use fewer blocks or smaller ones",
            args.blocks, args.block_size
        )
        .into());
    }
    let (genesis, signers) = genesis(args.accounts);
    let blocks = sign_stream(args, &genesis, &signers);

    // Raw verification of exactly the same signatures, keys parsed up front.
    // Each block is verified raw and then applied, alternately, so that both
    // figures see the same machine load.
    let mut raw_inputs = Vec::new();
    for block in &blocks {
        let mut inputs = Vec::with_capacity(block.len());
        for bytes in block {
            let signed = wire::SignedTransaction::decode(bytes.as_slice())?;
            let key = VerifyingKey::from_sec1_bytes(&signed.public_key)?;
            inputs.push((key, signed.body, Signature::from_slice(&signed.signature)?));
        }
        raw_inputs.push(inputs);
    }
    let mut state = genesis.build()?;
    let (mut raw_elapsed, mut apply_elapsed, mut root_elapsed) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let (mut orders_accepted, mut fills, mut actions_failed) = (0u64, 0u64, 0u64);
    for (block, inputs) in blocks.iter().zip(&raw_inputs) {
        let started = Instant::now();
        for (key, body, signature) in inputs {
            key.verify(body, signature)?;
        }
        raw_elapsed += started.elapsed();

        let context = BlockContext::after(&state, 1_000);
        let started = Instant::now();
        let mut events = state.begin_block(&context)?;
        let receipts: Vec<_> = block.iter().map(|bytes| state.apply_transaction(bytes, &mut events)).collect();
        state.end_block(&context, &mut events);
        let applied = Instant::now();
        state.state_root();
        root_elapsed += applied.elapsed();
        apply_elapsed += started.elapsed();
        for receipt in &receipts {
            match &receipt.status {
                TxStatus::Rejected { error } => {
                    return Err(format!("benchmark transaction rejected: {error}").into());
                }
                TxStatus::Included { actions } => {
                    for action in actions {
                        match action {
                            ActionResult::Ok(_) => orders_accepted += 1,
                            ActionResult::Failed { .. } => actions_failed += 1,
                        }
                    }
                }
            }
        }
        fills += events.iter().filter(|event| matches!(event, Event::Filled(_))).count() as u64;
    }
    let tx_per_sec = transactions as f64 / apply_elapsed.as_secs_f64();
    let raw_verify_per_sec = transactions as f64 / raw_elapsed.as_secs_f64();
    let report = Report {
        transactions,
        blocks: args.blocks,
        block_size: args.block_size,
        accounts: args.accounts,
        tx_per_sec,
        raw_verify_per_sec,
        ratio_to_raw_verify: tx_per_sec / raw_verify_per_sec,
        root_ms_per_block: root_elapsed.as_secs_f64() * 1e3 / args.blocks as f64,
        orders_accepted,
        fills,
        actions_failed,
        seed: args.seed,
    };
    crate::output::emit(args.json, &report, |r| {
        outln!(
            "apply: {} transactions in {} blocks of {}, {} accounts",
            r.transactions,
            r.blocks,
            r.block_size,
            r.accounts
        );
        outln!("  applied        {:>10.0} tx/s (signature check, matching, fees, state root)", r.tx_per_sec);
        outln!("  raw k256 verify {:>9.0} verifications/s", r.raw_verify_per_sec);
        outln!("  ratio          {:>10.3} of raw verification", r.ratio_to_raw_verify);
        outln!("  state root     {:>10.2} ms per block of {} transactions", r.root_ms_per_block, r.block_size);
        outln!(
            "  {} orders accepted, {} refused (collateral, limits), {} fills",
            r.orders_accepted,
            r.actions_failed,
            r.fills
        );
    })
}

fn genesis(accounts: u32) -> (Genesis, Vec<Signer>) {
    let (mut genesis, _) = demo_genesis(&[]);
    let signers: Vec<Signer> = (0..accounts).map(|i| Signer::from_seed(&format!("vanna-bench/{i}"))).collect();
    for signer in &signers {
        genesis.accounts.push(GenesisAccount {
            address: signer.address(),
            usd: Amount::new(rust_decimal::Decimal::from(100_000_000u64), vanna_runtime::error::Field::Genesis)
                .expect("valid amount"),
            vanna: Amount::ZERO,
        });
    }
    (genesis, signers)
}

fn sign_stream(args: &Args, genesis: &Genesis, signers: &[Signer]) -> Vec<Vec<Vec<u8>>> {
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let mut nonces = vec![0u64; signers.len()];
    let mut next = 0usize;
    (0..args.blocks)
        .map(|_| {
            (0..args.block_size)
                .map(|_| {
                    let account = next % signers.len();
                    next += 1;
                    let (series, mid, size) = SERIES[rng.random_range(0..SERIES.len())];
                    let step: u32 = if series.starts_with("BTC") { 10 } else { 1 };
                    // Offsets of -5..=5 steps from the mid on either side: about half cross.
                    let buy = rng.random_bool(0.5);
                    let offset = rng.random_range(0..=10u32) as i64 - 5;
                    let price = (mid as i64 + offset * step as i64) as u32;
                    let side = if buy { Side::Buy } else { Side::Sell };
                    let order = PlaceOrder {
                        time_in_force: if rng.random_bool(0.1) {
                            TimeInForce::Ioc as i32
                        } else {
                            TimeInForce::Gtc as i32
                        },
                        ..limit_order(series, side, &price.to_string(), size)
                    };
                    let bytes = signers[account].sign(&genesis.chain_id, nonces[account], vec![place(order)]);
                    nonces[account] += 1;
                    bytes
                })
                .collect()
        })
        .collect()
}
