//! An in-memory chain for demos, tests and benchmarks: named signers, nonce
//! tracking and block production on top of `apply_block`, with block time
//! advanced by a fixed step. Deterministic; the node replaces it with
//! consensus. Compiled only for tests and with the `testkit` feature, never
//! into a validator's binary.

use std::collections::BTreeMap;

use vanna_proto::v1 as wire;

pub use crate::devnet::*;

use crate::block::{BlockContext, BlockOutput, apply_block};
use crate::error::TxError;
use crate::genesis::Genesis;
use crate::ids::Address;
use crate::staking::EvidenceRecord;
use crate::state::State;
use crate::tx::Signer;

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
