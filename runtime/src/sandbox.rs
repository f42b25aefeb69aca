//! An in-memory chain for demos, tests and benchmarks: named signers, nonce
//! tracking and block production on top of `apply_block`, with block time
//! advanced by a fixed step. Deterministic; the node replaces it with consensus.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use vanna_proto::v1 as wire;

use crate::block::{BlockContext, BlockOutput, apply_block};
use crate::error::RuntimeError;
use crate::genesis::{Genesis, GenesisAccount};
use crate::ids::Address;
use crate::instrument::UnderlyingSpec;
use crate::money::{Amount, Price, Quantity};
use crate::state::{FeeSchedule, State};
use crate::tx::Signer;

/// 2026-11-25 00:00 UTC: the demo chain's genesis time.
pub const DEMO_GENESIS_TIME_MS: u64 = 1_795_564_800_000;
pub const DEMO_CHAIN_ID: &str = "vanna-demo";

pub struct Sandbox {
    pub state: State,
    signers: BTreeMap<String, Signer>,
    pending: Vec<Vec<u8>>,
    pending_per_sender: BTreeMap<Address, u64>,
    pub block_interval_ms: u64,
}

impl Sandbox {
    pub fn new(
        genesis: &Genesis,
        signers: impl IntoIterator<Item = (String, Signer)>,
    ) -> Result<Self, RuntimeError> {
        Ok(Sandbox {
            state: genesis.build()?,
            signers: signers.into_iter().collect(),
            pending: Vec::new(),
            pending_per_sender: BTreeMap::new(),
            block_interval_ms: 1_000,
        })
    }

    pub fn signer(&self, name: &str) -> &Signer {
        self.signers
            .get(name)
            .unwrap_or_else(|| panic!("no signer named {name}"))
    }

    pub fn address(&self, name: &str) -> Address {
        self.signer(name).address()
    }

    /// The nonce the next transaction of `address` should carry.
    pub fn next_nonce(&self, address: &Address) -> u64 {
        let committed = self
            .state
            .account(address)
            .map_or(0, |account| account.nonce);
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

    /// Applies the queued transactions as the next block.
    pub fn produce_block(&mut self) -> BlockOutput {
        let context = BlockContext {
            height: self.state.height + 1,
            time_ms: self.state.time_ms + self.block_interval_ms,
        };
        let transactions = std::mem::take(&mut self.pending);
        self.pending_per_sender.clear();
        apply_block(&mut self.state, &context, &transactions)
            .expect("the sandbox builds valid block contexts")
    }
}

/// The demo market: BTC and ETH with a December expiry, a listing authority
/// and the given funded accounts (name, USD). Keys derive from the names.
pub fn demo_genesis(accounts: &[(&str, u64)]) -> (Genesis, Vec<(String, Signer)>) {
    let dec = |text: &str| text.parse::<Decimal>().expect("literal decimal");
    let mut signers = vec![(
        "authority".to_string(),
        Signer::from_seed("vanna-demo/authority"),
    )];
    for (name, _) in accounts {
        signers.push((
            name.to_string(),
            Signer::from_seed(&format!("vanna-demo/{name}")),
        ));
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
        fees: FeeSchedule {
            maker_rate: dec("0.0002"),
            taker_rate: dec("0.0005"),
            premium_cap: dec("0.125"),
        },
        underlyings: vec![
            underlying("BTC", "0.5", "0.01", "97000"),
            underlying("ETH", "0.1", "0.1", "3500"),
        ],
        series,
        accounts: genesis_accounts,
    };
    (genesis, signers)
}
