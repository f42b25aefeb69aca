//! A bounded set of hashes that forgets the oldest insertion first.

use std::collections::{HashMap, VecDeque};

/// At most `capacity` hashes; inserting one already present refreshes it.
/// The queue may hold stale copies of refreshed hashes, but never more than
/// `capacity` items, so memory stays bounded.
#[derive(Debug)]
pub(crate) struct Recent {
    capacity: usize,
    /// Insertion order, with the stamp each insertion got.
    order: VecDeque<([u8; 32], u64)>,
    /// Each member's latest stamp: a queue item with an older stamp is stale.
    members: HashMap<[u8; 32], u64>,
    next_stamp: u64,
}

impl Recent {
    pub(crate) fn new(capacity: usize) -> Self {
        Recent { capacity, order: VecDeque::new(), members: HashMap::new(), next_stamp: 0 }
    }

    pub(crate) fn insert(&mut self, hash: [u8; 32]) {
        if self.capacity == 0 {
            return;
        }
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        self.members.insert(hash, stamp);
        self.order.push_back((hash, stamp));
        while self.order.len() > self.capacity {
            let Some((old, old_stamp)) = self.order.pop_front() else { break };
            if self.members.get(&old) == Some(&old_stamp) {
                self.members.remove(&old);
            }
        }
    }

    pub(crate) fn contains(&self, hash: &[u8; 32]) -> bool {
        self.members.contains_key(hash)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.members.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgets_the_oldest_first_and_a_refresh_counts_as_new() {
        let mut recent = Recent::new(3);
        for i in 0..3 {
            recent.insert([i; 32]);
        }
        recent.insert([0; 32]);
        recent.insert([3; 32]);
        assert!(recent.contains(&[0; 32]), "refreshed, so not the oldest");
        assert!(!recent.contains(&[1; 32]));
        assert!(recent.contains(&[2; 32]) && recent.contains(&[3; 32]));
        for i in 10..100 {
            recent.insert([i; 32]);
            assert!(recent.len() <= 3 && recent.order.len() <= 3);
        }
        let mut none = Recent::new(0);
        none.insert([1; 32]);
        assert!(!none.contains(&[1; 32]));
    }
}
