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
use vanna_runtime::devnet::DEMO_CHAIN_ID;
use vanna_runtime::genesis::{CHAIN_ID_MAX_LEN, chain_id_is_valid};

use crate::CliResult;
use crate::args::whole;

const MS_PER_DAY: u64 = 86_400_000;
/// Longest `--interval-ms`: an hour. The chain treats an underlying as stale
/// after 30 s without reports by default, so longer only bounds the arithmetic.
const INTERVAL_MS_MAX: u64 = 3_600_000;
/// Longest `--max-source-age-ms`: a day.
const MAX_SOURCE_AGE_MS_MAX: u64 = MS_PER_DAY;
/// Longest `--http-timeout-ms`: a minute.
const HTTP_TIMEOUT_MS_MAX: u64 = 60_000;
/// Largest `--max-deviation-bps`: 100 %, which keeps every source.
const MAX_DEVIATION_BPS_MAX: u64 = 10_000;

#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Chain id the reports are signed for: 1 to 64 ASCII characters, as the chain's genesis names it.
    #[arg(long, default_value = DEMO_CHAIN_ID)]
    chain_id: String,
    /// A price source; repeat for several: synthetic, csv:<path>, deribit, binance, kraken.
    #[arg(long = "source", default_value = "synthetic")]
    sources: Vec<String>,
    /// An underlying symbol the chain lists; repeat for several.
    #[arg(long = "underlying", default_values_t = ["BTC".to_string(), "ETH".to_string()])]
    underlyings: Vec<String>,
    /// Milliseconds between reports.
    #[arg(long, default_value_t = 1_000, value_parser = whole::<u64>(1, INTERVAL_MS_MAX))]
    interval_ms: u64,
    /// Stop after this many reports (default: run until stopped).
    #[arg(long, value_parser = whole::<u64>(1, u64::MAX))]
    count: Option<u64>,
    /// Append reports to this file instead of stdout.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Derive the operator key from a seed phrase, as the sandbox derives its
    /// accounts' keys (localnets only): the demo chain's validators are
    /// vanna-demo/validator-1, vanna-demo/validator-2 and vanna-demo/validator-3.
    #[arg(long, conflicts_with = "key_file")]
    key_seed: Option<String>,
    /// File holding the operator key: 64 hex digits.
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// Seed of the synthetic market; validators of one localnet share it.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Start of the synthetic path, ms since the epoch (default: 00:00 UTC today);
    /// validators of one localnet share it. At most 10 days back, not ahead.
    #[arg(long)]
    synthetic_epoch_ms: Option<u64>,
    /// A source quote older than this is dropped; with the synthetic source at
    /// least its step (1000 ms), as its quotes are stamped at the step's start.
    #[arg(long, default_value_t = 5_000, value_parser = whole::<u64>(1, MAX_SOURCE_AGE_MS_MAX))]
    max_source_age_ms: u64,
    /// A source further than this from the median of the sources is dropped, in basis points.
    #[arg(long, default_value_t = 500, value_parser = whole::<u32>(0, MAX_DEVIATION_BPS_MAX))]
    max_deviation_bps: u32,
    /// Whole-request timeout of the HTTP sources.
    #[arg(long, default_value_t = 3_000, value_parser = whole::<u64>(1, HTTP_TIMEOUT_MS_MAX))]
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
    // Everything is checked before the first round: a configuration that can
    // never produce a report would otherwise log the same warning forever.
    if !chain_id_is_valid(&args.chain_id) {
        return Err(format!(
            "--chain-id {:?} is not a chain id: give 1 to {CHAIN_ID_MAX_LEN} ASCII characters, the chain's own \
             (the demo chain's is {DEMO_CHAIN_ID})",
            args.chain_id
        )
        .into());
    }
    let key = match (&args.key_seed, &args.key_file) {
        (Some(seed), None) if seed.is_empty() => {
            return Err("--key-seed is empty: give the operator's seed phrase, e.g. vanna-demo/validator-1".into());
        }
        (Some(seed), None) => key_from_seed(seed),
        (None, Some(path)) => key_from_file(path)?,
        _ => return Err("give the operator key with --key-seed or --key-file".into()),
    };
    let demo = crate::genesis::demo().0;
    let underlyings = listed_underlyings(&demo, &args.underlyings)?;
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
    if args.sources.iter().any(|spec| spec == "synthetic") {
        synthetic
            .check_start(start, config.max_future_skew_ms)
            .map_err(|error| format!("--synthetic-epoch-ms: {error}"))?;
        if args.max_source_age_ms < synthetic.step_ms {
            return Err(format!(
                "--max-source-age-ms {} is less than the synthetic source's step of {} ms: its quotes are stamped \
                 at the start of their step, so they would be dropped as stale",
                args.max_source_age_ms, synthetic.step_ms
            )
            .into());
        }
    }
    let mut out = match &args.out {
        Some(path) => Some((
            path,
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|error| format!("cannot open --out {} for appending: {error}", path.display()))?,
        )),
        None => None,
    };
    let mut feeder = Feeder::new(args.chain_id.clone(), key, underlyings, sources, config)?;
    tracing::info!(reporter = %feeder.reporter(), chain_id = %args.chain_id, sources = ?args.sources, "feeder started");
    if args.chain_id == demo.chain_id && !demo.staking.validators.iter().any(|v| v.operator.0 == feeder.reporter().0) {
        tracing::warn!(
            reporter = %feeder.reporter(),
            "the reporter is no validator of the demo chain, which ignores its reports: \
             its validators' seeds are vanna-demo/validator-1 to vanna-demo/validator-3"
        );
    }

    let mut written = 0u64;
    let mut deadline = start;
    while args.count.is_none_or(|count| written < count) {
        let now = now_ms();
        match feeder.tick(now) {
            Some(line) => {
                match &mut out {
                    Some((path, file)) => writeln!(file, "{line}")
                        .map_err(|error| format!("cannot write to --out {}: {error}", path.display()))?,
                    None => outln!("{line}"),
                }
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

/// The `--underlying` symbols, each once and each one the chain lists. The
/// chain is the demo chain, the only one this tool runs until the node reads
/// its own genesis: a report on an underlying it does not list is ignored.
fn listed_underlyings(
    demo: &vanna_runtime::Genesis,
    symbols: &[String],
) -> Result<Vec<Underlying>, Box<dyn std::error::Error>> {
    let listed: Vec<&str> = demo.underlyings.iter().map(|spec| spec.symbol.as_str()).collect();
    let mut underlyings = Vec::with_capacity(symbols.len());
    for symbol in symbols {
        if !listed.contains(&symbol.as_str()) {
            return Err(format!(
                "--underlying {symbol:?} is not listed on the demo chain: it lists {}",
                listed.join(" and ")
            )
            .into());
        }
        let underlying = Underlying::new(symbol)?;
        if underlyings.contains(&underlying) {
            return Err(
                format!("--underlying {symbol} is given twice: a report carries one price per underlying").into()
            );
        }
        underlyings.push(underlying);
    }
    Ok(underlyings)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seeds the help and the README give sign as the demo chain's validators.
    #[test]
    fn the_documented_seeds_are_the_demo_validators() {
        let demo = crate::genesis::demo().0;
        assert_eq!(demo.staking.validators.len(), 3);
        for (number, validator) in (1..).zip(&demo.staking.validators) {
            let key = key_from_seed(&format!("vanna-demo/validator-{number}"));
            let point = key.verifying_key().to_encoded_point(true);
            let reporter = vanna_oracle::reporter_of(point.as_bytes().try_into().expect("33 bytes"));
            assert_eq!(reporter.0, validator.operator.0, "validator-{number}");
        }
    }
}
