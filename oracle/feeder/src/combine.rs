//! Turning several sources' quotes for one underlying into one price report.
//!
//! A quote is dropped, with its reason logged, when its source failed, its
//! spot is not a valid index price, it is stale (observed more than
//! `max_source_age_ms` ago) or from the future (beyond `max_future_skew_ms`),
//! or its spot is more than `max_deviation_bps` away from the median of all
//! quotes left. The report's spot is the median of the rest (the mean of the
//! middle two for an even count), its observation time the oldest of theirs.
//! Its surface: for every future expiry any kept source quotes, at k = 0 and at
//! each grid node, the median over the sources quoting that expiry (each
//! evaluated linear in vol, flat beyond); a source smile with a vol outside
//! 0.1%..1000% or not finite is dropped whole.

use rust_decimal::{Decimal, RoundingStrategy};
use vanna_oracle::params::ReportLimits;
use vanna_oracle::surface::decimal_to_f64;
use vanna_oracle::types::{PRICE_SCALE, VOL_SCALE};
use vanna_oracle::{ExpirySmile, IndexPrice, LogMoneyness, PriceReport, SmilePoint, Underlying, Vol, VolSurface};

use crate::error::FeederError;
use crate::quote::{Quote, RawSmile, decimal_from_f64};

#[derive(Clone, Debug, PartialEq)]
pub struct CombineConfig {
    pub max_source_age_ms: u64,
    pub max_future_skew_ms: u64,
    pub max_deviation_bps: u32,
    /// Log-moneyness nodes besides 0: the chain's smile grid.
    pub smile_grid: Vec<Decimal>,
    pub limits: ReportLimits,
}

impl Default for CombineConfig {
    fn default() -> Self {
        let params = vanna_oracle::OracleParams::default();
        CombineConfig {
            max_source_age_ms: 5_000,
            max_future_skew_ms: 1_000,
            max_deviation_bps: 500,
            smile_grid: params.smile_grid,
            limits: params.limits,
        }
    }
}

/// One source's answer, named for the logs.
pub struct SourceResult {
    pub source: String,
    pub result: Result<Quote, FeederError>,
}

/// What was combined, for the feeder's output.
#[derive(Clone, Debug, PartialEq)]
pub struct Combined {
    pub report: PriceReport,
    pub sources_used: Vec<String>,
}

fn median_decimal(values: &mut [Decimal]) -> Option<Decimal> {
    values.sort_unstable();
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some(
            ((values[n / 2 - 1] + values[n / 2]) / Decimal::TWO)
                .round_dp_with_strategy(PRICE_SCALE, RoundingStrategy::MidpointNearestEven),
        ),
    }
}

fn median_f64(values: &mut [f64]) -> Option<f64> {
    values.sort_unstable_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

fn smile_is_sane(smile: &RawSmile) -> bool {
    !smile.points.is_empty()
        && smile.points.iter().all(|(k, vol)| k.is_finite() && vol.is_finite() && (0.001..=10.0).contains(vol))
}

pub fn combine(
    config: &CombineConfig,
    underlying: &Underlying,
    now_ms: u64,
    results: Vec<SourceResult>,
) -> Option<Combined> {
    let mut kept: Vec<(String, Quote)> = Vec::new();
    for SourceResult { source, result } in results {
        let quote = match result {
            Ok(quote) => quote,
            Err(error) => {
                tracing::warn!(%underlying, source = %source, %error, "source dropped: failed");
                continue;
            }
        };
        if let Err(error) = IndexPrice::new(quote.spot) {
            tracing::warn!(%underlying, source = %source, %error, "source dropped: spot is not a valid price");
            continue;
        }
        if now_ms.saturating_sub(quote.observed_at_ms) > config.max_source_age_ms {
            tracing::warn!(%underlying, source = %source, observed_at_ms = quote.observed_at_ms, now_ms, "source dropped: stale");
            continue;
        }
        if quote.observed_at_ms > now_ms.saturating_add(config.max_future_skew_ms) {
            tracing::warn!(%underlying, source = %source, observed_at_ms = quote.observed_at_ms, now_ms, "source dropped: from the future");
            continue;
        }
        kept.push((source, quote));
    }
    let mut spots: Vec<Decimal> = kept.iter().map(|(_, q)| q.spot).collect();
    let center = median_decimal(&mut spots)?;
    let bound = center * Decimal::from(config.max_deviation_bps) / Decimal::from(10_000);
    kept.retain(|(source, quote)| {
        let ok = (quote.spot - center).abs() <= bound;
        if !ok {
            tracing::warn!(%underlying, source = %source, spot = %quote.spot, median = %center, "source dropped: too far from the other sources");
        }
        ok
    });
    let mut spots: Vec<Decimal> = kept.iter().map(|(_, q)| q.spot).collect();
    let Some(spot) = median_decimal(&mut spots).and_then(|s| IndexPrice::new(s).ok()) else {
        tracing::warn!(%underlying, "no source left: nothing reported");
        return None;
    };
    let observed_at_ms = kept.iter().map(|(_, q)| q.observed_at_ms).min()?;
    let surface = combine_surface(config, underlying, now_ms, &kept);
    Some(Combined {
        report: PriceReport { underlying: underlying.clone(), spot, observed_at_ms, surface },
        sources_used: kept.iter().map(|(source, _)| source.clone()).collect(),
    })
}

fn combine_surface(
    config: &CombineConfig,
    underlying: &Underlying,
    now_ms: u64,
    kept: &[(String, Quote)],
) -> Option<VolSurface> {
    let mut smiles: Vec<&RawSmile> = Vec::new();
    for (source, quote) in kept {
        for smile in &quote.smiles {
            if smile.expiry_ms <= now_ms {
                continue;
            }
            if smile_is_sane(smile) {
                smiles.push(smile);
            } else {
                tracing::warn!(%underlying, source = %source, expiry_ms = smile.expiry_ms, "smile dropped: nonsense vol");
            }
        }
    }
    let mut expiries: Vec<u64> = smiles.iter().map(|s| s.expiry_ms).collect();
    expiries.sort_unstable();
    expiries.dedup();
    expiries.truncate(config.limits.max_expiries);
    let mut grid: Vec<Decimal> = config.smile_grid.clone();
    grid.truncate(config.limits.max_smile_points);
    let vol_at = |expiry_ms: u64, k: Decimal| -> Option<Vol> {
        let mut values: Vec<f64> =
            smiles.iter().filter(|s| s.expiry_ms == expiry_ms).filter_map(|s| s.vol_at(decimal_to_f64(k))).collect();
        Vol::new(decimal_from_f64(median_f64(&mut values)?, VOL_SCALE)?).ok()
    };
    let mut result = Vec::new();
    for expiry_ms in expiries {
        let Some(atm) = vol_at(expiry_ms, Decimal::ZERO) else { continue };
        let points: Option<Vec<SmilePoint>> = grid
            .iter()
            .map(|k| Some(SmilePoint { log_moneyness: LogMoneyness::new(*k).ok()?, vol: vol_at(expiry_ms, *k)? }))
            .collect();
        let Some(points) = points else { continue };
        if let Ok(smile) = ExpirySmile::new(expiry_ms, atm, points, config.limits.max_smile_points) {
            result.push(smile);
        }
    }
    VolSurface::new(result, config.limits.max_expiries).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn btc() -> Underlying {
        Underlying::new("BTC").unwrap()
    }

    fn quote(spot: &str, observed_at_ms: u64, smiles: Vec<RawSmile>) -> Quote {
        Quote { spot: spot.parse().unwrap(), observed_at_ms, smiles }
    }

    fn ok(source: &str, q: Quote) -> SourceResult {
        SourceResult { source: source.to_string(), result: Ok(q) }
    }

    #[test]
    fn median_of_sources_drops_outliers_failures_and_stale() {
        let now = 100_000;
        let results = vec![
            ok("a", quote("100", now, vec![])),
            ok("b", quote("101", now - 1_000, vec![])),
            ok("c", quote("102", now, vec![])),
            ok("outlier", quote("150", now, vec![])),
            ok("stale", quote("100.5", now - 10_000, vec![])),
            ok("future", quote("100.5", now + 10_000, vec![])),
            ok("zero", quote("0", now, vec![])),
            SourceResult { source: "down".into(), result: Err(FeederError::Http("timeout".into())) },
        ];
        let combined = combine(&CombineConfig::default(), &btc(), now, results).unwrap();
        assert_eq!(combined.report.spot, IndexPrice::parse("101").unwrap());
        assert_eq!(combined.sources_used, vec!["a", "b", "c"]);
        assert_eq!(combined.report.observed_at_ms, now - 1_000);
        assert_eq!(combined.report.surface, None);
    }

    #[test]
    fn even_count_takes_the_mean_of_the_middle_two() {
        let now = 1_000;
        let results = vec![ok("a", quote("100", now, vec![])), ok("b", quote("100.000001", now, vec![]))];
        let combined = combine(&CombineConfig::default(), &btc(), now, results).unwrap();
        // 100.0000005 rounds half-to-even to 100.
        assert_eq!(combined.report.spot, IndexPrice::parse("100").unwrap());
    }

    #[test]
    fn nothing_left_reports_nothing() {
        let results = vec![SourceResult { source: "down".into(), result: Err(FeederError::NoData("BTC".into())) }];
        assert_eq!(combine(&CombineConfig::default(), &btc(), 0, results), None);
        // Two sources 20% apart: neither can be trusted.
        let results = vec![ok("a", quote("100", 0, vec![])), ok("b", quote("120", 0, vec![]))];
        assert_eq!(combine(&CombineConfig::default(), &btc(), 0, results), None);
    }

    #[test]
    fn surfaces_combine_node_by_node_and_nonsense_smiles_are_dropped() {
        let now = 1_000;
        let expiry = 10_000_000;
        let flat = |vol: f64| RawSmile { expiry_ms: expiry, points: vec![(0.0, vol)] };
        let results = vec![
            ok("a", quote("100", now, vec![flat(0.5)])),
            ok("b", quote("100", now, vec![flat(0.7)])),
            ok(
                "c",
                quote("100", now, vec![flat(0.6), flat(f64::NAN), RawSmile { expiry_ms: 1, points: vec![(0.0, 0.9)] }]),
            ),
        ];
        let surface = combine(&CombineConfig::default(), &btc(), now, results).unwrap().report.surface.unwrap();
        assert_eq!(surface.expiries().len(), 1, "the expired smile is left out");
        let smile = &surface.expiries()[0];
        assert_eq!(smile.atm_vol(), Vol::parse("0.6").unwrap());
        assert_eq!(smile.smile().len(), CombineConfig::default().smile_grid.len());
        assert!(smile.smile().iter().all(|p| p.vol == Vol::parse("0.6").unwrap()));
    }
}
