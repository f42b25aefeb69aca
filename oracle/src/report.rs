//! Signed price reports: the wire form (`vanna.v1.SignedOracleReport`), its
//! verification into typed values, and signing for feeders and tests.
//!
//! Scheme: the transaction scheme. ECDSA secp256k1 over SHA-256 of the exact
//! `body` bytes, low-S only, with the validator's operator account key. The
//! body starts with the domain tag [`REPORT_DOMAIN`] in field 1, where a
//! transaction body has its chain id, so neither can be replayed as the other;
//! and it names the chain, so a report for one chain is refused on another.
//!
//! The signatures are `vanna-crypto`'s secp256k1, the transaction scheme. The
//! runtime calls [`verify_report`] and then maps the reporter (an operator
//! address) to its validator's stake.

use prost::Message;
use serde::{Deserialize, Serialize};
use vanna_crypto::secp256k1::{address_of, public_key_of, sign};
use vanna_crypto::{CryptoError, PublicKey, SigningKey};
use vanna_proto::v1 as wire;

use crate::error::OracleError;
use crate::params::ReportLimits;
use crate::surface::{ExpirySmile, SmilePoint, VolSurface};
use crate::types::{IndexPrice, LogMoneyness, ReporterId, Underlying, Vol};

/// Field 1 of every report body.
pub const REPORT_DOMAIN: &str = "vanna.oracle.v1";

/// One underlying's observation by one reporter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PriceReport {
    pub underlying: Underlying,
    pub spot: IndexPrice,
    pub observed_at_ms: u64,
    /// None when the reporter's sources give no volatility.
    pub surface: Option<VolSurface>,
}

/// A report whose signature, chain and limits have been checked.
#[derive(Clone, Debug, PartialEq)]
pub struct VerifiedReport {
    pub reporter: ReporterId,
    pub prices: Vec<PriceReport>,
}

impl PriceReport {
    pub fn from_wire(report: &wire::PriceReport, limits: &ReportLimits) -> Result<Self, OracleError> {
        let underlying = Underlying::new(&report.underlying)?;
        let spot = IndexPrice::parse(&report.spot)?;
        let surface = match &report.surface {
            Some(surface) if !surface.expiries.is_empty() => Some(surface_from_wire(surface, limits)?),
            _ => None,
        };
        Ok(PriceReport { underlying, spot, observed_at_ms: report.observed_at_ms, surface })
    }

    pub fn to_wire(&self) -> wire::PriceReport {
        wire::PriceReport {
            underlying: self.underlying.to_string(),
            spot: self.spot.to_string(),
            observed_at_ms: self.observed_at_ms,
            surface: self.surface.as_ref().map(surface_to_wire),
        }
    }
}

fn surface_from_wire(surface: &wire::VolSurface, limits: &ReportLimits) -> Result<VolSurface, OracleError> {
    // Checked before parsing anything so a huge list costs nothing.
    if surface.expiries.len() > limits.max_expiries {
        return Err(OracleError::TooMany { what: "expiries", count: surface.expiries.len(), max: limits.max_expiries });
    }
    let mut expiries = Vec::with_capacity(surface.expiries.len());
    for expiry in &surface.expiries {
        if expiry.smile.len() > limits.max_smile_points {
            return Err(OracleError::TooMany {
                what: "smile points",
                count: expiry.smile.len(),
                max: limits.max_smile_points,
            });
        }
        let smile = expiry
            .smile
            .iter()
            .map(|point| {
                Ok(SmilePoint {
                    log_moneyness: LogMoneyness::parse(&point.log_moneyness)?,
                    vol: Vol::parse(&point.vol)?,
                })
            })
            .collect::<Result<Vec<_>, OracleError>>()?;
        expiries.push(ExpirySmile::new(
            expiry.expiry_ms,
            Vol::parse(&expiry.atm_vol)?,
            smile,
            limits.max_smile_points,
        )?);
    }
    VolSurface::new(expiries, limits.max_expiries)
}

pub fn surface_to_wire(surface: &VolSurface) -> wire::VolSurface {
    wire::VolSurface {
        expiries: surface
            .expiries()
            .iter()
            .map(|expiry| wire::ExpirySmile {
                expiry_ms: expiry.expiry_ms(),
                atm_vol: expiry.atm_vol().to_string(),
                smile: expiry
                    .smile()
                    .iter()
                    .map(|point| wire::SmilePoint {
                        log_moneyness: point.log_moneyness.value().to_string(),
                        vol: point.vol.to_string(),
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// The reporter id (operator address) of a compressed public key.
pub fn reporter_of(compressed: &[u8; 33]) -> ReporterId {
    ReporterId(address_of(compressed))
}

/// Decodes and verifies an encoded `SignedOracleReport` for `chain_id`.
pub fn verify_report(
    chain_id: &str,
    signed_bytes: &[u8],
    limits: &ReportLimits,
) -> Result<VerifiedReport, OracleError> {
    if signed_bytes.len() > limits.max_report_bytes {
        return Err(OracleError::ReportTooLarge { size: signed_bytes.len(), max: limits.max_report_bytes });
    }
    let signed = wire::SignedOracleReport::decode(signed_bytes).map_err(|_| OracleError::MalformedEncoding)?;
    verify_signed(chain_id, &signed, limits)
}

/// Verifies an already decoded envelope: size, signature, domain, chain,
/// reporter and every value.
pub fn verify_signed(
    chain_id: &str,
    signed: &wire::SignedOracleReport,
    limits: &ReportLimits,
) -> Result<VerifiedReport, OracleError> {
    if signed.body.len() > limits.max_report_bytes {
        return Err(OracleError::ReportTooLarge { size: signed.body.len(), max: limits.max_report_bytes });
    }
    let key = PublicKey::from_compressed(&signed.public_key).map_err(signature_error)?;
    key.verify(&signed.body, &signed.signature).map_err(signature_error)?;
    let compressed = *key.compressed();

    let body = wire::OracleReportBody::decode(signed.body.as_slice()).map_err(|_| OracleError::MalformedEncoding)?;
    if body.domain != REPORT_DOMAIN {
        return Err(OracleError::WrongDomain(body.domain.chars().take(32).collect()));
    }
    if body.chain_id != chain_id {
        return Err(OracleError::WrongChain {
            expected: chain_id.to_string(),
            found: body.chain_id.chars().take(64).collect(),
        });
    }
    let reporter = reporter_of(&compressed);
    if body.reporter.as_slice() != reporter.as_bytes() {
        return Err(OracleError::ReporterMismatch {
            claimed: hex::encode(body.reporter.iter().take(32).copied().collect::<Vec<u8>>()),
            actual: reporter,
        });
    }
    if body.prices.len() > limits.max_prices_per_report {
        return Err(OracleError::TooMany {
            what: "prices",
            count: body.prices.len(),
            max: limits.max_prices_per_report,
        });
    }
    let mut prices = Vec::with_capacity(body.prices.len());
    for price in &body.prices {
        let report = PriceReport::from_wire(price, limits)?;
        if prices.iter().any(|seen: &PriceReport| seen.underlying == report.underlying) {
            return Err(OracleError::DuplicateUnderlying(report.underlying.to_string()));
        }
        prices.push(report);
    }
    Ok(VerifiedReport { reporter, prices })
}

fn signature_error(error: CryptoError) -> OracleError {
    match error {
        CryptoError::BadPublicKey | CryptoError::Encoding(_) => OracleError::BadPublicKey,
        CryptoError::BadSignatureEncoding => OracleError::BadSignatureEncoding,
        CryptoError::HighS => OracleError::HighS,
        CryptoError::BadSignature => OracleError::BadSignature,
    }
}

/// Signs `prices` for `chain_id` with an operator key: what a feeder sends.
pub fn sign_report(key: &SigningKey, chain_id: &str, prices: &[PriceReport]) -> wire::SignedOracleReport {
    let public_key = public_key_of(key);
    let body = wire::OracleReportBody {
        domain: REPORT_DOMAIN.to_string(),
        chain_id: chain_id.to_string(),
        reporter: reporter_of(&public_key).as_bytes().to_vec(),
        prices: prices.iter().map(PriceReport::to_wire).collect(),
    }
    .encode_to_vec();
    let signature = sign(key, &body);
    wire::SignedOracleReport { body, public_key: public_key.to_vec(), signature: signature.to_vec() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32].into()).unwrap()
    }

    fn sample() -> PriceReport {
        let smile = ExpirySmile::new(
            1_000_000,
            Vol::parse("0.55").unwrap(),
            vec![SmilePoint { log_moneyness: LogMoneyness::parse("-0.1").unwrap(), vol: Vol::parse("0.6").unwrap() }],
            16,
        )
        .unwrap();
        PriceReport {
            underlying: Underlying::new("BTC").unwrap(),
            spot: IndexPrice::parse("65000.25").unwrap(),
            observed_at_ms: 42,
            surface: Some(VolSurface::new(vec![smile], 16).unwrap()),
        }
    }

    fn resign(key: &SigningKey, body: &wire::OracleReportBody) -> Vec<u8> {
        let mut signed = sign_report(key, "x", &[]);
        signed.body = body.encode_to_vec();
        signed.signature = sign(key, &signed.body).to_vec();
        signed.encode_to_vec()
    }

    #[test]
    fn sign_then_verify_round_trips() {
        let limits = ReportLimits::default();
        let signed = sign_report(&key(3), "vanna-local", &[sample()]).encode_to_vec();
        let verified = verify_report("vanna-local", &signed, &limits).unwrap();
        assert_eq!(verified.prices, vec![sample()]);
        assert_eq!(verified.reporter, reporter_of(&public_key_of(&key(3))));
    }

    #[test]
    fn other_chain_tampering_and_high_s_are_refused() {
        let limits = ReportLimits::default();
        let signed = sign_report(&key(3), "vanna-local", &[sample()]);
        assert!(matches!(
            verify_report("vanna-main", &signed.encode_to_vec(), &limits),
            Err(OracleError::WrongChain { .. })
        ));
        let mut tampered = signed.clone();
        let last = tampered.body.len() - 1;
        tampered.body[last] ^= 1;
        assert_eq!(verify_signed("vanna-local", &tampered, &limits), Err(OracleError::BadSignature));
        use k256::ecdsa::Signature;
        let low = Signature::from_slice(&signed.signature).unwrap();
        let high = Signature::from_scalars(low.r(), -*low.s()).unwrap();
        let mut high_s = signed.clone();
        high_s.signature = high.to_bytes().to_vec();
        assert_eq!(verify_signed("vanna-local", &high_s, &limits), Err(OracleError::HighS));
        let mut short = signed;
        short.signature.pop();
        assert_eq!(verify_signed("vanna-local", &short, &limits), Err(OracleError::BadSignatureEncoding));
        assert_eq!(verify_report("vanna-local", &[0xff; 10], &limits), Err(OracleError::MalformedEncoding));
    }

    #[test]
    fn a_transaction_body_is_not_a_report() {
        // A transaction body has the chain id in field 1: it fails the domain check.
        let limits = ReportLimits::default();
        let transaction = wire::TransactionBody {
            chain_id: "vanna-local".into(),
            sender: vec![1; 20],
            nonce: 1,
            actions: vec![],
            memo: vec![],
        };
        let mut signed = sign_report(&key(3), "vanna-local", &[]);
        signed.body = transaction.encode_to_vec();
        signed.signature = sign(&key(3), &signed.body).to_vec();
        assert!(matches!(
            verify_signed("vanna-local", &signed, &limits),
            Err(OracleError::WrongDomain(_) | OracleError::MalformedEncoding)
        ));
    }

    #[test]
    fn limits_and_values_are_enforced() {
        let limits = ReportLimits::default();
        let k = key(5);
        let public: [u8; 33] = k.verifying_key().to_encoded_point(true).as_bytes().try_into().unwrap();
        let good = wire::OracleReportBody {
            domain: REPORT_DOMAIN.into(),
            chain_id: "c".into(),
            reporter: reporter_of(&public).as_bytes().to_vec(),
            prices: vec![sample().to_wire()],
        };
        assert!(verify_report("c", &resign(&k, &good), &limits).is_ok());

        let mut duplicate = good.clone();
        duplicate.prices.push(sample().to_wire());
        assert!(matches!(
            verify_report("c", &resign(&k, &duplicate), &limits),
            Err(OracleError::DuplicateUnderlying(_))
        ));
        let mut wrong_reporter = good.clone();
        wrong_reporter.reporter = vec![0; 20];
        assert!(matches!(
            verify_report("c", &resign(&k, &wrong_reporter), &limits),
            Err(OracleError::ReporterMismatch { .. })
        ));
        let mut negative = good.clone();
        negative.prices[0].spot = "-1".into();
        assert!(verify_report("c", &resign(&k, &negative), &limits).is_err());
        let mut wild_vol = good.clone();
        wild_vol.prices[0].surface.as_mut().unwrap().expiries[0].atm_vol = "50".into();
        assert!(matches!(verify_report("c", &resign(&k, &wild_vol), &limits), Err(OracleError::OutOfRange { .. })));
        let mut many = good.clone();
        let expiry = many.prices[0].surface.as_ref().unwrap().expiries[0].clone();
        many.prices[0].surface.as_mut().unwrap().expiries =
            (0..17).map(|i| wire::ExpirySmile { expiry_ms: i, ..expiry.clone() }).collect();
        assert!(matches!(
            verify_report("c", &resign(&k, &many), &limits),
            Err(OracleError::TooMany { what: "expiries", .. })
        ));
        let mut wrong_domain = good;
        wrong_domain.domain = "vanna.tx".into();
        assert!(matches!(verify_report("c", &resign(&k, &wrong_domain), &limits), Err(OracleError::WrongDomain(_))));
        let huge = vec![0u8; limits.max_report_bytes + 1];
        assert!(matches!(verify_report("c", &huge, &limits), Err(OracleError::ReportTooLarge { .. })));
    }

    #[test]
    fn empty_surface_means_none() {
        let mut wire_report = sample().to_wire();
        wire_report.surface = Some(wire::VolSurface { expiries: vec![] });
        let parsed = PriceReport::from_wire(&wire_report, &ReportLimits::default()).unwrap();
        assert_eq!(parsed.surface, None);
    }
}
