//! Staking transactions: register and edit a validator, delegate, undelegate,
//! redelegate, withdraw matured unbondings, claim rewards, unjail. Each checks
//! everything first and changes state only when it cannot fail.

use rust_decimal::Decimal;
use vanna_proto::v1 as wire;

use super::{
    COMMISSION_CHANGE_PERIOD_MS, Delegation, MAX_MONIKER_CHARS, MAX_VALIDATORS, RedelegationEntry, UnbondingEntry,
    Validator,
};
use crate::error::{Field, TxError};
use crate::events::{ActionOutcome, Event};
use crate::ids::Address;
use crate::money::{Amount, parse_decimal};
use crate::state::State;

fn rate(text: &str, what: &'static str) -> Result<Decimal, TxError> {
    let value = parse_decimal(text, Field::Amount)?;
    if value > Decimal::ONE {
        return Err(TxError::BadRate { what, value });
    }
    Ok(value.normalize())
}

fn vanna(text: &str) -> Result<u64, TxError> {
    let amount = Amount::parse(text, Field::Amount)?;
    if amount.is_zero() {
        return Err(TxError::NotPositive { field: Field::Amount });
    }
    Ok(amount.to_micro())
}

fn moniker(text: &str) -> Result<String, TxError> {
    let chars = text.chars().count();
    if chars == 0 || chars > MAX_MONIKER_CHARS || text.chars().any(char::is_control) {
        return Err(TxError::BadMoniker { max: MAX_MONIKER_CHARS });
    }
    Ok(text.to_string())
}

fn micro(amount: u64) -> Decimal {
    Amount::from_micro(amount).value()
}

impl State {
    fn validator(&self, operator: &Address) -> Result<&Validator, TxError> {
        self.staking.validators.get(operator).ok_or(TxError::UnknownValidator(*operator))
    }

    fn liquid_vanna(&self, owner: u64) -> u64 {
        self.accounts[owner as usize].vanna.to_micro()
    }

    fn move_vanna(&mut self, owner: u64, delta: i128) {
        let account = &mut self.accounts[owner as usize];
        let balance = account.vanna.to_micro() as i128 + delta;
        let balance = u64::try_from(balance).expect("checked: liquid VANNA never goes negative");
        account.vanna = Amount::from_micro(balance);
        self.commitment.touch_account(owner);
    }

    pub(crate) fn register_validator(
        &mut self,
        owner: u64,
        register: &wire::RegisterValidator,
        events: &mut Vec<Event>,
    ) -> Result<ActionOutcome, TxError> {
        let operator = self.accounts[owner as usize].address;
        if self.staking.validators.contains_key(&operator) {
            return Err(TxError::ValidatorExists(operator));
        }
        if self.staking.validators.len() >= MAX_VALIDATORS {
            return Err(TxError::TooManyValidators { max: MAX_VALIDATORS });
        }
        let key =
            vanna_consensus::BlsPublicKey::from_bytes(&register.consensus_key).map_err(|_| TxError::BadConsensusKey)?;
        let proof = vanna_consensus::BlsSignature::from_bytes(&register.proof_of_possession)
            .map_err(|_| TxError::BadProofOfPossession)?;
        if !vanna_consensus::verify_proof_of_possession(&key, &proof) {
            return Err(TxError::BadProofOfPossession);
        }
        let consensus_key = key.to_bytes();
        if self.staking.consensus_keys.contains(&consensus_key) {
            return Err(TxError::ConsensusKeyTaken);
        }
        let moniker = moniker(&register.moniker)?;
        let commission_rate = rate(&register.commission_rate, "commission rate")?;
        let max_commission_rate = rate(&register.max_commission_rate, "maximum commission rate")?;
        let max_commission_change = rate(&register.max_commission_change, "maximum commission change")?;
        if commission_rate > max_commission_rate {
            return Err(TxError::CommissionAboveMax { rate: commission_rate, max: max_commission_rate });
        }
        let self_stake = vanna(&register.self_stake)?;
        let min = self.staking.params.min_self_stake;
        if self_stake < min.to_micro() {
            return Err(TxError::BelowMinSelfStake { stake: micro(self_stake), min: min.value() });
        }
        let liquid = self.liquid_vanna(owner);
        if self_stake > liquid {
            return Err(TxError::InsufficientFunds {
                asset: "VANNA",
                needed: micro(self_stake),
                available: micro(liquid),
            });
        }
        self.staking.consensus_keys.insert(consensus_key);
        self.staking.validators.insert(
            operator,
            Validator {
                operator,
                consensus_key,
                moniker: moniker.clone(),
                commission_rate,
                max_commission_rate,
                max_commission_change,
                last_commission_change_ms: self.time_ms,
                tokens: 0,
                shares: 0,
                jailed: false,
                jailed_until_ms: 0,
                tombstoned: false,
                reward_per_share: 0,
                reward_pool: 0,
                commission_pending: 0,
                reward_carry: 0,
                signed_window: Default::default(),
                missed_in_window: 0,
            },
        );
        self.bond(owner, operator, self_stake, events);
        events.push(Event::ValidatorRegistered { operator, moniker, self_stake: Amount::from_micro(self_stake) });
        Ok(ActionOutcome::Staked)
    }

    pub(crate) fn edit_validator(&mut self, owner: u64, edit: &wire::EditValidator) -> Result<ActionOutcome, TxError> {
        let operator = self.accounts[owner as usize].address;
        let validator = self.validator(&operator)?;
        let new_rate = match edit.commission_rate.as_str() {
            "" => None,
            text => Some(rate(text, "commission rate")?),
        };
        let new_moniker = match edit.moniker.as_str() {
            "" => None,
            text => Some(moniker(text)?),
        };
        if let Some(new_rate) = new_rate {
            if new_rate > validator.max_commission_rate {
                return Err(TxError::CommissionAboveMax { rate: new_rate, max: validator.max_commission_rate });
            }
            let change = (new_rate - validator.commission_rate).abs();
            if change > validator.max_commission_change {
                return Err(TxError::CommissionChangeTooLarge { change, max_change: validator.max_commission_change });
            }
            let next_ms = validator.last_commission_change_ms + COMMISSION_CHANGE_PERIOD_MS;
            if self.time_ms < next_ms {
                return Err(TxError::CommissionChangeTooSoon { next_ms });
            }
        }
        let now = self.time_ms;
        let validator = self.staking.validators.get_mut(&operator).expect("checked above");
        if let Some(new_rate) = new_rate {
            validator.commission_rate = new_rate;
            validator.last_commission_change_ms = now;
        }
        if let Some(new_moniker) = new_moniker {
            validator.moniker = new_moniker;
        }
        self.commitment.touch_validator(operator);
        Ok(ActionOutcome::Staked)
    }

    /// Moves `amount` micro VANNA from the account into the validator as shares.
    fn bond(&mut self, owner: u64, validator: Address, amount: u64, events: &mut Vec<Event>) -> u128 {
        let delegator = self.accounts[owner as usize].address;
        self.settle_rewards(delegator, validator, events);
        let v = self.staking.validators.get_mut(&validator).expect("bonding to a registered validator");
        let shares = if v.shares == 0 { amount as u128 } else { amount as u128 * v.shares / v.tokens as u128 };
        assert!(shares > 0, "callers check that an amount buys shares");
        v.tokens += amount;
        v.shares += shares;
        let per_share = v.reward_per_share;
        let delegation = self
            .staking
            .delegations
            .entry((delegator, validator))
            .or_insert(Delegation { shares: 0, reward_per_share_paid: per_share });
        delegation.shares += shares;
        self.staking.remember_bond(validator, delegator, self.height, shares);
        self.move_vanna(owner, -(amount as i128));
        self.commitment.touch_validator(validator);
        self.commitment.touch_delegation(delegator, validator);
        self.commitment.touch_staking();
        shares
    }

    /// Shares an amount would buy, refusing what cannot be bonded.
    fn shares_for_bond(&self, validator: &Validator, amount: u64) -> Result<u128, TxError> {
        if validator.tombstoned {
            return Err(TxError::Tombstoned(validator.operator));
        }
        if validator.shares > 0 && validator.tokens == 0 {
            return Err(TxError::ValidatorHasNoStake(validator.operator));
        }
        let shares = if validator.shares == 0 {
            amount as u128
        } else {
            amount as u128 * validator.shares / validator.tokens as u128
        };
        if shares == 0 {
            return Err(TxError::AmountTooSmall);
        }
        Ok(shares)
    }

    pub(crate) fn delegate(
        &mut self,
        owner: u64,
        delegate: &wire::Delegate,
        events: &mut Vec<Event>,
    ) -> Result<ActionOutcome, TxError> {
        let validator = Address::from_slice(&delegate.validator)?;
        let amount = vanna(&delegate.amount)?;
        self.shares_for_bond(self.validator(&validator)?, amount)?;
        let liquid = self.liquid_vanna(owner);
        if amount > liquid {
            return Err(TxError::InsufficientFunds { asset: "VANNA", needed: micro(amount), available: micro(liquid) });
        }
        self.bond(owner, validator, amount, events);
        let delegator = self.accounts[owner as usize].address;
        events.push(Event::Delegated { delegator, validator, amount: Amount::from_micro(amount) });
        Ok(ActionOutcome::Staked)
    }

    /// Checks an unbond of `amount` micro VANNA and returns the shares it removes.
    fn check_unbond(&self, delegator: Address, validator: Address, amount: u64) -> Result<u128, TxError> {
        let v = self.validator(&validator)?;
        let delegation =
            self.staking.delegations.get(&(delegator, validator)).ok_or(TxError::NoDelegation(validator))?;
        let value = v.tokens_for(delegation.shares);
        if amount > value {
            return Err(TxError::InsufficientStake { requested: micro(amount), available: micro(value) });
        }
        // Everything: all shares. Part: round the shares removed up, against the delegator.
        let shares = if amount == value {
            delegation.shares
        } else {
            (amount as u128 * v.shares).div_ceil(v.tokens as u128).min(delegation.shares)
        };
        if delegator == validator && !v.tombstoned {
            let remaining_shares = delegation.shares - shares;
            let remaining = if v.shares == shares {
                0
            } else {
                (remaining_shares * (v.tokens - amount) as u128 / (v.shares - shares)) as u64
            };
            let min = self.staking.params.min_self_stake;
            if remaining > 0 && remaining < min.to_micro() {
                return Err(TxError::BelowMinSelfStake { stake: micro(remaining), min: min.value() });
            }
        }
        Ok(shares)
    }

    /// Removes shares and tokens from a validator after settling rewards;
    /// returns which part of `amount` had been bonded recently, and when.
    fn unbond(
        &mut self,
        delegator: Address,
        validator: Address,
        amount: u64,
        shares: u128,
        events: &mut Vec<Event>,
    ) -> super::RecentBonds {
        self.settle_rewards(delegator, validator, events);
        let v = self.staking.validators.get_mut(&validator).expect("checked");
        v.tokens -= amount;
        v.shares -= shares;
        let key = (delegator, validator);
        let delegation = self.staking.delegations.get_mut(&key).expect("checked");
        delegation.shares -= shares;
        if delegation.shares == 0 {
            self.staking.delegations.remove(&key);
        }
        let released = self.staking.release_recent_bonds(validator, delegator, shares);
        self.commitment.touch_validator(validator);
        self.commitment.touch_delegation(delegator, validator);
        self.commitment.touch_staking();
        released
            .into_iter()
            .map(|(height, part)| (height, super::mul_div_floor(amount as u128, part, shares) as u64))
            .filter(|(_, part)| *part > 0)
            .collect()
    }

    pub(crate) fn undelegate(
        &mut self,
        owner: u64,
        undelegate: &wire::Undelegate,
        events: &mut Vec<Event>,
    ) -> Result<ActionOutcome, TxError> {
        let delegator = self.accounts[owner as usize].address;
        let validator = Address::from_slice(&undelegate.validator)?;
        let amount = vanna(&undelegate.amount)?;
        let shares = self.check_unbond(delegator, validator, amount)?;
        let max = self.staking.params.max_entries;
        let open = self
            .staking
            .unbonding
            .range((delegator, 0)..=(delegator, u64::MAX))
            .filter(|(_, e)| e.validator == validator)
            .count();
        if open >= max {
            return Err(TxError::TooManyUnbondingEntries { max });
        }
        let recent_bonds = self.unbond(delegator, validator, amount, shares, events);
        let completion_ms = self.time_ms + self.staking.params.unbonding_period_ms;
        let id = self.staking.next_entry_id;
        self.staking.next_entry_id += 1;
        self.staking.unbonding.insert(
            (delegator, id),
            UnbondingEntry {
                validator,
                creation_height: self.height,
                completion_ms,
                initial_balance: amount,
                balance: amount,
                recent_bonds,
            },
        );
        self.commitment.touch_queues(delegator);
        events.push(Event::Undelegated { delegator, validator, amount: Amount::from_micro(amount), completion_ms });
        Ok(ActionOutcome::Staked)
    }

    pub(crate) fn redelegate(
        &mut self,
        owner: u64,
        redelegate: &wire::Redelegate,
        events: &mut Vec<Event>,
    ) -> Result<ActionOutcome, TxError> {
        let delegator = self.accounts[owner as usize].address;
        let from = Address::from_slice(&redelegate.from_validator)?;
        let to = Address::from_slice(&redelegate.to_validator)?;
        if from == to {
            return Err(TxError::SelfRedelegation);
        }
        let amount = vanna(&redelegate.amount)?;
        let now = self.time_ms;
        // Stake that arrived at `from` by a redelegation still maturing may not move on.
        let chained = self
            .staking
            .redelegations
            .range((delegator, 0)..=(delegator, u64::MAX))
            .any(|(_, entry)| entry.to == from && entry.completion_ms > now);
        if chained {
            return Err(TxError::RedelegationChain(from));
        }
        let shares = self.check_unbond(delegator, from, amount)?;
        self.shares_for_bond(self.validator(&to)?, amount)?;
        let max = self.staking.params.max_entries;
        let open = self
            .staking
            .redelegations
            .range((delegator, 0)..=(delegator, u64::MAX))
            .filter(|(_, e)| e.from == from && e.to == to && e.completion_ms > now)
            .count();
        if open >= max {
            return Err(TxError::TooManyRedelegationEntries { max });
        }
        let recent_bonds = self.unbond(delegator, from, amount, shares, events);
        // Re-bond without touching liquid VANNA: credit it first, then bond.
        self.move_vanna(owner, amount as i128);
        let shares_at_destination = self.bond(owner, to, amount, events);
        let completion_ms = now + self.staking.params.unbonding_period_ms;
        let id = self.staking.next_entry_id;
        self.staking.next_entry_id += 1;
        self.staking.redelegations.insert(
            (delegator, id),
            RedelegationEntry {
                from,
                to,
                creation_height: self.height,
                completion_ms,
                initial_balance: amount,
                shares_at_destination,
                recent_bonds,
            },
        );
        self.commitment.touch_queues(delegator);
        events.push(Event::Redelegated { delegator, from, to, amount: Amount::from_micro(amount) });
        Ok(ActionOutcome::Staked)
    }

    pub(crate) fn withdraw_unbonded(&mut self, owner: u64, events: &mut Vec<Event>) -> Result<ActionOutcome, TxError> {
        let delegator = self.accounts[owner as usize].address;
        let now = self.time_ms;
        let matured: Vec<(Address, u64)> = self
            .staking
            .unbonding
            .range((delegator, 0)..=(delegator, u64::MAX))
            .filter(|(_, entry)| entry.completion_ms <= now)
            .map(|(key, _)| *key)
            .collect();
        let expired: Vec<(Address, u64)> = self
            .staking
            .redelegations
            .range((delegator, 0)..=(delegator, u64::MAX))
            .filter(|(_, entry)| entry.completion_ms <= now)
            .map(|(key, _)| *key)
            .collect();
        if matured.is_empty() && expired.is_empty() {
            return Err(TxError::NothingToWithdraw);
        }
        let mut total = 0u64;
        for key in matured {
            total += self.staking.unbonding.remove(&key).expect("listed above").balance;
        }
        for key in expired {
            self.staking.redelegations.remove(&key);
        }
        self.move_vanna(owner, total as i128);
        self.commitment.touch_queues(delegator);
        self.commitment.touch_staking();
        events.push(Event::UnbondingWithdrawn { delegator, amount: Amount::from_micro(total) });
        Ok(ActionOutcome::Staked)
    }

    /// Pays a delegation's rewards (and the operator's commission) out; the
    /// `ClaimRewards` action. Public so that benchmarks can time the ledger alone.
    pub fn claim_rewards(
        &mut self,
        owner: u64,
        claim: &wire::ClaimRewards,
        events: &mut Vec<Event>,
    ) -> Result<ActionOutcome, TxError> {
        let delegator = self.accounts[owner as usize].address;
        let validator = Address::from_slice(&claim.validator)?;
        self.validator(&validator)?;
        let is_operator = delegator == validator;
        if !is_operator && !self.staking.delegations.contains_key(&(delegator, validator)) {
            return Err(TxError::NoDelegation(validator));
        }
        self.settle_rewards(delegator, validator, events);
        if is_operator {
            let v = self.staking.validators.get_mut(&validator).expect("checked");
            let commission = std::mem::take(&mut v.commission_pending);
            if commission > 0 {
                let account = &mut self.accounts[owner as usize];
                account.usd = account.usd.plus(Amount::from_micro(commission));
                self.commitment.touch_validator(validator);
                self.commitment.touch_account(owner);
                events.push(Event::CommissionPaid { validator, amount: Amount::from_micro(commission) });
            }
        }
        Ok(ActionOutcome::Staked)
    }

    pub(crate) fn unjail(&mut self, owner: u64, events: &mut Vec<Event>) -> Result<ActionOutcome, TxError> {
        let operator = self.accounts[owner as usize].address;
        let v = self.validator(&operator)?;
        if v.tombstoned {
            return Err(TxError::Tombstoned(operator));
        }
        if !v.jailed {
            return Err(TxError::NotJailed(operator));
        }
        if self.time_ms < v.jailed_until_ms {
            return Err(TxError::StillJailed { until_ms: v.jailed_until_ms, now_ms: self.time_ms });
        }
        let stake = self.staking.self_stake(v);
        let min = self.staking.params.min_self_stake;
        if stake < min.to_micro() {
            return Err(TxError::BelowMinSelfStake { stake: micro(stake), min: min.value() });
        }
        let v = self.staking.validators.get_mut(&operator).expect("checked");
        v.jailed = false;
        v.signed_window.clear();
        v.missed_in_window = 0;
        self.commitment.touch_validator(operator);
        events.push(Event::Unjailed { validator: operator });
        Ok(ActionOutcome::Staked)
    }
}
