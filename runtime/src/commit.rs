//! The state root: a sparse Merkle tree (vanna-merkle) with one leaf per
//! account, per underlying, per series and one for chain-wide values. Changes
//! mark their leaf dirty; after each block only dirty leaves are re-encoded and
//! only their paths re-hashed.
//!
//! An account's leaf commits to its canonical `AccountState` bytes: balances,
//! positions and open orders, so one proof shows all three.

use std::collections::BTreeSet;

use prost::Message;
use sha2::{Digest, Sha256};
use vanna_book::Side;
use vanna_merkle::{Hash, SparseMerkleTree};
use vanna_proto::v1 as wire;

use crate::error::RuntimeError;
use crate::ids::{Address, SeriesId};
use crate::instrument::{OptionKind, UnderlyingSpec};
use crate::state::{Market, State};

/// Tracks which leaves changed since the last root.
#[derive(Debug, Default)]
pub(crate) struct Commitment {
    tree: SparseMerkleTree,
    dirty_accounts: BTreeSet<u64>,
    dirty_series: BTreeSet<SeriesId>,
    dirty_underlyings: BTreeSet<String>,
    global_dirty: bool,
}

impl Commitment {
    pub(crate) fn touch_account(&mut self, owner: u64) {
        self.dirty_accounts.insert(owner);
    }

    pub(crate) fn touch_series(&mut self, series: SeriesId) {
        self.dirty_series.insert(series);
    }

    pub(crate) fn touch_underlying(&mut self, symbol: &str) {
        if !self.dirty_underlyings.contains(symbol) {
            self.dirty_underlyings.insert(symbol.to_string());
        }
    }

    pub(crate) fn touch_global(&mut self) {
        self.global_dirty = true;
    }
}

fn tagged_key(tag: &[u8], id: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update(tag);
    hasher.update(id);
    hasher.finalize().into()
}

/// The tree key of an account's leaf.
pub fn account_key(address: &Address) -> Hash {
    tagged_key(b"vanna/account", address.as_bytes())
}

fn series_key(name: &str) -> Hash {
    tagged_key(b"vanna/series", name.as_bytes())
}

fn underlying_key(symbol: &str) -> Hash {
    tagged_key(b"vanna/underlying", symbol.as_bytes())
}

fn global_key() -> Hash {
    tagged_key(b"vanna/global", b"")
}

fn series_state(market: &Market) -> wire::SeriesState {
    wire::SeriesState {
        name: market.spec.name.clone(),
        underlying: market.spec.underlying.clone(),
        expiry_ms: market.spec.expiry_ms,
        strike: market.spec.strike.to_string(),
        call: market.spec.kind == OptionKind::Call,
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

fn value_hash(bytes: &[u8]) -> Hash {
    Sha256::digest(bytes).into()
}

impl State {
    /// Brings the tree up to date with every change since the last call and
    /// returns the root. Cost follows what changed, not the size of the state.
    pub fn state_root(&mut self) -> Hash {
        let dirty_accounts = std::mem::take(&mut self.commitment.dirty_accounts);
        for owner in dirty_accounts {
            let account = self.account_state(owner);
            let address = self.accounts[owner as usize].address;
            self.commitment
                .tree
                .insert(account_key(&address), value_hash(&account.encode_to_vec()));
        }
        let dirty_series = std::mem::take(&mut self.commitment.dirty_series);
        for series in dirty_series {
            let market = self.market(series);
            let state = series_state(market);
            self.commitment
                .tree
                .insert(series_key(&state.name), value_hash(&state.encode_to_vec()));
        }
        let dirty_underlyings = std::mem::take(&mut self.commitment.dirty_underlyings);
        for symbol in dirty_underlyings {
            let state = underlying_state(&self.underlyings[&symbol]);
            self.commitment
                .tree
                .insert(underlying_key(&symbol), value_hash(&state.encode_to_vec()));
        }
        if std::mem::take(&mut self.commitment.global_dirty) {
            let global = self.global_state();
            self.commitment
                .tree
                .insert(global_key(), value_hash(&global.encode_to_vec()));
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
                    series: market.spec.name.clone(),
                    contracts: market.signed_contracts(exposure.position_lots).to_string(),
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
                    series: market.spec.name.clone(),
                    buy: info.side == Side::Buy,
                    price: info.price.to_string(),
                    remaining: market.contracts(resting.remaining_lots).to_string(),
                    original: market.contracts(info.original_lots).to_string(),
                    sequence: resting.sequence,
                    expire_at_ms: info.expire_at_ms,
                    post_only: info.post_only,
                    reduce_only: info.reduce_only,
                    self_trade_prevention: info.self_trade.code(),
                }
            })
            .collect();
        wire::AccountState {
            address: account.address.as_bytes().to_vec(),
            nonce: account.nonce,
            public_key: account
                .public_key
                .as_ref()
                .map(|key| key.compressed().to_vec())
                .unwrap_or_default(),
            usd: account.usd.to_string(),
            usd_locked: account.usd_locked.to_string(),
            vanna: account.vanna.to_string(),
            positions,
            open_orders,
        }
    }

    /// A proof of an account's committed state against the current root.
    /// Call after `state_root` for the block whose root the client holds.
    pub fn prove_account(&mut self, address: &Address) -> Option<wire::AccountProof> {
        let owner = *self.account_index.get(address)?;
        let account = self.account_state(owner).encode_to_vec();
        let proof = self.commitment.tree.prove(&account_key(address));
        Some(wire::AccountProof {
            account,
            siblings: proof.siblings.iter().map(|s| s.to_vec()).collect(),
        })
    }

    /// Recomputes the root from nothing; tests compare it with the incremental one.
    pub fn state_root_from_scratch(&self) -> Hash {
        let mut tree = SparseMerkleTree::new();
        for owner in 0..self.accounts.len() as u64 {
            let address = self.accounts[owner as usize].address;
            tree.insert(
                account_key(&address),
                value_hash(&self.account_state(owner).encode_to_vec()),
            );
        }
        for market in &self.markets {
            let state = series_state(market);
            tree.insert(series_key(&state.name), value_hash(&state.encode_to_vec()));
        }
        for spec in self.underlyings.values() {
            let state = underlying_state(spec);
            tree.insert(
                underlying_key(&spec.symbol),
                value_hash(&state.encode_to_vec()),
            );
        }
        tree.insert(
            global_key(),
            value_hash(&self.global_state().encode_to_vec()),
        );
        tree.root()
    }
}

/// Checks an encoded `AccountProof` against a state root, with nothing else:
/// what a light client or an exchange does. Returns the proven account.
/// Refuses a proof whose bytes are not the canonical encoding, so no byte of
/// an accepted proof can be changed.
pub fn verify_account_proof(
    root: &Hash,
    address: &Address,
    proof_bytes: &[u8],
) -> Result<wire::AccountState, RuntimeError> {
    let refuse = |why: &str| RuntimeError::Malformed(format!("account proof refused: {why}"));
    let proof =
        wire::AccountProof::decode(proof_bytes).map_err(|_| refuse("not an AccountProof"))?;
    if proof.encode_to_vec() != proof_bytes {
        return Err(refuse("not canonically encoded"));
    }
    let account = wire::AccountState::decode(proof.account.as_slice())
        .map_err(|_| refuse("account bytes do not decode"))?;
    if account.encode_to_vec() != proof.account {
        return Err(refuse("account bytes not canonically encoded"));
    }
    if account.address != address.as_bytes() {
        return Err(refuse("proof is for another account"));
    }
    let mut siblings = Vec::with_capacity(proof.siblings.len());
    for sibling in &proof.siblings {
        let hash: Hash = sibling
            .as_slice()
            .try_into()
            .map_err(|_| refuse("sibling is not 32 bytes"))?;
        siblings.push(hash);
    }
    if !vanna_merkle::verify_inclusion(
        root,
        &account_key(address),
        &value_hash(&proof.account),
        &siblings,
    ) {
        return Err(refuse("does not match the state root"));
    }
    Ok(account)
}
