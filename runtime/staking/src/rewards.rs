//! Fee rewards, exact to the micro USD. Each block the fee pool is split among
//! the active validators by power; each validator's commission is taken and
//! the rest raises its reward per share. Every division rounds down (against
//! the claimant) and its remainder is carried: the fee pool keeps what did not
//! split among validators, each validator keeps `reward_carry` for the next
//! block, and a claim leaves its rounding dust in the validator's pool.

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use super::{Bank, Delegation, REWARD_SCALE, Staking, Validator};
use vanna_types::events::Event;
use vanna_types::ids::Address;
use vanna_types::money::Amount;

/// What a delegation is owed, micro USD (rounded down).
pub(super) fn owed(validator: &Validator, delegation: &Delegation) -> u64 {
    let per_share = validator.reward_per_share - delegation.reward_per_share_paid;
    let owed = delegation.shares.checked_mul(per_share).expect("reward arithmetic stays within u128") / REWARD_SCALE;
    u64::try_from(owed).expect("a delegation is never owed more than its pool")
}

impl Staking {
    /// Pays `pool` (micro USD, the block's fee pool) out to the active set
    /// and returns what it paid; the rest stays in the pool. Called at the
    /// end of every block; costs one step per active validator.
    pub fn distribute_fees(&mut self, pool: u64, events: &mut Vec<Event>) -> u64 {
        let recipients: Vec<(Address, u64)> = self
            .active
            .iter()
            .filter(|member| self.validators.get(&member.operator).is_some_and(|v| !v.jailed && v.shares > 0))
            .map(|member| (member.operator, member.power))
            .collect();
        let total_power: u128 = recipients.iter().map(|(_, power)| *power as u128).sum();
        if pool == 0 || total_power == 0 {
            return 0;
        }
        let mut paid = 0u64;
        for (operator, power) in recipients {
            let reward = (pool as u128 * power as u128 / total_power) as u64;
            if reward == 0 {
                continue;
            }
            paid += reward;
            let validator = self.validators.get_mut(&operator).expect("active validators exist");
            let commission =
                (Decimal::from(reward) * validator.commission_rate).floor().to_u64().expect("commission fits");
            let to_delegators = reward - commission;
            validator.commission_pending += commission;
            validator.reward_pool += to_delegators;
            let scaled = to_delegators as u128 * REWARD_SCALE + validator.reward_carry;
            validator.reward_per_share += scaled / validator.shares;
            validator.reward_carry = scaled % validator.shares;
            self.touched.validators.insert(operator);
        }
        if paid == 0 {
            return 0;
        }
        self.fees_distributed += paid;
        self.touched.global = true;
        events.push(Event::FeesDistributed {
            amount: Amount::from_micro(paid),
            remaining_in_pool: Amount::from_micro(pool - paid),
        });
        paid
    }

    /// Pays what a delegation is owed into the delegator's account and marks
    /// it paid. Must run before the delegation's shares change.
    pub fn settle_rewards(
        &mut self,
        bank: &mut impl Bank,
        delegator: Address,
        validator: Address,
        events: &mut Vec<Event>,
    ) -> u64 {
        let Some(v) = self.validators.get(&validator) else {
            return 0;
        };
        let Some(delegation) = self.delegations.get(&(delegator, validator)).copied() else {
            return 0;
        };
        let amount = owed(v, &delegation);
        let per_share = v.reward_per_share;
        let v = self.validators.get_mut(&validator).expect("checked above");
        v.reward_pool = v.reward_pool.checked_sub(amount).expect("a pool always covers what it owes");
        self.delegations.get_mut(&(delegator, validator)).expect("checked above").reward_per_share_paid = per_share;
        if amount > 0 {
            bank.pay_usd(&delegator, amount);
            events.push(Event::RewardsPaid { delegator, validator, amount: Amount::from_micro(amount) });
        }
        self.touched.validators.insert(validator);
        self.touched.delegations.insert((delegator, validator));
        amount
    }
}
