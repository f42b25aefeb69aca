//! `vanna genesis demo`: prints the demo chain's genesis file.

use vanna_runtime::devnet::{add_validators, demo_genesis};
use vanna_runtime::tx::Signer;

use crate::CliResult;

/// The demo accounts, with USD: two market makers and two traders; then, for
/// the crash, a backstop keeper and three leveraged option writers.
pub const DEMO_ACCOUNTS: [(&str, u64); 8] = [
    ("mm-north", 2_000_000),
    ("mm-south", 2_000_000),
    ("alice", 250_000),
    ("bob", 400_000),
    ("keeper", 150_000),
    ("carol", 30_000),
    ("dave", 40_000),
    ("erin", 60_000),
];

/// The oracle guard of the demo chain: the index may move 30% in one update
/// (the default is 2%), so the demo's crash lands in one block.
pub const DEMO_MAX_MOVE_PER_UPDATE_BPS: u32 = 3_000;

/// USD in the demo chain's insurance fund at genesis: small enough that the
/// crash exhausts it and reaches auto-deleveraging.
pub const DEMO_INSURANCE_FUND_USD: u64 = 20_000;

/// The demo validators: (name, self-stake, extra liquid VANNA, commission).
pub const DEMO_VALIDATORS: [(&str, u64, u64, &str); 3] =
    [("validator-1", 40_000, 0, "0.10"), ("validator-2", 30_000, 0, "0.05"), ("validator-3", 20_000, 0, "0.08")];

/// A put expiring eight hours after the demo genesis.
pub const SHORT_DATED_PUT: &str = "BTC-25NOV26-95000-P";

/// The demo chain's genesis and the signers of its named accounts.
pub fn demo() -> (vanna_runtime::Genesis, Vec<(String, Signer)>) {
    let (mut genesis, mut signers) = demo_genesis(&DEMO_ACCOUNTS);
    genesis.staking.params.epoch_blocks = 5;
    genesis.oracle.max_move_per_update_bps = DEMO_MAX_MOVE_PER_UPDATE_BPS;
    let fund = genesis.accounts.iter_mut().find(|account| account.address == vanna_runtime::Address::insurance_fund());
    fund.expect("the demo genesis funds an insurance fund").usd =
        vanna_runtime::money::Amount::from_micro(DEMO_INSURANCE_FUND_USD * 1_000_000);
    // Expires 08:00 UTC on the genesis day, so the demo can settle it.
    genesis.series.push(SHORT_DATED_PUT.to_string());
    signers.extend(add_validators(&mut genesis, &DEMO_VALIDATORS));
    (genesis, signers)
}

#[derive(clap::Subcommand)]
pub enum Genesis {
    /// Print the genesis of the demo chain as JSON.
    Demo,
}

pub fn run(command: &Genesis) -> CliResult {
    match command {
        Genesis::Demo => outln!("{}", demo().0.to_json()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deploy_file_matches_the_command() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/genesis/demo.json");
        let file = std::fs::read_to_string(path).expect("deploy/genesis/demo.json exists");
        let genesis = vanna_runtime::Genesis::from_json(&file).expect("it parses");
        assert_eq!(genesis, demo().0, "regenerate with `vanna genesis demo > deploy/genesis/demo.json`");
        genesis.build().expect("it builds a state");
    }
}
