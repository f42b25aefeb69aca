//! Money and size newtypes. Every value is an exact `Decimal`; constructors refuse
//! negative or over-precise values, and every rounding names its direction so
//! that it can be checked to go against the account, never the system.

use std::fmt;
use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

use crate::error::{Field, TxError};

/// Decimal places of both assets (USD quote asset and the VANNA staking token).
pub const ASSET_SCALE: u32 = 6;
/// Largest value of any amount, price or quantity: a trillion units. Keeps
/// every product the runtime forms far inside `Decimal`'s range and every
/// amount's micro-unit form inside a `u64`.
pub const MAX_VALUE_UNITS: u64 = 1_000_000_000_000;

/// Longest decimal string accepted from a client; bounds parsing work.
pub const MAX_DECIMAL_CHARS: usize = 40;

/// Parses a canonical decimal string: digits with an optional single `.`,
/// no sign, no exponent, no spaces. Keeps parsing strict so that two different
/// strings never mean the same signed value by accident.
pub fn parse_decimal(text: &str, field: Field) -> Result<Decimal, TxError> {
    let bad = || TxError::MalformedNumber { field, text: text.chars().take(MAX_DECIMAL_CHARS).collect() };
    if text.is_empty() || text.len() > MAX_DECIMAL_CHARS {
        return Err(bad());
    }
    let mut dots = 0;
    for byte in text.bytes() {
        match byte {
            b'0'..=b'9' => {}
            b'.' => dots += 1,
            _ => return Err(bad()),
        }
    }
    if dots > 1 || text.starts_with('.') || text.ends_with('.') {
        return Err(bad());
    }
    Decimal::from_str(text).map_err(|_| bad())
}

/// At most six decimals and at most `MAX_VALUE_UNITS`.
fn check_bounds(value: Decimal, field: Field) -> Result<(), TxError> {
    if value.normalize().scale() > ASSET_SCALE {
        return Err(TxError::TooPrecise { field, max_decimals: ASSET_SCALE });
    }
    if value > Decimal::from(MAX_VALUE_UNITS) {
        return Err(TxError::TooLarge { field, max: Decimal::from(MAX_VALUE_UNITS) });
    }
    Ok(())
}

/// A non-negative amount of an asset with at most [`ASSET_SCALE`] decimal places.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "Decimal", into = "Decimal")]
pub struct Amount(Decimal);

impl Amount {
    pub const ZERO: Amount = Amount(Decimal::ZERO);

    /// Refuses negative values and more than six decimal places.
    pub fn new(value: Decimal, field: Field) -> Result<Self, TxError> {
        if value.is_sign_negative() && !value.is_zero() {
            return Err(TxError::Negative { field });
        }
        check_bounds(value, field)?;
        Ok(Amount(value.normalize()))
    }

    pub fn parse(text: &str, field: Field) -> Result<Self, TxError> {
        Self::new(parse_decimal(text, field)?, field)
    }

    /// Rounds a computed non-negative value up to the asset's precision: used for
    /// what an account pays or must hold (fees, collateral).
    pub fn round_up(value: Decimal) -> Self {
        assert!(!value.is_sign_negative() || value.is_zero(), "round_up of a negative value");
        Amount(value.round_dp_with_strategy(ASSET_SCALE, RoundingStrategy::ToPositiveInfinity).normalize())
    }

    /// Rounds a computed non-negative value down: used for what an account receives.
    pub fn round_down(value: Decimal) -> Self {
        assert!(!value.is_sign_negative() || value.is_zero(), "round_down of a negative value");
        Amount(value.round_dp_with_strategy(ASSET_SCALE, RoundingStrategy::ToZero).normalize())
    }

    pub fn value(self) -> Decimal {
        self.0
    }

    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }

    /// Addition; amounts are bounded far below Decimal's range by genesis supply,
    /// so overflow is a broken invariant, not an input error.
    pub fn plus(self, other: Amount) -> Amount {
        Amount(self.0.checked_add(other.0).expect("amount overflow").normalize())
    }

    /// Subtraction that refuses to go below zero.
    pub fn minus(self, other: Amount) -> Option<Amount> {
        (self.0 >= other.0).then(|| Amount((self.0 - other.0).normalize()))
    }

    /// Multiplies by a non-negative whole count (lots, contracts).
    pub fn times(self, count: u64) -> Amount {
        Amount(self.0.checked_mul(Decimal::from(count)).expect("amount overflow").normalize())
    }

    /// The amount in millionths: the integer form the staking ledger counts in.
    pub fn to_micro(self) -> u64 {
        let micro = self.0 * Decimal::from(1_000_000u32);
        u64::try_from(micro).expect("amounts are bounded by the genesis supply")
    }

    pub fn from_micro(micro: u64) -> Amount {
        Amount(Decimal::new(micro as i64, ASSET_SCALE).normalize())
    }

    /// The smaller of two amounts.
    pub fn min(self, other: Amount) -> Amount {
        if self <= other { self } else { other }
    }
}

impl TryFrom<Decimal> for Amount {
    type Error = TxError;
    fn try_from(value: Decimal) -> Result<Self, Self::Error> {
        Amount::new(value, Field::Amount)
    }
}

impl From<Amount> for Decimal {
    fn from(amount: Amount) -> Decimal {
        amount.0
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A strictly positive decimal newtype with at most six decimal places.
macro_rules! positive_decimal {
    ($(#[$doc:meta])* $name:ident, $field:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "Decimal", into = "Decimal")]
        pub struct $name(Decimal);

        impl $name {
            pub fn new(value: Decimal, field: Field) -> Result<Self, TxError> {
                if value <= Decimal::ZERO {
                    return Err(TxError::NotPositive { field });
                }
                check_bounds(value, field)?;
                Ok($name(value.normalize()))
            }

            pub fn parse(text: &str, field: Field) -> Result<Self, TxError> {
                Self::new(parse_decimal(text, field)?, field)
            }

            pub fn value(self) -> Decimal {
                self.0
            }
        }

        impl TryFrom<Decimal> for $name {
            type Error = TxError;
            fn try_from(value: Decimal) -> Result<Self, Self::Error> {
                $name::new(value, $field)
            }
        }

        impl From<$name> for Decimal {
            fn from(value: $name) -> Decimal {
                value.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

positive_decimal!(
    /// A strictly positive price in USD (per contract for options, per unit for
    /// an index or strike), with at most six decimal places.
    Price,
    Field::Price
);

positive_decimal!(
    /// A strictly positive number of contracts with at most six decimal places.
    Quantity,
    Field::Quantity
);

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(text: &str) -> Decimal {
        text.parse().unwrap()
    }

    #[test]
    fn parse_is_strict() {
        for bad in ["", ".", "1.", ".5", "-1", "+1", "1e5", "1.2.3", " 1", "1_000", "０"] {
            assert!(parse_decimal(bad, Field::Amount).is_err(), "{bad:?} must be refused");
        }
        assert_eq!(parse_decimal("0012.50", Field::Amount).unwrap(), dec("12.5"));
        let long = "1".repeat(MAX_DECIMAL_CHARS + 1);
        assert!(parse_decimal(&long, Field::Amount).is_err());
    }

    #[test]
    fn amount_refuses_excess_precision_and_negatives() {
        assert!(Amount::parse("1.000001", Field::Amount).is_ok());
        assert!(matches!(Amount::parse("1.0000001", Field::Amount), Err(TxError::TooPrecise { max_decimals: 6, .. })));
        assert!(matches!(Amount::new(dec("-1"), Field::Amount), Err(TxError::Negative { .. })));
        assert_eq!(Amount::parse("1.5000000", Field::Amount).unwrap(), Amount::parse("1.5", Field::Amount).unwrap());
    }

    #[test]
    fn rounding_directions() {
        assert_eq!(Amount::round_up(dec("0.0000001")).value(), dec("0.000001"));
        assert_eq!(Amount::round_down(dec("0.0000019")).value(), dec("0.000001"));
        assert_eq!(Amount::round_up(dec("2")).value(), dec("2"));
    }

    #[test]
    fn amount_arithmetic() {
        let a = Amount::parse("10", Field::Amount).unwrap();
        let b = Amount::parse("2.5", Field::Amount).unwrap();
        assert_eq!(a.minus(b).unwrap().value(), dec("7.5"));
        assert!(b.minus(a).is_none());
        assert_eq!(b.times(4).value(), dec("10"));
        assert_eq!(a.min(b), b);
    }

    #[test]
    fn values_are_bounded() {
        let max = MAX_VALUE_UNITS.to_string();
        assert!(Amount::parse(&max, Field::Amount).is_ok());
        assert!(Price::parse(&max, Field::Price).is_ok());
        let over = format!("{max}.000001");
        assert!(matches!(Amount::parse(&over, Field::Amount), Err(TxError::TooLarge { .. })));
        assert!(matches!(Quantity::parse(&over, Field::Quantity), Err(TxError::TooLarge { .. })));
        assert!(matches!(Amount::parse("99999999999999999999", Field::Amount), Err(TxError::TooLarge { .. })));
        assert_eq!(Amount::parse(&max, Field::Amount).unwrap().to_micro(), MAX_VALUE_UNITS * 1_000_000);
    }

    #[test]
    fn micro_units_round_trip() {
        let amount = Amount::parse("1234.000567", Field::Amount).unwrap();
        assert_eq!(amount.to_micro(), 1_234_000_567);
        assert_eq!(Amount::from_micro(1_234_000_567), amount);
        assert_eq!(Amount::from_micro(0), Amount::ZERO);
    }

    #[test]
    fn price_and_quantity_must_be_positive() {
        assert!(matches!(Price::parse("0", Field::Price), Err(TxError::NotPositive { .. })));
        assert!(matches!(Quantity::parse("0.0", Field::Quantity), Err(TxError::NotPositive { .. })));
        assert!(Price::parse("0.000001", Field::Price).is_ok());
    }
}
