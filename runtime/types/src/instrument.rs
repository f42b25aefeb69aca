//! Underlyings and option series. A series is European, cash-settled, and named
//! like `BTC-27DEC26-100000-C`: underlying, expiry date (08:00 UTC that day, as
//! options venues settle), strike in USD, and C or P.

use std::sync::Arc;

use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::error::{Field, TxError};
use crate::money::{ASSET_SCALE, Price, Quantity};

/// Expiry time of day: 08:00 UTC, in milliseconds after midnight.
pub const EXPIRY_TIME_OF_DAY_MS: u64 = 8 * 3_600_000;
const MS_PER_DAY: u64 = 86_400_000;
const MONTHS: [&str; 12] = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"];

/// What is traded on an underlying: tick and lot sizes, and the genesis index
/// price, where the oracle's index starts (the oracle moves it from then on;
/// read the live index with `State::index_price`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnderlyingSpec {
    pub symbol: String,
    pub tick_size: Price,
    pub lot_size: Quantity,
    pub index_price: Price,
}

impl UnderlyingSpec {
    /// Symbols are 2 to 10 upper-case letters; premium = price × quantity must fit
    /// the quote asset's six decimals, so tick and lot decimals add up to at most six.
    pub fn validate(&self) -> Result<(), TxError> {
        let symbol_ok = (2..=10).contains(&self.symbol.len()) && self.symbol.bytes().all(|b| b.is_ascii_uppercase());
        if !symbol_ok {
            return Err(TxError::UnknownUnderlying(self.symbol.clone()));
        }
        // A lot of at most one contract keeps every per-lot amount (premium,
        // settlement payout) within the bound of one price.
        if self.lot_size.value() > Decimal::ONE {
            return Err(TxError::TooLarge { field: Field::LotSize, max: Decimal::ONE });
        }
        if self.tick_size.value().scale() + self.lot_size.value().scale() > ASSET_SCALE {
            return Err(TxError::TooPrecise { field: Field::TickSize, max_decimals: ASSET_SCALE });
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum OptionKind {
    Call,
    Put,
}

/// One listed option series. Serialized as its name, and parsed back from it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct SeriesSpec {
    pub underlying: String,
    pub expiry_ms: u64,
    pub strike: Price,
    pub kind: OptionKind,
    /// The canonical name; equal to `format_name` of the fields. Shared:
    /// every event about the series carries it.
    pub name: Arc<str>,
}

impl SeriesSpec {
    /// Parses a canonical name. The day has no leading zero (`BTC-5JAN27-...`),
    /// the strike no trailing zeros, so every series has exactly one name.
    pub fn parse(name: &str) -> Result<Self, TxError> {
        let bad = |why| TxError::BadSeriesName { name: name.chars().take(64).collect(), why };
        if name.len() > 64 {
            return Err(bad("longer than 64 characters"));
        }
        let parts: Vec<&str> = name.split('-').collect();
        let [underlying, date, strike, kind] = parts[..] else {
            return Err(bad("expected UNDERLYING-DMMMYY-STRIKE-C|P"));
        };
        let kind = match kind {
            "C" => OptionKind::Call,
            "P" => OptionKind::Put,
            _ => return Err(bad("kind must be C or P")),
        };
        let expiry_ms = parse_date(date).ok_or_else(|| bad("date must look like 27DEC26"))?;
        let strike = Price::parse(strike, Field::Strike).map_err(|_| bad("strike must be a positive decimal"))?;
        let spec = SeriesSpec { underlying: underlying.to_string(), expiry_ms, strike, kind, name: Arc::from("") };
        let canonical = spec.format_name();
        if canonical != name {
            return Err(bad("not in canonical form (no leading zero in the day, no trailing zeros in the strike)"));
        }
        Ok(SeriesSpec { name: canonical.into(), ..spec })
    }

    pub fn format_name(&self) -> String {
        let days = self.expiry_ms / MS_PER_DAY;
        let (year, month, day) = civil_from_days(days as i64);
        let kind = match self.kind {
            OptionKind::Call => 'C',
            OptionKind::Put => 'P',
        };
        format!("{}-{}{}{:02}-{}-{}", self.underlying, day, MONTHS[(month - 1) as usize], year % 100, self.strike, kind)
    }

    /// Cash a short put must hold per contract: the strike.
    pub fn strike_value(&self) -> Decimal {
        self.strike.value()
    }
}

impl From<SeriesSpec> for String {
    fn from(spec: SeriesSpec) -> String {
        spec.name.to_string()
    }
}

impl TryFrom<String> for SeriesSpec {
    type Error = TxError;
    fn try_from(name: String) -> Result<Self, TxError> {
        SeriesSpec::parse(&name)
    }
}

impl fmt::Display for SeriesSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// `27DEC26` → milliseconds since the Unix epoch at 08:00 UTC that day (years 2000-2099).
fn parse_date(text: &str) -> Option<u64> {
    if !(6..=7).contains(&text.len()) || !text.is_ascii() {
        return None;
    }
    let (day, rest) = text.split_at(text.len() - 5);
    let (month, year) = rest.split_at(3);
    if day.starts_with('0') || !day.bytes().all(|b| b.is_ascii_digit()) || !year.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let day: u32 = day.parse().ok()?;
    let month = MONTHS.iter().position(|m| *m == month)? as u32 + 1;
    let year: i64 = 2000 + year.parse::<i64>().ok()?;
    if day == 0 || day > days_in_month(year, month) {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(days as u64 * MS_PER_DAY + EXPIRY_TIME_OF_DAY_MS)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = month as i64;
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day as i64 - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The inverse of `days_from_civil`.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_canonical_names() {
        let spec = SeriesSpec::parse("BTC-27DEC26-100000-C").unwrap();
        assert_eq!(spec.underlying, "BTC");
        assert_eq!(spec.kind, OptionKind::Call);
        assert_eq!(spec.strike.value(), Decimal::from(100_000));
        // 2026-12-27 08:00 UTC
        assert_eq!(spec.expiry_ms, 1_798_358_400_000);
        assert_eq!(spec.format_name(), "BTC-27DEC26-100000-C");
        let put = SeriesSpec::parse("ETH-5JAN27-2500.5-P").unwrap();
        assert_eq!(put.kind, OptionKind::Put);
        assert_eq!(&*put.name, "ETH-5JAN27-2500.5-P");
    }

    #[test]
    fn refuses_malformed_and_non_canonical_names() {
        for bad in [
            "BTC-27DEC26-100000",
            "BTC-27DEC26-100000-X",
            "BTC-05JAN27-100000-C",
            "BTC-27DEC26-100000.0-C",
            "BTC-31FEB27-100000-C",
            "BTC-27Dec26-100000-C",
            "BTC-27DEC26-0-C",
            "BTC-27DEC26--5-C",
            "",
        ] {
            assert!(SeriesSpec::parse(bad).is_err(), "{bad} must be refused");
        }
        assert!(SeriesSpec::parse(&"B".repeat(70)).is_err());
    }

    #[test]
    fn leap_years_and_calendar_round_trip() {
        assert!(SeriesSpec::parse("BTC-29FEB28-1-C").is_ok());
        assert!(SeriesSpec::parse("BTC-29FEB27-1-C").is_err());
        for days in [0i64, 10_957, 20_000, 47_482] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
