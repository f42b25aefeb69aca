//! Genesis for demo chains and localnets: funded accounts and validators
//! whose keys are derived from their names (`vanna-demo/<name>`), so that
//! every tool (the demo, the feeder, the localnet, the tests) signs as the
//! same accounts without a key file. Insecure by design: anyone who knows a
//! name holds its key. Never for a chain with real value.

use rust_decimal::Decimal;

use crate::genesis::{Genesis, GenesisAccount, GenesisValidator};
use crate::ids::Address;
use crate::instrument::UnderlyingSpec;
use crate::money::{Amount, Price, Quantity};
use crate::state::FeeSchedule;
use crate::tx::Signer;

/// 2026-11-25 00:00 UTC: the demo chain's genesis time.
pub const DEMO_GENESIS_TIME_MS: u64 = 1_795_564_800_000;
pub const DEMO_CHAIN_ID: &str = "vanna-demo";
/// USD the demo genesis puts in the insurance fund.
pub const DEMO_INSURANCE_FUND_USD: u64 = 100_000;

/// Adds validators to a genesis: each named operator gets `self_stake` VANNA
/// plus `extra` liquid VANNA, a BLS key derived from its name, and registers
/// with the given commission. Returns their signers to add to the sandbox.
pub fn add_validators(genesis: &mut Genesis, validators: &[(&str, u64, u64, &str)]) -> Vec<(String, Signer)> {
    let mut signers = Vec::new();
    for (name, self_stake, extra, commission) in validators {
        let signer = Signer::from_seed(&format!("vanna-demo/{name}"));
        add_validator(genesis, name, &signer, &consensus_secret(name), *self_stake, *extra, commission);
        signers.push((name.to_string(), signer));
    }
    signers
}

/// Adds one validator with the given keys: its operator account gets
/// `self_stake` plus `extra` liquid VANNA and registers with `commission`
/// (at most 0.5, changing by at most 0.02 a day).
pub fn add_validator(
    genesis: &mut Genesis,
    moniker: &str,
    operator: &Signer,
    consensus: &vanna_crypto::bls::BlsSecretKey,
    self_stake: u64,
    extra: u64,
    commission: &str,
) {
    let dec = |text: &str| text.parse::<Decimal>().expect("literal decimal");
    genesis.accounts.push(GenesisAccount {
        address: operator.address(),
        usd: Amount::ZERO,
        vanna: Amount::new(Decimal::from(self_stake + extra), crate::error::Field::Genesis).expect("valid"),
    });
    genesis.staking.validators.push(GenesisValidator {
        operator: operator.address(),
        consensus_key: hex::encode(secret_to_public(consensus)),
        proof_of_possession: hex::encode(vanna_crypto::bls::proof_of_possession(consensus).to_bytes()),
        moniker: moniker.to_string(),
        commission_rate: dec(commission),
        max_commission_rate: dec("0.5"),
        max_commission_change: dec("0.02"),
        self_stake: Amount::new(Decimal::from(self_stake), crate::error::Field::Genesis).expect("valid"),
    });
}

/// The BLS consensus key of a demo validator, derived from its name.
pub fn consensus_secret(name: &str) -> vanna_crypto::bls::BlsSecretKey {
    use sha2::{Digest, Sha256};
    let seed: [u8; 32] = Sha256::digest(format!("vanna-demo/consensus/{name}")).into();
    vanna_crypto::bls::BlsSecretKey::from_seed(&seed).expect("32 bytes of seed")
}

/// The compressed public key of a consensus secret.
pub fn secret_to_public(secret: &vanna_crypto::bls::BlsSecretKey) -> [u8; 48] {
    vanna_crypto::bls::public_key(secret).to_bytes()
}

/// The demo market: BTC and ETH with a December expiry, a listing authority
/// and the given funded accounts (name, USD), and an insurance fund of
/// [`DEMO_INSURANCE_FUND_USD`]. Keys derive from the names.
pub fn demo_genesis(accounts: &[(&str, u64)]) -> (Genesis, Vec<(String, Signer)>) {
    let dec = |text: &str| text.parse::<Decimal>().expect("literal decimal");
    let mut signers = vec![("authority".to_string(), Signer::from_seed("vanna-demo/authority"))];
    for (name, _) in accounts {
        signers.push((name.to_string(), Signer::from_seed(&format!("vanna-demo/{name}"))));
    }
    let mut genesis_accounts = vec![GenesisAccount {
        address: signers[0].1.address(),
        usd: Amount::ZERO,
        vanna: Amount::new(dec("1000000"), crate::error::Field::Genesis).expect("valid"),
    }];
    for ((_, usd), (_, signer)) in accounts.iter().zip(signers.iter().skip(1)) {
        genesis_accounts.push(GenesisAccount {
            address: signer.address(),
            usd: Amount::new(Decimal::from(*usd), crate::error::Field::Genesis).expect("valid"),
            vanna: Amount::ZERO,
        });
    }
    // The insurance fund starts with a reserve, as venues seed theirs.
    genesis_accounts.push(GenesisAccount {
        address: Address::insurance_fund(),
        usd: Amount::new(Decimal::from(DEMO_INSURANCE_FUND_USD), crate::error::Field::Genesis).expect("valid"),
        vanna: Amount::ZERO,
    });
    let underlying = |symbol: &str, tick: &str, lot: &str, index: &str| UnderlyingSpec {
        symbol: symbol.to_string(),
        tick_size: Price::new(dec(tick), crate::error::Field::TickSize).expect("valid"),
        lot_size: Quantity::new(dec(lot), crate::error::Field::LotSize).expect("valid"),
        index_price: Price::new(dec(index), crate::error::Field::IndexPrice).expect("valid"),
    };
    let mut series = Vec::new();
    for strike in ["90000", "100000", "110000"] {
        for kind in ["C", "P"] {
            series.push(format!("BTC-25DEC26-{strike}-{kind}"));
        }
    }
    for strike in ["3000", "3500", "4000"] {
        for kind in ["C", "P"] {
            series.push(format!("ETH-25DEC26-{strike}-{kind}"));
        }
    }
    let genesis = Genesis {
        chain_id: DEMO_CHAIN_ID.to_string(),
        genesis_time_ms: DEMO_GENESIS_TIME_MS,
        listing_authority: signers[0].1.address(),
        fees: FeeSchedule { maker_rate: dec("0.0002"), taker_rate: dec("0.0005"), premium_cap: dec("0.125") },
        underlyings: vec![underlying("BTC", "0.5", "0.01", "97000"), underlying("ETH", "0.1", "0.1", "3500")],
        series,
        accounts: genesis_accounts,
        staking: Default::default(),
        oracle: Default::default(),
        margin: Default::default(),
        liquidation: Default::default(),
    };
    (genesis, signers)
}

/// An oracle report signed with `signer`'s operator key: what a validator's
/// feeder sends.
pub fn sign_oracle_report(signer: &Signer, chain_id: &str, prices: &[vanna_oracle::PriceReport]) -> Vec<u8> {
    use prost::Message;
    vanna_oracle::sign_report(signer.signing_key(), chain_id, prices).encode_to_vec()
}
