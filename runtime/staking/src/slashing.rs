//! Slashing and jailing. Verified evidence (consensus verifies the signed
//! pair; the runtime trusts what the block context hands it) burns a fraction
//! of the offender's bonded stake and the same fraction of every unbonding or
//! redelegation that left it after the offence, pays the reporter a share,
//! and jails the validator for good (tombstone). Missing too many blocks in
//! the sliding window jails it for a while with a small slash.
//!
//! Every cut rounds down, so a slash never takes more than its fraction.

use super::{Bank, EvidenceRecord, Now, Offence, Staking};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use vanna_types::events::Event;
use vanna_types::ids::Address;
use vanna_types::money::Amount;

fn cut(amount: u64, fraction: Decimal) -> u64 {
    (Decimal::from(amount) * fraction).floor().to_u64().expect("a fraction of an amount fits")
}

impl Staking {
    /// Applies verified evidence. Evidence for an unknown key or already
    /// punished is ignored (it returns false), so repeated inclusion is harmless.
    pub fn apply_evidence(
        &mut self,
        bank: &mut impl Bank,
        now: Now,
        evidence: &EvidenceRecord,
        events: &mut Vec<Event>,
    ) -> bool {
        let Some(operator) =
            self.validators.values().find(|v| v.consensus_key == evidence.consensus_key).map(|v| v.operator)
        else {
            return false;
        };
        let key = (evidence.consensus_key, evidence.offence, evidence.height);
        let too_old = evidence.height.saturating_add(self.params.max_evidence_age_blocks) < now.height;
        let from_the_future = evidence.height > now.height;
        if too_old || from_the_future || self.punished.contains(&key) || self.validators[&operator].tombstoned {
            return false;
        }
        self.punished.insert(key);
        let fraction = self.params.double_sign_slash;
        self.slash(bank, now, operator, evidence.offence, evidence.height, fraction, evidence.reporter, events);
        let validator = self.validators.get_mut(&operator).expect("found above");
        validator.jailed = true;
        validator.tombstoned = true;
        validator.jailed_until_ms = u64::MAX;
        self.touched.validators.insert(operator);
        events.push(Event::Jailed {
            validator: operator,
            offence: evidence.offence,
            height: now.height,
            until_ms: u64::MAX,
        });
        true
    }

    /// Burns `fraction` of the validator's bonded stake and of the stake that
    /// left it (unbonding or redelegated) after `infraction_height`, still maturing.
    fn slash(
        &mut self,
        bank: &mut impl Bank,
        now: Now,
        operator: Address,
        offence: Offence,
        infraction_height: u64,
        fraction: Decimal,
        reporter: Option<Address>,
        events: &mut Vec<Event>,
    ) {
        let now_ms = now.time_ms;
        let bonded = self.slash_bonded(bank, operator, infraction_height, fraction, events);

        let mut unbonding = 0u64;
        let mut touched_queues = Vec::new();
        for ((delegator, _), entry) in self.unbonding.iter_mut() {
            if entry.validator == operator && entry.creation_height > infraction_height && entry.completion_ms > now_ms
            {
                let amount = cut(entry.bonded_at(infraction_height), fraction).min(entry.balance);
                entry.balance -= amount;
                unbonding += amount;
                touched_queues.push(*delegator);
            }
        }
        let redelegated: Vec<(Address, Address, u64, u128)> = self
            .redelegations
            .iter()
            .filter(|(_, e)| e.from == operator && e.creation_height > infraction_height && e.completion_ms > now_ms)
            .map(|((delegator, _), e)| {
                (*delegator, e.to, cut(e.bonded_at(infraction_height), fraction), e.shares_at_destination)
            })
            .collect();
        let mut redelegation = 0u64;
        for (delegator, destination, amount, entry_shares) in redelegated {
            // Take the cut from the stake that now sits at the destination.
            self.settle_rewards(bank, delegator, destination, events);
            let Some(delegation) = self.delegations.get(&(delegator, destination)).copied() else {
                continue;
            };
            let v = &self.validators[&destination];
            if v.tokens == 0 {
                continue;
            }
            let shares =
                (amount as u128 * v.shares).div_ceil(v.tokens as u128).min(entry_shares).min(delegation.shares);
            let tokens = v.tokens_for(shares).min(amount);
            let v = self.validators.get_mut(&destination).expect("exists");
            v.tokens -= tokens;
            v.shares -= shares;
            let delegation = self.delegations.get_mut(&(delegator, destination)).expect("exists");
            delegation.shares -= shares;
            if delegation.shares == 0 {
                self.delegations.remove(&(delegator, destination));
            }
            self.release_recent_bonds(destination, delegator, shares);
            redelegation += tokens;
            self.touched.validators.insert(destination);
            self.touched.delegations.insert((delegator, destination));
        }
        for delegator in touched_queues {
            self.touched.queues.insert(delegator);
        }
        let total = bonded + unbonding + redelegation;
        let reporter_reward = match reporter {
            Some(reporter) if total > 0 => {
                let reward = cut(total, self.params.reporter_reward);
                bank.move_vanna(&reporter, reward as i128);
                reward
            }
            _ => 0,
        };
        self.burned += total - reporter_reward;
        self.touched.global = true;
        events.push(Event::Slashed {
            validator: operator,
            offence,
            infraction_height,
            height: now.height,
            bonded: Amount::from_micro(bonded),
            unbonding: Amount::from_micro(unbonding),
            redelegated: Amount::from_micro(redelegation),
            reporter_reward: Amount::from_micro(reporter_reward),
            burned: Amount::from_micro(total - reporter_reward),
        });
    }

    /// Burns `fraction` of the tokens held by shares that were bonded at
    /// `infraction_height`. Shares bonded later keep their value: they are
    /// given the extra shares that make up for the lower share price (rounded
    /// down, against them), so the whole burn falls on the older shares.
    fn slash_bonded(
        &mut self,
        bank: &mut impl Bank,
        operator: Address,
        infraction_height: u64,
        fraction: Decimal,
        events: &mut Vec<Event>,
    ) -> u64 {
        let validator = &self.validators[&operator];
        let (tokens, shares) = (validator.tokens as u128, validator.shares);
        if tokens == 0 || shares == 0 {
            return 0;
        }
        let protected: Vec<((Address, Address, u64), u128)> = self
            .recent_bonds
            .range((operator, Address::default(), 0)..)
            .take_while(|((v, _, _), _)| *v == operator)
            .filter(|((_, _, height), _)| *height > infraction_height)
            .map(|(key, shares)| (*key, *shares))
            .collect();
        let new_shares: u128 = protected.iter().map(|(_, s)| s).sum();
        let old_shares = shares - new_shares;
        let old_tokens = super::mul_div_floor(old_shares, tokens, shares) as u64;
        let burn = cut(old_tokens, fraction);
        if burn == 0 {
            return 0;
        }
        // New shares N become N' = N × t × O / (t × O − B × s), so that N' at
        // the new price is worth what N was worth before.
        let denominator = tokens * old_shares - burn as u128 * shares;
        let mut minted = 0u128;
        for ((_, delegator, height), tranche) in protected {
            let extra = super::mul_div_floor(tranche, burn as u128 * shares, denominator);
            if extra == 0 {
                continue;
            }
            self.settle_rewards(bank, delegator, operator, events);
            self.delegations.get_mut(&(delegator, operator)).expect("a recent bond belongs to a delegation").shares +=
                extra;
            *self.recent_bonds.get_mut(&(operator, delegator, height)).expect("listed above") += extra;
            minted += extra;
            self.touched.delegations.insert((delegator, operator));
        }
        let validator = self.validators.get_mut(&operator).expect("exists");
        validator.tokens -= burn;
        validator.shares += minted;
        self.touched.validators.insert(operator);
        burn
    }

    /// Records which active validators signed this block and jails those
    /// that missed too much of the window.
    pub fn record_signatures(&mut self, bank: &mut impl Bank, now: Now, signers: &[[u8; 48]], events: &mut Vec<Event>) {
        let window = self.params.signed_blocks_window.min(super::MAX_SIGNED_BLOCKS_WINDOW) as usize;
        let max_missed =
            (Decimal::from(window as u64) * self.params.max_missed_fraction).floor().to_u32().unwrap_or(u32::MAX);
        let mut offenders = Vec::new();
        let active: Vec<Address> = self.active.iter().map(|member| member.operator).collect();
        for operator in active {
            let validator = self.validators.get_mut(&operator).expect("active validators exist");
            if validator.jailed {
                continue;
            }
            let signed = signers.contains(&validator.consensus_key);
            validator.signed_window.push_back(signed);
            if !signed {
                validator.missed_in_window += 1;
            }
            if validator.signed_window.len() > window && validator.signed_window.pop_front() == Some(false) {
                validator.missed_in_window -= 1;
            }
            if validator.missed_in_window > max_missed {
                offenders.push(operator);
            }
            self.touched.validators.insert(operator);
        }
        for operator in offenders {
            let fraction = self.params.downtime_slash;
            let height = now.height;
            self.slash(bank, now, operator, Offence::Downtime, height, fraction, None, events);
            let until_ms = now.time_ms + self.params.downtime_jail_ms;
            let validator = self.validators.get_mut(&operator).expect("exists");
            validator.jailed = true;
            validator.jailed_until_ms = until_ms;
            validator.signed_window.clear();
            validator.missed_in_window = 0;
            events.push(Event::Jailed { validator: operator, offence: Offence::Downtime, height, until_ms });
        }
    }
}
