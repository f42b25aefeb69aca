//! `vanna price`: an offline Black-Scholes calculator for traders, with the
//! very arithmetic the chain's margin engine uses (`vanna-pricing`), so a
//! figure printed here is bit for bit the one a validator computes.

use serde::Serialize;
use vanna_pricing::{OptionInputs, OptionKind, greeks, years_from_days};

use crate::CliResult;

/// Longest time to expiry accepted, in days (100 years, the pricer's limit).
const DAYS_MAX: f64 = 36_500.0;

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Kind {
    Call,
    Put,
}

/// `vanna price` options.
#[derive(clap::Args)]
pub struct Args {
    /// Call or put.
    #[arg(long)]
    pub kind: Kind,
    /// Spot price of the underlying, in USD.
    #[arg(long)]
    pub spot: f64,
    /// Strike, in USD.
    #[arg(long)]
    pub strike: f64,
    /// Annualised volatility as a fraction: 0.6 for 60 %.
    #[arg(long)]
    pub vol: f64,
    /// Continuously compounded annual rate as a fraction: 0.05 for 5 %.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Calendar days to expiry (ACT/365), fractions allowed; 0 prices at expiry.
    #[arg(long)]
    pub days: f64,
    /// Print one JSON object instead of the human summary.
    #[arg(long)]
    pub json: bool,
}

/// Inputs and results, per one unit of underlying.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub kind: &'static str,
    pub spot: f64,
    pub strike: f64,
    pub vol: f64,
    pub rate: f64,
    pub days: f64,
    /// ACT/365 year fraction used.
    pub years: f64,
    pub price: f64,
    pub delta: f64,
    pub gamma: f64,
    /// Change for +1 volatility point (+0.01).
    pub vega_per_vol_point: f64,
    /// Change as one calendar day passes.
    pub theta_per_day: f64,
}

pub fn run(args: &Args) -> CliResult {
    let report = compute(args)?;
    crate::output::emit(args.json, &report, |report| {
        outln!(
            "{} spot {} strike {} vol {}% rate {}% {} days ({:.6} years)",
            report.kind,
            report.spot,
            report.strike,
            report.vol * 100.0,
            report.rate * 100.0,
            report.days,
            report.years
        );
        outln!("  price   {:>18.6}", report.price);
        outln!("  delta   {:>18.6}", report.delta);
        outln!("  gamma   {:>18.10}", report.gamma);
        outln!("  vega    {:>18.6}  per vol point", report.vega_per_vol_point);
        outln!("  theta   {:>18.6}  per day", report.theta_per_day);
    })
}

/// Validates the flags and prices. The pricer refuses NaN, infinities and
/// out-of-range values itself; days are checked here because a calculator
/// has no use for a negative time to expiry.
pub fn compute(args: &Args) -> Result<Report, Box<dyn std::error::Error>> {
    if !(0.0..=DAYS_MAX).contains(&args.days) {
        return Err(format!("--days must be a number between 0 and {DAYS_MAX}, got {}", args.days).into());
    }
    let (kind, kind_name) = match args.kind {
        Kind::Call => (OptionKind::Call, "call"),
        Kind::Put => (OptionKind::Put, "put"),
    };
    let years = years_from_days(args.days);
    let inputs = OptionInputs {
        kind,
        spot: args.spot,
        strike: args.strike,
        volatility: args.vol,
        rate: args.rate,
        years_to_expiry: years,
    };
    let result = greeks(&inputs).map_err(|error| format!("invalid input: {error}"))?;
    Ok(Report {
        kind: kind_name,
        spot: args.spot,
        strike: args.strike,
        vol: args.vol,
        rate: args.rate,
        days: args.days,
        years,
        price: result.price,
        delta: result.delta,
        gamma: result.gamma,
        vega_per_vol_point: result.vega_per_vol_point,
        theta_per_day: result.theta_per_day,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(kind: Kind, spot: f64, strike: f64, vol: f64, days: f64) -> Args {
        Args { kind, spot, strike, vol, rate: 0.1, days, json: false }
    }

    #[test]
    fn prices_the_textbook_example() {
        let report = compute(&args(Kind::Call, 42.0, 40.0, 0.2, 182.0)).unwrap();
        assert!((report.price - 4.7531749689).abs() < 1e-9);
        assert!((report.theta_per_day + 0.0124990372).abs() < 1e-9);
        let put = compute(&args(Kind::Put, 42.0, 40.0, 0.2, 182.0)).unwrap();
        assert!((put.delta + 0.2209007632).abs() < 1e-9);
    }

    #[test]
    fn refuses_bad_flags_with_clear_messages() {
        let message = |args: Args| compute(&args).unwrap_err().to_string();
        assert!(message(args(Kind::Call, -1.0, 40.0, 0.2, 30.0)).contains("spot must be a positive"));
        assert!(message(args(Kind::Call, 42.0, 0.0, 0.2, 30.0)).contains("strike must be a positive"));
        assert!(message(args(Kind::Put, 42.0, 40.0, -0.2, 30.0)).contains("volatility must be"));
        assert!(message(args(Kind::Put, 42.0, 40.0, f64::NAN, 30.0)).contains("volatility must be"));
        assert!(message(args(Kind::Put, 42.0, 40.0, 0.2, -1.0)).contains("--days"));
        assert!(message(args(Kind::Put, 42.0, 40.0, 0.2, f64::NAN)).contains("--days"));
        assert!(
            message(Args { rate: f64::INFINITY, ..args(Kind::Call, 42.0, 40.0, 0.2, 1.0) }).contains("rate must be")
        );
    }
}
