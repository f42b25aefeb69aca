//! Exact conversions between `f64` and `Decimal`.
//!
//! A float result reaches state only rounded in a named direction, computed on
//! the float's exact binary value with integer arithmetic: the result is the
//! nearest multiple of `10^-dp` on the chosen side, whatever the platform.
//! Because rounding is on the exact value, `0.1_f64` (which is slightly above
//! one tenth) rounds up to `0.100001` at six places: the float is the quantity
//! we computed, and a requirement computed as `0.1000000000000000055…` is
//! honestly more than a tenth.

use rust_decimal::Decimal;

use crate::PricingError;

/// Most decimal places [`to_decimal_up`] and [`to_decimal_down`] produce. With a
/// 53-bit mantissa, `mantissa × 10^18` fits a `u128`.
pub const DECIMAL_PLACES_MAX: u32 = 18;

/// Decimal's 96-bit mantissa bound.
const DECIMAL_MANTISSA_LIMIT: u128 = 1 << 96;

/// `10^0 ..= 10^22`, every one exact in `f64`.
const POWERS_OF_TEN: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20,
    1e21, 1e22,
];

/// The smallest multiple of `10^-decimal_places` that is ≥ `value` (towards
/// +∞): for what an account must hold or pay (margin requirements, fees).
pub fn to_decimal_up(value: f64, decimal_places: u32) -> Result<Decimal, PricingError> {
    to_decimal_directed(value, decimal_places, true)
}

/// The largest multiple of `10^-decimal_places` that is ≤ `value` (towards
/// −∞): for what an account owns (the value of its positions, long or short).
pub fn to_decimal_down(value: f64, decimal_places: u32) -> Result<Decimal, PricingError> {
    to_decimal_directed(value, decimal_places, false)
}

/// The `f64` nearest to `value` (ties to even): exact when the decimal's
/// mantissa and power of ten are both exact in `f64` (one correctly rounded
/// division), otherwise through Rust's correctly rounded, pure-Rust parser.
pub fn decimal_to_f64(value: Decimal) -> f64 {
    let mantissa = value.mantissa();
    let scale = value.scale() as usize;
    if mantissa.unsigned_abs() <= 1 << 53 && scale < POWERS_OF_TEN.len() {
        // Through i64: the same exact integer, converted in one instruction.
        return mantissa as i64 as f64 / POWERS_OF_TEN[scale];
    }
    value.to_string().parse().expect("a Decimal's text is a valid float literal")
}

fn to_decimal_directed(value: f64, decimal_places: u32, towards_positive: bool) -> Result<Decimal, PricingError> {
    if !value.is_finite() {
        return Err(PricingError::NotFinite { value });
    }
    if decimal_places > DECIMAL_PLACES_MAX {
        return Err(PricingError::TooManyDecimalPlaces { decimal_places, max: DECIMAL_PLACES_MAX });
    }
    let bits = value.to_bits();
    let negative = bits >> 63 == 1;
    let biased_exponent = ((bits >> 52) & 0x7ff) as i32;
    let fraction = bits & ((1 << 52) - 1);
    // |value| = mantissa × 2^exponent exactly (subnormals have no hidden bit).
    let (mantissa, exponent) =
        if biased_exponent == 0 { (fraction, -1074) } else { (fraction | (1 << 52), biased_exponent - 1075) };
    // Rounding towards +∞ moves a positive magnitude away from zero, a negative one towards it.
    let away_from_zero = towards_positive != negative;
    let scaled = u128::from(mantissa) * 10u128.pow(decimal_places);
    let out_of_range = PricingError::OutOfDecimalRange { value, decimal_places };
    let magnitude = if exponent >= 0 {
        let shift = exponent as u32;
        if scaled.leading_zeros() <= shift {
            return Err(out_of_range);
        }
        scaled << shift
    } else {
        let shift = exponent.unsigned_abs();
        let (quotient, inexact) =
            if shift >= 128 { (0, scaled != 0) } else { (scaled >> shift, scaled & ((1u128 << shift) - 1) != 0) };
        quotient + u128::from(inexact && away_from_zero)
    };
    if magnitude >= DECIMAL_MANTISSA_LIMIT {
        return Err(out_of_range);
    }
    let signed = if negative { -(magnitude as i128) } else { magnitude as i128 };
    Decimal::try_from_i128_with_scale(signed, decimal_places).map_err(|_| out_of_range)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(text: &str) -> Decimal {
        text.parse().unwrap()
    }

    #[test]
    fn rounds_in_the_named_direction() {
        assert_eq!(to_decimal_up(1.5, 0).unwrap(), dec("2"));
        assert_eq!(to_decimal_down(1.5, 0).unwrap(), dec("1"));
        assert_eq!(to_decimal_up(-1.5, 0).unwrap(), dec("-1"));
        assert_eq!(to_decimal_down(-1.5, 0).unwrap(), dec("-2"));
        assert_eq!(to_decimal_up(2.0, 6).unwrap(), dec("2"));
        assert_eq!(to_decimal_down(2.0, 6).unwrap(), dec("2"));
        // 0.1 is 0.1000000000000000055… in binary: just above a tenth.
        assert_eq!(to_decimal_up(0.1, 6).unwrap(), dec("0.100001"));
        assert_eq!(to_decimal_down(0.1, 6).unwrap(), dec("0.1"));
        // 0.3 is 0.2999999999999999888…: just below.
        assert_eq!(to_decimal_up(0.3, 6).unwrap(), dec("0.3"));
        assert_eq!(to_decimal_down(0.3, 6).unwrap(), dec("0.299999"));
        assert_eq!(to_decimal_up(f64::MIN_POSITIVE / 4.0, 6).unwrap(), dec("0.000001"));
        assert_eq!(to_decimal_down(f64::MIN_POSITIVE / 4.0, 6).unwrap(), dec("0"));
        assert_eq!(to_decimal_down(-f64::MIN_POSITIVE, 6).unwrap(), dec("-0.000001"));
        assert_eq!(to_decimal_up(-0.0, 6).unwrap(), dec("0"));
        assert_eq!(to_decimal_up(1e20, 6).unwrap(), dec("100000000000000000000"));
    }

    #[test]
    fn refuses_what_does_not_fit() {
        assert!(matches!(to_decimal_up(f64::NAN, 6), Err(PricingError::NotFinite { .. })));
        assert!(matches!(to_decimal_down(f64::INFINITY, 6), Err(PricingError::NotFinite { .. })));
        assert!(matches!(to_decimal_up(1e30, 6), Err(PricingError::OutOfDecimalRange { .. })));
        assert!(matches!(to_decimal_up(f64::MAX, 0), Err(PricingError::OutOfDecimalRange { .. })));
        assert!(matches!(to_decimal_up(1.0, DECIMAL_PLACES_MAX + 1), Err(PricingError::TooManyDecimalPlaces { .. })));
    }

    #[test]
    fn decimal_to_f64_is_correctly_rounded() {
        assert_eq!(decimal_to_f64(dec("0.1")), 0.1);
        assert_eq!(decimal_to_f64(dec("97250.5")), 97_250.5);
        assert_eq!(decimal_to_f64(dec("-2500.000001")), -2_500.000_001);
        // Beyond the fast path: 28 significant digits.
        assert_eq!(decimal_to_f64(dec("1.234567890123456789012345678")), 1.234_567_890_123_456_8);
        assert_eq!(decimal_to_f64(Decimal::MAX), 7.922_816_251_426_434e28);
    }
}
