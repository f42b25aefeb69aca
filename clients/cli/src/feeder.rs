//! `vanna feeder`: the validator's price feeder sidecar. Every interval it asks
//! its sources about each underlying, drops the failing or nonsensical ones
//! (logged to stderr), signs one report with the operator key and writes it as
//! a JSON line (to stdout or `--out`). Sending reports to the chain comes with
//! the node.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args as ClapArgs;
use vanna_feeder::{CombineConfig, Feeder, SyntheticConfig, key_from_file, key_from_seed, source_from_spec};
use vanna_oracle::Underlying;

use crate::CliResult;

const MS_PER_DAY: u64 = 86_400_000;

#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Chain id the reports are signed for.
    #[arg(long, default_value = "vanna-local")]
    chain_id: String,
    /// A price source; repeat for several: synthetic, csv:<path>, deribit, binance, kraken.
    #[arg(long = "source", default_value = "synthetic")]
    sources: Vec<String>,
    /// An underlying symbol; repeat for several.
    #[arg(long = "underlying", default_values_t = ["BTC".to_string(), "ETH".to_string()])]
    underlyings: Vec<String>,
    /// Milliseconds between reports.
    #[arg(long, default_value_t = 1_000)]
    interval_ms: u64,
    /// Stop after this many reports (default: run until stopped).
    #[arg(long)]
    count: Option<u64>,
    /// Append reports to this file instead of stdout.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Derive the operator key from a seed phrase, as `vanna demo` accounts are (localnets only).
    #[arg(long, conflicts_with = "key_file")]
    key_seed: Option<String>,
    /// File holding the operator key: 64 hex digits.
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// Seed of the synthetic market; validators of one localnet share it.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Start of the synthetic path, ms since the epoch (default: 00:00 UTC today);
    /// validators of one localnet share it.
    #[arg(long)]
    synthetic_epoch_ms: Option<u64>,
    /// A source quote older than this is dropped.
    #[arg(long, default_value_t = 5_000)]
    max_source_age_ms: u64,
    /// A source further than this from the median of the sources is dropped, in basis points.
    #[arg(long, default_value_t = 500)]
    max_deviation_bps: u32,
    /// Whole-request timeout of the HTTP sources.
    #[arg(long, default_value_t = 3_000)]
    http_timeout_ms: u64,
    /// Log level on stderr: error, warn, info, debug or trace.
    #[arg(long, default_value = "info")]
    log_level: tracing::Level,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
}

pub fn run(args: &Args) -> CliResult {
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_max_level(args.log_level).init();
    if args.interval_ms == 0 {
        return Err("--interval-ms must be positive".into());
    }
    let key = match (&args.key_seed, &args.key_file) {
        (Some(seed), None) => key_from_seed(seed),
        (None, Some(path)) => key_from_file(path)?,
        _ => return Err("give the operator key with --key-seed or --key-file".into()),
    };
    let underlyings = args.underlyings.iter().map(|symbol| Underlying::new(symbol)).collect::<Result<Vec<_>, _>>()?;
    let start = now_ms();
    let epoch = args.synthetic_epoch_ms.unwrap_or(start / MS_PER_DAY * MS_PER_DAY);
    let synthetic = SyntheticConfig::new(args.seed, epoch);
    let timeout = Duration::from_millis(args.http_timeout_ms);
    let sources =
        args.sources.iter().map(|spec| source_from_spec(spec, &synthetic, timeout)).collect::<Result<Vec<_>, _>>()?;
    let config = CombineConfig {
        max_source_age_ms: args.max_source_age_ms,
        max_deviation_bps: args.max_deviation_bps,
        ..CombineConfig::default()
    };
    let mut feeder = Feeder::new(args.chain_id.clone(), key, underlyings, sources, config)?;
    tracing::info!(reporter = %feeder.reporter(), chain_id = %args.chain_id, sources = ?args.sources, "feeder started");

    let mut out: Box<dyn Write> = match &args.out {
        Some(path) => Box::new(OpenOptions::new().create(true).append(true).open(path)?),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut written = 0u64;
    let mut deadline = start;
    while args.count.is_none_or(|count| written < count) {
        let now = now_ms();
        match feeder.tick(now) {
            Some(line) => {
                writeln!(out, "{line}")?;
                out.flush()?;
                written += 1;
            }
            None => tracing::warn!("no underlying had a usable source: nothing reported this round"),
        }
        // A fixed schedule: a slow round shortens the next wait, never shifts the grid.
        deadline += args.interval_ms;
        let now = now_ms();
        if deadline > now {
            std::thread::sleep(Duration::from_millis(deadline - now));
        } else {
            deadline = now;
        }
    }
    Ok(())
}
