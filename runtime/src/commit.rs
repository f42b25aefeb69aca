//! The state root: a sparse Merkle tree (vanna-merkle) with one leaf per
//! account, per underlying (its spec, and its oracle state), per series and
//! one for chain-wide values. Changes
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

use crate::error::TxError;
use crate::ids::{Address, SeriesId};
use crate::instrument::{OptionKind, UnderlyingSpec};
use crate::staking::{Delegation, Staking, Validator};
use crate::state::{Market, State};

/// Tracks which leaves changed since the last root.
#[derive(Debug, Default)]
pub(crate) struct Commitment {
    tree: SparseMerkleTree,
    dirty_accounts: BTreeSet<u64>,
    dirty_series: BTreeSet<SeriesId>,
    dirty_underlyings: BTreeSet<String>,
    dirty_oracle: BTreeSet<String>,
    global_dirty: bool,
    dirty_validators: BTreeSet<Address>,
    dirty_delegations: BTreeSet<(Address, Address)>,
    dirty_queues: BTreeSet<Address>,
    staking_dirty: bool,
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

    pub(crate) fn touch_oracle(&mut self, symbol: &str) {
        if !self.dirty_oracle.contains(symbol) {
            self.dirty_oracle.insert(symbol.to_string());
        }
    }

    pub(crate) fn touch_global(&mut self) {
        self.global_dirty = true;
    }

    pub(crate) fn touch_validator(&mut self, operator: Address) {
        self.dirty_validators.insert(operator);
    }

    pub(crate) fn touch_delegation(&mut self, delegator: Address, validator: Address) {
        self.dirty_delegations.insert((delegator, validator));
    }

    pub(crate) fn touch_queues(&mut self, delegator: Address) {
        self.dirty_queues.insert(delegator);
    }

    pub(crate) fn touch_staking(&mut self) {
        self.staking_dirty = true;
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

fn oracle_key(symbol: &str) -> Hash {
    tagged_key(b"vanna/oracle", symbol.as_bytes())
}

fn global_key() -> Hash {
    tagged_key(b"vanna/global", b"")
}

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

fn validator_key(operator: &Address) -> Hash {
    tagged_key(b"vanna/validator", operator.as_bytes())
}

fn delegation_key(delegator: &Address, validator: &Address) -> Hash {
    let mut id = [0u8; 40];
    id[..20].copy_from_slice(delegator.as_bytes());
    id[20..].copy_from_slice(validator.as_bytes());
    tagged_key(b"vanna/delegation", &id)
}

fn queues_key(delegator: &Address) -> Hash {
    tagged_key(b"vanna/staking-queues", delegator.as_bytes())
}

fn staking_key() -> Hash {
    tagged_key(b"vanna/staking", b"")
}

fn validator_state(v: &Validator) -> wire::ValidatorState {
    wire::ValidatorState {
        operator: v.operator.as_bytes().to_vec(),
        consensus_key: v.consensus_key.to_vec(),
        moniker: v.moniker.clone(),
        commission_rate: v.commission_rate.to_string(),
        max_commission_rate: v.max_commission_rate.to_string(),
        max_commission_change: v.max_commission_change.to_string(),
        last_commission_change_ms: v.last_commission_change_ms,
        tokens: v.tokens,
        shares: v.shares.to_string(),
        jailed: v.jailed,
        jailed_until_ms: v.jailed_until_ms,
        tombstoned: v.tombstoned,
        reward_per_share: v.reward_per_share.to_string(),
        reward_pool: v.reward_pool,
        commission_pending: v.commission_pending,
        reward_carry: v.reward_carry.to_string(),
        missed_in_window: v.missed_in_window,
        signed_window: v.signed_window.iter().enumerate().fold(
            vec![0u8; v.signed_window.len().div_ceil(8)],
            |mut bits, (i, signed)| {
                bits[i / 8] |= u8::from(*signed) << (i % 8);
                bits
            },
        ),
        signed_window_blocks: v.signed_window.len() as u32,
    }
}

fn delegation_state(
    staking: &Staking,
    delegator: &Address,
    validator: &Address,
    d: &Delegation,
) -> wire::DelegationState {
    wire::DelegationState {
        delegator: delegator.as_bytes().to_vec(),
        validator: validator.as_bytes().to_vec(),
        shares: d.shares.to_string(),
        reward_per_share_paid: d.reward_per_share_paid.to_string(),
        recent_bonds: staking
            .recent_bonds_of(delegator, validator)
            .into_iter()
            .map(|(height, shares)| wire::BondTranche { height, shares: shares.to_string() })
            .collect(),
    }
}

fn queues_state(staking: &Staking, delegator: &Address) -> Option<wire::DelegatorQueuesState> {
    let range = (*delegator, 0)..=(*delegator, u64::MAX);
    let unbonding: Vec<_> = staking
        .unbonding
        .range(range.clone())
        .map(|(_, e)| wire::UnbondingEntryState {
            validator: e.validator.as_bytes().to_vec(),
            creation_height: e.creation_height,
            completion_ms: e.completion_ms,
            initial_balance: e.initial_balance,
            balance: e.balance,
            recent_bonds: recent_bonds(&e.recent_bonds),
        })
        .collect();
    let redelegations: Vec<_> = staking
        .redelegations
        .range(range)
        .map(|(_, e)| wire::RedelegationEntryState {
            from_validator: e.from.as_bytes().to_vec(),
            to_validator: e.to.as_bytes().to_vec(),
            creation_height: e.creation_height,
            completion_ms: e.completion_ms,
            initial_balance: e.initial_balance,
            shares_at_destination: e.shares_at_destination.to_string(),
            recent_bonds: recent_bonds(&e.recent_bonds),
        })
        .collect();
    (!unbonding.is_empty() || !redelegations.is_empty()).then(|| wire::DelegatorQueuesState {
        delegator: delegator.as_bytes().to_vec(),
        unbonding,
        redelegations,
    })
}

fn recent_bonds(parts: &[(u64, u64)]) -> Vec<wire::RecentBond> {
    parts.iter().map(|(height, amount)| wire::RecentBond { height: *height, amount: *amount }).collect()
}

fn staking_state(staking: &Staking) -> wire::StakingGlobalState {
    wire::StakingGlobalState {
        epoch: staking.epoch,
        burned: staking.burned,
        active_set: staking.active.iter().map(|m| m.operator.as_bytes().to_vec()).collect(),
        active_powers: staking.active.iter().map(|m| m.power).collect(),
        fees_distributed: staking.fees_distributed,
        next_entry_id: staking.next_entry_id,
        params: serde_json::to_string(&staking.params).expect("params serialise"),
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
            self.commitment.tree.insert(account_key(&address), value_hash(&account.encode_to_vec()));
        }
        let dirty_series = std::mem::take(&mut self.commitment.dirty_series);
        for series in dirty_series {
            let market = self.market(series);
            let state = series_state(market);
            self.commitment.tree.insert(series_key(&state.name), value_hash(&state.encode_to_vec()));
        }
        let dirty_underlyings = std::mem::take(&mut self.commitment.dirty_underlyings);
        for symbol in dirty_underlyings {
            let state = underlying_state(&self.underlyings[&symbol]);
            self.commitment.tree.insert(underlying_key(&symbol), value_hash(&state.encode_to_vec()));
        }
        for symbol in std::mem::take(&mut self.commitment.dirty_oracle) {
            let state = self.oracle_state(&crate::oracle::oracle_symbol(&symbol));
            self.commitment.tree.insert(oracle_key(&symbol), value_hash(&state.encode_to_vec()));
        }
        if std::mem::take(&mut self.commitment.global_dirty) {
            let global = self.global_state();
            self.commitment.tree.insert(global_key(), value_hash(&global.encode_to_vec()));
        }
        for operator in std::mem::take(&mut self.commitment.dirty_validators) {
            let state = validator_state(&self.staking.validators[&operator]);
            self.commitment.tree.insert(validator_key(&operator), value_hash(&state.encode_to_vec()));
        }
        for (delegator, validator) in std::mem::take(&mut self.commitment.dirty_delegations) {
            let key = delegation_key(&delegator, &validator);
            match self.staking.delegations.get(&(delegator, validator)) {
                Some(d) => {
                    let state = delegation_state(&self.staking, &delegator, &validator, d);
                    self.commitment.tree.insert(key, value_hash(&state.encode_to_vec()));
                }
                None => {
                    self.commitment.tree.remove(&key);
                }
            }
        }
        for delegator in std::mem::take(&mut self.commitment.dirty_queues) {
            let key = queues_key(&delegator);
            match queues_state(&self.staking, &delegator) {
                Some(state) => self.commitment.tree.insert(key, value_hash(&state.encode_to_vec())),
                None => {
                    self.commitment.tree.remove(&key);
                }
            }
        }
        if std::mem::take(&mut self.commitment.staking_dirty) {
            let state = staking_state(&self.staking);
            self.commitment.tree.insert(staking_key(), value_hash(&state.encode_to_vec()));
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
        for (operator, validator) in &self.staking.validators {
            tree.insert(validator_key(operator), value_hash(&validator_state(validator).encode_to_vec()));
        }
        for ((delegator, validator), d) in &self.staking.delegations {
            let state = delegation_state(&self.staking, delegator, validator, d);
            tree.insert(delegation_key(delegator, validator), value_hash(&state.encode_to_vec()));
        }
        let mut delegators = BTreeSet::new();
        delegators.extend(self.staking.unbonding.keys().map(|(d, _)| *d));
        delegators.extend(self.staking.redelegations.keys().map(|(d, _)| *d));
        for delegator in delegators {
            if let Some(state) = queues_state(&self.staking, &delegator) {
                tree.insert(queues_key(&delegator), value_hash(&state.encode_to_vec()));
            }
        }
        tree.insert(staking_key(), value_hash(&staking_state(&self.staking).encode_to_vec()));
        tree.root()
    }
}

/// Checks an encoded `AccountProof` against a state root, with nothing else:
/// what a light client or an exchange does. Returns the proven account.
/// Refuses a proof whose bytes are not the canonical encoding, so no byte of
/// an accepted proof can be changed.
pub fn verify_account_proof(root: &Hash, address: &Address, proof_bytes: &[u8]) -> Result<wire::AccountState, TxError> {
    let refuse = |why: &str| TxError::Malformed(format!("account proof refused: {why}"));
    let proof = wire::AccountProof::decode(proof_bytes).map_err(|_| refuse("not an AccountProof"))?;
    if proof.encode_to_vec() != proof_bytes {
        return Err(refuse("not canonically encoded"));
    }
    let account =
        wire::AccountState::decode(proof.account.as_slice()).map_err(|_| refuse("account bytes do not decode"))?;
    if account.encode_to_vec() != proof.account {
        return Err(refuse("account bytes not canonically encoded"));
    }
    if account.address != address.as_bytes() {
        return Err(refuse("proof is for another account"));
    }
    let mut siblings = Vec::with_capacity(proof.siblings.len());
    for sibling in &proof.siblings {
        let hash: Hash = sibling.as_slice().try_into().map_err(|_| refuse("sibling is not 32 bytes"))?;
        siblings.push(hash);
    }
    if !vanna_merkle::verify_inclusion(root, &account_key(address), &value_hash(&proof.account), &siblings) {
        return Err(refuse("does not match the state root"));
    }
    Ok(account)
}
