//! The localnet's chain: validators with keys derived from their names,
//! funded test accounts for traffic, and series listed around the genesis
//! index that expire a week, a month and a quarter after genesis.

use rust_decimal::Decimal;
use vanna_runtime::Genesis;
use vanna_runtime::instrument::{OptionKind, SeriesSpec};
use vanna_runtime::money::Price;

use crate::home::{KeySource, Keys};

pub const LOCALNET_CHAIN_ID: &str = "vanna-localnet";
/// Test accounts that trade (taking liquidity).
pub const TRADERS: usize = 8;
/// Test accounts that quote.
pub const MAKERS: usize = 2;
/// USD each trader and maker starts with.
pub const TRADER_USD: u64 = 1_000_000;
pub const MAKER_USD: u64 = 20_000_000;
/// VANNA each validator bonds at genesis.
pub const VALIDATOR_STAKE: u64 = 10_000;
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
    genesis.series = series("BTC", &[80_000, 90_000, 100_000, 110_000, 120_000], now_ms);
    genesis.series.extend(series("ETH", &[2_500, 3_000, 3_500, 4_000, 4_500], now_ms));
    for index in 0..validators {
        let keys = validator_keys(index);
        vanna_runtime::devnet::add_validator(
            &mut genesis,
            &validator_name(index),
            &keys.signer(),
            &keys.consensus,
            VALIDATOR_STAKE,
            0,
            "0.1",
        );
    }
    genesis
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
