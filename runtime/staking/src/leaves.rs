//! The ledger's leaves of the state commitment: one per validator, per
//! delegation and per delegator's queues, and one for the ledger's
//! chain-wide values, each SHA-256 of its canonical protobuf encoding.

use prost::Message;
use vanna_merkle::Hash;
use vanna_proto::v1 as wire;
use vanna_types::ids::Address;
use vanna_types::proof::{leaf_key, value_hash};

use super::{Delegation, Staking, Validator};

/// A changed leaf: its key, and its value hash or `None` when it is gone.
pub type Leaf = (Hash, Option<Hash>);

impl Staking {
    /// The leaves changed since the last call, for the commitment to write.
    pub fn take_changed_leaves(&mut self) -> Vec<Leaf> {
        let touched = std::mem::take(&mut self.touched);
        let mut leaves = Vec::new();
        for operator in touched.validators {
            let value = self.validators.get(&operator).map(|v| value_hash(&validator_state(v).encode_to_vec()));
            leaves.push((validator_key(&operator), value));
        }
        for (delegator, validator) in touched.delegations {
            let value = self
                .delegations
                .get(&(delegator, validator))
                .map(|d| value_hash(&delegation_state(self, &delegator, &validator, d).encode_to_vec()));
            leaves.push((delegation_key(&delegator, &validator), value));
        }
        for delegator in touched.queues {
            let value = queues_state(self, &delegator).map(|state| value_hash(&state.encode_to_vec()));
            leaves.push((queues_key(&delegator), value));
        }
        if touched.global {
            leaves.push((staking_key(), Some(value_hash(&staking_state(self).encode_to_vec()))));
        }
        leaves
    }

    /// Every leaf of the ledger, for a root recomputed from nothing.
    pub fn all_leaves(&self) -> Vec<(Hash, Hash)> {
        let mut leaves = Vec::new();
        for (operator, validator) in &self.validators {
            leaves.push((validator_key(operator), value_hash(&validator_state(validator).encode_to_vec())));
        }
        for ((delegator, validator), d) in &self.delegations {
            let state = delegation_state(self, delegator, validator, d);
            leaves.push((delegation_key(delegator, validator), value_hash(&state.encode_to_vec())));
        }
        let mut delegators = std::collections::BTreeSet::new();
        delegators.extend(self.unbonding.keys().map(|(d, _)| *d));
        delegators.extend(self.redelegations.keys().map(|(d, _)| *d));
        for delegator in delegators {
            if let Some(state) = queues_state(self, &delegator) {
                leaves.push((queues_key(&delegator), value_hash(&state.encode_to_vec())));
            }
        }
        leaves.push((staking_key(), value_hash(&staking_state(self).encode_to_vec())));
        leaves
    }
}

pub fn validator_key(operator: &Address) -> Hash {
    leaf_key(b"vanna/validator", operator.as_bytes())
}

fn delegation_key(delegator: &Address, validator: &Address) -> Hash {
    let mut id = [0u8; 40];
    id[..20].copy_from_slice(delegator.as_bytes());
    id[20..].copy_from_slice(validator.as_bytes());
    leaf_key(b"vanna/delegation", &id)
}

fn queues_key(delegator: &Address) -> Hash {
    leaf_key(b"vanna/staking-queues", delegator.as_bytes())
}

pub fn staking_key() -> Hash {
    leaf_key(b"vanna/staking", b"")
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
