//! Staking transactions: register and edit a validator, delegate, undelegate,
//! redelegate, withdraw matured unbondings, claim rewards, unjail. Each checks
//! everything first and changes state only when it cannot fail.

use rust_decimal::Decimal;
use vanna_proto::v1 as wire;

use super::{
    Bank, COMMISSION_CHANGE_PERIOD_MS, Delegation, MAX_MONIKER_CHARS, MAX_VALIDATORS, Now, RedelegationEntry, Staking,
    UnbondingEntry, Validator,
};
use vanna_types::error::{Field, TxError};
use vanna_types::events::{ActionOutcome, Event};
use vanna_types::ids::Address;
use vanna_types::money::{Amount, parse_decimal};

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

impl Staking {
    fn registered(&self, operator: &Address) -> Result<&Validator, TxError> {
        self.validators.get(operator).ok_or(TxError::UnknownValidator(*operator))
    }

    /// The `RegisterValidator` action of `operator`.
    pub fn register_validator(
        &mut self,
        bank: &mut impl Bank,
        now: Now,
        operator: Address,
        register: &wire::RegisterValidator,
        events: &mut Vec<Event>,
    ) -> Result<ActionOutcome, TxError> {
        if self.validators.contains_key(&operator) {
            return Err(TxError::ValidatorExists(operator));
        }
        if self.validators.len() >= MAX_VALIDATORS {
            return Err(TxError::TooManyValidators { max: MAX_VALIDATORS });
        }
        let key = vanna_crypto::bls::BlsPublicKey::from_bytes(&register.consensus_key)
            .map_err(|_| TxError::BadConsensusKey)?;
        let proof = vanna_crypto::bls::BlsSignature::from_bytes(&register.proof_of_possession)
            .map_err(|_| TxError::BadProofOfPossession)?;
        if !vanna_crypto::bls::verify_proof_of_possession(&key, &proof) {
            return Err(TxError::BadProofOfPossession);
        }
        let consensus_key = key.to_bytes();
        if self.consensus_keys.contains(&consensus_key) {
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
        let min = self.params.min_self_stake;
        if self_stake < min.to_micro() {
            return Err(TxError::BelowMinSelfStake { stake: micro(self_stake), min: min.value() });
        }
        let liquid = bank.vanna(&operator);
        if self_stake > liquid {
            return Err(TxError::InsufficientFunds {
                asset: "VANNA",
                needed: micro(self_stake),
                available: micro(liquid),
            });
        }
        self.consensus_keys.insert(consensus_key);
        self.validators.insert(
            operator,
            Validator {
                operator,
                consensus_key,
                moniker: moniker.clone(),
                commission_rate,
                max_commission_rate,
                max_commission_change,
                last_commission_change_ms: now.time_ms,
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
        self.bond(bank, now, operator, operator, self_stake, events);
        events.push(Event::ValidatorRegistered { operator, moniker, self_stake: Amount::from_micro(self_stake) });
        Ok(ActionOutcome::Staked)
    }

    /// The `EditValidator` action of `operator`.
    pub fn edit_validator(
        &mut self,
        now: Now,
        operator: Address,
        edit: &wire::EditValidator,
    ) -> Result<ActionOutcome, TxError> {
        let validator = self.registered(&operator)?;
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
            if now.time_ms < next_ms {
                return Err(TxError::CommissionChangeTooSoon { next_ms });
            }
        }
        let validator = self.validators.get_mut(&operator).expect("checked above");
        if let Some(new_rate) = new_rate {
            validator.commission_rate = new_rate;
            validator.last_commission_change_ms = now.time_ms;
        }
        if let Some(new_moniker) = new_moniker {
            validator.moniker = new_moniker;
        }
        self.touched.validators.insert(operator);
        Ok(ActionOutcome::Staked)
    }

    /// Moves `amount` micro VANNA from the account into the validator as shares.
    fn bond(
        &mut self,
        bank: &mut impl Bank,
        now: Now,
        delegator: Address,
        validator: Address,
        amount: u64,
        events: &mut Vec<Event>,
    ) -> u128 {
        self.settle_rewards(bank, delegator, validator, events);
        let v = self.validators.get_mut(&validator).expect("bonding to a registered validator");
        let shares = if v.shares == 0 { amount as u128 } else { amount as u128 * v.shares / v.tokens as u128 };
        assert!(shares > 0, "callers check that an amount buys shares");
        v.tokens += amount;
        v.shares += shares;
        let per_share = v.reward_per_share;
        let delegation = self
            .delegations
            .entry((delegator, validator))
            .or_insert(Delegation { shares: 0, reward_per_share_paid: per_share });
        delegation.shares += shares;
        self.remember_bond(validator, delegator, now.height, shares);
        bank.move_vanna(&delegator, -(amount as i128));
        self.touched.validators.insert(validator);
        self.touched.delegations.insert((delegator, validator));
        self.touched.global = true;
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

    /// The `Delegate` action of `delegator`.
    pub fn delegate(
        &mut self,
        bank: &mut impl Bank,
        now: Now,
        delegator: Address,
        delegate: &wire::Delegate,
        events: &mut Vec<Event>,
    ) -> Result<ActionOutcome, TxError> {
        let validator = Address::from_slice(&delegate.validator)?;
        let amount = vanna(&delegate.amount)?;
        self.shares_for_bond(self.registered(&validator)?, amount)?;
        let liquid = bank.vanna(&delegator);
        if amount > liquid {
            return Err(TxError::InsufficientFunds { asset: "VANNA", needed: micro(amount), available: micro(liquid) });
        }
        self.bond(bank, now, delegator, validator, amount, events);
        events.push(Event::Delegated { delegator, validator, amount: Amount::from_micro(amount) });
        Ok(ActionOutcome::Staked)
    }

    /// Checks an unbond of `amount` micro VANNA and returns the shares it removes.
    fn check_unbond(&self, delegator: Address, validator: Address, amount: u64) -> Result<u128, TxError> {
        let v = self.registered(&validator)?;
        let delegation = self.delegations.get(&(delegator, validator)).ok_or(TxError::NoDelegation(validator))?;
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
            let min = self.params.min_self_stake;
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
        bank: &mut impl Bank,
        delegator: Address,
        validator: Address,
        amount: u64,
        shares: u128,
        events: &mut Vec<Event>,
    ) -> super::RecentBonds {
        self.settle_rewards(bank, delegator, validator, events);
        let v = self.validators.get_mut(&validator).expect("checked");
        v.tokens -= amount;
        v.shares -= shares;
        let key = (delegator, validator);
        let delegation = self.delegations.get_mut(&key).expect("checked");
        delegation.shares -= shares;
        if delegation.shares == 0 {
            self.delegations.remove(&key);
        }
        let released = self.release_recent_bonds(validator, delegator, shares);
        self.touched.validators.insert(validator);
        self.touched.delegations.insert((delegator, validator));
        self.touched.global = true;
        released
            .into_iter()
            .map(|(height, part)| (height, super::mul_div_floor(amount as u128, part, shares) as u64))
            .filter(|(_, part)| *part > 0)
            .collect()
    }

    /// The `Undelegate` action of `delegator`.
    pub fn undelegate(
        &mut self,
        bank: &mut impl Bank,
        now: Now,
        delegator: Address,
        undelegate: &wire::Undelegate,
        events: &mut Vec<Event>,
    ) -> Result<ActionOutcome, TxError> {
        let validator = Address::from_slice(&undelegate.validator)?;
        let amount = vanna(&undelegate.amount)?;
        let shares = self.check_unbond(delegator, validator, amount)?;
        let max = self.params.max_entries;
        let open = self
            .unbonding
            .range((delegator, 0)..=(delegator, u64::MAX))
            .filter(|(_, e)| e.validator == validator)
            .count();
        if open >= max {
            return Err(TxError::TooManyUnbondingEntries { max });
        }
        let recent_bonds = self.unbond(bank, delegator, validator, amount, shares, events);
        let completion_ms = now.time_ms + self.params.unbonding_period_ms;
        let id = self.next_entry_id;
        self.next_entry_id += 1;
        self.unbonding.insert(
            (delegator, id),
            UnbondingEntry {
                validator,
                creation_height: now.height,
                completion_ms,
                initial_balance: amount,
                balance: amount,
                recent_bonds,
            },
        );
        self.touched.queues.insert(delegator);
        events.push(Event::Undelegated { delegator, validator, amount: Amount::from_micro(amount), completion_ms });
        Ok(ActionOutcome::Staked)
    }

    /// The `Redelegate` action of `delegator`.
    pub fn redelegate(
        &mut self,
        bank: &mut impl Bank,
        now: Now,
        delegator: Address,
        redelegate: &wire::Redelegate,
        events: &mut Vec<Event>,
    ) -> Result<ActionOutcome, TxError> {
        let from = Address::from_slice(&redelegate.from_validator)?;
        let to = Address::from_slice(&redelegate.to_validator)?;
        if from == to {
            return Err(TxError::SelfRedelegation);
        }
        let amount = vanna(&redelegate.amount)?;
        let now_ms = now.time_ms;
        // Stake that arrived at `from` by a redelegation still maturing may not move on.
        let chained = self
            .redelegations
            .range((delegator, 0)..=(delegator, u64::MAX))
            .any(|(_, entry)| entry.to == from && entry.completion_ms > now_ms);
        if chained {
            return Err(TxError::RedelegationChain(from));
        }
        let shares = self.check_unbond(delegator, from, amount)?;
        self.shares_for_bond(self.registered(&to)?, amount)?;
        let max = self.params.max_entries;
        let open = self
            .redelegations
            .range((delegator, 0)..=(delegator, u64::MAX))
            .filter(|(_, e)| e.from == from && e.to == to && e.completion_ms > now_ms)
            .count();
        if open >= max {
            return Err(TxError::TooManyRedelegationEntries { max });
        }
        let recent_bonds = self.unbond(bank, delegator, from, amount, shares, events);
        // Re-bond without touching liquid VANNA: credit it first, then bond.
        bank.move_vanna(&delegator, amount as i128);
        let shares_at_destination = self.bond(bank, now, delegator, to, amount, events);
        let completion_ms = now_ms + self.params.unbonding_period_ms;
        let id = self.next_entry_id;
        self.next_entry_id += 1;
        self.redelegations.insert(
            (delegator, id),
            RedelegationEntry {
                from,
                to,
                creation_height: now.height,
                completion_ms,
                initial_balance: amount,
                shares_at_destination,
                recent_bonds,
            },
        );
        self.touched.queues.insert(delegator);
        events.push(Event::Redelegated { delegator, from, to, amount: Amount::from_micro(amount) });
        Ok(ActionOutcome::Staked)
    }

    /// The `WithdrawUnbonded` action of `delegator`.
    pub fn withdraw_unbonded(
        &mut self,
        bank: &mut impl Bank,
        now: Now,
        delegator: Address,
        events: &mut Vec<Event>,
    ) -> Result<ActionOutcome, TxError> {
        let now = now.time_ms;
        let matured: Vec<(Address, u64)> = self
            .unbonding
            .range((delegator, 0)..=(delegator, u64::MAX))
            .filter(|(_, entry)| entry.completion_ms <= now)
            .map(|(key, _)| *key)
            .collect();
        let expired: Vec<(Address, u64)> = self
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
            total += self.unbonding.remove(&key).expect("listed above").balance;
        }
        for key in expired {
            self.redelegations.remove(&key);
        }
        bank.move_vanna(&delegator, total as i128);
        self.touched.queues.insert(delegator);
        self.touched.global = true;
        events.push(Event::UnbondingWithdrawn { delegator, amount: Amount::from_micro(total) });
        Ok(ActionOutcome::Staked)
    }

    /// Pays a delegation's rewards (and the operator's commission) out; the
    /// `ClaimRewards` action. Public so that benchmarks can time the ledger alone.
    pub fn claim_rewards(
        &mut self,
        bank: &mut impl Bank,
        delegator: Address,
        claim: &wire::ClaimRewards,
        events: &mut Vec<Event>,
    ) -> Result<ActionOutcome, TxError> {
        let validator = Address::from_slice(&claim.validator)?;
        self.registered(&validator)?;
        let is_operator = delegator == validator;
        if !is_operator && !self.delegations.contains_key(&(delegator, validator)) {
            return Err(TxError::NoDelegation(validator));
        }
        self.settle_rewards(bank, delegator, validator, events);
        if is_operator {
            let v = self.validators.get_mut(&validator).expect("checked");
            let commission = std::mem::take(&mut v.commission_pending);
            if commission > 0 {
                bank.pay_usd(&delegator, commission);
                self.touched.validators.insert(validator);
                events.push(Event::CommissionPaid { validator, amount: Amount::from_micro(commission) });
            }
        }
        Ok(ActionOutcome::Staked)
    }

    /// The `Unjail` action of `operator`.
    pub fn unjail(&mut self, now: Now, operator: Address, events: &mut Vec<Event>) -> Result<ActionOutcome, TxError> {
        let v = self.registered(&operator)?;
        if v.tombstoned {
            return Err(TxError::Tombstoned(operator));
        }
        if !v.jailed {
            return Err(TxError::NotJailed(operator));
        }
        if now.time_ms < v.jailed_until_ms {
            return Err(TxError::StillJailed { until_ms: v.jailed_until_ms, now_ms: now.time_ms });
        }
        let stake = self.self_stake(v);
        let min = self.params.min_self_stake;
        if stake < min.to_micro() {
            return Err(TxError::BelowMinSelfStake { stake: micro(stake), min: min.value() });
        }
        let v = self.validators.get_mut(&operator).expect("checked");
        v.jailed = false;
        v.signed_window.clear();
        v.missed_in_window = 0;
        self.touched.validators.insert(operator);
        events.push(Event::Unjailed { validator: operator });
        Ok(ActionOutcome::Staked)
    }
}
