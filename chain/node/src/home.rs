//! A node's home directory: its configuration, the chain's genesis, its keys
//! and its data.
//!
//! ```text
//! HOME/config.toml            the configuration (commented)
//! HOME/genesis.json           the chain's genesis
//! HOME/keys/account.key       secp256k1 account key, 64 hex digits
//! HOME/keys/consensus.key     BLS consensus key, 64 hex digits
//! HOME/data/protection.jsonl  slashing protection (fsynced before a signature leaves)
//! HOME/data/blocks/           finalized blocks, certificates, receipts, snapshots (sled)
//! HOME/data/journal           consensus journal (fsynced)
//! ```
//!
//! Keys are stored in plain hex, readable by the owner only: the localnet's
//! and tests'. (Encrypted keystores are the API issue's.)

use std::io::Write;
use std::path::{Path, PathBuf};

use vanna_crypto::bls::BlsSecretKey;
use vanna_crypto::secp256k1::{SigningKey, signing_key_from_seed};
use vanna_runtime::Genesis;
use vanna_runtime::tx::Signer;

use crate::config::NodeConfig;

#[derive(Debug, Clone)]
pub struct Home {
    dir: PathBuf,
}

/// Why a home directory cannot be written or read.
#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{0} already holds a node (its config.toml exists); choose another directory or remove it")]
    Exists(PathBuf),
    #[error("{path}: {why}")]
    Invalid { path: PathBuf, why: String },
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

/// Where a node's keys come from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// Fresh keys from the operating system's randomness.
    Random,
    /// Keys derived from a name exactly as the demo and localnet derive
    /// theirs (`vanna-demo/<name>`): anyone who knows the name has them.
    Seeded(String),
}

/// A node's keys.
pub struct Keys {
    pub account: SigningKey,
    pub consensus: BlsSecretKey,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keys({})", Signer::new(self.account.clone()).address())
    }
}

impl Keys {
    pub fn generate(source: &KeySource) -> Keys {
        match source {
            KeySource::Random => {
                use rand::RngCore;
                let mut rng = rand::rng();
                let account = loop {
                    let mut bytes = [0u8; 32];
                    rng.fill_bytes(&mut bytes);
                    if let Ok(key) = SigningKey::from_bytes(&bytes.into()) {
                        break key;
                    }
                };
                let mut seed = [0u8; 32];
                rng.fill_bytes(&mut seed);
                let consensus = BlsSecretKey::from_seed(&seed).expect("32 bytes of seed");
                Keys { account, consensus }
            }
            KeySource::Seeded(name) => Keys {
                account: signing_key_from_seed(&format!("vanna-demo/{name}")),
                consensus: vanna_runtime::devnet::consensus_secret(name),
            },
        }
    }

    pub fn signer(&self) -> Signer {
        Signer::new(self.account.clone())
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> HomeError + '_ {
    move |source| HomeError::Io { path: path.to_path_buf(), source }
}

/// Writes `bytes` to `path` readable by its owner only, and fsyncs it.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), HomeError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io(path))?;
    file.write_all(bytes).map_err(io(path))?;
    file.sync_all().map_err(io(path))
}

impl Home {
    pub fn new(dir: impl Into<PathBuf>) -> Home {
        Home { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.toml")
    }
    pub fn genesis_path(&self) -> PathBuf {
        self.dir.join("genesis.json")
    }
    fn account_key_path(&self) -> PathBuf {
        self.dir.join("keys").join("account.key")
    }
    fn consensus_key_path(&self) -> PathBuf {
        self.dir.join("keys").join("consensus.key")
    }
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }
    pub fn protection_path(&self) -> PathBuf {
        self.data_dir().join("protection.jsonl")
    }
    pub fn blocks_dir(&self) -> PathBuf {
        self.data_dir().join("blocks")
    }
    pub fn journal_path(&self) -> PathBuf {
        self.data_dir().join("journal")
    }

    /// Writes a new home: configuration, genesis, keys and an empty data
    /// directory. Refuses a directory that already holds a node.
    pub fn init(&self, config: &NodeConfig, genesis: &Genesis, keys: &Keys) -> Result<(), HomeError> {
        if self.config_path().exists() {
            return Err(HomeError::Exists(self.dir.clone()));
        }
        for dir in [self.dir.clone(), self.dir.join("keys"), self.data_dir()] {
            std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        }
        write_private(&self.account_key_path(), hex::encode(keys.account.to_bytes()).as_bytes())?;
        write_private(&self.consensus_key_path(), hex::encode(keys.consensus.to_bytes()).as_bytes())?;
        let genesis_path = self.genesis_path();
        std::fs::write(&genesis_path, genesis.to_json()).map_err(io(&genesis_path))?;
        // The configuration last: its presence marks a complete home.
        let config_path = self.config_path();
        std::fs::write(&config_path, config.to_commented_toml()).map_err(io(&config_path))?;
        Ok(())
    }

    pub fn config(&self) -> Result<NodeConfig, HomeError> {
        let path = self.config_path();
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        Ok(NodeConfig::parse(&text, &path.display().to_string())?)
    }

    /// Rewrites the configuration (the localnet moves ports between runs).
    pub fn write_config(&self, config: &NodeConfig) -> Result<(), HomeError> {
        let path = self.config_path();
        std::fs::write(&path, config.to_commented_toml()).map_err(io(&path))
    }

    pub fn genesis(&self) -> Result<Genesis, HomeError> {
        let path = self.genesis_path();
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        Genesis::from_json(&text).map_err(|error| HomeError::Invalid { path, why: error.to_string() })
    }

    pub fn keys(&self) -> Result<Keys, HomeError> {
        let read = |path: PathBuf| -> Result<[u8; 32], HomeError> {
            let text = std::fs::read_to_string(&path).map_err(io(&path))?;
            let bytes = hex::decode(text.trim())
                .map_err(|_| HomeError::Invalid { path: path.clone(), why: "not hex".into() })?;
            bytes.try_into().map_err(|_| HomeError::Invalid { path, why: "not 32 bytes".into() })
        };
        let account_path = self.account_key_path();
        let account = SigningKey::from_bytes(&read(account_path.clone())?.into())
            .map_err(|_| HomeError::Invalid { path: account_path, why: "not a secp256k1 secret key".into() })?;
        let consensus_path = self.consensus_key_path();
        let consensus = BlsSecretKey::from_bytes(&read(consensus_path.clone())?)
            .map_err(|_| HomeError::Invalid { path: consensus_path, why: "not a BLS secret key".into() })?;
        Ok(Keys { account, consensus })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_home_is_written_once_and_reads_back() {
        let dir = std::env::temp_dir().join(format!("vanna-home-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let home = Home::new(&dir);
        let keys = Keys::generate(&KeySource::Random);
        let (genesis, _) = vanna_runtime::devnet::demo_genesis(&[("alice", 1)]);
        home.init(&NodeConfig::default(), &genesis, &keys).unwrap();
        assert!(matches!(home.init(&NodeConfig::default(), &genesis, &keys), Err(HomeError::Exists(_))));
        let read = home.keys().unwrap();
        assert_eq!(read.account.to_bytes(), keys.account.to_bytes());
        assert_eq!(read.consensus.to_bytes(), keys.consensus.to_bytes());
        assert_eq!(home.config().unwrap(), NodeConfig::default());
        assert_eq!(home.genesis().unwrap().chain_id, genesis.chain_id);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
