//! The feeder loop's body: ask every source about every underlying, combine,
//! sign one report for all underlyings, and describe it as a JSON line.

use std::path::Path;
use std::time::Duration;

use k256::ecdsa::SigningKey;
use prost::Message;
use vanna_oracle::{Underlying, reporter_of, sign_report};

use crate::combine::{CombineConfig, SourceResult, combine};
use crate::csv_replay::CsvReplaySource;
use crate::error::FeederError;
use crate::exchanges::{BinanceSource, DeribitSource, KrakenSource, UreqClient};
use crate::quote::Source;
use crate::synthetic::{SyntheticConfig, SyntheticSource};

/// Public endpoints the adapters call.
pub const DERIBIT_URL: &str = "https://www.deribit.com";
pub const BINANCE_URL: &str = "https://api.binance.com";
pub const KRAKEN_URL: &str = "https://api.kraken.com";

/// A key derived from a seed phrase as every Vanna tool derives it
/// (`vanna_crypto::secp256k1::signing_key_from_seed`), so `--key-seed
/// vanna-demo/validator-1` signs as the demo chain's validator-1 (the sandbox
/// seeds each name with `vanna-demo/`). For localnets and tests only.
pub fn key_from_seed(seed: &str) -> SigningKey {
    vanna_crypto::secp256k1::signing_key_from_seed(seed)
}

/// A key file: the 32-byte secret scalar as 64 hex digits (whitespace ignored).
pub fn key_from_file(path: &Path) -> Result<SigningKey, FeederError> {
    let text = read_file(path)?;
    let bad = |reason: &str| FeederError::Key { path: path.display().to_string(), reason: reason.into() };
    let hex_digits: String = text.split_whitespace().collect();
    let bytes = hex::decode(&hex_digits).map_err(|_| bad("not hex"))?;
    let bytes: [u8; 32] = bytes.try_into().map_err(|_| bad("expected 32 bytes (64 hex digits)"))?;
    SigningKey::from_bytes(&bytes.into()).map_err(|_| bad("not a valid secp256k1 scalar"))
}

/// A text file's contents; an error names the file.
pub(crate) fn read_file(path: &Path) -> Result<String, FeederError> {
    std::fs::read_to_string(path).map_err(|source| FeederError::File { path: path.display().to_string(), source })
}

/// Builds a source from its command-line spelling:
/// `synthetic`, `csv:<path>`, `deribit`, `binance` or `kraken`.
pub fn source_from_spec(
    spec: &str,
    synthetic: &SyntheticConfig,
    http_timeout: Duration,
) -> Result<Box<dyn Source>, FeederError> {
    let http = || Box::new(UreqClient::new(http_timeout));
    Ok(match spec {
        "synthetic" => Box::new(SyntheticSource::new(synthetic.clone())?),
        "deribit" => Box::new(DeribitSource::new(http(), DERIBIT_URL)),
        "binance" => Box::new(BinanceSource::new(http(), BINANCE_URL)),
        "kraken" => Box::new(KrakenSource::new(http(), KRAKEN_URL)),
        _ => match spec.strip_prefix("csv:") {
            Some(path) if !path.is_empty() => Box::new(CsvReplaySource::open(Path::new(path))?),
            _ => {
                return Err(FeederError::Config(format!(
                    "unknown source {spec:?}: use synthetic, csv:<path>, deribit, binance or kraken"
                )));
            }
        },
    })
}

pub struct Feeder {
    chain_id: String,
    key: SigningKey,
    underlyings: Vec<Underlying>,
    sources: Vec<Box<dyn Source>>,
    config: CombineConfig,
}

impl Feeder {
    pub fn new(
        chain_id: String,
        key: SigningKey,
        underlyings: Vec<Underlying>,
        sources: Vec<Box<dyn Source>>,
        config: CombineConfig,
    ) -> Result<Self, FeederError> {
        if sources.is_empty() || underlyings.is_empty() {
            return Err(FeederError::Config("need at least one source and one underlying".into()));
        }
        if underlyings.len() > config.limits.max_prices_per_report {
            return Err(FeederError::Config(format!(
                "{} underlyings, a report carries at most {}",
                underlyings.len(),
                config.limits.max_prices_per_report
            )));
        }
        Ok(Feeder { chain_id, key, underlyings, sources, config })
    }

    /// The operator address reports are signed as.
    pub fn reporter(&self) -> vanna_oracle::ReporterId {
        let point = self.key.verifying_key().to_encoded_point(true);
        let compressed: [u8; 33] = point.as_bytes().try_into().expect("a compressed point is 33 bytes");
        reporter_of(&compressed)
    }

    /// One round at `now_ms`: a JSON line describing the signed report, or None
    /// when no underlying had a usable source.
    pub fn tick(&mut self, now_ms: u64) -> Option<serde_json::Value> {
        let (signed, summaries) = self.round(now_ms)?;
        Some(serde_json::json!({
            "chain_id": self.chain_id,
            "reporter": self.reporter().to_string(),
            "at_ms": now_ms,
            "prices": summaries,
            "signed_report": hex::encode(signed),
        }))
    }

    /// One round at `now_ms`: the encoded signed report, for a validator
    /// that runs its feeder in process.
    pub fn report(&mut self, now_ms: u64) -> Option<Vec<u8>> {
        self.round(now_ms).map(|(signed, _)| signed)
    }

    fn round(&mut self, now_ms: u64) -> Option<(Vec<u8>, Vec<serde_json::Value>)> {
        let mut prices = Vec::new();
        let mut summaries = Vec::new();
        for underlying in &self.underlyings {
            let results = self
                .sources
                .iter_mut()
                .map(|source| SourceResult {
                    result: source.quote(underlying, now_ms),
                    source: source.name().to_string(),
                })
                .collect();
            let Some(combined) = combine(&self.config, underlying, now_ms, results) else {
                continue;
            };
            summaries.push(serde_json::json!({
                "underlying": underlying.as_str(),
                "spot": combined.report.spot.to_string(),
                "observed_at_ms": combined.report.observed_at_ms,
                "expiries": combined.report.surface.as_ref().map_or(0, |s| s.expiries().len()),
                "atm_vol_nearest": combined.report.surface.as_ref().map(|s| s.expiries()[0].atm_vol().to_string()),
                "sources": combined.sources_used,
            }));
            prices.push(combined.report);
        }
        if prices.is_empty() {
            return None;
        }
        Some((sign_report(&self.key, &self.chain_id, &prices).encode_to_vec(), summaries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vanna_oracle::{ReportLimits, verify_report};

    #[test]
    fn a_tick_signs_a_report_the_chain_accepts() {
        let synthetic = SyntheticConfig::new(42, 0);
        let sources = vec![
            source_from_spec("synthetic", &synthetic, Duration::from_secs(1)).unwrap(),
            source_from_spec("synthetic", &synthetic, Duration::from_secs(1)).unwrap(),
        ];
        let underlyings = vec![Underlying::new("BTC").unwrap(), Underlying::new("ETH").unwrap()];
        let mut feeder = Feeder::new(
            "vanna-local".into(),
            key_from_seed("validator-0"),
            underlyings,
            sources,
            CombineConfig::default(),
        )
        .unwrap();
        let line = feeder.tick(3_000).unwrap();
        let bytes = hex::decode(line["signed_report"].as_str().unwrap()).unwrap();
        let verified = verify_report("vanna-local", &bytes, &ReportLimits::default()).unwrap();
        assert_eq!(verified.reporter, feeder.reporter());
        assert_eq!(verified.prices.len(), 2);
        assert!(verified.prices.iter().all(|p| p.surface.is_some()));
        assert_eq!(line["prices"][0]["sources"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn specs_and_keys() {
        let synthetic = SyntheticConfig::new(1, 0);
        let timeout = Duration::from_secs(1);
        for spec in ["synthetic", "deribit", "binance", "kraken"] {
            assert!(source_from_spec(spec, &synthetic, timeout).is_ok(), "{spec}");
        }
        assert!(matches!(source_from_spec("ftx", &synthetic, timeout), Err(FeederError::Config(_))));
        assert!(source_from_spec("csv:", &synthetic, timeout).is_err());
        let missing = source_from_spec("csv:/nonexistent.csv", &synthetic, timeout).err().unwrap();
        assert!(missing.to_string().starts_with("cannot read /nonexistent.csv: "), "{missing}");
        assert_eq!(key_from_seed("alice").to_bytes(), key_from_seed("alice").to_bytes(), "seed keys are deterministic");
        let dir = std::env::temp_dir().join(format!("vanna-feeder-key-{}", std::process::id()));
        std::fs::write(&dir, format!("{}\n", hex::encode([7u8; 32]))).unwrap();
        assert_eq!(
            key_from_file(&dir).unwrap().to_bytes(),
            SigningKey::from_bytes(&[7u8; 32].into()).unwrap().to_bytes()
        );
        std::fs::write(&dir, "zz").unwrap();
        assert!(matches!(key_from_file(&dir), Err(FeederError::Key { .. })));
        let missing = Path::new("/nonexistent/vanna.key");
        assert!(key_from_file(missing).unwrap_err().to_string().starts_with("cannot read /nonexistent/vanna.key: "));
        std::fs::remove_file(&dir).unwrap();
    }
}
