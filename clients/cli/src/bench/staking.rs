//! `vanna bench staking`: the staking ledger's per-block reward distribution,
//! a reward claim and an epoch change, with the same validators and 10k,
//! 100k or 1M delegators side by side: the costs must not grow with the
//! number of delegators.

use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use vanna_proto::v1 as wire;
use vanna_runtime::BlockContext;
use vanna_runtime::devnet::{add_validators, demo_genesis};
use vanna_runtime::genesis::{GenesisAccount, GenesisDelegation};
use vanna_runtime::ids::Address;
use vanna_runtime::money::Amount;
use vanna_runtime::staking::MAX_VALIDATORS;

use crate::CliResult;

/// Largest delegator count: each is a funded account and a delegation in
/// memory (about 1 GiB at this bound).
const DELEGATORS_MAX: u64 = 2_000_000;
/// Most delegator counts compared in one run.
const SIZES_MAX: usize = 8;
/// Largest `--blocks` and `--claims`: bounds the run time.
const BLOCKS_MAX: u64 = 100_000;
const CLAIMS_MAX: u64 = 1_000_000;

#[derive(clap::Args)]
pub struct Args {
    /// Validators (at most the runtime's limit).
    #[arg(long, default_value_t = 100, value_parser = crate::args::whole::<u32>(1, MAX_VALIDATORS as u64))]
    pub validators: u32,
    /// Delegator counts to compare, comma separated.
    #[arg(long, value_delimiter = ',', default_values_t = vec![10_000u32, 100_000, 1_000_000],
          value_parser = crate::args::whole::<u32>(1, DELEGATORS_MAX))]
    pub delegators: Vec<u32>,
    /// Blocks of reward distribution to time.
    #[arg(long, default_value_t = 2_000, value_parser = crate::args::whole::<u32>(1, BLOCKS_MAX))]
    pub blocks: u32,
    /// Claims to time.
    #[arg(long, default_value_t = 20_000, value_parser = crate::args::whole::<u32>(1, CLAIMS_MAX))]
    pub claims: u32,
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct SizeReport {
    delegators: u32,
    /// Reward distribution, per block, to all active validators.
    distribution_us_per_block: f64,
    /// One delegator's claim (ledger work only, no signature check).
    claim_us: f64,
    /// Recomputing the active set at an epoch boundary.
    epoch_change_us: f64,
    setup_seconds: f64,
}

#[derive(Serialize)]
struct Report {
    validators: u32,
    /// Figures for the first delegator count, then every size side by side.
    distribution_us_per_block: f64,
    claim_us: f64,
    epoch_change_us: f64,
    sizes: Vec<SizeReport>,
}

pub fn run(args: &Args) -> CliResult {
    if args.delegators.len() > SIZES_MAX {
        return Err(format!(
            "--delegators lists {} counts; compare at most {SIZES_MAX} in one run",
            args.delegators.len()
        )
        .into());
    }
    let sizes = args.delegators.iter().map(|&delegators| measure(args, delegators)).collect::<Result<Vec<_>, _>>()?;
    let report = Report {
        validators: args.validators,
        distribution_us_per_block: sizes[0].distribution_us_per_block,
        claim_us: sizes[0].claim_us,
        epoch_change_us: sizes[0].epoch_change_us,
        sizes,
    };
    crate::output::emit(args.json, &report, |r| {
        outln!("staking with {} validators", r.validators);
        outln!("  {:>12} {:>22} {:>10} {:>16}", "delegators", "distribution µs/block", "claim µs", "epoch change µs");
        for size in &r.sizes {
            outln!(
                "  {:>12} {:>22.2} {:>10.3} {:>16.1}",
                size.delegators,
                size.distribution_us_per_block,
                size.claim_us,
                size.epoch_change_us
            );
        }
    })
}

fn measure(args: &Args, delegators: u32) -> Result<SizeReport, Box<dyn std::error::Error>> {
    let setup = Instant::now();
    let (mut genesis, _) = demo_genesis(&[]);
    let names: Vec<String> = (0..args.validators).map(|i| format!("bench-validator-{i}")).collect();
    let specs: Vec<(&str, u64, u64, &str)> = names.iter().map(|name| (name.as_str(), 10_000, 0, "0.05")).collect();
    let operators: Vec<Address> =
        add_validators(&mut genesis, &specs).into_iter().map(|(_, signer)| signer.address()).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut delegations = Vec::with_capacity(delegators as usize);
    for i in 0..delegators {
        // Synthetic addresses: the ledger never needs their keys.
        let mut bytes = [0u8; 20];
        bytes[..4].copy_from_slice(&i.to_be_bytes());
        bytes[4] = 0xde;
        let address = Address(bytes);
        let amount = Amount::from_micro(rng.random_range(1_000_000..1_000_000_000));
        genesis.accounts.push(GenesisAccount { address, usd: Amount::ZERO, vanna: amount });
        let validator = operators[rng.random_range(0..operators.len())];
        delegations.push(GenesisDelegation { delegator: address, validator, amount });
    }
    genesis.staking.delegations = delegations.clone();
    genesis.staking.params.epoch_blocks = u64::MAX;
    let mut state = genesis.build()?;
    state.state_root();
    let setup_seconds = setup.elapsed().as_secs_f64();

    // Distribution: a fee pool every block, as trading would fill it.
    let mut elapsed = Duration::ZERO;
    for _ in 0..args.blocks {
        let context = BlockContext::after(&state, 1_000);
        let mut events = state.begin_block(&context)?;
        state.fee_pool = Amount::from_micro(rng.random_range(1_000_000..100_000_000));
        let started = Instant::now();
        state.end_block(&context, &mut events);
        elapsed += started.elapsed();
        state.state_root();
    }
    let distribution_us_per_block = elapsed.as_secs_f64() * 1e6 / args.blocks as f64;

    // Claims by random delegators.
    let mut elapsed = Duration::ZERO;
    let mut events = Vec::new();
    for _ in 0..args.claims {
        let delegation = &delegations[rng.random_range(0..delegations.len())];
        let owner = state.account(&delegation.delegator).expect("genesis account").owner;
        let claim = wire::ClaimRewards { validator: delegation.validator.as_bytes().to_vec() };
        let started = Instant::now();
        state.claim_rewards(owner, &claim, &mut events)?;
        elapsed += started.elapsed();
        events.clear();
    }
    let claim_us = elapsed.as_secs_f64() * 1e6 / args.claims as f64;

    let started = Instant::now();
    let rounds = 100;
    for _ in 0..rounds {
        state.staking.active = state.staking.next_validator_set();
    }
    let epoch_change_us = started.elapsed().as_secs_f64() * 1e6 / rounds as f64;
    assert_eq!(state.staking.active.len(), args.validators.min(state.staking.params.max_active_validators) as usize);
    Ok(SizeReport { delegators, distribution_us_per_block, claim_us, epoch_change_us, setup_seconds })
}
