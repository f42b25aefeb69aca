//! `vanna simulate`: runs the deterministic consensus simulator (`vanna_sim`)
//! over many seeds and prints a summary, or one JSON object with `--json`.
//! Exits non-zero when any seed violates safety, liveness or evidence checks;
//! `--seed-start S --seeds 1` reproduces one seed exactly.

use std::time::Instant;

use serde::Serialize;
use vanna_sim::{RunReport, SimConfig, Summary, liveness_bound_views, run_seed};

use crate::CliResult;

/// Validators simulated at most (each seed is all-to-all).
const VALIDATORS_MAX: usize = 200;

/// `vanna simulate` options.
#[derive(clap::Args)]
pub struct Args {
    /// Validators (equal stake).
    #[arg(long, default_value_t = 4)]
    pub validators: usize,
    /// Byzantine validators among them (silent, double voter or equivocating leader, by seed).
    #[arg(long, default_value_t = 0)]
    pub byzantine: usize,
    /// Seeds to run.
    #[arg(long, default_value_t = 100)]
    pub seeds: u64,
    /// First seed (to reproduce one: `--seed-start S --seeds 1`).
    #[arg(long, default_value_t = 0)]
    pub seed_start: u64,
    /// Partition the network and heal it before it stabilises.
    #[arg(long)]
    pub partitions: bool,
    /// Crash honest validators and restart them from their persisted protection store.
    #[arg(long)]
    pub crashes: bool,
    /// Heights per epoch (a new engine per epoch); none: one epoch.
    #[arg(long)]
    pub epoch_length: Option<u64>,
    /// Real BLS signatures instead of the cheap simulation scheme.
    #[arg(long)]
    pub bls: bool,
    /// Worker threads (seeds are independent); default: all cores.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Print one JSON object instead of the human summary.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Output<'a> {
    config: &'a SimConfig,
    seed_start: u64,
    seeds: u64,
    views: u64,
    blocks_finalized: u64,
    violations: u64,
    slowest_recovery_views: u64,
    slowest_recovery_seed: u64,
    liveness_bound_views: u64,
    evidence: u64,
    signatures_refused: u64,
    messages: u64,
    seconds: f64,
    violation_samples: &'a [String],
}

pub fn run(args: &Args) -> CliResult {
    if args.validators == 0 || args.validators > VALIDATORS_MAX {
        return Err(format!("--validators must be 1..={VALIDATORS_MAX}").into());
    }
    if args.byzantine * 3 >= args.validators {
        return Err("--byzantine must be less than a third of --validators".into());
    }
    let mut config = SimConfig::new(args.validators, args.byzantine);
    config.partitions = args.partitions;
    config.crashes = args.crashes;
    config.epoch_length = args.epoch_length.filter(|length| *length > 0);
    config.bls = args.bls;

    let threads =
        args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).clamp(1, 64) as u64;
    let started = Instant::now();
    let mut reports: Vec<RunReport> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|worker| {
                let config = &config;
                scope.spawn(move || {
                    (0..args.seeds)
                        .filter(|offset| offset % threads == worker)
                        .map(|offset| run_seed(config, args.seed_start + offset))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap_or_default()).collect()
    });
    // Summaries are folded in seed order, so output never depends on scheduling.
    reports.sort_by_key(|r| r.seed);
    if reports.len() as u64 != args.seeds {
        return Err("a simulation worker panicked".into());
    }
    let mut summary = Summary::default();
    for report in &reports {
        summary.add(report);
    }
    let output = Output {
        config: &config,
        seed_start: args.seed_start,
        seeds: summary.seeds,
        views: summary.views,
        blocks_finalized: summary.blocks_finalized,
        violations: summary.violations,
        slowest_recovery_views: summary.slowest_recovery_views,
        slowest_recovery_seed: summary.slowest_recovery_seed,
        liveness_bound_views: liveness_bound_views(&config),
        evidence: summary.evidence,
        signatures_refused: summary.signatures_refused,
        messages: summary.messages,
        seconds: started.elapsed().as_secs_f64(),
        violation_samples: &summary.violation_samples,
    };
    crate::output::emit(args.json, &output, |o| {
        println!(
            "simulate: {} validators ({} byzantine){}{}{}{}",
            args.validators,
            args.byzantine,
            if args.partitions { ", partitions" } else { "" },
            if args.crashes { ", crashes" } else { "" },
            config.epoch_length.map_or(String::new(), |l| format!(", epochs of {l}")),
            if args.bls { ", BLS" } else { "" },
        );
        println!("  seeds run          {} (from {})", o.seeds, o.seed_start);
        println!("  views              {}", o.views);
        println!("  blocks finalized   {}", o.blocks_finalized);
        println!("  violations         {}", o.violations);
        println!(
            "  slowest recovery   {} views after stabilisation (seed {}, bound {})",
            o.slowest_recovery_views, o.slowest_recovery_seed, o.liveness_bound_views
        );
        println!("  evidence produced  {}", o.evidence);
        println!("  refused signatures {} (protection store after restarts)", o.signatures_refused);
        println!("  messages delivered {} in {:.1} s", o.messages, o.seconds);
        for sample in o.violation_samples {
            println!("  violation: {sample}");
        }
    })?;
    if summary.violations > 0 {
        return Err(format!("{} violations", summary.violations).into());
    }
    Ok(())
}
