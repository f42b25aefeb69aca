//! The runtime's leaves of the state commitment and their canonical
//! encodings: accounts (balances, positions sorted by series name, open
//! orders by id, backstop offers), series, underlyings, oracle states and
//! chain-wide values; the staking ledger encodes its own. Brings the tree
//! up to date after each block and proves accounts.
//!
//! An account's leaf commits to its canonical `AccountState` bytes, so one
//! proof shows balances, positions and open orders together.

use prost::Message;
use vanna_book::Side;
use vanna_merkle::{Hash, SparseMerkleTree};
use vanna_proto::v1 as wire;

use crate::commit::{account_key, global_key, oracle_key, series_key, underlying_key, value_hash};
use crate::ids::Address;
use crate::instrument::{OptionKind, UnderlyingSpec};
use crate::state::{Market, State};

fn series_state(market: &Market) -> wire::SeriesState {
    wire::SeriesState {
        name: market.spec.name.to_string(),
        underlying: market.spec.underlying.clone(),
        expiry_ms: market.spec.expiry_ms,
        strike: market.spec.strike.to_string(),
        call: market.spec.kind == OptionKind::Call,
        settled: market.settled_at.is_some(),
        settlement_price: market.settled_at.map(|price| price.to_string()).unwrap_or_default(),
    }
}

fn underlying_state(spec: &UnderlyingSpec) -> wire::UnderlyingState {
    wire::UnderlyingState {
        symbol: spec.symbol.clone(),
        tick_size: spec.tick_size.to_string(),
        lot_size: spec.lot_size.to_string(),
        index_price: spec.index_price.to_string(),
    }
}

impl State {
    /// Brings the tree up to date with every change since the last call and
    /// returns the root. Cost follows what changed, not the size of the state.
    pub fn state_root(&mut self) -> Hash {
        let dirty = self.commitment.take_dirty();
        for owner in dirty.accounts {
            let account = self.account_state(owner);
            let address = self.accounts[owner as usize].address;
            self.commitment.write(account_key(&address), Some(value_hash(&account.encode_to_vec())));
        }
        for series in dirty.series {
            let state = series_state(self.market(series));
            self.commitment.write(series_key(&state.name), Some(value_hash(&state.encode_to_vec())));
        }
        for symbol in dirty.underlyings {
            let state = underlying_state(&self.underlyings[&symbol]);
            self.commitment.write(underlying_key(&symbol), Some(value_hash(&state.encode_to_vec())));
        }
        for symbol in dirty.oracle {
            let state = self.oracle_state(&crate::oracle::oracle_symbol(&symbol));
            self.commitment.write(oracle_key(&symbol), Some(value_hash(&state.encode_to_vec())));
        }
        if dirty.global {
            let global = self.global_state();
            self.commitment.write(global_key(), Some(value_hash(&global.encode_to_vec())));
        }
        for (key, value) in self.staking.take_changed_leaves() {
            self.commitment.write(key, value);
        }
        self.commitment.tree.root()
    }

    fn global_state(&self) -> wire::GlobalState {
        wire::GlobalState {
            chain_id: self.params.chain_id.clone(),
            height: self.height,
            block_time_ms: self.time_ms,
            fee_pool_usd: self.fee_pool.to_string(),
            next_order_id: self.next_order_id,
            next_sequence: self.next_sequence,
            listing_authority: self.params.listing_authority.as_bytes().to_vec(),
            maker_fee_rate: self.params.fees.maker_rate.normalize().to_string(),
            taker_fee_rate: self.params.fees.taker_rate.normalize().to_string(),
            fee_premium_cap: self.params.fees.premium_cap.normalize().to_string(),
            next_backstop_id: self.next_backstop_id,
            liquidation_params: serde_json::to_string(&self.liquidation).expect("params serialise"),
        }
    }

    /// The canonical committed form of an account: positions sorted by series
    /// name, open orders by id.
    pub fn account_state(&self, owner: u64) -> wire::AccountState {
        let account = &self.accounts[owner as usize];
        let mut positions: Vec<wire::PositionState> = account
            .exposures
            .iter()
            .filter(|(_, exposure)| exposure.position_lots != 0)
            .map(|(series, exposure)| {
                let market = self.market(*series);
                wire::PositionState {
                    series: market.spec.name.to_string(),
                    contracts: market.signed_contracts(exposure.position_lots).to_string(),
                    cost: exposure.cost.normalize().to_string(),
                }
            })
            .collect();
        positions.sort_by(|a, b| a.series.cmp(&b.series));
        let open_orders = account
            .open_orders
            .iter()
            .map(|id| {
                let info = &self.orders[id];
                let market = self.market(info.series);
                let resting = market.book.get(id.0).expect("open orders rest");
                wire::OrderState {
                    order_id: id.0,
                    client_order_id: info.client_order_id,
                    series: market.spec.name.to_string(),
                    buy: info.side == Side::Buy,
                    price: info.price.to_string(),
                    remaining: market.contracts(resting.remaining_lots).to_string(),
                    original: market.contracts(info.original_lots).to_string(),
                    sequence: resting.sequence,
                    expire_at_ms: info.expire_at_ms,
                    post_only: info.post_only,
                    reduce_only: info.reduce_only,
                    self_trade_prevention: info.self_trade.code(),
                    margin_reserve_per_lot: info.sell_reserve_per_lot.to_string(),
                }
            })
            .collect();
        wire::AccountState {
            address: account.address.as_bytes().to_vec(),
            nonce: account.nonce,
            public_key: account.public_key.as_ref().map(|key| key.compressed().to_vec()).unwrap_or_default(),
            usd: account.usd.to_string(),
            usd_locked: account.usd_locked.to_string(),
            vanna: account.vanna.to_string(),
            positions,
            open_orders,
            backstop_offers: account
                .backstop_offers
                .iter()
                .map(|id| {
                    let offer = &self.backstops[id];
                    wire::BackstopOfferState {
                        offer_id: *id,
                        underlying: offer.underlying.clone(),
                        remaining_notional: offer.remaining_notional.to_string(),
                        discount: offer.discount.normalize().to_string(),
                        collateral: offer.collateral.to_string(),
                    }
                })
                .collect(),
        }
    }

    /// A proof of an account's committed state against the current root.
    /// Call after `state_root` for the block whose root the client holds.
    pub fn prove_account(&mut self, address: &Address) -> Option<wire::AccountProof> {
        let owner = *self.account_index.get(address)?;
        let account = self.account_state(owner).encode_to_vec();
        let proof = self.commitment.tree.prove(&account_key(address));
        Some(wire::AccountProof { account, siblings: proof.siblings.iter().map(|s| s.to_vec()).collect() })
    }

    /// Recomputes the root from nothing; tests compare it with the incremental one.
    pub fn state_root_from_scratch(&self) -> Hash {
        self.full_tree().root()
    }

    /// The commitment's tree built from nothing: what a restored state starts from.
    pub(crate) fn full_tree(&self) -> SparseMerkleTree {
        let mut tree = SparseMerkleTree::new();
        for owner in 0..self.accounts.len() as u64 {
            let address = self.accounts[owner as usize].address;
            tree.insert(account_key(&address), value_hash(&self.account_state(owner).encode_to_vec()));
        }
        for market in &self.markets {
            let state = series_state(market);
            tree.insert(series_key(&state.name), value_hash(&state.encode_to_vec()));
        }
        for spec in self.underlyings.values() {
            let state = underlying_state(spec);
            tree.insert(underlying_key(&spec.symbol), value_hash(&state.encode_to_vec()));
            let oracle = self.oracle_state(&crate::oracle::oracle_symbol(&spec.symbol));
            tree.insert(oracle_key(&spec.symbol), value_hash(&oracle.encode_to_vec()));
        }
        tree.insert(global_key(), value_hash(&self.global_state().encode_to_vec()));
        for (key, value) in self.staking.all_leaves() {
            tree.insert(key, value);
        }
        tree
    }
}
