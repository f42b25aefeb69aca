//! HTTP JSON adapters for public exchange endpoints, written from their
//! documented response formats. Parsing is separate from fetching: the
//! `parse_*` functions are tested against fixtures kept in `fixtures/`, and the
//! sources fetch through [`HttpGet`], which [`UreqClient`] implements over
//! HTTPS (rustls, bundled web PKI roots).
//!
//! - Deribit (`/api/v2/public/get_index_price`, `.../get_book_summary_by_currency`
//!   with `kind=option`): spot index and, from each option's `mark_iv`, a smile
//!   per expiry (out-of-the-money options, k = ln(strike / index)). Vols are
//!   percentages there.
//! - Binance (`/api/v3/ticker/price`): last price of `<UNDERLYING>USDT`
//!   (USDT taken at par).
//! - Kraken (`/0/public/Ticker`): mid of best bid and ask of `<UNDERLYING>USD`
//!   (Kraken calls bitcoin XBT).

use std::collections::BTreeMap;
use std::time::Duration;

use rust_decimal::Decimal;
use serde::Deserialize;
use vanna_oracle::Underlying;

use crate::error::FeederError;
use crate::quote::{EXPIRY_TIME_OF_DAY_MS, MS_PER_DAY, Quote, RawSmile, Source, decimal_from_f64, price_from_text};

/// Largest response body read, in bytes; a full Deribit option summary is
/// about 1 MB.
pub const MAX_RESPONSE_BYTES: u64 = 8 * 1024 * 1024;
/// Volatility points outside this range (annualised fraction) are nonsense.
const VOL_RANGE: (f64, f64) = (0.001, 10.0);

pub trait HttpGet: Send {
    fn get(&self, url: &str) -> Result<String, FeederError>;
}

/// Blocking HTTPS client with a whole-request timeout.
#[derive(Debug)]
pub struct UreqClient {
    agent: ureq::Agent,
}

impl UreqClient {
    pub fn new(timeout: Duration) -> Self {
        let config = ureq::Agent::config_builder().timeout_global(Some(timeout)).build();
        UreqClient { agent: ureq::Agent::new_with_config(config) }
    }
}

impl HttpGet for UreqClient {
    fn get(&self, url: &str) -> Result<String, FeederError> {
        let mut response = self.agent.get(url).call().map_err(|e| FeederError::Http(format!("{url}: {e}")))?;
        response
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_BYTES)
            .read_to_string()
            .map_err(|e| FeederError::Http(format!("{url}: {e}")))
    }
}

fn parse_error(source_name: &'static str, reason: impl ToString) -> FeederError {
    FeederError::Parse { source_name, reason: reason.to_string() }
}

fn nonsense(source_name: &'static str, reason: impl ToString) -> FeederError {
    FeederError::Nonsense { source_name, reason: reason.to_string() }
}

// ---------------------------------------------------------------- Deribit

const DERIBIT: &str = "deribit";

#[derive(Deserialize)]
struct DeribitEnvelope<T> {
    result: Option<T>,
    error: Option<DeribitError>,
    #[serde(rename = "usOut")]
    us_out: Option<u64>,
}

#[derive(Deserialize)]
struct DeribitError {
    code: i64,
    message: String,
}

#[derive(Deserialize)]
struct DeribitIndex {
    index_price: f64,
}

#[derive(Deserialize)]
struct DeribitSummary {
    instrument_name: String,
    mark_iv: Option<f64>,
}

fn deribit_result<T: for<'de> Deserialize<'de>>(body: &str) -> Result<(T, Option<u64>), FeederError> {
    let envelope: DeribitEnvelope<T> = serde_json::from_str(body).map_err(|e| parse_error(DERIBIT, e))?;
    if let Some(error) = envelope.error {
        return Err(parse_error(DERIBIT, format!("error {}: {}", error.code, error.message)));
    }
    let result = envelope.result.ok_or_else(|| parse_error(DERIBIT, "no result"))?;
    Ok((result, envelope.us_out.map(|us| us / 1_000)))
}

/// `get_index_price`: the index and the server's reply time (`usOut`, µs).
pub fn parse_deribit_index(body: &str) -> Result<(Decimal, Option<u64>), FeederError> {
    let (index, observed_ms): (DeribitIndex, _) = deribit_result(body)?;
    let spot = decimal_from_f64(index.index_price, 6)
        .filter(|spot| *spot > Decimal::ZERO)
        .ok_or_else(|| nonsense(DERIBIT, format!("index price {}", index.index_price)))?;
    Ok((spot, observed_ms))
}

/// Deribit's option name `BTC-27DEC24-100000-C` (strikes may be `d`-decimal,
/// e.g. `XRP_USDC-27DEC24-0d625-C`): expiry at 08:00 UTC, strike, call.
pub fn parse_deribit_instrument(name: &str) -> Option<(u64, f64, bool)> {
    let mut parts = name.split('-');
    let (_, date, strike, kind) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let call = match kind {
        "C" => true,
        "P" => false,
        _ => return None,
    };
    let strike: f64 = strike.replace('d', ".").parse().ok()?;
    if !(strike.is_finite() && strike > 0.0) {
        return None;
    }
    Some((parse_expiry_date(date)?, strike, call))
}

const MONTHS: [&str; 12] = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"];

/// `27DEC24` or `5JAN25` → ms since the epoch at 08:00 UTC that day.
fn parse_expiry_date(text: &str) -> Option<u64> {
    if !(6..=7).contains(&text.len()) || !text.is_ascii() {
        return None;
    }
    let (day, rest) = text.split_at(text.len() - 5);
    let (month, year) = rest.split_at(3);
    let day: u32 = day.parse().ok()?;
    let month = MONTHS.iter().position(|m| *m == month)? as u32 + 1;
    let year: i64 = 2000 + year.parse::<i64>().ok()?;
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days_in_month = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if day == 0 || day > days_in_month {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = u64::try_from(era * 146_097 + doe - 719_468).ok()?;
    Some(days * MS_PER_DAY + EXPIRY_TIME_OF_DAY_MS)
}

/// `get_book_summary_by_currency?kind=option`: one smile per expiry after
/// `now_ms` from out-of-the-money options' `mark_iv`, k = ln(strike / spot).
/// Points with a missing or nonsense vol are skipped; an expiry needs points on
/// both sides of the money. A response with options but no usable point is
/// refused.
pub fn parse_deribit_book_summary(body: &str, spot: f64, now_ms: u64) -> Result<Vec<RawSmile>, FeederError> {
    let (summaries, _): (Vec<DeribitSummary>, _) = deribit_result(body)?;
    if !(spot.is_finite() && spot > 0.0) {
        return Err(nonsense(DERIBIT, format!("spot {spot}")));
    }
    let mut by_expiry: BTreeMap<u64, Vec<(f64, f64)>> = BTreeMap::new();
    let mut usable = 0usize;
    for summary in &summaries {
        let Some((expiry_ms, strike, call)) = parse_deribit_instrument(&summary.instrument_name) else {
            tracing::debug!(instrument = %summary.instrument_name, "deribit: unparsable instrument name skipped");
            continue;
        };
        let Some(vol) = summary.mark_iv.map(|iv| iv / 100.0) else { continue };
        if !(vol.is_finite() && (VOL_RANGE.0..=VOL_RANGE.1).contains(&vol)) {
            tracing::debug!(instrument = %summary.instrument_name, vol, "deribit: nonsense mark_iv skipped");
            continue;
        }
        usable += 1;
        // Out-of-the-money options carry the information; in-the-money ones
        // are dominated by intrinsic value.
        if expiry_ms <= now_ms || call != (strike >= spot) {
            continue;
        }
        by_expiry.entry(expiry_ms).or_default().push((libm::log(strike / spot), vol));
    }
    if !summaries.is_empty() && usable == 0 {
        return Err(nonsense(DERIBIT, "no option with a usable mark_iv"));
    }
    Ok(by_expiry
        .into_iter()
        .filter_map(|(expiry_ms, mut points)| {
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            points.dedup_by(|a, b| a.0 == b.0);
            let straddles = points.first()?.0 <= 0.0 && points.last()?.0 >= 0.0;
            straddles.then_some(RawSmile { expiry_ms, points })
        })
        .collect())
}

/// Spot and smiles from Deribit. A failing option summary leaves the spot.
pub struct DeribitSource {
    client: Box<dyn HttpGet>,
    base_url: String,
}

impl DeribitSource {
    pub fn new(client: Box<dyn HttpGet>, base_url: &str) -> Self {
        DeribitSource { client, base_url: base_url.trim_end_matches('/').to_string() }
    }
}

impl Source for DeribitSource {
    fn name(&self) -> &str {
        DERIBIT
    }

    fn quote(&mut self, underlying: &Underlying, now_ms: u64) -> Result<Quote, FeederError> {
        let index_name = format!("{}_usd", underlying.as_str().to_ascii_lowercase());
        let body =
            self.client.get(&format!("{}/api/v2/public/get_index_price?index_name={index_name}", self.base_url))?;
        let (spot, observed) = parse_deribit_index(&body)?;
        let spot_f64: f64 = spot.to_string().parse().unwrap_or(f64::NAN);
        let summary_url = format!(
            "{}/api/v2/public/get_book_summary_by_currency?currency={}&kind=option",
            self.base_url,
            underlying.as_str()
        );
        let smiles =
            match self.client.get(&summary_url).and_then(|body| parse_deribit_book_summary(&body, spot_f64, now_ms)) {
                Ok(smiles) => smiles,
                Err(error) => {
                    tracing::warn!(%underlying, %error, "deribit: option summary unusable, spot only");
                    Vec::new()
                }
            };
        Ok(Quote { spot, observed_at_ms: observed.unwrap_or(now_ms), smiles })
    }
}

// ---------------------------------------------------------------- Binance

const BINANCE: &str = "binance";

#[derive(Deserialize)]
struct BinanceTicker {
    symbol: Option<String>,
    price: Option<String>,
    code: Option<i64>,
    msg: Option<String>,
}

/// `/api/v3/ticker/price?symbol=...`: `{"symbol":"BTCUSDT","price":"63817.26000000"}`;
/// errors are `{"code":-1121,"msg":"Invalid symbol."}`.
pub fn parse_binance_ticker(body: &str, symbol: &str) -> Result<Decimal, FeederError> {
    let ticker: BinanceTicker = serde_json::from_str(body).map_err(|e| parse_error(BINANCE, e))?;
    if let Some(code) = ticker.code {
        return Err(parse_error(BINANCE, format!("error {code}: {}", ticker.msg.unwrap_or_default())));
    }
    if ticker.symbol.as_deref() != Some(symbol) {
        return Err(parse_error(BINANCE, format!("ticker for {:?}, asked {symbol}", ticker.symbol)));
    }
    price_from_text(&ticker.price.ok_or_else(|| parse_error(BINANCE, "no price"))?, BINANCE)
}

pub struct BinanceSource {
    client: Box<dyn HttpGet>,
    base_url: String,
}

impl BinanceSource {
    pub fn new(client: Box<dyn HttpGet>, base_url: &str) -> Self {
        BinanceSource { client, base_url: base_url.trim_end_matches('/').to_string() }
    }
}

impl Source for BinanceSource {
    fn name(&self) -> &str {
        BINANCE
    }

    fn quote(&mut self, underlying: &Underlying, now_ms: u64) -> Result<Quote, FeederError> {
        let symbol = format!("{underlying}USDT");
        let body = self.client.get(&format!("{}/api/v3/ticker/price?symbol={symbol}", self.base_url))?;
        Ok(Quote {
            spot: parse_binance_ticker(&body, &symbol)?,
            // The ticker carries no time: it is as fresh as the reply.
            observed_at_ms: now_ms,
            smiles: Vec::new(),
        })
    }
}

// ---------------------------------------------------------------- Kraken

const KRAKEN: &str = "kraken";

#[derive(Deserialize)]
struct KrakenEnvelope {
    error: Vec<String>,
    result: Option<BTreeMap<String, KrakenTicker>>,
}

#[derive(Deserialize)]
struct KrakenTicker {
    /// Best ask: [price, whole lot volume, lot volume].
    a: Vec<String>,
    /// Best bid, the same shape.
    b: Vec<String>,
}

/// `/0/public/Ticker?pair=...`: `{"error":[],"result":{"XXBTZUSD":{"a":[..],"b":[..],...}}}`.
/// The mid of best bid and ask; a crossed book is nonsense.
pub fn parse_kraken_ticker(body: &str) -> Result<Decimal, FeederError> {
    let envelope: KrakenEnvelope = serde_json::from_str(body).map_err(|e| parse_error(KRAKEN, e))?;
    if !envelope.error.is_empty() {
        return Err(parse_error(KRAKEN, envelope.error.join("; ")));
    }
    let result = envelope.result.ok_or_else(|| parse_error(KRAKEN, "no result"))?;
    let mut tickers = result.into_values();
    let (Some(ticker), None) = (tickers.next(), tickers.next()) else {
        return Err(parse_error(KRAKEN, "expected exactly one pair"));
    };
    let ask = price_from_text(ticker.a.first().ok_or_else(|| parse_error(KRAKEN, "no ask"))?, KRAKEN)?;
    let bid = price_from_text(ticker.b.first().ok_or_else(|| parse_error(KRAKEN, "no bid"))?, KRAKEN)?;
    if bid > ask {
        return Err(nonsense(KRAKEN, format!("crossed book: bid {bid} > ask {ask}")));
    }
    Ok(((ask + bid) / Decimal::TWO).round_dp(6).normalize())
}

pub struct KrakenSource {
    client: Box<dyn HttpGet>,
    base_url: String,
}

impl KrakenSource {
    pub fn new(client: Box<dyn HttpGet>, base_url: &str) -> Self {
        KrakenSource { client, base_url: base_url.trim_end_matches('/').to_string() }
    }
}

impl Source for KrakenSource {
    fn name(&self) -> &str {
        KRAKEN
    }

    fn quote(&mut self, underlying: &Underlying, now_ms: u64) -> Result<Quote, FeederError> {
        let base = if underlying.as_str() == "BTC" { "XBT" } else { underlying.as_str() };
        let body = self.client.get(&format!("{}/0/public/Ticker?pair={base}USD", self.base_url))?;
        Ok(Quote { spot: parse_kraken_ticker(&body)?, observed_at_ms: now_ms, smiles: Vec::new() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name);
        std::fs::read_to_string(path).unwrap()
    }

    /// Serves fixtures by URL substring, so the sources' URL building is tested too.
    struct Fixtures(Vec<(&'static str, String)>);

    impl HttpGet for Fixtures {
        fn get(&self, url: &str) -> Result<String, FeederError> {
            self.0
                .iter()
                .find(|(needle, _)| url.contains(needle))
                .map(|(_, body)| body.clone())
                .ok_or_else(|| FeederError::Http(format!("no fixture for {url}")))
        }
    }

    const NOW_MS: u64 = 1_718_000_000_000;

    #[test]
    fn deribit_index_parses_and_refuses_nonsense() {
        let (spot, observed) = parse_deribit_index(&fixture("deribit_index_price.json")).unwrap();
        assert_eq!(spot, "66843.12".parse().unwrap());
        assert_eq!(observed, Some(1_718_000_000_123));
        assert!(matches!(parse_deribit_index(&fixture("deribit_error.json")), Err(FeederError::Parse { .. })));
        assert!(matches!(
            parse_deribit_index(&fixture("deribit_index_price_negative.json")),
            Err(FeederError::Nonsense { .. })
        ));
        assert!(parse_deribit_index("{\"result\":").is_err());
    }

    #[test]
    fn deribit_book_summary_gives_otm_smiles() {
        let smiles =
            parse_deribit_book_summary(&fixture("deribit_book_summary_btc_option.json"), 66_843.12, NOW_MS).unwrap();
        // 14JUN24 straddles the money; 28JUN24 has only calls above: dropped.
        assert_eq!(smiles.len(), 1, "{smiles:?}");
        let smile = &smiles[0];
        assert_eq!(smile.expiry_ms, parse_expiry_date("14JUN24").unwrap());
        assert_eq!(smile.points.len(), 3);
        assert!(smile.points.windows(2).all(|w| w[0].0 < w[1].0));
        let (k_put, vol_put) = smile.points[0];
        assert!((k_put - libm::log(64_000.0 / 66_843.12)).abs() < 1e-12);
        assert!((vol_put - 0.512).abs() < 1e-12);
        assert!(matches!(
            parse_deribit_book_summary(&fixture("deribit_book_summary_nonsense.json"), 66_843.12, NOW_MS),
            Err(FeederError::Nonsense { .. })
        ));
    }

    #[test]
    fn deribit_names_and_dates() {
        assert_eq!(parse_expiry_date("32JAN24"), None);
        assert_eq!(parse_expiry_date("1JXN24"), None);
        assert_eq!(parse_expiry_date("1JAN00"), Some(10_957 * MS_PER_DAY + EXPIRY_TIME_OF_DAY_MS));
        assert_eq!(parse_expiry_date("29FEB23"), None);
        assert!(parse_expiry_date("29FEB24").is_some());
        let (_, strike, call) = parse_deribit_instrument("XRP_USDC-27DEC24-0d625-C").unwrap();
        assert_eq!((strike, call), (0.625, true));
        assert_eq!(parse_deribit_instrument("BTC-PERPETUAL"), None);
        assert_eq!(parse_deribit_instrument("BTC-27DEC24-100000-X"), None);
    }

    #[test]
    fn deribit_source_uses_both_endpoints() {
        let client = Fixtures(vec![
            ("get_index_price?index_name=btc_usd", fixture("deribit_index_price.json")),
            ("currency=BTC&kind=option", fixture("deribit_book_summary_btc_option.json")),
        ]);
        let mut source = DeribitSource::new(Box::new(client), "https://www.deribit.com/");
        let quote = source.quote(&Underlying::new("BTC").unwrap(), NOW_MS).unwrap();
        assert_eq!(quote.spot, "66843.12".parse().unwrap());
        assert_eq!(quote.observed_at_ms, 1_718_000_000_123);
        assert_eq!(quote.smiles.len(), 1);
        assert!(source.quote(&Underlying::new("ETH").unwrap(), NOW_MS).is_err());
    }

    #[test]
    fn binance_ticker() {
        assert_eq!(
            parse_binance_ticker(&fixture("binance_ticker_price.json"), "BTCUSDT").unwrap(),
            "66851.01".parse().unwrap()
        );
        assert!(parse_binance_ticker(&fixture("binance_ticker_price.json"), "ETHUSDT").is_err());
        assert!(matches!(
            parse_binance_ticker(&fixture("binance_error.json"), "BTCUSDT"),
            Err(FeederError::Parse { .. })
        ));
        assert!(matches!(
            parse_binance_ticker(&fixture("binance_ticker_price_zero.json"), "BTCUSDT"),
            Err(FeederError::Nonsense { .. })
        ));
        let client = Fixtures(vec![("ticker/price?symbol=BTCUSDT", fixture("binance_ticker_price.json"))]);
        let mut source = BinanceSource::new(Box::new(client), "https://api.binance.com");
        let quote = source.quote(&Underlying::new("BTC").unwrap(), NOW_MS).unwrap();
        assert_eq!(quote.observed_at_ms, NOW_MS);
    }

    #[test]
    fn kraken_ticker() {
        assert_eq!(parse_kraken_ticker(&fixture("kraken_ticker.json")).unwrap(), "66840.25".parse().unwrap());
        assert!(matches!(parse_kraken_ticker(&fixture("kraken_error.json")), Err(FeederError::Parse { .. })));
        assert!(matches!(
            parse_kraken_ticker(&fixture("kraken_ticker_crossed.json")),
            Err(FeederError::Nonsense { .. })
        ));
        let client = Fixtures(vec![("Ticker?pair=XBTUSD", fixture("kraken_ticker.json"))]);
        let mut source = KrakenSource::new(Box::new(client), "https://api.kraken.com");
        assert!(source.quote(&Underlying::new("BTC").unwrap(), NOW_MS).is_ok());
    }
}
