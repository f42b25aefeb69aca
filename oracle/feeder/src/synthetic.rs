//! A seeded synthetic market: geometric Brownian motion with jumps and a
//! two-state volatility regime, and a volatility surface that follows the
//! regime. For localnets and tests: the same seed, epoch and times give the
//! same path on every validator, so their reports agree.
//!
//! Model, per step of `step_ms` (real time, vols annualised):
//! - regime: calm (vol `calm_vol`) switches to stressed (`stressed_vol`) with
//!   probability `stress_per_day`·dt, back with `calm_per_day`·dt;
//! - log return: -σ²/2·dt + σ·√dt·Z, plus with probability `jumps_per_day`·dt a
//!   jump N(`jump_mean`, `jump_sd`);
//! - surface: ATM vol per expiry mean-reverts from the current regime vol to
//!   `calm_vol` with a 30-day time constant; smile σ(k) = atm + skew·k +
//!   0.3·k², skew -0.1 calm, -0.25 stressed.
//!
//! Each underlying has its own stream, seeded from the seed and its symbol;
//! the path is indexed by step number since `epoch_ms`, so a feeder started
//! late catches up to the same point.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use sha2::{Digest, Sha256};
use vanna_oracle::Underlying;

use crate::error::FeederError;
use crate::quote::{MS_PER_DAY, Quote, RawSmile, Source, decimal_from_f64, standard_expiries};

/// Most steps one quote may simulate to catch up: a day of 100 ms steps.
pub const MAX_CATCH_UP_STEPS: u64 = 864_000;
const DAYS_PER_YEAR: f64 = 365.0;

#[derive(Clone, Debug, PartialEq)]
pub struct SyntheticConfig {
    pub seed: u64,
    /// Step 0 of every path; all validators of a localnet must share it.
    pub epoch_ms: u64,
    pub step_ms: u64,
    pub calm_vol: f64,
    pub stressed_vol: f64,
    pub stress_per_day: f64,
    pub calm_per_day: f64,
    pub jumps_per_day: f64,
    pub jump_mean: f64,
    pub jump_sd: f64,
}

impl SyntheticConfig {
    /// Lively defaults for a localnet: a jump an hour (mean 0, sd 5%), stress
    /// a few times a day, so margin calls and liquidations happen within minutes.
    pub fn new(seed: u64, epoch_ms: u64) -> Self {
        SyntheticConfig {
            seed,
            epoch_ms,
            step_ms: 1_000,
            calm_vol: 0.6,
            stressed_vol: 1.4,
            stress_per_day: 4.0,
            calm_per_day: 24.0,
            jumps_per_day: 24.0,
            jump_mean: 0.0,
            jump_sd: 0.05,
        }
    }
}

impl SyntheticConfig {
    /// Whether a source with this configuration, first asked at `now_ms`, can
    /// quote at all: a path whose epoch lies ahead would give only quotes
    /// from the future, and one more than [`MAX_CATCH_UP_STEPS`] steps back
    /// refuses to catch up. Either way the feeder would report nothing, round
    /// after round, so its caller refuses the configuration up front.
    pub fn check_start(&self, now_ms: u64, max_future_skew_ms: u64) -> Result<(), FeederError> {
        if self.epoch_ms > now_ms.saturating_add(max_future_skew_ms) {
            return Err(FeederError::Config(format!(
                "the synthetic epoch {} ms is {} ms ahead of now ({now_ms} ms): every quote would be from the future",
                self.epoch_ms,
                self.epoch_ms - now_ms
            )));
        }
        let steps_behind = now_ms.saturating_sub(self.epoch_ms) / self.step_ms.max(1);
        if steps_behind > MAX_CATCH_UP_STEPS {
            return Err(FeederError::Config(format!(
                "the synthetic epoch {} ms is {steps_behind} steps of {} ms before now, more than the {MAX_CATCH_UP_STEPS} \
                 a quote may catch up: pick an epoch within the last {} days",
                self.epoch_ms,
                self.step_ms,
                MAX_CATCH_UP_STEPS * self.step_ms / MS_PER_DAY
            )));
        }
        Ok(())
    }
}

#[derive(Clone, Debug)]
struct Path {
    rng: ChaCha20Rng,
    step: u64,
    spot: f64,
    stressed: bool,
    jumps: u64,
}

#[derive(Debug)]
pub struct SyntheticSource {
    config: SyntheticConfig,
    paths: BTreeMap<Underlying, Path>,
}

/// Starting spot of a path: round numbers near real markets for the majors.
pub fn initial_spot(underlying: &Underlying) -> f64 {
    match underlying.as_str() {
        "BTC" => 65_000.0,
        "ETH" => 3_500.0,
        "SOL" => 150.0,
        _ => 100.0,
    }
}

impl SyntheticSource {
    pub fn new(config: SyntheticConfig) -> Result<Self, FeederError> {
        let positive = |x: f64| x.is_finite() && x > 0.0;
        let rates_ok = [config.stress_per_day, config.calm_per_day, config.jumps_per_day, config.jump_sd]
            .into_iter()
            .all(|x| x.is_finite() && x >= 0.0);
        if config.step_ms == 0
            || !positive(config.calm_vol)
            || !positive(config.stressed_vol)
            || !rates_ok
            || !config.jump_mean.is_finite()
        {
            return Err(FeederError::Config(
                "synthetic parameters must be finite, rates non-negative, vols and step positive".into(),
            ));
        }
        Ok(SyntheticSource { config, paths: BTreeMap::new() })
    }

    /// Jumps so far on an underlying's path.
    pub fn jumps(&self, underlying: &Underlying) -> u64 {
        self.paths.get(underlying).map_or(0, |path| path.jumps)
    }

    fn path(&mut self, underlying: &Underlying) -> &mut Path {
        let seed = self.config.seed;
        self.paths.entry(underlying.clone()).or_insert_with(|| {
            let digest: [u8; 32] = Sha256::new()
                .chain_update(seed.to_be_bytes())
                .chain_update(underlying.as_str().as_bytes())
                .finalize()
                .into();
            Path {
                rng: ChaCha20Rng::from_seed(digest),
                step: 0,
                spot: initial_spot(underlying),
                stressed: false,
                jumps: 0,
            }
        })
    }
}

/// A standard normal draw by Box-Muller, with libm so every machine agrees.
fn normal(rng: &mut ChaCha20Rng) -> f64 {
    // 1 - [0, 1) is in (0, 1]: the log is finite.
    let u1 = 1.0 - rng.random::<f64>();
    let u2 = rng.random::<f64>();
    libm::sqrt(-2.0 * libm::log(u1)) * libm::cos(std::f64::consts::TAU * u2)
}

fn advance(path: &mut Path, config: &SyntheticConfig) {
    let dt_days = config.step_ms as f64 / MS_PER_DAY as f64;
    let dt_years = dt_days / DAYS_PER_YEAR;
    let switch = path.rng.random::<f64>();
    let rate = if path.stressed { config.calm_per_day } else { config.stress_per_day };
    if switch < rate * dt_days {
        path.stressed = !path.stressed;
    }
    let vol = if path.stressed { config.stressed_vol } else { config.calm_vol };
    let mut log_return = -0.5 * vol * vol * dt_years + vol * libm::sqrt(dt_years) * normal(&mut path.rng);
    if path.rng.random::<f64>() < config.jumps_per_day * dt_days {
        log_return += config.jump_mean + config.jump_sd * normal(&mut path.rng);
        path.jumps += 1;
    }
    path.spot *= libm::exp(log_return);
    path.step += 1;
}

impl Source for SyntheticSource {
    fn name(&self) -> &str {
        "synthetic"
    }

    fn quote(&mut self, underlying: &Underlying, now_ms: u64) -> Result<Quote, FeederError> {
        let config = self.config.clone();
        let target = now_ms.saturating_sub(config.epoch_ms) / config.step_ms;
        let path = self.path(underlying);
        if target.saturating_sub(path.step) > MAX_CATCH_UP_STEPS {
            return Err(FeederError::Config(format!(
                "synthetic epoch is {} steps behind; pass a later --synthetic-epoch-ms",
                target - path.step
            )));
        }
        while path.step < target {
            advance(path, &config);
        }
        let spot = decimal_from_f64(path.spot, 6)
            .ok_or_else(|| FeederError::Nonsense { source_name: "synthetic", reason: format!("spot {}", path.spot) })?;
        let regime_vol = if path.stressed { config.stressed_vol } else { config.calm_vol };
        let skew = if path.stressed { -0.25 } else { -0.1 };
        let smiles = standard_expiries(now_ms)
            .into_iter()
            .map(|expiry_ms| {
                let days = (expiry_ms - now_ms) as f64 / MS_PER_DAY as f64;
                let atm = config.calm_vol + (regime_vol - config.calm_vol) * libm::exp(-days / 30.0);
                let points = [-1.0, -0.5, -0.25, -0.1, 0.0, 0.1, 0.25, 0.5, 1.0]
                    .into_iter()
                    .map(|k| (k, (atm + skew * k + 0.3 * k * k).clamp(0.05, 5.0)))
                    .collect();
                RawSmile { expiry_ms, points }
            })
            .collect();
        Ok(Quote { spot, observed_at_ms: config.epoch_ms + target * config.step_ms, smiles })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn btc() -> Underlying {
        Underlying::new("BTC").unwrap()
    }

    fn run(seed: u64, steps: u64) -> Vec<Quote> {
        let mut source = SyntheticSource::new(SyntheticConfig::new(seed, 0)).unwrap();
        (1..=steps).map(|i| source.quote(&btc(), i * 60_000).unwrap()).collect()
    }

    #[test]
    fn deterministic_for_a_seed_and_seeds_differ() {
        assert_eq!(run(7, 50), run(7, 50));
        assert_ne!(run(7, 50), run(8, 50));
        // Catching up in one call gives the same point as stepping through.
        let mut late = SyntheticSource::new(SyntheticConfig::new(7, 0)).unwrap();
        assert_eq!(late.quote(&btc(), 50 * 60_000).unwrap(), run(7, 50)[49]);
    }

    #[test]
    fn the_path_jumps_and_moves() {
        let mut source = SyntheticSource::new(SyntheticConfig::new(1, 0)).unwrap();
        let mut previous = source.quote(&btc(), 0).unwrap().spot;
        let mut largest_move = 0.0f64;
        // Six simulated hours, one quote per second.
        for second in 1..=21_600u64 {
            let spot = source.quote(&btc(), second * 1_000).unwrap().spot;
            let ratio: f64 = (spot / previous).to_string().parse().unwrap();
            largest_move = largest_move.max((ratio - 1.0).abs());
            previous = spot;
        }
        assert!(source.jumps(&btc()) >= 1, "a jump an hour on average");
        // A one-second diffusion move at 140% vol is about 0.025%: a move of
        // 1% in one second is a jump.
        assert!(largest_move > 0.01, "largest one-second move {largest_move}");
    }

    #[test]
    fn surface_follows_the_schedule_with_a_skew() {
        let quote = run(3, 1).remove(0);
        assert_eq!(quote.smiles.len(), standard_expiries(60_000).len());
        let smile = &quote.smiles[0];
        assert!(smile.vol_at(-0.5).unwrap() > smile.vol_at(0.5).unwrap(), "downside skew");
    }

    #[test]
    fn refuses_bad_parameters_and_unbounded_catch_up() {
        let mut config = SyntheticConfig::new(1, 0);
        config.calm_vol = f64::NAN;
        assert!(SyntheticSource::new(config).is_err());
        let mut source = SyntheticSource::new(SyntheticConfig::new(1, 0)).unwrap();
        assert!(matches!(source.quote(&btc(), (MAX_CATCH_UP_STEPS + 2) * 1_000), Err(FeederError::Config(_))));
        // The same configurations, refused before the first quote.
        let config = SyntheticConfig::new(1, 10 * MS_PER_DAY);
        assert!(config.check_start(10 * MS_PER_DAY, 0).is_ok());
        assert!(config.check_start(10 * MS_PER_DAY - 1_000, 1_000).is_ok(), "within the skew");
        assert!(
            config.check_start(10 * MS_PER_DAY - 1_001, 1_000).unwrap_err().to_string().contains("from the future")
        );
        assert!(config.check_start(20 * MS_PER_DAY, 0).is_ok(), "ten days of one-second steps is the most");
        let too_late = config.check_start(20 * MS_PER_DAY + 1_000, 0).unwrap_err().to_string();
        assert!(too_late.contains("within the last 10 days"), "{too_late}");
    }
}
