//! `vanna bench ...`: each benchmark prints a human summary, or one JSON object
//! with `--json`, so that BENCHMARKS.md figures can be reproduced by anyone.

use clap::Subcommand;

use crate::CliResult;

mod apply;
mod consensus;
mod liquidation;
mod localnet;
mod margin;
mod matching;
mod staking;

#[derive(Subcommand)]
pub enum Bench {
    /// Orders per second through the order book alone.
    Matching(matching::Args),
    /// Full transaction application, signature checks included, against raw verification.
    Apply(apply::Args),
    /// Consensus with real BLS: CPU per finalized block, certificate verification against raw blst, vote batching.
    Consensus(consensus::Args),
    /// Staking ledger: reward distribution per block, a claim, an epoch change, by delegator count.
    Staking(staking::Args),
    /// Portfolio margin: full re-pricing of a 960-series listing across the scenario grid, and per-account margin.
    Margin(margin::Args),
    /// Liquidation: from a crash's price update to the last liquidation in the block, by accounts at risk and safe.
    Liquidation(liquidation::Args),
    /// A localnet of validator processes under load: finalized orders per second against the verify ceiling, latencies, memory.
    Localnet(localnet::Args),
}

pub fn run(bench: Bench) -> CliResult {
    match bench {
        Bench::Matching(args) => matching::run(&args),
        Bench::Apply(args) => apply::run(&args),
        Bench::Consensus(args) => consensus::run(&args),
        Bench::Staking(args) => staking::run(&args),
        Bench::Margin(args) => margin::run(&args),
        Bench::Liquidation(args) => liquidation::run(&args),
        Bench::Localnet(args) => localnet::run(&args),
    }
}
