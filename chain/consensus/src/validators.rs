use crate::error::Error;
use crate::scheme::Scheme;
use crate::types::{ValidatorIndex, View};

/// Upper bound on set size: bitmaps, leader schedules and vote books are sized by it.
pub const MAX_VALIDATORS: usize = 1024;
/// Length of the precomputed leader schedule per validator (longer = closer to
/// exact stake proportions; bounded so computing it stays cheap).
const SCHEDULE_SLOTS_PER_VALIDATOR: usize = 32;

/// One validator as the staking ledger reports it. The ledger checks the
/// proof of possession (see [`crate::verify_proof_of_possession`]) before a key
/// ever reaches this list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatorEntry<S: Scheme> {
    pub public_key: S::PublicKey,
    /// The ledger's operator account; opaque to consensus.
    pub operator: Vec<u8>,
    pub power: u64,
}

/// The validator set of one epoch, in a deterministic order (by public key
/// bytes), with its stake-weighted leader schedule.
#[derive(Debug, Clone)]
pub struct ValidatorSet<S: Scheme> {
    entries: Vec<ValidatorEntry<S>>,
    total_power: u64,
    schedule: Vec<ValidatorIndex>,
}

impl<S: Scheme> ValidatorSet<S> {
    /// Builds a set from the ledger's list in any order; the result does not
    /// depend on the input order.
    pub fn new(mut entries: Vec<ValidatorEntry<S>>) -> Result<Self, Error> {
        if entries.is_empty() {
            return Err(Error::EmptyValidatorSet);
        }
        if entries.len() > MAX_VALIDATORS {
            return Err(Error::TooManyValidators(entries.len(), MAX_VALIDATORS));
        }
        entries.sort_by_key(|e| S::public_key_bytes(&e.public_key));
        let mut total_power: u64 = 0;
        for (index, entry) in entries.iter().enumerate() {
            if entry.power == 0 {
                return Err(Error::ZeroPower(index));
            }
            if index > 0 && entries[index - 1].public_key == entry.public_key {
                return Err(Error::DuplicateKey);
            }
            total_power = total_power.checked_add(entry.power).ok_or(Error::PowerOverflow)?;
        }
        let schedule = leader_schedule(&entries, total_power);
        Ok(Self { entries, total_power, schedule })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    pub fn total_power(&self) -> u64 {
        self.total_power
    }
    pub fn entries(&self) -> &[ValidatorEntry<S>] {
        &self.entries
    }
    pub fn get(&self, index: ValidatorIndex) -> Option<&ValidatorEntry<S>> {
        self.entries.get(index.0 as usize)
    }
    pub fn power(&self, index: ValidatorIndex) -> u64 {
        self.get(index).map_or(0, |e| e.power)
    }
    pub fn index_of(&self, key: &S::PublicKey) -> Option<ValidatorIndex> {
        self.entries.iter().position(|e| &e.public_key == key).map(|i| ValidatorIndex(i as u32))
    }

    /// More than two thirds of the total power.
    pub fn is_quorum(&self, power: u64) -> bool {
        u128::from(power) * 3 > u128::from(self.total_power) * 2
    }

    /// The leader of `view`: a smooth weighted round robin over stake, so each
    /// validator leads in proportion to its power and faulty leaders cannot
    /// cluster beyond what their stake allows.
    pub fn leader(&self, view: View) -> ValidatorIndex {
        self.schedule[(view.0 % self.schedule.len() as u64) as usize]
    }
}

/// Smooth weighted round robin (as in nginx and CometBFT's proposer priority):
/// every slot adds each validator's power to its credit, the highest credit
/// leads (lowest index on ties) and pays back the total.
fn leader_schedule<S: Scheme>(entries: &[ValidatorEntry<S>], total_power: u64) -> Vec<ValidatorIndex> {
    let slots = entries.len() * SCHEDULE_SLOTS_PER_VALIDATOR;
    let mut credit = vec![0i128; entries.len()];
    let mut schedule = Vec::with_capacity(slots);
    for _ in 0..slots {
        let mut best = 0;
        for (index, entry) in entries.iter().enumerate() {
            credit[index] += i128::from(entry.power);
            if credit[index] > credit[best] {
                best = index;
            }
        }
        credit[best] -= i128::from(total_power);
        schedule.push(ValidatorIndex(best as u32));
    }
    schedule
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheme::TestScheme;

    fn set(powers: &[u64]) -> ValidatorSet<TestScheme> {
        let entries = powers
            .iter()
            .enumerate()
            .map(|(i, p)| ValidatorEntry { public_key: i as u64 + 1, operator: vec![i as u8], power: *p })
            .collect();
        ValidatorSet::new(entries).unwrap()
    }

    #[test]
    fn leaders_follow_stake() {
        let set = set(&[1, 2, 5]);
        let mut counts = [0u32; 3];
        for view in 0..800 {
            counts[set.leader(View(view)).0 as usize] += 1;
        }
        assert_eq!(counts, [100, 200, 500]);
    }

    #[test]
    fn quorum_is_strictly_more_than_two_thirds() {
        let four = set(&[1, 1, 1, 1]);
        assert!(!four.is_quorum(2));
        assert!(four.is_quorum(3));
        let three = set(&[1, 1, 1]);
        assert!(!three.is_quorum(2));
        assert!(three.is_quorum(3));
    }

    #[test]
    fn order_does_not_depend_on_input_and_rejects_bad_sets() {
        let a = ValidatorSet::<TestScheme>::new(vec![
            ValidatorEntry { public_key: 9, operator: vec![], power: 1 },
            ValidatorEntry { public_key: 3, operator: vec![], power: 2 },
        ])
        .unwrap();
        assert_eq!(a.index_of(&3), Some(ValidatorIndex(0)));
        assert_eq!(ValidatorSet::<TestScheme>::new(vec![]).unwrap_err(), Error::EmptyValidatorSet);
        let duplicate = vec![
            ValidatorEntry { public_key: 3, operator: vec![], power: 1 },
            ValidatorEntry { public_key: 3, operator: vec![], power: 1 },
        ];
        assert_eq!(ValidatorSet::<TestScheme>::new(duplicate).unwrap_err(), Error::DuplicateKey);
        let zero = vec![ValidatorEntry::<TestScheme> { public_key: 3, operator: vec![], power: 0 }];
        assert_eq!(ValidatorSet::new(zero).unwrap_err(), Error::ZeroPower(0));
    }
}
