//! Properties every Black-Scholes price must have, over wide random inputs:
//! put-call parity, monotonicity in spot and volatility, no-arbitrage bounds,
//! sane greeks, and conversions to `Decimal` that round the promised way.

use proptest::prelude::*;
use rust_decimal::Decimal;
use vanna_pricing::{OptionInputs, OptionKind, decimal_to_f64, greeks, price, to_decimal_down, to_decimal_up};

/// Slack for comparisons between two separately rounded prices: a few units in
/// the last place of the largest quantity involved.
fn slack(scale: f64) -> f64 {
    8.0 * f64::EPSILON * scale
}

fn market() -> impl Strategy<Value = (f64, f64, f64, f64, f64)> {
    (
        1.0f64..1e6,   // spot
        0.2f64..5.0,   // strike / spot
        0.0f64..3.0,   // volatility
        -0.05f64..0.2, // rate
        -0.1f64..5.0,  // years; negative is expired
    )
        .prop_map(|(spot, moneyness, volatility, rate, years)| (spot, spot * moneyness, volatility, rate, years))
}

fn inputs(kind: OptionKind, (spot, strike, volatility, rate, years): (f64, f64, f64, f64, f64)) -> OptionInputs {
    OptionInputs { kind, spot, strike, volatility, rate, years_to_expiry: years }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn put_call_parity(market in market()) {
        let (spot, strike, _, rate, years) = market;
        let call = price(&inputs(OptionKind::Call, market)).unwrap();
        let put = price(&inputs(OptionKind::Put, market)).unwrap();
        // Expired options are worth intrinsic: parity with an undiscounted strike.
        let discount = if years > 0.0 { libm::exp(-(rate * years)) } else { 1.0 };
        let forward_value = spot - strike * discount;
        prop_assert!(
            ((call - put) - forward_value).abs() <= slack(spot.max(strike)),
            "call {call} - put {put} = {} vs S - K·df = {forward_value}", call - put
        );
    }

    #[test]
    fn within_no_arbitrage_bounds(market in market()) {
        let (spot, strike, _, rate, years) = market;
        let discount = if years > 0.0 { libm::exp(-(rate * years)) } else { 1.0 };
        let strike_discounted = strike * discount;
        let call = price(&inputs(OptionKind::Call, market)).unwrap();
        let put = price(&inputs(OptionKind::Put, market)).unwrap();
        prop_assert!(call >= (spot - strike_discounted).max(0.0) && call <= spot, "call {call}");
        prop_assert!(put >= (strike_discounted - spot).max(0.0) && put <= strike_discounted, "put {put}");
    }

    #[test]
    fn monotone_in_spot(market in market(), bump in 1e-6f64..0.5) {
        let (spot, strike, ..) = market;
        let higher = (spot * (1.0 + bump), market.1, market.2, market.3, market.4);
        let tolerance = slack(higher.0 + strike);
        let call_low = price(&inputs(OptionKind::Call, market)).unwrap();
        let call_high = price(&inputs(OptionKind::Call, higher)).unwrap();
        prop_assert!(call_low <= call_high + tolerance, "call {call_low} > {call_high}");
        let put_low = price(&inputs(OptionKind::Put, market)).unwrap();
        let put_high = price(&inputs(OptionKind::Put, higher)).unwrap();
        prop_assert!(put_high <= put_low + tolerance, "put {put_high} > {put_low}");
    }

    #[test]
    fn monotone_in_volatility(market in market(), bump in 1e-6f64..1.0) {
        let (spot, strike, volatility, ..) = market;
        let higher = (spot, strike, volatility + bump, market.3, market.4);
        let tolerance = slack(spot + strike);
        for kind in [OptionKind::Call, OptionKind::Put] {
            let low = price(&inputs(kind, market)).unwrap();
            let high = price(&inputs(kind, higher)).unwrap();
            prop_assert!(low <= high + tolerance, "{kind:?} {low} > {high}");
        }
    }

    #[test]
    fn greeks_are_sane(market in market()) {
        let call = greeks(&inputs(OptionKind::Call, market)).unwrap();
        let put = greeks(&inputs(OptionKind::Put, market)).unwrap();
        prop_assert!((0.0..=1.0).contains(&call.delta) && (-1.0..=0.0).contains(&put.delta));
        prop_assert!((call.delta - put.delta - 1.0).abs() <= 4.0 * f64::EPSILON);
        prop_assert_eq!(call.gamma.to_bits(), put.gamma.to_bits());
        prop_assert_eq!(call.vega_per_vol_point.to_bits(), put.vega_per_vol_point.to_bits());
        prop_assert!(call.gamma >= 0.0 && call.vega_per_vol_point >= 0.0);
        prop_assert!(call.theta_per_day.is_finite() && put.theta_per_day.is_finite());
        prop_assert_eq!(call.price.to_bits(), price(&inputs(OptionKind::Call, market)).unwrap().to_bits());
    }

    #[test]
    fn decimal_roundings_bracket_the_value(value in -1e12f64..1e12, decimal_places in 0u32..=12) {
        let up = to_decimal_up(value, decimal_places).unwrap();
        let down = to_decimal_down(value, decimal_places).unwrap();
        // Correctly rounded conversion back is monotone, so it preserves the bracket.
        prop_assert!(decimal_to_f64(down) <= value && value <= decimal_to_f64(up));
        let step = Decimal::new(1, decimal_places);
        prop_assert!(up == down || up - down == step, "{down} .. {up}");
        prop_assert!(up.scale() == decimal_places && down.scale() == decimal_places);
    }
}
