//! Replays recorded prices from a CSV file.
//!
//! Format (UTF-8, one row per line, `#` starts a comment line, blank lines
//! skipped):
//!
//! ```text
//! time_ms,underlying,spot,atm_vol
//! 0,BTC,65000.5,0.55
//! 1000,ETH,3500,
//! ```
//!
//! - `time_ms`: milliseconds since the replay started (the first quote),
//!   non-decreasing down the file;
//! - `underlying`: the symbol, as the chain lists it;
//! - `spot`: a positive decimal, USD;
//! - `atm_vol`: annualised at-the-money vol as a fraction, or empty for none;
//!   it is quoted flat across strikes for the feeder's standard expiries.
//!
//! At time t after the start, each underlying's quote is its last row with
//! `time_ms` ≤ t, observed at start + `time_ms`; past the last row the quote
//! ages and the combiner drops it as stale.

use std::path::Path;

use rust_decimal::Decimal;
use vanna_oracle::types::parse_decimal;
use vanna_oracle::{IndexPrice, Underlying, Vol};

use crate::error::FeederError;
use crate::quote::{Quote, RawSmile, Source, standard_expiries};
use vanna_oracle::surface::decimal_to_f64;

pub const HEADER: &str = "time_ms,underlying,spot,atm_vol";
/// Largest file replayed; keeps memory bounded (about 40 bytes a row).
pub const MAX_CSV_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Clone, Debug, PartialEq)]
pub struct CsvRow {
    pub time_ms: u64,
    pub underlying: Underlying,
    pub spot: Decimal,
    pub atm_vol: Option<Decimal>,
}

#[derive(Debug)]
pub struct CsvReplaySource {
    rows: Vec<CsvRow>,
    started_ms: Option<u64>,
}

/// Parses the whole text; any bad row refuses the file, naming its line.
pub fn parse_csv(text: &str) -> Result<Vec<CsvRow>, FeederError> {
    let mut rows: Vec<CsvRow> = Vec::new();
    let mut header_seen = false;
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let bad = |reason: String| FeederError::Csv { line, reason };
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if !header_seen {
            if trimmed != HEADER {
                return Err(bad(format!("expected the header {HEADER:?}")));
            }
            header_seen = true;
            continue;
        }
        let fields: Vec<&str> = trimmed.split(',').map(str::trim).collect();
        let [time, underlying, spot, atm_vol] = fields.as_slice() else {
            return Err(bad(format!("expected 4 fields, found {}", fields.len())));
        };
        let time_ms: u64 = time.parse().map_err(|_| bad(format!("bad time_ms {time:?}")))?;
        if rows.last().is_some_and(|last| last.time_ms > time_ms) {
            return Err(bad("time_ms goes backwards".into()));
        }
        let underlying = Underlying::new(underlying).map_err(|e| bad(e.to_string()))?;
        let spot = IndexPrice::parse(spot).map_err(|e| bad(e.to_string()))?.value();
        let atm_vol = if atm_vol.is_empty() {
            None
        } else {
            let value = parse_decimal(atm_vol, "atm_vol", false).map_err(|e| bad(e.to_string()))?;
            Some(Vol::new(value).map_err(|e| bad(e.to_string()))?.value())
        };
        rows.push(CsvRow { time_ms, underlying, spot, atm_vol });
    }
    if !header_seen {
        return Err(FeederError::Csv { line: 0, reason: "empty file".into() });
    }
    Ok(rows)
}

impl CsvReplaySource {
    pub fn from_rows(rows: Vec<CsvRow>) -> Self {
        CsvReplaySource { rows, started_ms: None }
    }

    pub fn open(path: &Path) -> Result<Self, FeederError> {
        let size = std::fs::metadata(path)
            .map_err(|source| FeederError::File { path: path.display().to_string(), source })?
            .len();
        if size > MAX_CSV_BYTES {
            return Err(FeederError::Config(format!("{} is {size} bytes, more than {MAX_CSV_BYTES}", path.display())));
        }
        Ok(Self::from_rows(parse_csv(&crate::feeder::read_file(path)?)?))
    }
}

impl Source for CsvReplaySource {
    fn name(&self) -> &str {
        "csv"
    }

    fn quote(&mut self, underlying: &Underlying, now_ms: u64) -> Result<Quote, FeederError> {
        let started = *self.started_ms.get_or_insert(now_ms);
        let elapsed = now_ms.saturating_sub(started);
        let row = self
            .rows
            .iter()
            .take_while(|row| row.time_ms <= elapsed)
            .filter(|row| &row.underlying == underlying)
            .last()
            .ok_or_else(|| FeederError::NoData(underlying.to_string()))?;
        let smiles = match row.atm_vol {
            Some(vol) => standard_expiries(now_ms)
                .into_iter()
                .map(|expiry_ms| RawSmile { expiry_ms, points: vec![(0.0, decimal_to_f64(vol))] })
                .collect(),
            None => Vec::new(),
        };
        Ok(Quote { spot: row.spot, observed_at_ms: started + row.time_ms, smiles })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_path() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/replay.csv")
    }

    #[test]
    fn replays_the_sample() {
        let mut source = CsvReplaySource::open(&sample_path()).unwrap();
        let btc = Underlying::new("BTC").unwrap();
        let eth = Underlying::new("ETH").unwrap();
        let start = 1_700_000_000_000;
        let first = source.quote(&btc, start).unwrap();
        assert_eq!(first.spot, "65000.5".parse().unwrap());
        assert_eq!(first.observed_at_ms, start);
        assert!(!first.smiles.is_empty());
        let later = source.quote(&btc, start + 2_500).unwrap();
        assert_eq!(later.spot, "64100".parse().unwrap());
        assert_eq!(later.observed_at_ms, start + 2_000);
        let eth_quote = source.quote(&eth, start + 2_500).unwrap();
        assert!(eth_quote.smiles.is_empty(), "ETH rows carry no vol");
        assert!(matches!(source.quote(&Underlying::new("SOL").unwrap(), start), Err(FeederError::NoData(_))));
    }

    #[test]
    fn bad_files_name_the_line() {
        let cases = [
            ("spot,time\n", 1),
            ("time_ms,underlying,spot,atm_vol\n0,BTC,-5,\n", 2),
            ("time_ms,underlying,spot,atm_vol\n5,BTC,1,\n4,BTC,1,\n", 3),
            ("time_ms,underlying,spot,atm_vol\n# note\n0,btc,1,\n", 3),
            ("time_ms,underlying,spot,atm_vol\n0,BTC,1,90\n", 2),
            ("time_ms,underlying,spot,atm_vol\n0,BTC,1\n", 2),
        ];
        for (text, expected_line) in cases {
            match parse_csv(text) {
                Err(FeederError::Csv { line, .. }) => assert_eq!(line, expected_line, "{text:?}"),
                other => panic!("{text:?} gave {other:?}"),
            }
        }
    }
}
