//! `vanna simulate`: runs the deterministic consensus simulator (`vanna_sim`)
//! over many seeds and prints a summary, or one JSON object with `--json`.
//! Exits non-zero when any seed violates safety, liveness or evidence checks;
//! `--seed-start S --seeds 1` reproduces one seed exactly.

use std::time::Instant;

use serde::Serialize;
use vanna_sim::{Attacks, RunReport, SimConfig, SlowestRecovery, Summary, liveness_bound_views, run_seed};

use crate::CliResult;

/// Validators simulated at most (each seed is all-to-all).
const VALIDATORS_MAX: usize = 200;

/// `vanna simulate` options. Numeric options accept a leading hyphen so that
/// `-1` is reported as an invalid value, not as an unknown argument.
#[derive(clap::Args)]
pub struct Args {
    /// Validators (equal stake unless the `sets` attack changes it per epoch).
    #[arg(long, default_value_t = 4, allow_negative_numbers = true)]
    pub validators: usize,
    /// Byzantine validators among them (without --attacks: silent, double voter or
    /// equivocating leader, by seed; with --attacks: attackers holding only their own key).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub byzantine: usize,
    /// Seeds to run (at least 1).
    #[arg(long, default_value_t = 100, allow_negative_numbers = true, value_parser = clap::value_parser!(u64).range(1..))]
    pub seeds: u64,
    /// First seed (to reproduce one: `--seed-start S --seeds 1`).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub seed_start: u64,
    /// Partition the network and heal it before it stabilises.
    #[arg(long)]
    pub partitions: bool,
    /// Crash honest validators and restart them from their persisted protection store.
    #[arg(long)]
    pub crashes: bool,
    /// Heights per epoch (a new engine per epoch, at least 1); without it: one epoch.
    #[arg(long, allow_negative_numbers = true, value_parser = clap::value_parser!(u64).range(1..))]
    pub epoch_length: Option<u64>,
    /// Attacks and faults, comma-separated, or `all`: forge, replay, tamper,
    /// payload, future, invalid, lying, flood, equivocate (byzantine
    /// validators), schedule, outage, sets, skew, disk (the world).
    #[arg(long, default_value = "none", value_parser = Attacks::parse)]
    pub attacks: Attacks,
    /// Real BLS signatures instead of the cheap simulation scheme.
    #[arg(long)]
    pub bls: bool,
    /// Worker threads (seeds are independent); default: all cores.
    #[arg(long, allow_negative_numbers = true)]
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
    slowest_recovery: Option<SlowestRecovery>,
    liveness_bound_views: u64,
    evidence: u64,
    signatures_refused: u64,
    peers_reported: u64,
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
    let Some(seed_last) = args.seed_start.checked_add(args.seeds - 1) else {
        return Err(format!(
            "--seed-start {} with --seeds {} runs past the last seed ({}); lower one of them",
            args.seed_start,
            args.seeds,
            u64::MAX
        )
        .into());
    };
    let mut config = SimConfig::new(args.validators, args.byzantine);
    config.partitions = args.partitions;
    config.crashes = args.crashes;
    config.epoch_length = args.epoch_length;
    config.bls = args.bls;
    config.attacks = args.attacks;

    let threads =
        args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).clamp(1, 64) as u64;
    let started = Instant::now();
    let mut reports: Vec<RunReport> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|worker| {
                let config = &config;
                scope.spawn(move || {
                    (args.seed_start..=seed_last)
                        .filter(|seed| (seed - args.seed_start) % threads == worker)
                        .map(|seed| run_seed(config, seed))
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
        slowest_recovery: summary.slowest_recovery,
        liveness_bound_views: liveness_bound_views(&config),
        evidence: summary.evidence,
        signatures_refused: summary.signatures_refused,
        peers_reported: summary.peers_reported,
        messages: summary.messages,
        seconds: started.elapsed().as_secs_f64(),
        violation_samples: &summary.violation_samples,
    };
    crate::output::emit(args.json, &output, |o| {
        outln!(
            "simulate: {} validators ({} byzantine){}{}{}{}{}",
            args.validators,
            args.byzantine,
            if args.partitions { ", partitions" } else { "" },
            if args.crashes { ", crashes" } else { "" },
            config.epoch_length.map_or(String::new(), |l| format!(", epochs of {l}")),
            if args.bls { ", BLS" } else { "" },
            if config.attacks.is_empty() {
                String::new()
            } else {
                format!(", attacks: {}", config.attacks.names().join(","))
            },
        );
        outln!("  seeds run          {} (from {})", o.seeds, o.seed_start);
        outln!("  views              {}", o.views);
        outln!("  blocks finalized   {}", o.blocks_finalized);
        outln!("  violations         {}", o.violations);
        if let Some(slowest) = o.slowest_recovery {
            outln!(
                "  slowest recovery   {} views after stabilisation (seed {}, bound {})",
                slowest.views,
                slowest.seed,
                o.liveness_bound_views
            );
        }
        outln!("  evidence produced  {}", o.evidence);
        outln!("  refused signatures {} (protection store: restarts, disk faults)", o.signatures_refused);
        outln!("  peers reported     {} (misbehaving byzantine validators)", o.peers_reported);
        outln!("  messages delivered {} in {:.1} s", o.messages, o.seconds);
        for sample in o.violation_samples {
            outln!("  violation: {sample}");
        }
    })?;
    if summary.violations > 0 {
        return Err(format!("{} violations", summary.violations).into());
    }
    Ok(())
}
