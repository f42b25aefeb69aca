//! Identifier and value newtypes. Every value is an exact `Decimal` checked at
//! construction: positive prices, volatilities and log-moneyness in sane ranges,
//! bounded precision.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::error::OracleError;

/// Decimal places of an index price: the runtime's asset precision.
pub const PRICE_SCALE: u32 = 6;
/// Decimal places of a volatility or a log-moneyness.
pub const VOL_SCALE: u32 = 6;
/// Highest index price accepted, in USD; keeps TWAP sums far inside `Decimal`.
pub const MAX_INDEX_PRICE_USD: u64 = 1_000_000_000_000;
/// Longest decimal string accepted; bounds parsing work.
pub const MAX_DECIMAL_CHARS: usize = 40;
/// Most reporters (validators) in one stake table.
pub const MAX_REPORTERS: usize = 1_024;

/// Volatility bounds (annualised fraction): 0.1% to 1000%. Anything outside is a
/// broken feed, not a market.
pub fn vol_min() -> Decimal {
    Decimal::new(1, 3)
}
pub fn vol_max() -> Decimal {
    Decimal::from(10)
}
/// |ln(K/S)| bound: strikes from about 1/55 to 55 times spot.
pub fn log_moneyness_max() -> Decimal {
    Decimal::from(4)
}

/// Parses a canonical decimal string: digits with an optional single `.`, and a
/// leading `-` only where `signed`. No `+`, exponent or spaces, so two different
/// strings never mean the same signed value by accident.
pub fn parse_decimal(text: &str, field: &'static str, signed: bool) -> Result<Decimal, OracleError> {
    let bad = || OracleError::MalformedNumber { field, text: text.chars().take(MAX_DECIMAL_CHARS).collect() };
    if text.len() > MAX_DECIMAL_CHARS {
        return Err(bad());
    }
    let digits = match text.strip_prefix('-') {
        Some(rest) if signed => rest,
        _ => text,
    };
    if digits.is_empty() || digits.starts_with('.') || digits.ends_with('.') {
        return Err(bad());
    }
    let mut dots = 0;
    for byte in digits.bytes() {
        match byte {
            b'0'..=b'9' => {}
            b'.' => dots += 1,
            _ => return Err(bad()),
        }
    }
    if dots > 1 {
        return Err(bad());
    }
    Decimal::from_str(text).map_err(|_| bad())
}

fn check_scale(value: Decimal, max: u32, field: &'static str) -> Result<Decimal, OracleError> {
    let value = value.normalize();
    if value.scale() > max {
        return Err(OracleError::OutOfRange { field, value: value.to_string() });
    }
    Ok(value)
}

/// A validator's operator account address (first 20 bytes of SHA-256 of its
/// compressed public key), the same as the runtime's `Address`.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ReporterId(pub [u8; 20]);

impl ReporterId {
    pub fn as_bytes(&self) -> &[u8; 20] {
        &self.0
    }
}

impl fmt::Display for ReporterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{}", hex::encode(self.0))
    }
}

impl fmt::Debug for ReporterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// An underlying symbol: 2 to 10 ASCII capital letters, as the runtime lists them.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Underlying(String);

/// Lookups by symbol: `Underlying` orders exactly as its `String` does.
impl std::borrow::Borrow<str> for Underlying {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl Underlying {
    pub fn new(symbol: &str) -> Result<Self, OracleError> {
        let ok = (2..=10).contains(&symbol.len()) && symbol.bytes().all(|b| b.is_ascii_uppercase());
        if !ok {
            return Err(OracleError::BadUnderlying(symbol.chars().take(16).collect()));
        }
        Ok(Underlying(symbol.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Underlying {
    type Error = OracleError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Underlying::new(&value)
    }
}

impl From<Underlying> for String {
    fn from(value: Underlying) -> String {
        value.0
    }
}

impl fmt::Display for Underlying {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A spot index price in USD: positive, at most [`PRICE_SCALE`] decimals, at most
/// [`MAX_INDEX_PRICE_USD`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "Decimal", into = "Decimal")]
pub struct IndexPrice(Decimal);

impl IndexPrice {
    pub fn new(value: Decimal) -> Result<Self, OracleError> {
        if value <= Decimal::ZERO || value > Decimal::from(MAX_INDEX_PRICE_USD) {
            return Err(OracleError::OutOfRange { field: "spot", value: value.to_string() });
        }
        Ok(IndexPrice(check_scale(value, PRICE_SCALE, "spot")?))
    }

    pub fn parse(text: &str) -> Result<Self, OracleError> {
        Self::new(parse_decimal(text, "spot", false)?)
    }

    pub fn value(self) -> Decimal {
        self.0
    }
}

impl TryFrom<Decimal> for IndexPrice {
    type Error = OracleError;
    fn try_from(value: Decimal) -> Result<Self, Self::Error> {
        IndexPrice::new(value)
    }
}

impl From<IndexPrice> for Decimal {
    fn from(value: IndexPrice) -> Decimal {
        value.0
    }
}

impl fmt::Display for IndexPrice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An annualised implied volatility as a fraction (0.55 = 55%), within
/// [`vol_min`]..=[`vol_max`], at most [`VOL_SCALE`] decimals.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "Decimal", into = "Decimal")]
pub struct Vol(Decimal);

impl Vol {
    pub fn new(value: Decimal) -> Result<Self, OracleError> {
        if value < vol_min() || value > vol_max() {
            return Err(OracleError::OutOfRange { field: "vol", value: value.to_string() });
        }
        Ok(Vol(check_scale(value, VOL_SCALE, "vol")?))
    }

    pub fn parse(text: &str) -> Result<Self, OracleError> {
        Self::new(parse_decimal(text, "vol", false)?)
    }

    pub fn value(self) -> Decimal {
        self.0
    }
}

impl TryFrom<Decimal> for Vol {
    type Error = OracleError;
    fn try_from(value: Decimal) -> Result<Self, Self::Error> {
        Vol::new(value)
    }
}

impl From<Vol> for Decimal {
    fn from(value: Vol) -> Decimal {
        value.0
    }
}

impl fmt::Display for Vol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// ln(K/S), strike over spot index, within ±[`log_moneyness_max`], at most
/// [`VOL_SCALE`] decimals.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "Decimal", into = "Decimal")]
pub struct LogMoneyness(Decimal);

impl LogMoneyness {
    pub fn new(value: Decimal) -> Result<Self, OracleError> {
        if value.abs() > log_moneyness_max() {
            return Err(OracleError::OutOfRange { field: "log_moneyness", value: value.to_string() });
        }
        Ok(LogMoneyness(check_scale(value, VOL_SCALE, "log_moneyness")?))
    }

    pub fn parse(text: &str) -> Result<Self, OracleError> {
        Self::new(parse_decimal(text, "log_moneyness", true)?)
    }

    pub fn value(self) -> Decimal {
        self.0
    }
}

impl TryFrom<Decimal> for LogMoneyness {
    type Error = OracleError;
    fn try_from(value: Decimal) -> Result<Self, Self::Error> {
        LogMoneyness::new(value)
    }
}

impl From<LogMoneyness> for Decimal {
    fn from(value: LogMoneyness) -> Decimal {
        value.0
    }
}

/// Active stake per reporter, as the staking ledger gives it for this block.
/// Sorted by reporter, zero stakes dropped, no duplicates, bounded size.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StakeTable {
    entries: Vec<(ReporterId, u64)>,
    total: u128,
}

impl StakeTable {
    pub fn new(stakes: &[(ReporterId, u64)]) -> Result<Self, OracleError> {
        if stakes.len() > MAX_REPORTERS {
            return Err(OracleError::TooMany { what: "reporters", count: stakes.len(), max: MAX_REPORTERS });
        }
        let mut entries: Vec<(ReporterId, u64)> = stakes.iter().copied().filter(|(_, stake)| *stake > 0).collect();
        entries.sort_unstable_by_key(|(reporter, _)| *reporter);
        if let Some(pair) = entries.windows(2).find(|pair| pair[0].0 == pair[1].0) {
            return Err(OracleError::DuplicateReporter(pair[0].0));
        }
        // At most 1024 × u64::MAX: cannot overflow u128.
        let total = entries.iter().map(|(_, stake)| u128::from(*stake)).sum();
        Ok(StakeTable { entries, total })
    }

    pub fn stake_of(&self, reporter: &ReporterId) -> u64 {
        self.entries.binary_search_by_key(reporter, |(id, _)| *id).map_or(0, |index| self.entries[index].1)
    }

    pub fn total(&self) -> u128 {
        self.total
    }
}

/// Whether `covered` is strictly more than two thirds of `total`.
pub fn is_supermajority(covered: u128, total: u128) -> bool {
    // covered ≤ total ≤ 1024 × u64::MAX < 2^74, so ×3 cannot overflow.
    total > 0 && covered.saturating_mul(3) > total.saturating_mul(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_is_strict() {
        for bad in ["", ".", "1.", ".5", "+1", "1e5", "1.2.3", " 1", "--1", "-"] {
            assert!(parse_decimal(bad, "x", true).is_err(), "{bad:?} must be refused");
        }
        assert!(parse_decimal("-1", "x", false).is_err());
        assert_eq!(parse_decimal("-0.25", "x", true).unwrap(), Decimal::new(-25, 2));
        assert!(parse_decimal(&"1".repeat(41), "x", false).is_err());
    }

    #[test]
    fn value_ranges() {
        assert!(IndexPrice::parse("0").is_err());
        assert!(IndexPrice::parse("0.0000001").is_err());
        assert!(IndexPrice::parse("1000000000001").is_err());
        assert_eq!(IndexPrice::parse("65000.500000").unwrap().value(), Decimal::new(650005, 1));
        assert!(Vol::parse("0.0009").is_err());
        assert!(Vol::parse("10.000001").is_err());
        assert!(Vol::parse("0.55").is_ok());
        assert!(LogMoneyness::parse("-4.000001").is_err());
        assert!(LogMoneyness::parse("-4").is_ok());
        assert!(Underlying::new("btc").is_err());
        assert!(Underlying::new("B").is_err());
        assert!(Underlying::new("BTC").is_ok());
    }

    #[test]
    fn stake_table_refuses_duplicates_and_sums() {
        let a = ReporterId([1; 20]);
        let b = ReporterId([2; 20]);
        assert_eq!(StakeTable::new(&[(a, 1), (b, 2), (a, 3)]), Err(OracleError::DuplicateReporter(a)));
        let table = StakeTable::new(&[(b, 2), (a, u64::MAX), (ReporterId([3; 20]), 0)]).unwrap();
        assert_eq!(table.total(), u128::from(u64::MAX) + 2);
        assert_eq!(table.stake_of(&b), 2);
        assert_eq!(table.stake_of(&ReporterId([3; 20])), 0);
    }

    #[test]
    fn supermajority_is_strict() {
        assert!(!is_supermajority(2, 3));
        assert!(is_supermajority(3, 4));
        assert!(!is_supermajority(0, 0));
        assert!(is_supermajority(67, 100));
        assert!(!is_supermajority(66, 99));
    }
}
