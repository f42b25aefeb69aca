//! The staking economy: validators, delegation, unbonding, redelegation,
//! exact fee rewards, slashing and jailing, and the active set that the
//! consensus layer reads at each epoch boundary.
//!
//! Amounts here are integers in micro units (millionths of VANNA or USD),
//! converted from and to `Amount` at the edges, so that every division is an
//! explicit floor or ceiling. Delegations hold shares of a validator's bonded
//! tokens; a slash burns tokens and leaves shares alone, so every share loses
//! the same fraction. Rewards follow cumulative reward-per-share accounting
//! (as Cosmos SDK's F1 distribution), so a block's distribution costs one step
//! per active validator and a claim one step, whatever the number of delegators.
//!
//! The ledger reaches account balances only through [`Bank`] (liquid VANNA
//! in and out, USD rewards paid out) and tells the state commitment which of
//! its leaves changed ([`Staking::take_changed_leaves`]); it knows nothing
//! else of the runtime's state. Pure: time and height come from [`Now`].

mod leaves;
mod ledger;
mod rewards;
mod slashing;

use std::collections::{BTreeMap, BTreeSet};

pub use leaves::{Leaf, staking_key, validator_key};

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use vanna_types::ids::Address;
use vanna_types::money::Amount;

pub use vanna_types::staking::{EvidenceRecord, Offence, ValidatorPower};

/// Reward-per-share values are scaled by 10^18 so that a block's reward
/// divides finely among shares; the remainder of each division is carried.
pub const REWARD_SCALE: u128 = 1_000_000_000_000_000_000;
/// Registered validators at most (active or not).
pub const MAX_VALIDATORS: usize = 1_000;
/// Longest moniker, in characters.
pub const MAX_MONIKER_CHARS: usize = 64;
/// A commission may change once per this period.
pub const COMMISSION_CHANGE_PERIOD_MS: u64 = 24 * 3_600_000;
/// Bound on the downtime window, in blocks.
pub const MAX_SIGNED_BLOCKS_WINDOW: u32 = 10_000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StakingParams {
    /// How long unbonding stake stays slashable and earns nothing.
    pub unbonding_period_ms: u64,
    /// Size of the active set: the top validators by stake.
    pub max_active_validators: u32,
    /// Minimum self-stake of an operator, in VANNA.
    pub min_self_stake: Amount,
    /// Blocks per epoch; the active set changes only at epoch boundaries.
    pub epoch_blocks: u64,
    /// Unbonding entries per (delegator, validator), and redelegation entries
    /// per (delegator, source, destination).
    pub max_entries: usize,
    /// Fraction of stake burned for double proposals, double votes and
    /// finality-rule violations.
    pub double_sign_slash: Decimal,
    /// Fraction of stake burned for downtime.
    pub downtime_slash: Decimal,
    /// Share of a slash paid to the account that reported the evidence.
    pub reporter_reward: Decimal,
    /// Sliding window, in blocks, for downtime.
    pub signed_blocks_window: u32,
    /// A validator missing more than this fraction of the window is jailed.
    pub max_missed_fraction: Decimal,
    /// How long a validator jailed for downtime waits before it may unjail.
    pub downtime_jail_ms: u64,
    /// Evidence older than this many blocks is ignored; bonds are remembered
    /// this long so that stake bonded after an offence is spared its slash.
    pub max_evidence_age_blocks: u64,
}

impl Default for StakingParams {
    fn default() -> Self {
        StakingParams {
            unbonding_period_ms: 7 * 24 * 3_600_000,
            max_active_validators: 100,
            min_self_stake: Amount::from_micro(1_000_000_000),
            epoch_blocks: 100,
            max_entries: 7,
            double_sign_slash: Decimal::new(5, 2),
            downtime_slash: Decimal::new(1, 4),
            reporter_reward: Decimal::new(1, 1),
            signed_blocks_window: 100,
            max_missed_fraction: Decimal::new(5, 1),
            downtime_jail_ms: 10 * 60_000,
            max_evidence_age_blocks: 604_800,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validator {
    pub operator: Address,
    #[serde(with = "vanna_types::staking::key_bytes")]
    pub consensus_key: [u8; 48],
    pub moniker: String,
    pub commission_rate: Decimal,
    pub max_commission_rate: Decimal,
    pub max_commission_change: Decimal,
    pub last_commission_change_ms: u64,
    /// Bonded stake in micro VANNA, after slashes.
    pub tokens: u64,
    /// Shares held by all its delegations together.
    pub shares: u128,
    pub jailed: bool,
    pub jailed_until_ms: u64,
    pub tombstoned: bool,
    /// Cumulative delegator reward per share, scaled by `REWARD_SCALE`.
    pub reward_per_share: u128,
    /// Delegators' unclaimed rewards, micro USD.
    pub reward_pool: u64,
    /// Operator's unclaimed commission, micro USD.
    pub commission_pending: u64,
    /// Remainder of reward divisions, in micro USD × `REWARD_SCALE`.
    pub reward_carry: u128,
    /// Recent blocks signed (true) or missed, oldest first, for downtime.
    pub signed_window: std::collections::VecDeque<bool>,
    pub missed_in_window: u32,
}

impl Validator {
    /// Tokens worth `shares` (rounded down: against the holder).
    pub fn tokens_for(&self, shares: u128) -> u64 {
        if self.shares == 0 {
            return 0;
        }
        (shares * self.tokens as u128 / self.shares) as u64
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delegation {
    pub shares: u128,
    /// `reward_per_share` when rewards were last paid out to this delegation.
    pub reward_per_share_paid: u128,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnbondingEntry {
    pub validator: Address,
    pub creation_height: u64,
    pub completion_ms: u64,
    pub initial_balance: u64,
    pub balance: u64,
    /// The part of the entry that had been bonded recently: (bond height,
    /// micro VANNA). A slash for an offence before that height spares it.
    pub recent_bonds: RecentBonds,
}

/// Parts of an unbonding or redelegated amount by the height they were
/// bonded at; at most `MAX_RECENT_BONDS` of them.
pub type RecentBonds = Vec<(u64, u64)>;

/// Bound on remembered bond heights per delegation. A further bond joins the
/// newest remembered one, which dates it earlier than it was: against the
/// delegator, never against the system.
pub const MAX_RECENT_BONDS: usize = 16;

impl UnbondingEntry {
    /// The part that was bonded at `infraction_height`, and so is slashable.
    pub fn bonded_at(&self, infraction_height: u64) -> u64 {
        bonded_at(self.initial_balance, &self.recent_bonds, infraction_height)
    }
}

fn bonded_at(initial: u64, recent: &RecentBonds, infraction_height: u64) -> u64 {
    let later: u64 = recent.iter().filter(|(height, _)| *height > infraction_height).map(|(_, amount)| amount).sum();
    initial.saturating_sub(later)
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedelegationEntry {
    pub from: Address,
    pub to: Address,
    pub creation_height: u64,
    pub completion_ms: u64,
    pub initial_balance: u64,
    pub shares_at_destination: u128,
    /// As for unbonding: what had been bonded at the source recently.
    pub recent_bonds: RecentBonds,
}

impl RedelegationEntry {
    /// The part that was bonded at the source at `infraction_height`.
    pub fn bonded_at(&self, infraction_height: u64) -> u64 {
        bonded_at(self.initial_balance, &self.recent_bonds, infraction_height)
    }
}

/// `a × b / c` rounded down, exact for any u128 inputs (c > 0).
pub fn mul_div_floor(a: u128, b: u128, c: u128) -> u128 {
    let product = ethnum::U256::from(a) * ethnum::U256::from(b);
    u128::try_from(product / ethnum::U256::from(c))
        .expect("the quotient fits: callers divide by at least one factor's bound")
}

/// What the ledger needs of the accounts that hold liquid balances.
pub trait Bank {
    /// Liquid VANNA of `account`, micro units (zero for an unknown account).
    fn vanna(&self, account: &Address) -> u64;
    /// Changes `account`'s liquid VANNA by `delta` micro units, opening the
    /// account if new; callers check first that it stays non-negative.
    fn move_vanna(&mut self, account: &Address, delta: i128);
    /// Pays `amount` micro USD (rewards, commission) to `account`, opening it if new.
    fn pay_usd(&mut self, account: &Address, amount: u64);
}

/// The block being applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    pub height: u64,
    pub time_ms: u64,
}

/// The ledger's committed leaves changed since the commitment last asked.
#[derive(Clone, Debug, Default)]
pub struct Touched {
    pub validators: BTreeSet<Address>,
    /// (delegator, validator)
    pub delegations: BTreeSet<(Address, Address)>,
    /// Delegators whose unbonding or redelegation queues changed.
    pub queues: BTreeSet<Address>,
    /// The ledger's chain-wide values (epoch, active set, burned, params).
    pub global: bool,
}

impl Touched {
    pub fn is_empty(&self) -> bool {
        self.validators.is_empty() && self.delegations.is_empty() && self.queues.is_empty() && !self.global
    }
}

/// The staking ledger inside the runtime state. Serialized whole for state
/// snapshots, but for `touched`, which is empty between blocks.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Staking {
    pub params: StakingParams,
    pub validators: BTreeMap<Address, Validator>,
    /// Consensus keys ever registered, tombstoned ones included: a key never rejoins.
    #[serde(with = "key_sets::keys")]
    pub consensus_keys: BTreeSet<[u8; 48]>,
    /// (delegator, validator) → delegation.
    pub delegations: BTreeMap<(Address, Address), Delegation>,
    /// (delegator, entry id) → unbonding entry.
    pub unbonding: BTreeMap<(Address, u64), UnbondingEntry>,
    /// (delegator, entry id) → redelegation entry.
    pub redelegations: BTreeMap<(Address, u64), RedelegationEntry>,
    pub next_entry_id: u64,
    /// The current epoch's active set, sorted by power then operator.
    pub active: Vec<ValidatorPower>,
    pub epoch: u64,
    /// VANNA destroyed by slashing, micro units.
    pub burned: u64,
    /// USD paid into validator pools and commissions since genesis, micro units.
    pub fees_distributed: u64,
    /// (consensus key, offence, height) already punished: evidence counts once.
    #[serde(with = "key_sets::punished")]
    pub punished: BTreeSet<([u8; 48], Offence, u64)>,
    /// Shares bonded within the evidence horizon: (validator, delegator,
    /// height) → shares. A slash for an offence before `height` spares them.
    pub recent_bonds: BTreeMap<(Address, Address, u64), u128>,
    /// The same bonds by height, to forget them once evidence can no longer come.
    pub bonds_by_height: BTreeSet<(u64, Address, Address)>,
    /// Leaves changed since the commitment last asked (not committed itself).
    #[serde(skip)]
    pub touched: Touched,
}

/// serde for the ledger's sets keyed by 48-byte consensus keys.
mod key_sets {
    use std::collections::BTreeSet;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::Offence;

    #[derive(Serialize, Deserialize)]
    struct Key(#[serde(with = "vanna_types::staking::key_bytes")] [u8; 48]);

    pub mod keys {
        use super::*;

        pub fn serialize<S: Serializer>(keys: &BTreeSet<[u8; 48]>, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.collect_seq(keys.iter().map(|key| Key(*key)))
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<BTreeSet<[u8; 48]>, D::Error> {
            Ok(Vec::<Key>::deserialize(deserializer)?.into_iter().map(|key| key.0).collect())
        }
    }

    pub mod punished {
        use super::*;

        type Punished = BTreeSet<([u8; 48], Offence, u64)>;

        pub fn serialize<S: Serializer>(punished: &Punished, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.collect_seq(punished.iter().map(|(key, offence, height)| (Key(*key), offence, height)))
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Punished, D::Error> {
            let entries = Vec::<(Key, Offence, u64)>::deserialize(deserializer)?;
            Ok(entries.into_iter().map(|(key, offence, height)| (key.0, offence, height)).collect())
        }
    }
}

impl Staking {
    /// VANNA held by the ledger: bonded tokens plus unbonding balances.
    pub fn vanna_held(&self) -> u64 {
        let bonded: u64 = self.validators.values().map(|v| v.tokens).sum();
        let unbonding: u64 = self.unbonding.values().map(|e| e.balance).sum();
        bonded + unbonding
    }

    /// USD held by the ledger: unclaimed rewards and commissions.
    pub fn usd_held(&self) -> u64 {
        self.validators.values().map(|v| v.reward_pool + v.commission_pending).sum()
    }

    /// The active set computed from current stake: the top
    /// `max_active_validators` that are not jailed and hold the minimum
    /// self-stake, by power, ties broken by operator address.
    pub fn next_validator_set(&self) -> Vec<ValidatorPower> {
        let min_self = self.params.min_self_stake.to_micro();
        let mut eligible: Vec<ValidatorPower> = self
            .validators
            .values()
            .filter(|v| !v.jailed && !v.tombstoned && v.tokens > 0 && self.self_stake(v) >= min_self)
            .map(|v| ValidatorPower { consensus_key: v.consensus_key, operator: v.operator, power: v.tokens })
            .collect();
        eligible.sort_by(|a, b| b.power.cmp(&a.power).then(a.operator.cmp(&b.operator)));
        eligible.truncate(self.params.max_active_validators as usize);
        eligible
    }

    /// The operator's own stake in its validator, micro VANNA.
    pub fn self_stake(&self, validator: &Validator) -> u64 {
        self.delegations
            .get(&(validator.operator, validator.operator))
            .map_or(0, |delegation| validator.tokens_for(delegation.shares))
    }

    /// Rewards a delegation could claim now, micro USD.
    pub fn pending_rewards(&self, delegator: &Address, validator: &Address) -> u64 {
        let (Some(v), Some(d)) = (self.validators.get(validator), self.delegations.get(&(*delegator, *validator)))
        else {
            return 0;
        };
        rewards::owed(v, d)
    }

    /// Forgets `shares` of a delegation's recent bonds, newest first: stake
    /// that leaves is taken from what was bonded last.
    pub fn release_recent_bonds(
        &mut self,
        validator: Address,
        delegator: Address,
        mut shares: u128,
    ) -> Vec<(u64, u128)> {
        let range = (validator, delegator, 0)..=(validator, delegator, u64::MAX);
        let tranches: Vec<((Address, Address, u64), u128)> =
            self.recent_bonds.range(range).rev().map(|(key, shares)| (*key, *shares)).collect();
        let mut released = Vec::new();
        for (key, tranche) in tranches {
            if shares == 0 {
                break;
            }
            let taken = tranche.min(shares);
            shares -= taken;
            released.push((key.2, taken));
            if taken == tranche {
                self.recent_bonds.remove(&key);
                self.bonds_by_height.remove(&(key.2, key.0, key.1));
            } else {
                *self.recent_bonds.get_mut(&key).expect("listed above") -= taken;
            }
        }
        released
    }

    /// Remembers `shares` bonded at `height`, within `MAX_RECENT_BONDS` per delegation.
    pub fn remember_bond(&mut self, validator: Address, delegator: Address, height: u64, shares: u128) {
        // Genesis bonds precede every offence: nothing to spare, nothing to remember
        // (and no pruning of all genesis delegations in one later block).
        if height == 0 {
            return;
        }
        let range = (validator, delegator, 0)..=(validator, delegator, u64::MAX);
        let mut remembered = self.recent_bonds.range(range);
        let count = remembered.clone().count();
        let newest = remembered.next_back().map(|((_, _, h), _)| *h);
        let height = match newest {
            Some(newest) if count >= MAX_RECENT_BONDS && newest != height => newest,
            _ => height,
        };
        *self.recent_bonds.entry((validator, delegator, height)).or_default() += shares;
        self.bonds_by_height.insert((height, validator, delegator));
    }

    /// Forgets bonds older than the evidence horizon.
    fn prune_recent_bonds(&mut self, height: u64) {
        let horizon = height.saturating_sub(self.params.max_evidence_age_blocks);
        while let Some(&(bonded, validator, delegator)) = self.bonds_by_height.first() {
            if bonded >= horizon {
                break;
            }
            self.bonds_by_height.pop_first();
            self.recent_bonds.remove(&(validator, delegator, bonded));
            self.touched.delegations.insert((delegator, validator));
        }
    }

    /// The ledger's end of a block: bonds past the evidence horizon are
    /// forgotten and, at an epoch boundary (a height that is a multiple of
    /// `epoch_blocks`), the next active set is fixed.
    pub fn end_block(&mut self, now: Now, events: &mut Vec<vanna_types::events::Event>) {
        self.prune_recent_bonds(now.height);
        if now.height.is_multiple_of(self.params.epoch_blocks.max(1)) {
            self.active = self.next_validator_set();
            self.epoch += 1;
            self.touched.global = true;
            events.push(vanna_types::events::Event::ValidatorSetChanged {
                epoch: self.epoch,
                validators: self.active.clone(),
            });
        }
    }

    /// A delegation's recent bonds, oldest first: (height, shares).
    pub fn recent_bonds_of(&self, delegator: &Address, validator: &Address) -> Vec<(u64, u128)> {
        self.recent_bonds
            .range((*validator, *delegator, 0)..=(*validator, *delegator, u64::MAX))
            .map(|((_, _, height), shares)| (*height, *shares))
            .collect()
    }

    /// The interface consensus reads: the epoch number and its validator set
    /// (consensus key, operator, power). Applying the last block of an epoch
    /// (a height that is a multiple of `epoch_blocks`) fixes the set for the
    /// next epoch, so once that block is final, consensus starts the next
    /// epoch's engine with what this returns.
    pub fn epoch_validator_set(&self) -> (u64, &[ValidatorPower]) {
        (self.epoch, &self.active)
    }

    /// A validator's record: stake, commission, jailing, pools.
    pub fn validator(&self, operator: &Address) -> Option<&Validator> {
        self.validators.get(operator)
    }

    /// Whether a validator is in the current epoch's active set.
    pub fn is_active(&self, operator: &Address) -> bool {
        self.active.iter().any(|member| member.operator == *operator)
    }

    /// A delegator's unbonding entries, oldest first.
    pub fn unbonding_of(&self, delegator: &Address) -> Vec<&UnbondingEntry> {
        self.unbonding.range((*delegator, 0)..=(*delegator, u64::MAX)).map(|(_, entry)| entry).collect()
    }

    /// A delegator's redelegation entries, oldest first.
    pub fn redelegations_of(&self, delegator: &Address) -> Vec<&RedelegationEntry> {
        self.redelegations.range((*delegator, 0)..=(*delegator, u64::MAX)).map(|(_, entry)| entry).collect()
    }

    /// A delegator's delegations: (validator, shares, tokens now).
    pub fn delegations_of(&self, delegator: &Address) -> Vec<(Address, u128, u64)> {
        self.delegations
            .range((*delegator, Address::default())..)
            .take_while(|((d, _), _)| d == delegator)
            .map(|((_, v), delegation)| (*v, delegation.shares, self.validators[v].tokens_for(delegation.shares)))
            .collect()
    }
}
