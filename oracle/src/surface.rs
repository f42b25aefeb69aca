//! Implied-volatility surfaces and their interpolation.
//!
//! Coordinates: expiry time (ms since the Unix epoch) and log-moneyness
//! k = ln(K/S), strike over the spot index (spot-based: the chain keeps no
//! forward or rate curve; with zero rates, as Vanna prices, F = S).
//!
//! Interpolation, stated once:
//! - Within one expiry, linear in volatility across k between adjacent nodes
//!   (the smile points plus the at-the-money point k = 0), flat beyond the
//!   outermost nodes.
//! - Across expiries, at a fixed k: linear in total variance w = σ²·t, with t
//!   the time to each expiry, between the two listed expiries around the target;
//!   flat in volatility before the first and after the last listed expiry.
//!
//! [`VolSurface::vol`] evaluates this in f64 for margin with IEEE basic
//! operations and `libm` only (no `f64::ln`, no fused multiply-add), so every
//! machine gets the same bits. Aggregation uses the exact `Decimal` form,
//! [`ExpirySmile::vol_at`].

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

use crate::error::OracleError;
use crate::types::{LogMoneyness, VOL_SCALE, Vol};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmilePoint {
    pub log_moneyness: LogMoneyness,
    pub vol: Vol,
}

/// One expiry's smile: the at-the-money volatility and points on either side.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpirySmile {
    expiry_ms: u64,
    atm_vol: Vol,
    smile: Vec<SmilePoint>,
}

impl ExpirySmile {
    /// Refuses points that are not strictly increasing in k or that sit at k = 0
    /// (that point is `atm_vol`), and more than `max_points` points.
    pub fn new(expiry_ms: u64, atm_vol: Vol, smile: Vec<SmilePoint>, max_points: usize) -> Result<Self, OracleError> {
        if smile.len() > max_points {
            return Err(OracleError::TooMany { what: "smile points", count: smile.len(), max: max_points });
        }
        let increasing = smile.windows(2).all(|pair| pair[0].log_moneyness < pair[1].log_moneyness);
        if !increasing || smile.iter().any(|p| p.log_moneyness.value().is_zero()) {
            return Err(OracleError::SmileNotIncreasing);
        }
        Ok(ExpirySmile { expiry_ms, atm_vol, smile })
    }

    pub fn expiry_ms(&self) -> u64 {
        self.expiry_ms
    }

    pub fn atm_vol(&self) -> Vol {
        self.atm_vol
    }

    pub fn smile(&self) -> &[SmilePoint] {
        &self.smile
    }

    /// All nodes in increasing k, the at-the-money point included.
    fn nodes(&self) -> Vec<(Decimal, Decimal)> {
        let mut nodes: Vec<(Decimal, Decimal)> =
            self.smile.iter().map(|p| (p.log_moneyness.value(), p.vol.value())).collect();
        let at = nodes.partition_point(|(k, _)| *k < Decimal::ZERO);
        nodes.insert(at, (Decimal::ZERO, self.atm_vol.value()));
        nodes
    }

    /// Exact volatility at log-moneyness `k`: linear in vol between nodes, flat
    /// beyond, rounded half-to-even to [`VOL_SCALE`] decimals. The result lies
    /// between two node values, so it is a valid [`Vol`].
    pub fn vol_at(&self, k: Decimal) -> Vol {
        let nodes = self.nodes();
        let first = nodes[0];
        let last = nodes[nodes.len() - 1];
        let value = if k <= first.0 {
            first.1
        } else if k >= last.0 {
            last.1
        } else {
            let upper = nodes.partition_point(|(node, _)| *node <= k);
            let (k0, v0) = nodes[upper - 1];
            let (k1, v1) = nodes[upper];
            // |k| ≤ 4 and vols ≤ 10 with six decimals: no overflow possible.
            v0 + (v1 - v0) * (k - k0) / (k1 - k0)
        };
        let rounded = value.round_dp_with_strategy(VOL_SCALE, RoundingStrategy::MidpointNearestEven);
        Vol::new(rounded).expect("an interpolated vol lies between two valid vols")
    }
}

/// A volatility surface: at least one expiry, expiries strictly increasing.
/// Keeps an f64 copy of its nodes for [`VolSurface::vol`]; serialized as its
/// expiries only, and rebuilt (and checked) from them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(into = "Vec<ExpirySmile>", try_from = "Vec<ExpirySmile>")]
pub struct VolSurface {
    expiries: Vec<ExpirySmile>,
    nodes_f64: Vec<ExpiryNodes>,
}

#[derive(Clone, Debug, PartialEq)]
struct ExpiryNodes {
    expiry_ms: u64,
    /// (k, vol) in increasing k.
    points: Vec<(f64, f64)>,
}

impl VolSurface {
    pub fn new(expiries: Vec<ExpirySmile>, max_expiries: usize) -> Result<Self, OracleError> {
        if expiries.is_empty() {
            return Err(OracleError::EmptySurface);
        }
        if expiries.len() > max_expiries {
            return Err(OracleError::TooMany { what: "expiries", count: expiries.len(), max: max_expiries });
        }
        if expiries.windows(2).any(|pair| pair[0].expiry_ms >= pair[1].expiry_ms) {
            return Err(OracleError::ExpiriesNotIncreasing);
        }
        let nodes_f64 = expiries
            .iter()
            .map(|smile| ExpiryNodes {
                expiry_ms: smile.expiry_ms,
                points: smile.nodes().into_iter().map(|(k, vol)| (decimal_to_f64(k), decimal_to_f64(vol))).collect(),
            })
            .collect();
        Ok(VolSurface { expiries, nodes_f64 })
    }

    pub fn expiries(&self) -> &[ExpirySmile] {
        &self.expiries
    }

    /// The smile listed for exactly this expiry, if any.
    pub fn expiry(&self, expiry_ms: u64) -> Option<&ExpirySmile> {
        self.expiries.iter().find(|smile| smile.expiry_ms == expiry_ms)
    }

    /// Implied volatility for an option expiring at `expiry_ms` with `strike`,
    /// evaluated at `now_ms` with the spot index `spot`; see the module comment
    /// for the interpolation. Bit-identical on every machine. A non-positive or
    /// non-finite strike or spot is evaluated at the money; an expiry at or
    /// before `now_ms` gets the first listed expiry's smile.
    pub fn vol(&self, now_ms: u64, expiry_ms: u64, strike: f64, spot: f64) -> f64 {
        let usable = |x: f64| x.is_finite() && x > 0.0;
        let k = if usable(strike) && usable(spot) { libm::log(strike / spot) } else { 0.0 };
        let nodes = &self.nodes_f64;
        let first = &nodes[0];
        let last = &nodes[nodes.len() - 1];
        if expiry_ms <= now_ms || expiry_ms <= first.expiry_ms {
            return smile_f64(&first.points, k);
        }
        if expiry_ms >= last.expiry_ms {
            return smile_f64(&last.points, k);
        }
        let upper = nodes.partition_point(|node| node.expiry_ms < expiry_ms);
        let (before, after) = (&nodes[upper - 1], &nodes[upper]);
        // Times to expiry in ms (exact in f64 below 2^53 ms); the nearer expiry
        // may already have passed, then it carries zero variance.
        let t = (expiry_ms - now_ms) as f64;
        let t0 = before.expiry_ms.saturating_sub(now_ms) as f64;
        let t1 = (after.expiry_ms - now_ms) as f64;
        let v0 = smile_f64(&before.points, k);
        let v1 = smile_f64(&after.points, k);
        let w0 = v0 * v0 * t0;
        let w1 = v1 * v1 * t1;
        let w = w0 + (w1 - w0) * ((t - t0) / (t1 - t0));
        libm::sqrt(w / t)
    }
}

impl TryFrom<Vec<ExpirySmile>> for VolSurface {
    type Error = OracleError;
    /// The number of expiries was bounded when the surface was first built
    /// from reports; this checks the rest (at least one, in order).
    fn try_from(expiries: Vec<ExpirySmile>) -> Result<Self, OracleError> {
        VolSurface::new(expiries, usize::MAX)
    }
}

impl From<VolSurface> for Vec<ExpirySmile> {
    fn from(surface: VolSurface) -> Self {
        surface.expiries
    }
}

/// Linear in vol between nodes, flat beyond.
fn smile_f64(points: &[(f64, f64)], k: f64) -> f64 {
    let (k_first, v_first) = points[0];
    let (k_last, v_last) = points[points.len() - 1];
    if k <= k_first {
        return v_first;
    }
    if k >= k_last {
        return v_last;
    }
    let upper = points.partition_point(|(node, _)| *node <= k);
    let (k0, v0) = points[upper - 1];
    let (k1, v1) = points[upper];
    v0 + (v1 - v0) * ((k - k0) / (k1 - k0))
}

/// Powers of ten as f64 literals: exact up to 1e22, and the same correctly
/// rounded constants everywhere beyond.
const POW10: [f64; 29] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20,
    1e21, 1e22, 1e23, 1e24, 1e25, 1e26, 1e27, 1e28,
];

/// Mantissa over a power of ten: one integer conversion and one division, both
/// correctly rounded by IEEE 754, so the same on every machine.
pub fn decimal_to_f64(value: Decimal) -> f64 {
    value.mantissa() as f64 / POW10[value.scale() as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vol(text: &str) -> Vol {
        Vol::parse(text).unwrap()
    }

    fn point(k: &str, v: &str) -> SmilePoint {
        SmilePoint { log_moneyness: LogMoneyness::parse(k).unwrap(), vol: vol(v) }
    }

    const DAY: u64 = 86_400_000;

    fn surface() -> VolSurface {
        let near = ExpirySmile::new(10 * DAY, vol("0.5"), vec![point("-0.5", "0.7"), point("0.5", "0.6")], 16).unwrap();
        let far = ExpirySmile::new(40 * DAY, vol("0.4"), vec![point("-0.2", "0.5")], 16).unwrap();
        VolSurface::new(vec![near, far], 16).unwrap()
    }

    #[test]
    fn smile_is_linear_in_vol_and_flat_beyond() {
        let s = surface();
        let near = &s.expiries()[0];
        let d = |t: &str| t.parse::<Decimal>().unwrap();
        assert_eq!(near.vol_at(d("0")), vol("0.5"));
        assert_eq!(near.vol_at(d("-0.25")), vol("0.6"));
        assert_eq!(near.vol_at(d("0.25")), vol("0.55"));
        assert_eq!(near.vol_at(d("-3")), vol("0.7"));
        assert_eq!(near.vol_at(d("3")), vol("0.6"));
        // 0.5 + 0.1 × 0.1/0.5 = 0.52; a third of the way rounds half-even.
        assert_eq!(near.vol_at(d("0.1")), vol("0.52"));
        assert_eq!(near.vol_at(d("0.5") / d("3")), vol("0.533333"));
    }

    #[test]
    fn f64_evaluation_matches_nodes_and_interpolates_total_variance() {
        let s = surface();
        let now = 0;
        assert_eq!(s.vol(now, 10 * DAY, 100.0, 100.0), 0.5);
        assert_eq!(s.vol(now, 40 * DAY, 100.0, 100.0), 0.4);
        // Before the first and after the last expiry: flat.
        assert_eq!(s.vol(now, DAY, 100.0, 100.0), 0.5);
        assert_eq!(s.vol(now, 400 * DAY, 100.0, 100.0), 0.4);
        // Flat beyond the outermost smile point.
        assert_eq!(s.vol(now, 10 * DAY, 1.0, 100.0), 0.7);
        // Halfway in time between 10 and 40 days at the money: w = (0.25×10 + 0.16×40)/2.
        let expected = libm::sqrt((0.25 * 10.0 + 0.16 * 40.0) / 2.0 / 25.0);
        let got = s.vol(now, 25 * DAY, 100.0, 100.0);
        assert!((got - expected).abs() < 1e-12, "{got} vs {expected}");
        assert!(got < 0.5 && got > 0.4);
        // Nonsense inputs are evaluated at the money, never NaN.
        assert_eq!(s.vol(now, 10 * DAY, f64::NAN, 100.0), 0.5);
        assert_eq!(s.vol(now, 10 * DAY, 100.0, -1.0), 0.5);
        // Expired first bracket: variance from zero.
        let v = s.vol(20 * DAY, 30 * DAY, 100.0, 100.0);
        assert!(v.is_finite() && v > 0.0);
    }

    #[test]
    fn evaluation_is_bit_stable() {
        // The result is exactly the stated formula in basic operations, step by
        // step: nothing fused, reordered or taken from the platform's libm.
        let s = surface();
        let got = s.vol(0, 25 * DAY, 110.0, 100.0);
        let k = libm::log(110.0 / 100.0);
        let v0 = 0.5 + (0.6 - 0.5) * ((k - 0.0) / (0.5 - 0.0));
        let v1 = 0.4;
        let w0 = v0 * v0 * (10.0 * DAY as f64);
        let w1 = v1 * v1 * (40.0 * DAY as f64);
        let t = 25.0 * DAY as f64;
        let w = w0 + (w1 - w0) * ((t - 10.0 * DAY as f64) / (30.0 * DAY as f64));
        assert_eq!(got.to_bits(), libm::sqrt(w / t).to_bits());
    }

    #[test]
    fn construction_refuses_bad_shapes() {
        assert_eq!(
            ExpirySmile::new(1, vol("0.5"), vec![point("0.1", "0.5"), point("-0.1", "0.5")], 16),
            Err(OracleError::SmileNotIncreasing)
        );
        assert_eq!(ExpirySmile::new(1, vol("0.5"), vec![point("0", "0.5")], 16), Err(OracleError::SmileNotIncreasing));
        assert!(matches!(
            ExpirySmile::new(1, vol("0.5"), vec![point("0.1", "0.5")], 0),
            Err(OracleError::TooMany { .. })
        ));
        let a = ExpirySmile::new(5, vol("0.5"), vec![], 16).unwrap();
        assert_eq!(VolSurface::new(vec![], 16), Err(OracleError::EmptySurface));
        assert_eq!(VolSurface::new(vec![a.clone(), a], 16), Err(OracleError::ExpiriesNotIncreasing));
    }

    #[test]
    fn decimal_conversion_is_exact_for_short_values() {
        assert_eq!(decimal_to_f64("0.55".parse().unwrap()), 0.55);
        assert_eq!(decimal_to_f64("-1.25".parse().unwrap()), -1.25);
        assert_eq!(decimal_to_f64(Decimal::from(65_000)), 65_000.0);
    }
}
