//! The feeder's one error type.

use vanna_oracle::OracleError;

#[derive(Debug, thiserror::Error)]
pub enum FeederError {
    #[error("HTTP request failed: {0}")]
    Http(String),
    #[error("{source_name}: unexpected response: {reason}")]
    Parse { source_name: &'static str, reason: String },
    #[error("{source_name}: nonsense value: {reason}")]
    Nonsense { source_name: &'static str, reason: String },
    #[error("CSV line {line}: {reason}")]
    Csv { line: usize, reason: String },
    #[error("cannot read {path}: {source}")]
    File { path: String, source: std::io::Error },
    #[error("bad signing key in {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("bad configuration: {0}")]
    Config(String),
    #[error("source has no data for {0}")]
    NoData(String),
    #[error(transparent)]
    Oracle(#[from] OracleError),
}
