//! Black-Scholes for European options without dividends:
//!
//! ```text
//! d1 = (ln(S/K) + r·T) / (σ√T) + σ√T/2        d2 = d1 − σ√T
//! call = S·N(d1) − K·e^(−rT)·N(d2)            put = K·e^(−rT)·N(−d2) − S·N(−d1)
//! ```
//!
//! Each formula is written once, in one order of operations, with the put
//! computed from its own terms rather than through put-call parity, so that a
//! deep in-the-money put does not lose its digits to a cancellation.
//!
//! Edge cases, each the limit of the formulas so that nothing jumps:
//! * expired (`T ≤ 0`): intrinsic value `max(S−K, 0)` or `max(K−S, 0)`; delta
//!   ±1 in the money, 0 out of it, ±1/2 at the money; gamma, vega, theta 0.
//! * vanishing `σ√T` (below [`SIGMA_SQRT_T_MIN`]): the limit σ → 0, the
//!   discounted forward intrinsic `max(S − K·e^(−rT), 0)`; d1 and d2 become
//!   ±∞ (or 0 exactly at the forward), so delta is 1, 0 or 1/2 and theta is the
//!   carry of the strike; gamma is 0 (its true limit at the forward is infinite).
//! * deep in or out of the money: `N` is computed with `erfc`, which keeps full
//!   relative precision in both tails, and prices are clamped into their
//!   no-arbitrage bounds to absorb the last-bit rounding of `S·N(d1) − K·…`.

use crate::PricingError;

/// ACT/365: a year is 365 days whatever the calendar says.
pub const DAYS_PER_YEAR: f64 = 365.0;
/// Milliseconds in an ACT/365 year.
pub const MS_PER_YEAR: f64 = 31_536_000_000.0;
/// Largest spot or strike accepted; far above any listed underlying, and small
/// enough that no intermediate product overflows.
pub const SPOT_STRIKE_MAX: f64 = 1e15;
/// Largest volatility accepted (10 000 %).
pub const VOLATILITY_MAX: f64 = 100.0;
/// Largest absolute rate accepted (100 % a year).
pub const RATE_ABS_MAX: f64 = 1.0;
/// Longest time to expiry accepted, in years.
pub const YEARS_MAX: f64 = 100.0;
/// Below this `σ√T` the option is priced at its zero-volatility limit: dividing
/// by it would overflow gamma, and the price differs from the limit by less
/// than `S · 4e-11`.
const SIGMA_SQRT_T_MIN: f64 = 1e-10;
/// 1/√2, for `N(x) = erfc(−x/√2) / 2`.
const FRAC_1_SQRT_2: f64 = std::f64::consts::FRAC_1_SQRT_2;
/// 1/√(2π), for the normal density.
const FRAC_1_SQRT_2PI: f64 = 0.398_942_280_401_432_7;

/// Call or put.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OptionKind {
    Call,
    Put,
}

/// What a price depends on. See the crate docs for units.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OptionInputs {
    pub kind: OptionKind,
    /// Spot price of the underlying, > 0.
    pub spot: f64,
    /// Strike, > 0, in the same unit as `spot`.
    pub strike: f64,
    /// Annualised volatility, ≥ 0 (0.6 = 60 %).
    pub volatility: f64,
    /// Continuously compounded annual rate (0.05 = 5 %), may be negative.
    pub rate: f64,
    /// ACT/365 years until expiry; zero or negative means expired.
    pub years_to_expiry: f64,
}

/// Price and sensitivities, per one unit of underlying.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Greeks {
    pub price: f64,
    /// ∂price/∂spot.
    pub delta: f64,
    /// ∂²price/∂spot².
    pub gamma: f64,
    /// Change of price for +0.01 of volatility.
    pub vega_per_vol_point: f64,
    /// Change of price as one calendar day passes (annual theta / 365).
    pub theta_per_day: f64,
}

impl OptionInputs {
    /// Refuses NaN, infinities, non-positive spot or strike, negative
    /// volatility, and values beyond the stated limits.
    pub fn validate(&self) -> Result<(), PricingError> {
        let series = SeriesPricer::new(self.kind, self.strike, self.rate, self.years_to_expiry)?;
        series.at_spot(self.spot)?;
        check_volatility(self.volatility)
    }
}

/// ACT/365 years in `days` calendar days.
pub fn years_from_days(days: f64) -> f64 {
    days / DAYS_PER_YEAR
}

/// ACT/365 years from `now_ms` to `expiry_ms` (Unix milliseconds); negative
/// once expired. Exact integer subtraction first, so only one rounding occurs.
pub fn years_between_ms(now_ms: u64, expiry_ms: u64) -> f64 {
    let difference_ms = i128::from(expiry_ms) - i128::from(now_ms);
    difference_ms as f64 / MS_PER_YEAR
}

/// Standard normal cumulative distribution, accurate in both tails.
pub fn normal_cdf(x: f64) -> f64 {
    0.5 * libm::erfc(-x * FRAC_1_SQRT_2)
}

/// Standard normal density.
pub fn normal_pdf(x: f64) -> f64 {
    libm::exp(-0.5 * x * x) * FRAC_1_SQRT_2PI
}

/// The price alone: what margin tables need, without the greeks' extra work.
pub fn price(inputs: &OptionInputs) -> Result<f64, PricingError> {
    SeriesPricer::new(inputs.kind, inputs.strike, inputs.rate, inputs.years_to_expiry)?
        .at_spot(inputs.spot)?
        .price(inputs.volatility)
}

/// Price, delta, gamma, vega and theta.
pub fn greeks(inputs: &OptionInputs) -> Result<Greeks, PricingError> {
    SeriesPricer::new(inputs.kind, inputs.strike, inputs.rate, inputs.years_to_expiry)?
        .at_spot(inputs.spot)?
        .greeks(inputs.volatility)
}

fn check_volatility(volatility: f64) -> Result<(), PricingError> {
    // `contains` is false for NaN, which fails every comparison.
    if !(0.0..=VOLATILITY_MAX).contains(&volatility) {
        return Err(PricingError::Volatility { value: volatility, max: VOLATILITY_MAX });
    }
    Ok(())
}

/// One series (kind, strike, rate, time) priced at many spots and
/// volatilities: the work that depends on the series alone (`√T`, the
/// discounted strike) is done once. [`price`] and [`greeks`] go through the
/// same steps, so a price from a `SeriesPricer` has the very same bits.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SeriesPricer {
    kind: OptionKind,
    strike: f64,
    rate: f64,
    years: f64,
    sqrt_years: f64,
    /// K·e^(−rT); K itself once expired.
    strike_discounted: f64,
}

/// A [`SeriesPricer`] at one spot: adds `ln(S/K) + r·T`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SpotPricer {
    series: SeriesPricer,
    spot: f64,
    log_forward_moneyness: f64,
}

impl SeriesPricer {
    pub fn new(kind: OptionKind, strike: f64, rate: f64, years_to_expiry: f64) -> Result<Self, PricingError> {
        if !(strike > 0.0 && strike <= SPOT_STRIKE_MAX) {
            return Err(PricingError::Strike { value: strike, max: SPOT_STRIKE_MAX });
        }
        if !(-RATE_ABS_MAX..=RATE_ABS_MAX).contains(&rate) {
            return Err(PricingError::Rate { value: rate, max: RATE_ABS_MAX });
        }
        // Any finite past is fine (the option is expired); the future is bounded.
        if !(years_to_expiry.is_finite() && years_to_expiry <= YEARS_MAX) {
            return Err(PricingError::YearsToExpiry { value: years_to_expiry, max: YEARS_MAX });
        }
        let expired = years_to_expiry <= 0.0;
        let years = if expired { 0.0 } else { years_to_expiry };
        Ok(SeriesPricer {
            kind,
            strike,
            rate,
            years,
            sqrt_years: years.sqrt(),
            strike_discounted: if expired { strike } else { strike * libm::exp(-(rate * years)) },
        })
    }

    fn expired(&self) -> bool {
        self.years == 0.0
    }

    pub fn at_spot(&self, spot: f64) -> Result<SpotPricer, PricingError> {
        if !(spot > 0.0 && spot <= SPOT_STRIKE_MAX) {
            return Err(PricingError::Spot { value: spot, max: SPOT_STRIKE_MAX });
        }
        let log_forward_moneyness =
            if self.expired() { 0.0 } else { libm::log(spot / self.strike) + self.rate * self.years };
        Ok(SpotPricer { series: *self, spot, log_forward_moneyness })
    }
}

/// d1 and d2 at one volatility.
struct Terms {
    d1: f64,
    d2: f64,
    sigma_sqrt_t: f64,
    zero_volatility_limit: bool,
}

impl SpotPricer {
    pub fn price(&self, volatility: f64) -> Result<f64, PricingError> {
        check_volatility(volatility)?;
        if self.series.expired() {
            return Ok(self.intrinsic());
        }
        Ok(self.live_price(&self.terms(volatility)))
    }

    pub fn greeks(&self, volatility: f64) -> Result<Greeks, PricingError> {
        check_volatility(volatility)?;
        if self.series.expired() {
            return Ok(self.expired_greeks());
        }
        let terms = self.terms(volatility);
        let series = &self.series;
        let price = self.live_price(&terms);
        let density = normal_pdf(terms.d1);
        let (delta, carry) = match series.kind {
            OptionKind::Call => {
                (normal_cdf(terms.d1), -(series.rate * series.strike_discounted * normal_cdf(terms.d2)))
            }
            OptionKind::Put => (-normal_cdf(-terms.d1), series.rate * series.strike_discounted * normal_cdf(-terms.d2)),
        };
        let gamma = if terms.zero_volatility_limit { 0.0 } else { density / (self.spot * terms.sigma_sqrt_t) };
        let vega = self.spot * density * series.sqrt_years;
        // −S·φ(d1)·σ/(2√T): time decay of the optionality; `carry` is the strike's.
        let decay = -(self.spot * density * volatility) / (2.0 * series.sqrt_years);
        Ok(Greeks {
            price,
            delta,
            gamma,
            vega_per_vol_point: vega / 100.0,
            theta_per_day: (decay + carry) / DAYS_PER_YEAR,
        })
    }

    fn terms(&self, volatility: f64) -> Terms {
        let sigma_sqrt_t = volatility * self.series.sqrt_years;
        let zero_volatility_limit = sigma_sqrt_t < SIGMA_SQRT_T_MIN;
        let (d1, d2) = if zero_volatility_limit {
            let limit = if self.log_forward_moneyness > 0.0 {
                f64::INFINITY
            } else if self.log_forward_moneyness < 0.0 {
                f64::NEG_INFINITY
            } else {
                0.0
            };
            (limit, limit)
        } else {
            let d1 = self.log_forward_moneyness / sigma_sqrt_t + 0.5 * sigma_sqrt_t;
            (d1, d1 - sigma_sqrt_t)
        };
        Terms { d1, d2, sigma_sqrt_t, zero_volatility_limit }
    }

    /// The formula, clamped into the no-arbitrage bounds
    /// (call: `[max(S − K·e^(−rT), 0), S]`, put: `[max(K·e^(−rT) − S, 0), K·e^(−rT)]`).
    fn live_price(&self, terms: &Terms) -> f64 {
        let spot = self.spot;
        let strike_discounted = self.series.strike_discounted;
        match self.series.kind {
            OptionKind::Call => {
                let value = spot * normal_cdf(terms.d1) - strike_discounted * normal_cdf(terms.d2);
                value.max((spot - strike_discounted).max(0.0)).min(spot)
            }
            OptionKind::Put => {
                let value = strike_discounted * normal_cdf(-terms.d2) - spot * normal_cdf(-terms.d1);
                value.max((strike_discounted - spot).max(0.0)).min(strike_discounted)
            }
        }
    }

    /// `max(S−K, 0)` or `max(K−S, 0)`: the value at expiry.
    fn intrinsic(&self) -> f64 {
        let (spot, strike) = (self.spot, self.series.strike);
        match self.series.kind {
            OptionKind::Call => (spot - strike).max(0.0),
            OptionKind::Put => (strike - spot).max(0.0),
        }
    }

    fn expired_greeks(&self) -> Greeks {
        let (spot, strike) = (self.spot, self.series.strike);
        let call_delta = if spot > strike {
            1.0
        } else if spot < strike {
            0.0
        } else {
            0.5
        };
        let delta = match self.series.kind {
            OptionKind::Call => call_delta,
            OptionKind::Put => call_delta - 1.0,
        };
        Greeks { price: self.intrinsic(), delta, gamma: 0.0, vega_per_vol_point: 0.0, theta_per_day: 0.0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(kind: OptionKind, spot: f64, strike: f64, volatility: f64, years: f64) -> OptionInputs {
        OptionInputs { kind, spot, strike, volatility, rate: 0.05, years_to_expiry: years }
    }

    #[test]
    fn refuses_bad_inputs() {
        let good = inputs(OptionKind::Call, 100.0, 100.0, 0.5, 0.25);
        assert!(good.validate().is_ok());
        let cases = [
            OptionInputs { spot: 0.0, ..good },
            OptionInputs { spot: -1.0, ..good },
            OptionInputs { spot: f64::NAN, ..good },
            OptionInputs { spot: f64::INFINITY, ..good },
            OptionInputs { strike: 0.0, ..good },
            OptionInputs { strike: f64::NAN, ..good },
            OptionInputs { volatility: -0.01, ..good },
            OptionInputs { volatility: f64::NAN, ..good },
            OptionInputs { volatility: f64::INFINITY, ..good },
            OptionInputs { rate: f64::NAN, ..good },
            OptionInputs { rate: 2.0, ..good },
            OptionInputs { years_to_expiry: f64::NAN, ..good },
            OptionInputs { years_to_expiry: f64::INFINITY, ..good },
            OptionInputs { years_to_expiry: f64::NEG_INFINITY, ..good },
        ];
        for bad in cases {
            assert!(price(&bad).is_err(), "{bad:?} must be refused");
            assert!(greeks(&bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn expired_options_are_worth_intrinsic() {
        for years in [0.0, -0.5] {
            let call = greeks(&inputs(OptionKind::Call, 110.0, 100.0, 0.5, years)).unwrap();
            assert_eq!(call.price, 10.0);
            assert_eq!(call.delta, 1.0);
            assert_eq!((call.gamma, call.vega_per_vol_point, call.theta_per_day), (0.0, 0.0, 0.0));
            let put = greeks(&inputs(OptionKind::Put, 110.0, 100.0, 0.5, years)).unwrap();
            assert_eq!((put.price, put.delta), (0.0, 0.0));
            let at_the_money = greeks(&inputs(OptionKind::Put, 100.0, 100.0, 0.5, years)).unwrap();
            assert_eq!((at_the_money.price, at_the_money.delta), (0.0, -0.5));
        }
    }

    #[test]
    fn zero_volatility_is_the_discounted_forward_intrinsic() {
        let years = 0.5;
        let discount = libm::exp(-0.05 * years);
        let call = greeks(&inputs(OptionKind::Call, 100.0, 90.0, 0.0, years)).unwrap();
        assert_eq!(call.price, 100.0 - 90.0 * discount);
        assert_eq!((call.delta, call.gamma, call.vega_per_vol_point), (1.0, 0.0, 0.0));
        assert_eq!(call.theta_per_day, -(0.05 * (90.0 * discount)) / DAYS_PER_YEAR);
        let put = greeks(&inputs(OptionKind::Put, 100.0, 90.0, 0.0, years)).unwrap();
        assert_eq!((put.price, put.delta, put.theta_per_day), (0.0, 0.0, 0.0));
        let put_in_the_money = greeks(&inputs(OptionKind::Put, 80.0, 90.0, 0.0, years)).unwrap();
        assert_eq!(put_in_the_money.price, 90.0 * discount - 80.0);
        assert_eq!(put_in_the_money.delta, -1.0);
        // A vanishing but positive volatility agrees with the limit.
        let tiny = price(&inputs(OptionKind::Call, 100.0, 90.0, 1e-12, years)).unwrap();
        assert_eq!(tiny, call.price);
    }

    #[test]
    fn extreme_moneyness_stays_finite_and_bounded() {
        for (spot, strike) in [(1.0, 1e9), (1e9, 1.0), (1e-6, 1e15), (1e15, 1e-6)] {
            for kind in [OptionKind::Call, OptionKind::Put] {
                for volatility in [0.0, 1e-9, 0.3, 5.0, VOLATILITY_MAX] {
                    for years in [1e-9, 0.01, 1.0, YEARS_MAX] {
                        let result = greeks(&inputs(kind, spot, strike, volatility, years)).unwrap();
                        let values =
                            [result.price, result.delta, result.gamma, result.vega_per_vol_point, result.theta_per_day];
                        assert!(
                            values.iter().all(|v| v.is_finite()),
                            "{kind:?} {spot} {strike} {volatility} {years}: {result:?}"
                        );
                        assert!(result.price >= 0.0 && result.gamma >= 0.0 && result.vega_per_vol_point >= 0.0);
                        assert!((-1.0..=1.0).contains(&result.delta));
                    }
                }
            }
        }
    }

    #[test]
    fn year_fractions() {
        assert_eq!(years_from_days(365.0), 1.0);
        assert_eq!(years_between_ms(1_000, 1_000 + 31_536_000_000), 1.0);
        assert_eq!(years_between_ms(31_536_000_000, 0), -1.0);
        assert_eq!(years_between_ms(u64::MAX, u64::MAX), 0.0);
    }

    #[test]
    fn normal_tails_keep_relative_precision() {
        assert_eq!(normal_cdf(0.0), 0.5);
        // N(-10) = 7.6198530241605e-24; a `1 - N(10)` implementation would give 0.
        let tail = normal_cdf(-10.0);
        assert!((tail / 7.619_853_024_160_527e-24 - 1.0).abs() < 1e-14);
        assert_eq!(normal_cdf(f64::INFINITY), 1.0);
        assert_eq!(normal_cdf(f64::NEG_INFINITY), 0.0);
        assert_eq!(normal_pdf(f64::INFINITY), 0.0);
    }
}
