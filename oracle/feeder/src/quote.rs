//! What a source returns, the `Source` trait, and helpers shared by sources:
//! the feeder's expiry schedule, smile evaluation and number conversion.

use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};
use vanna_oracle::Underlying;
use vanna_oracle::types::PRICE_SCALE;

use crate::error::FeederError;

pub const MS_PER_DAY: u64 = 86_400_000;
/// Options expire at 08:00 UTC, as the runtime lists them.
pub const EXPIRY_TIME_OF_DAY_MS: u64 = 8 * 3_600_000;

/// One source's view of one underlying.
#[derive(Clone, Debug, PartialEq)]
pub struct Quote {
    /// Spot index in USD, at most six decimals; checked positive by the combiner.
    pub spot: Decimal,
    pub observed_at_ms: u64,
    /// Volatility smiles per expiry; empty when the source has none.
    pub smiles: Vec<RawSmile>,
}

/// (log-moneyness ln(K/S), annualised vol) points of one expiry, increasing in k.
#[derive(Clone, Debug, PartialEq)]
pub struct RawSmile {
    pub expiry_ms: u64,
    pub points: Vec<(f64, f64)>,
}

impl RawSmile {
    /// Linear in vol between points, flat beyond: the chain's own rule.
    pub fn vol_at(&self, k: f64) -> Option<f64> {
        let first = self.points.first()?;
        let last = self.points.last()?;
        if k <= first.0 {
            return Some(first.1);
        }
        if k >= last.0 {
            return Some(last.1);
        }
        let upper = self.points.partition_point(|(node, _)| *node <= k);
        let (k0, v0) = self.points[upper - 1];
        let (k1, v1) = self.points[upper];
        Some(v0 + (v1 - v0) * ((k - k0) / (k1 - k0)))
    }
}

/// A price source. Sources may do IO; every failure is an error the feeder
/// logs and survives.
/// `Send` so the node can run its feeder on a thread of its own.
pub trait Source: Send {
    /// Short name for logs.
    fn name(&self) -> &str;
    fn quote(&mut self, underlying: &Underlying, now_ms: u64) -> Result<Quote, FeederError>;
}

/// The expiries the synthetic and CSV sources quote: the next two daily
/// expiries and the next four Fridays, at 08:00 UTC, strictly after `now_ms`.
pub fn standard_expiries(now_ms: u64) -> Vec<u64> {
    let today = now_ms / MS_PER_DAY;
    let mut expiries = Vec::new();
    for day in today..today + 30 {
        let at = day * MS_PER_DAY + EXPIRY_TIME_OF_DAY_MS;
        if at <= now_ms {
            continue;
        }
        // 1970-01-01 was a Thursday: day % 7 == 1 is a Friday.
        let daily = expiries.len() < 2;
        let friday = day % 7 == 1;
        let fridays = expiries.iter().filter(|e| (*e / MS_PER_DAY) % 7 == 1).count();
        if daily || (friday && fridays < 4) {
            expiries.push(at);
        }
    }
    expiries
}

/// A finite f64 as a Decimal rounded half-to-even to `decimals`; None when not
/// finite or out of Decimal's range.
pub fn decimal_from_f64(value: f64, decimals: u32) -> Option<Decimal> {
    if !value.is_finite() {
        return None;
    }
    // `Display` for f64 never uses an exponent and round-trips exactly.
    let exact = Decimal::from_str(&value.to_string()).ok()?;
    Some(exact.round_dp_with_strategy(decimals, RoundingStrategy::MidpointNearestEven).normalize())
}

/// A decimal string from an exchange ("63817.26000000") as a price with six
/// decimals; exchange strings are not canonical, so this is lenient on form and
/// strict on value.
pub fn price_from_text(text: &str, source_name: &'static str) -> Result<Decimal, FeederError> {
    let value = Decimal::from_str(text.trim()).map_err(|_| FeederError::Parse {
        source_name,
        reason: format!("not a decimal: {:?}", text.chars().take(40).collect::<String>()),
    })?;
    if value <= Decimal::ZERO {
        return Err(FeederError::Nonsense { source_name, reason: format!("non-positive price {value}") });
    }
    Ok(value.round_dp_with_strategy(PRICE_SCALE, RoundingStrategy::MidpointNearestEven).normalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_has_dailies_and_fridays_at_eight() {
        // Day 19 900 is a Wednesday; 12:00 UTC, after that day's expiry.
        let now = 19_900 * MS_PER_DAY + 12 * 3_600_000;
        let expiries = standard_expiries(now);
        assert_eq!(expiries.len(), 5, "{expiries:?}");
        assert!(expiries.iter().all(|e| e % MS_PER_DAY == EXPIRY_TIME_OF_DAY_MS && *e > now));
        assert_eq!(expiries[0], 19_901 * MS_PER_DAY + EXPIRY_TIME_OF_DAY_MS);
        // The second daily is Friday 28 June, which is also the first Friday.
        assert_eq!((expiries[1] / MS_PER_DAY) % 7, 1);
        assert!(expiries.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn smile_interpolation_is_linear_and_flat() {
        let smile = RawSmile { expiry_ms: 1, points: vec![(-0.5, 0.8), (0.0, 0.6), (0.5, 0.7)] };
        assert_eq!(smile.vol_at(-1.0), Some(0.8));
        assert_eq!(smile.vol_at(1.0), Some(0.7));
        assert!((smile.vol_at(0.25).unwrap() - 0.65).abs() < 1e-12);
        assert_eq!(RawSmile { expiry_ms: 1, points: vec![] }.vol_at(0.0), None);
    }

    #[test]
    fn numbers_convert_strictly() {
        assert_eq!(decimal_from_f64(63817.2612345, 6), Some("63817.261234".parse().unwrap()));
        assert_eq!(decimal_from_f64(f64::NAN, 6), None);
        assert_eq!(decimal_from_f64(1e300, 6), None);
        assert_eq!(price_from_text("4.00000200", "t").unwrap(), "4.000002".parse().unwrap());
        assert!(matches!(price_from_text("0", "t"), Err(FeederError::Nonsense { .. })));
        assert!(matches!(price_from_text("abc", "t"), Err(FeederError::Parse { .. })));
    }
}
