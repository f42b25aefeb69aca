//! `vanna bench margin`: the two costs of portfolio margin (`vanna-margin`) on
//! one core.
//!
//! * Full re-pricing: after an oracle update, [`build_tables`] for a full
//!   listing: 2 underlyings × 8 expiries × 30 strikes × calls and puts = 960
//!   series, each priced at the mark (with greeks) and in every scenario of
//!   the default maintenance and initial grids (21 + 27 = 48): 960 × 49 =
//!   47,040 prices. Each run first moves both spots by a random amount, as
//!   an oracle update does; the median run is reported.
//! * Account margin: [`MarginTables::account`] for random accounts of 10
//!   positions in one underlying, once the tables are built; the mean per
//!   account of each run, median over runs.
//!
//! Listing and accounts are synthetic but deterministic (`ChaCha8` seeded by
//! `--seed`) and generated before the clock starts. Goals from the issue:
//! full re-pricing ≤ 10 ms, account margin ≤ 5 µs.

use std::hint::black_box;
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rust_decimal::Decimal;
use serde::Serialize;
use vanna_margin::{MarginParams, MarginTables, OptionKind, Position, SeriesIndex, SeriesKey, build_tables};

use crate::CliResult;

/// Expiries listed per underlying, in days from now.
const EXPIRY_DAYS: [u64; 8] = [1, 2, 7, 14, 28, 56, 91, 182];
/// Strikes listed per expiry, evenly spaced from 0.6 to 1.6 × spot.
const STRIKES_PER_EXPIRY: u32 = 30;
/// Positions per benchmarked account.
const POSITIONS_PER_ACCOUNT: usize = 10;
/// Largest `--runs` and `--accounts`: bounds memory and run time.
const RUNS_MAX: u64 = 1_000;
const ACCOUNTS_MAX: u64 = 1_000_000;
/// A fixed "now" so the listing is the same on every run: 2026-11-25 00:00 UTC.
const NOW_MS: u64 = 1_795_564_800_000;
const DAY_MS: u64 = 86_400_000;
/// Goals on one core, from the issue.
const FULL_REPRICE_GOAL_MS: f64 = 10.0;
const ACCOUNT_MARGIN_GOAL_US: f64 = 5.0;

/// The synthetic listing's underlyings, BTC-like and ETH-like: spot and at-the-money volatility.
const UNDERLYINGS: [(f64, f64); 2] = [(97_250.5, 0.55), (3_512.25, 0.7)];

/// `vanna bench margin` options.
#[derive(clap::Args)]
pub struct Args {
    /// Timed runs of each measurement; the median is reported.
    #[arg(long, default_value_t = 21, value_parser = crate::args::whole::<u32>(1, RUNS_MAX))]
    pub runs: u32,
    /// Random accounts evaluated per run.
    #[arg(long, default_value_t = 10_000, value_parser = crate::args::whole::<u32>(1, ACCOUNTS_MAX))]
    pub accounts: u32,
    /// Seed of the spot moves and accounts.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Print one JSON object instead of the human summary.
    #[arg(long)]
    pub json: bool,
}

/// What the benchmark measured.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Median time to build the tables of both underlyings after a spot move.
    pub full_reprice_ms: f64,
    /// Fastest and slowest of those runs.
    pub full_reprice_ms_min: f64,
    pub full_reprice_ms_max: f64,
    /// Median over runs of the mean time of one account evaluation.
    pub account_margin_us: f64,
    /// Series listed across both underlyings.
    pub series: usize,
    /// Scenarios per series: the maintenance grid and the initial grid.
    pub scenarios: usize,
    pub maintenance_scenarios: usize,
    /// Spot points × volatility levels of each grid.
    pub maintenance_grid: String,
    pub initial_grid: String,
    /// Black-Scholes prices per full re-pricing: each series once at its mark
    /// (with greeks) and once per scenario, so series × (scenarios + 1).
    pub prices_per_reprice: usize,
    pub positions_per_account: usize,
    pub accounts: u32,
    pub runs: u32,
    pub full_reprice_goal_ms: f64,
    pub account_margin_goal_us: f64,
    pub seed: u64,
}

/// One underlying's listing and volatility smile.
struct Underlying {
    spot: f64,
    atm_volatility: f64,
    series: Vec<SeriesKey>,
}

impl Underlying {
    fn new(spot: f64, atm_volatility: f64) -> Self {
        let mut series = Vec::with_capacity(EXPIRY_DAYS.len() * STRIKES_PER_EXPIRY as usize * 2);
        for days in EXPIRY_DAYS {
            for step in 0..STRIKES_PER_EXPIRY {
                let moneyness = 0.6 + f64::from(step) / f64::from(STRIKES_PER_EXPIRY - 1);
                let strike = Decimal::from((spot * moneyness).round() as i64);
                for kind in [OptionKind::Call, OptionKind::Put] {
                    series.push(SeriesKey { expiry_ms: NOW_MS + days * DAY_MS, strike, kind });
                }
            }
        }
        Underlying { spot, atm_volatility, series }
    }

    /// A smile around the listing spot, with short expiries a little richer.
    fn volatility(&self, key: &SeriesKey) -> f64 {
        let moneyness = vanna_pricing::decimal_to_f64(key.strike) / self.spot - 1.0;
        let short_dated = if key.expiry_ms - NOW_MS < 14 * DAY_MS { 0.05 } else { 0.0 };
        self.atm_volatility + 0.6 * moneyness * moneyness + short_dated
    }

    fn build(&self, params: &MarginParams, spot: f64) -> Result<MarginTables, Box<dyn std::error::Error>> {
        Ok(build_tables(params, spot, NOW_MS, &self.series, |key| self.volatility(key))?)
    }
}

pub fn run(args: &Args) -> CliResult {
    let report = measure(args)?;
    crate::output::emit(args.json, &report, |report| {
        outln!(
            "margin: full re-pricing of {} series, each at its mark (with greeks) and in {} scenarios: {} prices, in {:.3} ms median (min {:.3}, max {:.3}; goal {} ms)",
            report.series,
            report.scenarios,
            report.prices_per_reprice,
            report.full_reprice_ms,
            report.full_reprice_ms_min,
            report.full_reprice_ms_max,
            report.full_reprice_goal_ms
        );
        outln!(
            "  account margin ({} positions) in {:.3} us median over {} runs of {} accounts (goal {} us)",
            report.positions_per_account,
            report.account_margin_us,
            report.runs,
            report.accounts,
            report.account_margin_goal_us
        );
        outln!(
            "  grids: maintenance {} ({} scenarios), initial {}; seed {}",
            report.maintenance_grid,
            report.maintenance_scenarios,
            report.initial_grid,
            report.seed
        );
    })
}

pub fn measure(args: &Args) -> Result<Report, Box<dyn std::error::Error>> {
    let params = MarginParams::default();
    let underlyings: Vec<Underlying> =
        UNDERLYINGS.iter().map(|&(spot, volatility)| Underlying::new(spot, volatility)).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);

    // Full re-pricing: every run is an oracle update moving both spots by up to ±1 %.
    let spot_moves: Vec<[f64; 2]> =
        (0..args.runs).map(|_| [rng.random_range(-0.01..0.01), rng.random_range(-0.01..0.01)]).collect();
    let mut reprice_ms = Vec::with_capacity(args.runs as usize);
    for moves in &spot_moves {
        let start = Instant::now();
        for (underlying, spot_move) in underlyings.iter().zip(moves) {
            black_box(underlying.build(&params, black_box(underlying.spot * (1.0 + spot_move)))?);
        }
        reprice_ms.push(start.elapsed().as_secs_f64() * 1e3);
    }

    // Account margin on tables built at the listing spots.
    let tables: Vec<MarginTables> =
        underlyings.iter().map(|underlying| underlying.build(&params, underlying.spot)).collect::<Result<_, _>>()?;
    let accounts: Vec<(usize, Vec<Position>)> = (0..args.accounts)
        .map(|index| {
            let which = index as usize % tables.len();
            (which, random_account(&mut rng, tables[which].series_count()))
        })
        .collect();
    let mut account_us = Vec::with_capacity(args.runs as usize);
    for _ in 0..args.runs {
        let start = Instant::now();
        for (which, positions) in &accounts {
            black_box(tables[*which].account(black_box(positions))?);
        }
        account_us.push(start.elapsed().as_secs_f64() * 1e6 / f64::from(args.accounts));
    }

    let reference = &tables[0];
    let grid = |params: &vanna_margin::GridParams| {
        format!(
            "±{}% in {} spot points x vol x(1±{})",
            (params.spot_move_max * Decimal::ONE_HUNDRED).normalize(),
            params.spot_points,
            params.volatility_shock
        )
    };
    let series: usize = underlyings.iter().map(|underlying| underlying.series.len()).sum();
    let scenarios = reference.scenarios().len();
    let reprice_sorted = sorted(reprice_ms);
    Ok(Report {
        full_reprice_ms: median(&reprice_sorted),
        full_reprice_ms_min: reprice_sorted[0],
        full_reprice_ms_max: reprice_sorted[reprice_sorted.len() - 1],
        account_margin_us: median(&sorted(account_us)),
        series,
        scenarios,
        maintenance_scenarios: reference.maintenance_scenario_count(),
        maintenance_grid: grid(&params.maintenance),
        initial_grid: grid(&params.initial),
        prices_per_reprice: series * (scenarios + 1),
        positions_per_account: POSITIONS_PER_ACCOUNT,
        accounts: args.accounts,
        runs: args.runs,
        full_reprice_goal_ms: FULL_REPRICE_GOAL_MS,
        account_margin_goal_us: ACCOUNT_MARGIN_GOAL_US,
        seed: args.seed,
    })
}

/// Ten distinct series in increasing order, long or short 0.1 to 20 contracts.
fn random_account(rng: &mut ChaCha8Rng, series_count: usize) -> Vec<Position> {
    let mut indices: Vec<u32> = Vec::with_capacity(POSITIONS_PER_ACCOUNT);
    while indices.len() < POSITIONS_PER_ACCOUNT {
        let index = rng.random_range(0..series_count as u32);
        if !indices.contains(&index) {
            indices.push(index);
        }
    }
    indices.sort_unstable();
    indices
        .into_iter()
        .map(|index| {
            let size = f64::from(rng.random_range(1..=200u32)) / 10.0;
            let contracts = if rng.random_bool(0.5) { size } else { -size };
            Position { series: SeriesIndex(index), contracts }
        })
        .collect()
}

fn sorted(mut values: Vec<f64>) -> Vec<f64> {
    values.sort_by(f64::total_cmp);
    values
}

fn median(sorted: &[f64]) -> f64 {
    sorted[sorted.len() / 2]
}
