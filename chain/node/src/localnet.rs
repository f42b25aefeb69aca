//! The localnet's chain: validators with keys derived from their names,
//! funded test accounts for traffic, and series listed around the genesis
//! index that expire a week, a month and a quarter after genesis.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use rust_decimal::Decimal;
use vanna_runtime::Genesis;
use vanna_runtime::instrument::{OptionKind, SeriesSpec};
use vanna_runtime::money::Price;

use crate::config::NodeConfig;
use crate::home::{Home, HomeError, KeySource, Keys};

pub const LOCALNET_CHAIN_ID: &str = "vanna-localnet";
/// Test accounts that trade (taking liquidity).
pub const TRADERS: usize = 64;
/// Test accounts that quote.
pub const MAKERS: usize = 2;
/// USD each trader and maker starts with.
pub const TRADER_USD: u64 = 1_000_000;
pub const MAKER_USD: u64 = 20_000_000;
/// VANNA each validator bonds at genesis.
pub const VALIDATOR_STAKE: u64 = 10_000;
/// Liquid VANNA each validator's operator also holds: to delegate, or to
/// fund a new validator's self-stake.
pub const VALIDATOR_LIQUID: u64 = 20_000;
const DAY_MS: u64 = 86_400_000;
/// Expiries after genesis, in days.
const EXPIRY_DAYS: [u64; 3] = [7, 30, 91];

/// The name of validator `index` (its keys derive from it).
pub fn validator_name(index: usize) -> String {
    format!("validator-{index}")
}

/// The name of test trader `index`.
pub fn trader_name(index: usize) -> String {
    format!("trader-{index}")
}

/// The name of test market maker `index`.
pub fn maker_name(index: usize) -> String {
    format!("maker-{index}")
}

/// The keys of validator `index`.
pub fn validator_keys(index: usize) -> Keys {
    Keys::generate(&KeySource::Seeded(validator_name(index)))
}

/// Series of `underlying` at `strikes`, calls and puts, for each expiry
/// after `now_ms`, named canonically.
fn series(underlying: &str, strikes: &[u64], now_ms: u64) -> Vec<String> {
    let mut names = Vec::new();
    for days in EXPIRY_DAYS {
        // 08:00 UTC of the expiry day, as options venues settle.
        let expiry_ms = (now_ms / DAY_MS + days) * DAY_MS + vanna_runtime::instrument::EXPIRY_TIME_OF_DAY_MS;
        for &strike in strikes {
            for kind in [OptionKind::Call, OptionKind::Put] {
                let spec = SeriesSpec {
                    underlying: underlying.to_string(),
                    expiry_ms,
                    strike: Price::new(Decimal::from(strike), vanna_runtime::error::Field::Strike).expect("a strike"),
                    kind,
                    name: "".into(),
                };
                names.push(spec.format_name());
            }
        }
    }
    names
}

/// The localnet's genesis: `validators` validators, the test accounts,
/// BTC and ETH series around the index, genesis at `now_ms`, epochs of
/// `epoch_blocks` blocks.
pub fn localnet_genesis(validators: usize, now_ms: u64, epoch_blocks: u64) -> Genesis {
    let mut accounts: Vec<(String, u64)> = (0..TRADERS).map(|i| (trader_name(i), TRADER_USD)).collect();
    accounts.extend((0..MAKERS).map(|i| (maker_name(i), MAKER_USD)));
    let accounts: Vec<(&str, u64)> = accounts.iter().map(|(name, usd)| (name.as_str(), *usd)).collect();
    let (mut genesis, _) = vanna_runtime::devnet::demo_genesis(&accounts);
    genesis.chain_id = LOCALNET_CHAIN_ID.to_string();
    genesis.genesis_time_ms = now_ms;
    genesis.staking.params.epoch_blocks = epoch_blocks;
    // The index starts where the validators' synthetic feeds start, so the
    // first reports move it by a normal step, not a crash.
    for underlying in &mut genesis.underlyings {
        if let Ok(symbol) = vanna_oracle::Underlying::new(&underlying.symbol) {
            let spot = Decimal::from_f64_retain(vanna_feeder::synthetic::initial_spot(&symbol))
                .unwrap_or(Decimal::ONE_HUNDRED);
            underlying.index_price =
                Price::new(spot, vanna_runtime::error::Field::IndexPrice).expect("a positive spot");
        }
    }
    genesis.series = series("BTC", &[55_000, 60_000, 65_000, 70_000, 75_000], now_ms);
    genesis.series.extend(series("ETH", &[3_000, 3_250, 3_500, 3_750, 4_000], now_ms));
    for index in 0..validators {
        let keys = validator_keys(index);
        vanna_runtime::devnet::add_validator(
            &mut genesis,
            &validator_name(index),
            &keys.signer(),
            &keys.consensus,
            VALIDATOR_STAKE,
            VALIDATOR_LIQUID,
            "0.1",
        );
    }
    genesis
}

/// A localnet's directory: one home per validator, `node-<i>`.
#[derive(Debug, Clone)]
pub struct LocalnetDir {
    root: PathBuf,
}

/// Ports one node listens on.
#[derive(Debug, Clone, Copy)]
pub struct NodePorts {
    pub network: SocketAddr,
    pub api: SocketAddr,
}

/// A free port on 127.0.0.1 now (the OS picks it; it is released at once,
/// so a node bound to it later very likely gets it).
pub fn free_port() -> std::io::Result<SocketAddr> {
    std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()
}

impl LocalnetDir {
    pub fn new(root: impl Into<PathBuf>) -> LocalnetDir {
        LocalnetDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn home(&self, index: usize) -> Home {
        Home::new(self.root.join(format!("node-{index}")))
    }

    /// The number of node homes in the directory.
    pub fn nodes(&self) -> usize {
        (0..).take_while(|index| self.home(*index).config_path().exists()).count()
    }

    /// Writes a fresh localnet of `validators` validators: genesis at
    /// `now_ms`, one home each with its seeded keys.
    pub fn create(&self, validators: usize, epoch_blocks: u64, now_ms: u64) -> Result<(), HomeError> {
        let genesis = localnet_genesis(validators, now_ms, epoch_blocks);
        for index in 0..validators {
            let config = NodeConfig { moniker: validator_name(index), ..NodeConfig::default() };
            self.home(index).init(&config, &genesis, &validator_keys(index))?;
        }
        Ok(())
    }

    /// Gives every node fresh free ports and every node the others as
    /// peers; returns the ports.
    pub fn assign_ports(&self) -> Result<Vec<NodePorts>, HomeError> {
        let nodes = self.nodes();
        let io = |source| HomeError::Io { path: self.root.clone(), source };
        let ports: Vec<NodePorts> = (0..nodes)
            .map(|_| Ok(NodePorts { network: free_port().map_err(io)?, api: free_port().map_err(io)? }))
            .collect::<Result<_, HomeError>>()?;
        for (index, own) in ports.iter().enumerate() {
            let home = self.home(index);
            let mut config = home.config()?;
            config.network.listen = own.network;
            config.api.listen = own.api;
            config.network.peers =
                ports.iter().enumerate().filter(|(other, _)| *other != index).map(|(_, p)| p.network).collect();
            home.write_config(&config)?;
        }
        Ok(ports)
    }

    /// Starts node `index` as a process of `binary` (`vanna`), its output
    /// appended to `node.log` in its home. The node stops when its standard
    /// input closes: dropping (or the death of) the caller stops it.
    pub fn spawn(&self, binary: &Path, index: usize) -> std::io::Result<Child> {
        self.command(binary, index)?.spawn()
    }

    /// The command [`LocalnetDir::spawn`] runs, for callers that add to it.
    pub fn command(&self, binary: &Path, index: usize) -> std::io::Result<Command> {
        let home = self.home(index);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(home.dir().join("node.log"))?;
        let mut command = Command::new(binary);
        command
            .arg("node")
            .arg("start")
            .arg("--home")
            .arg(home.dir())
            .arg("--stop-with-stdin")
            .stdin(Stdio::piped())
            .stdout(log.try_clone()?)
            .stderr(log);
        Ok(command)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_localnet_genesis_builds_with_every_validator_active() {
        let genesis = localnet_genesis(4, 1_800_000_000_000, 100);
        let state = genesis.build().unwrap();
        assert_eq!(state.staking.active.len(), 4);
        assert_eq!(state.markets.len(), 60);
        assert!(state.markets.iter().all(|market| market.spec.expiry_ms > 1_800_000_000_000));
    }
}
