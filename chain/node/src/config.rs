//! The node's configuration file (`config.toml` in its home directory):
//! every field has a default, and `vanna node init` writes a commented copy.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// A name for logs and status.
    pub moniker: String,
    pub network: NetworkSection,
    pub api: ApiSection,
    pub consensus: ConsensusSection,
    pub storage: StorageSection,
    pub feeder: FeederSection,
    pub mempool: MempoolSection,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkSection {
    /// Where the validator network listens.
    pub listen: SocketAddr,
    /// Peers to dial, as `host:port`.
    pub peers: Vec<SocketAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiSection {
    /// Where the public gRPC API listens.
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsensusSection {
    /// How long a view waits for its leader before voting to skip it.
    pub leader_timeout_ms: u64,
    /// How often a stuck view rebroadcasts and re-requests.
    pub retry_ms: u64,
    /// The longest a leader waits for transactions before proposing a block
    /// anyway. With transactions waiting it proposes at once.
    pub max_block_interval_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageSection {
    /// A state snapshot is stored every this many blocks; a restart replays
    /// the blocks after the last one.
    pub snapshot_interval_blocks: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeederSection {
    /// Whether this validator runs its price feeder in process.
    pub enabled: bool,
    /// `synthetic` (a seeded random walk, the localnet's), or `csv:PATH`.
    pub source: String,
    /// How often a signed report is sent.
    pub interval_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MempoolSection {
    /// Transactions waiting at most, all accounts together.
    pub max_transactions: usize,
    /// Transactions waiting at most per account.
    pub max_per_account: usize,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            moniker: "node".to_string(),
            network: NetworkSection::default(),
            api: ApiSection::default(),
            consensus: ConsensusSection::default(),
            storage: StorageSection::default(),
            feeder: FeederSection::default(),
            mempool: MempoolSection::default(),
        }
    }
}

impl Default for NetworkSection {
    fn default() -> Self {
        NetworkSection { listen: SocketAddr::from(([127, 0, 0, 1], 26656)), peers: Vec::new() }
    }
}

impl Default for ApiSection {
    fn default() -> Self {
        ApiSection { listen: SocketAddr::from(([127, 0, 0, 1], 9090)) }
    }
}

impl Default for ConsensusSection {
    fn default() -> Self {
        ConsensusSection { leader_timeout_ms: 1_000, retry_ms: 500, max_block_interval_ms: 250 }
    }
}

impl Default for StorageSection {
    fn default() -> Self {
        StorageSection { snapshot_interval_blocks: 100 }
    }
}

impl Default for FeederSection {
    fn default() -> Self {
        FeederSection { enabled: true, source: "synthetic".to_string(), interval_ms: 1_000 }
    }
}

impl Default for MempoolSection {
    fn default() -> Self {
        MempoolSection { max_transactions: 100_000, max_per_account: 256 }
    }
}

/// Why a configuration file is refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Parse { path: String, source: toml::de::Error },
    #[error("{path}: {why}")]
    Invalid { path: String, why: String },
}

impl NodeConfig {
    /// Parses and checks a configuration file's text (`path` is for messages).
    pub fn parse(text: &str, path: &str) -> Result<NodeConfig, ConfigError> {
        let config: NodeConfig =
            toml::from_str(text).map_err(|source| ConfigError::Parse { path: path.to_string(), source })?;
        let invalid = |why: String| ConfigError::Invalid { path: path.to_string(), why };
        if config.consensus.leader_timeout_ms == 0 || config.consensus.retry_ms == 0 {
            return Err(invalid("consensus.leader_timeout_ms and consensus.retry_ms must be positive".into()));
        }
        if config.consensus.max_block_interval_ms > config.consensus.leader_timeout_ms {
            return Err(invalid(format!(
                "consensus.max_block_interval_ms ({}) must not exceed consensus.leader_timeout_ms ({}): a leader that waits longer is skipped",
                config.consensus.max_block_interval_ms, config.consensus.leader_timeout_ms
            )));
        }
        if config.storage.snapshot_interval_blocks == 0 {
            return Err(invalid("storage.snapshot_interval_blocks must be positive".into()));
        }
        if config.feeder.interval_ms == 0 {
            return Err(invalid("feeder.interval_ms must be positive".into()));
        }
        if config.mempool.max_transactions == 0 || config.mempool.max_per_account == 0 {
            return Err(invalid("mempool limits must be positive".into()));
        }
        if config.network.peers.len() > 256 {
            return Err(invalid(format!("{} peers configured, at most 256", config.network.peers.len())));
        }
        Ok(config)
    }

    /// The configuration file's text: every field, with what it is for.
    pub fn to_commented_toml(&self) -> String {
        let peers: Vec<String> = self.network.peers.iter().map(|peer| format!("\"{peer}\"")).collect();
        format!(
            r#"# Vanna node configuration. Every field has a default; delete a line to use it.

# A name for logs and status.
moniker = "{moniker}"

[network]
# Where the validator network listens (other validators and full nodes dial it).
listen = "{listen}"
# Peers to dial, as "host:port".
peers = [{peers}]

[api]
# Where the public gRPC API listens (transactions, status, health, reflection).
listen = "{api}"

[consensus]
# How long a view waits for its leader before voting to skip it.
leader_timeout_ms = {leader_timeout_ms}
# How often a stuck view rebroadcasts its votes and re-requests missing blocks.
retry_ms = {retry_ms}
# The longest a leader waits for transactions before proposing anyway; with
# transactions waiting it proposes at once. 250 ms keeps an idle chain at four
# blocks a second (cheap to store and verify) while a busy one runs as fast as
# its network allows.
max_block_interval_ms = {max_block_interval_ms}

[storage]
# A state snapshot every this many blocks; a restart replays the blocks after it.
snapshot_interval_blocks = {snapshot}

[feeder]
# The validator's price feeder, in process: signed oracle reports every interval.
enabled = {feeder_enabled}
# "synthetic" (a seeded random walk) or "csv:PATH".
source = "{source}"
interval_ms = {interval_ms}

[mempool]
# Transactions waiting at most, all accounts together, and per account.
max_transactions = {max_transactions}
max_per_account = {max_per_account}
"#,
            moniker = self.moniker,
            listen = self.network.listen,
            peers = peers.join(", "),
            api = self.api.listen,
            leader_timeout_ms = self.consensus.leader_timeout_ms,
            retry_ms = self.consensus.retry_ms,
            max_block_interval_ms = self.consensus.max_block_interval_ms,
            snapshot = self.storage.snapshot_interval_blocks,
            feeder_enabled = self.feeder.enabled,
            source = self.feeder.source,
            interval_ms = self.feeder.interval_ms,
            max_transactions = self.mempool.max_transactions,
            max_per_account = self.mempool.max_per_account,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commented_file_parses_back_to_the_same_configuration() {
        let mut config = NodeConfig { moniker: "v1".into(), ..NodeConfig::default() };
        config.network.peers = vec!["127.0.0.1:1".parse().unwrap(), "127.0.0.1:2".parse().unwrap()];
        let text = config.to_commented_toml();
        assert_eq!(NodeConfig::parse(&text, "config.toml").unwrap(), config);
        assert_eq!(NodeConfig::parse("", "x").unwrap(), NodeConfig::default());
    }

    #[test]
    fn bad_files_are_refused_with_the_path_and_the_reason() {
        let error = NodeConfig::parse("moniker = 3", "home/config.toml").unwrap_err().to_string();
        assert!(error.starts_with("home/config.toml:"), "{error}");
        let error = NodeConfig::parse("[consensus]\nleader_timeout_ms = 0", "c").unwrap_err().to_string();
        assert!(error.contains("leader_timeout_ms"), "{error}");
        assert!(NodeConfig::parse("unknown = 1", "c").is_err());
        let error = NodeConfig::parse("[consensus]\nmax_block_interval_ms = 5000", "c").unwrap_err().to_string();
        assert!(error.contains("must not exceed"), "{error}");
    }
}
