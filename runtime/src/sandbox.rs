//! An in-memory chain for demos, tests and benchmarks: named signers, nonce
//! tracking and block production on top of `apply_block`, with block time
//! advanced by a fixed step. Deterministic; the node replaces it with consensus.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use vanna_proto::v1 as wire;

use crate::block::{BlockContext, BlockOutput, apply_block};
use crate::error::TxError;
use crate::genesis::{Genesis, GenesisAccount, GenesisValidator};
use crate::ids::Address;
use crate::instrument::UnderlyingSpec;
use crate::money::{Amount, Price, Quantity};
use crate::staking::EvidenceRecord;
use crate::state::{FeeSchedule, State};
use crate::tx::Signer;

/// 2026-11-25 00:00 UTC: the demo chain's genesis time.
pub const DEMO_GENESIS_TIME_MS: u64 = 1_795_564_800_000;
pub const DEMO_CHAIN_ID: &str = "vanna-demo";
/// USD the demo genesis puts in the insurance fund.
pub const DEMO_INSURANCE_FUND_USD: u64 = 100_000;

pub struct Sandbox {
    pub state: State,
    signers: BTreeMap<String, Signer>,
    pending: Vec<Vec<u8>>,
    pending_per_sender: BTreeMap<Address, u64>,
    pub block_interval_ms: u64,
    /// Validators (by consensus key) that do not sign the next blocks.
    pub offline: std::collections::BTreeSet<[u8; 48]>,
    /// Evidence to hand to the next block.
    pub evidence: Vec<EvidenceRecord>,
    /// Signed oracle reports to hand to the next block.
    pub oracle_reports: Vec<Vec<u8>>,
}

impl Sandbox {
    pub fn new(genesis: &Genesis, signers: impl IntoIterator<Item = (String, Signer)>) -> Result<Self, TxError> {
        Ok(Sandbox {
            state: genesis.build()?,
            signers: signers.into_iter().collect(),
            pending: Vec::new(),
            pending_per_sender: BTreeMap::new(),
            block_interval_ms: 1_000,
            offline: Default::default(),
            evidence: Vec::new(),
            oracle_reports: Vec::new(),
        })
    }

    pub fn signer(&self, name: &str) -> &Signer {
        self.signers.get(name).unwrap_or_else(|| panic!("no signer named {name}"))
    }

    pub fn address(&self, name: &str) -> Address {
        self.signer(name).address()
    }

    /// The nonce the next transaction of `address` should carry.
    pub fn next_nonce(&self, address: &Address) -> u64 {
        let committed = self.state.account(address).map_or(0, |account| account.nonce);
        committed + self.pending_per_sender.get(address).copied().unwrap_or(0)
    }

    /// Signs `actions` as `name` with the next nonce and queues them for the next block.
    pub fn submit(&mut self, name: &str, actions: Vec<wire::Action>) {
        let signer = self.signer(name).clone();
        let nonce = self.next_nonce(&signer.address());
        let bytes = signer.sign(&self.state.params.chain_id, nonce, actions);
        *self.pending_per_sender.entry(signer.address()).or_default() += 1;
        self.pending.push(bytes);
    }

    /// Queues already-signed bytes as they are.
    pub fn submit_raw(&mut self, bytes: Vec<u8>) {
        self.pending.push(bytes);
    }

    /// The signed transactions queued for the next block, in block order.
    pub fn pending(&self) -> &[Vec<u8>] {
        &self.pending
    }

    /// Queues a report signed by each named operator, observed at the next
    /// block's time: `prices` are (underlying, spot) pairs, without surfaces.
    pub fn report_prices(&mut self, reporters: &[&str], prices: &[(&str, &str)]) {
        let observed_at_ms = self.state.time_ms + self.block_interval_ms;
        let reports: Vec<vanna_oracle::PriceReport> = prices
            .iter()
            .map(|(underlying, spot)| vanna_oracle::PriceReport {
                underlying: vanna_oracle::Underlying::new(underlying).expect("a listed underlying"),
                spot: vanna_oracle::IndexPrice::parse(spot).expect("a valid spot"),
                observed_at_ms,
                surface: None,
            })
            .collect();
        self.report(reporters, &reports);
    }

    /// Queues `reports` signed by each named operator.
    pub fn report(&mut self, reporters: &[&str], reports: &[vanna_oracle::PriceReport]) {
        for name in reporters {
            let bytes = sign_oracle_report(self.signer(name), &self.state.params.chain_id, reports);
            self.oracle_reports.push(bytes);
        }
    }

    /// Applies the queued transactions as the next block.
    pub fn produce_block(&mut self) -> BlockOutput {
        let signers = self
            .state
            .staking
            .active
            .iter()
            .map(|member| member.consensus_key)
            .filter(|key| !self.offline.contains(key))
            .collect();
        let context = BlockContext {
            signers: Some(signers),
            evidence: std::mem::take(&mut self.evidence),
            oracle_reports: std::mem::take(&mut self.oracle_reports),
            ..BlockContext::after(&self.state, self.block_interval_ms)
        };
        let transactions = std::mem::take(&mut self.pending);
        self.pending_per_sender.clear();
        apply_block(&mut self.state, &context, &transactions).expect("the sandbox builds valid block contexts")
    }
}

/// Adds validators to a genesis: each named operator gets `self_stake` VANNA
/// plus `extra` liquid VANNA, a BLS key derived from its name, and registers
/// with the given commission. Returns their signers to add to the sandbox.
pub fn add_validators(genesis: &mut Genesis, validators: &[(&str, u64, u64, &str)]) -> Vec<(String, Signer)> {
    let dec = |text: &str| text.parse::<Decimal>().expect("literal decimal");
    let mut signers = Vec::new();
    for (name, self_stake, extra, commission) in validators {
        let signer = Signer::from_seed(&format!("vanna-demo/{name}"));
        let secret = consensus_secret(name);
        let public = secret_to_public(&secret);
        genesis.accounts.push(GenesisAccount {
            address: signer.address(),
            usd: Amount::ZERO,
            vanna: Amount::new(Decimal::from(self_stake + extra), crate::error::Field::Genesis).expect("valid"),
        });
        genesis.staking.validators.push(GenesisValidator {
            operator: signer.address(),
            consensus_key: hex::encode(public),
            proof_of_possession: hex::encode(vanna_consensus::proof_of_possession(&secret).to_bytes()),
            moniker: name.to_string(),
            commission_rate: dec(commission),
            max_commission_rate: dec("0.5"),
            max_commission_change: dec("0.02"),
            self_stake: Amount::new(Decimal::from(*self_stake), crate::error::Field::Genesis).expect("valid"),
        });
        signers.push((name.to_string(), signer));
    }
    signers
}

/// The BLS consensus key of a demo validator, derived from its name.
pub fn consensus_secret(name: &str) -> vanna_consensus::BlsSecretKey {
    use sha2::{Digest, Sha256};
    let seed: [u8; 32] = Sha256::digest(format!("vanna-demo/consensus/{name}")).into();
    vanna_consensus::BlsSecretKey::from_seed(&seed).expect("32 bytes of seed")
}

/// The compressed public key of a consensus secret.
pub fn secret_to_public(secret: &vanna_consensus::BlsSecretKey) -> [u8; 48] {
    use vanna_consensus::Scheme;
    vanna_consensus::Bls::public_key(secret).to_bytes()
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
