//! The oracle's one error type: everything a report, a stake table or the
//! parameters can be refused for.

use crate::types::ReporterId;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OracleError {
    #[error("report of {size} bytes exceeds the limit of {max}")]
    ReportTooLarge { size: usize, max: usize },
    #[error("report bytes are not a valid encoding")]
    MalformedEncoding,
    #[error("report domain {0:?} is not the oracle's")]
    WrongDomain(String),
    #[error("report for chain {found:?}, this chain is {expected:?}")]
    WrongChain { expected: String, found: String },
    #[error("public key is not a 33-byte compressed secp256k1 key")]
    BadPublicKey,
    #[error("signature is not 64 bytes r || s")]
    BadSignatureEncoding,
    #[error("signature has a high S value")]
    HighS,
    #[error("signature does not verify")]
    BadSignature,
    #[error("reporter field {claimed} is not the key's address {actual}")]
    ReporterMismatch { claimed: String, actual: ReporterId },
    #[error("bad underlying symbol {0:?}")]
    BadUnderlying(String),
    #[error("underlying {0} appears twice in one report")]
    DuplicateUnderlying(String),
    #[error("too many {what}: {count} (limit {max})")]
    TooMany { what: &'static str, count: usize, max: usize },
    #[error("malformed number in {field}: {text:?}")]
    MalformedNumber { field: &'static str, text: String },
    #[error("{field} out of range: {value}")]
    OutOfRange { field: &'static str, value: String },
    #[error("expiries are not strictly increasing")]
    ExpiriesNotIncreasing,
    #[error("a volatility surface needs at least one expiry")]
    EmptySurface,
    #[error("smile log-moneyness must be strictly increasing and never 0")]
    SmileNotIncreasing,
    #[error("reporter {0} appears twice in the stake table")]
    DuplicateReporter(ReporterId),
    #[error("underlying {0} is already listed")]
    AlreadyListed(String),
    #[error("invalid oracle parameter {name}: {reason}")]
    InvalidParams { name: &'static str, reason: &'static str },
}
