//! Unit and property tests, checked against a naive from-scratch reference.

use std::collections::BTreeMap;

use proptest::prelude::*;

use crate::{
    EMPTY_HASH, Hash, MAX_DEPTH, MerkleError, Proof, SparseMerkleTree, Terminal, bit, leaf_hash, node_hash,
    verify_exclusion, verify_inclusion,
};

/// Reference root: recursive over a sorted set, following the hashing rules literally.
fn reference_root(entries: &[(Hash, Hash)]) -> Hash {
    fn subtree(entries: &[(Hash, Hash)], depth: usize) -> Hash {
        match entries {
            [] => EMPTY_HASH,
            [(key, value_hash)] => leaf_hash(key, value_hash),
            _ => {
                assert!(depth < MAX_DEPTH, "distinct keys");
                let split = entries.partition_point(|(key, _)| bit(key, depth) == 0);
                let (left, right) = entries.split_at(split);
                node_hash(&subtree(left, depth + 1), &subtree(right, depth + 1))
            }
        }
    }
    assert!(entries.windows(2).all(|pair| pair[0].0 < pair[1].0), "sorted, distinct");
    subtree(entries, 0)
}

fn reference_root_of(map: &BTreeMap<Hash, Hash>) -> Hash {
    let entries: Vec<(Hash, Hash)> = map.iter().map(|(key, value)| (*key, *value)).collect();
    reference_root(&entries)
}

fn tree_of(map: &BTreeMap<Hash, Hash>) -> SparseMerkleTree {
    let mut tree = SparseMerkleTree::new();
    for (key, value_hash) in map {
        tree.insert(*key, *value_hash);
    }
    tree
}

/// A key that is zero except for `bit_index` set.
fn key_with_bit(bit_index: usize) -> Hash {
    let mut key = [0u8; 32];
    key[bit_index / 8] |= 0x80 >> (bit_index % 8);
    key
}

fn value(byte: u8) -> Hash {
    [byte; 32]
}

/// Every proof obtained by changing one byte of one sibling or of the terminal.
fn tampered(proof: &Proof) -> Vec<Proof> {
    let mut out = Vec::new();
    for index in 0..proof.siblings.len() {
        for byte in 0..32 {
            let mut copy = proof.clone();
            copy.siblings[index][byte] ^= 0x01;
            out.push(copy);
        }
    }
    if let Terminal::Leaf { .. } = proof.terminal {
        for byte in 0..64 {
            let mut copy = proof.clone();
            if let Terminal::Leaf { key, value_hash } = &mut copy.terminal {
                if byte < 32 {
                    key[byte] ^= 0x80;
                } else {
                    value_hash[byte - 32] ^= 0x80;
                }
            }
            out.push(copy);
        }
    }
    out
}

/// `proof` with byte `position` (modulo its length in bytes: siblings, then terminal key
/// and value hash) XORed with `mask`; `None` if the proof has no bytes.
fn flip_byte(proof: &Proof, position: usize, mask: u8) -> Option<Proof> {
    let sibling_bytes = proof.siblings.len() * 32;
    let terminal_bytes = match proof.terminal {
        Terminal::Leaf { .. } => 64,
        Terminal::Empty => 0,
    };
    let total = sibling_bytes + terminal_bytes;
    if total == 0 {
        return None;
    }
    let position = position % total;
    let mut copy = proof.clone();
    if position < sibling_bytes {
        copy.siblings[position / 32][position % 32] ^= mask;
    } else if let Terminal::Leaf { key, value_hash } = &mut copy.terminal {
        let offset = position - sibling_bytes;
        if offset < 32 {
            key[offset] ^= mask;
        } else {
            value_hash[offset - 32] ^= mask;
        }
    }
    Some(copy)
}

#[test]
fn empty_root_is_zero() {
    let mut tree = SparseMerkleTree::new();
    assert_eq!(tree.root(), EMPTY_HASH);
    assert!(tree.is_empty());
    assert_eq!(tree.len(), 0);
    assert_eq!(tree.get(&[7; 32]), None);
    tree.assert_invariants();
}

#[test]
fn one_leaf_root_is_its_leaf_hash() {
    let mut tree = SparseMerkleTree::new();
    let key = [0xAB; 32];
    tree.insert(key, value(1));
    assert_eq!(tree.root(), leaf_hash(&key, &value(1)));
    assert_eq!(tree.len(), 1);
    assert_eq!(tree.get(&key), Some(value(1)));
    tree.assert_invariants();
}

#[test]
fn the_current_root_is_read_without_hashing_only_once_hashed() {
    let mut tree = SparseMerkleTree::new();
    assert_eq!(tree.root_if_current(), Some(EMPTY_HASH));
    tree.insert([1; 32], value(1));
    assert_eq!(tree.root_if_current(), None);
    let root = tree.root();
    assert_eq!(tree.root_if_current(), Some(root));
    tree.insert([2; 32], value(2));
    assert_eq!(tree.root_if_current(), None);
    let root = tree.root();
    assert_eq!(tree.root_if_current(), Some(root));
    // Removing one of two leaves leaves the other as the root, hashed already.
    tree.remove(&[1; 32]);
    assert_eq!(tree.root_if_current(), Some(leaf_hash(&[2; 32], &value(2))));
}

#[test]
fn two_leaves_differing_at_bit_0() {
    let mut tree = SparseMerkleTree::new();
    let left = [0u8; 32];
    let right = key_with_bit(0);
    tree.insert(right, value(2));
    tree.insert(left, value(1));
    let expected = node_hash(&leaf_hash(&left, &value(1)), &leaf_hash(&right, &value(2)));
    assert_eq!(tree.root(), expected);
    tree.assert_invariants();
}

#[test]
fn two_leaves_differing_at_bit_200() {
    let mut tree = SparseMerkleTree::new();
    let left = [0u8; 32];
    let right = key_with_bit(200);
    tree.insert(left, value(1));
    tree.insert(right, value(2));
    let mut expected = node_hash(&leaf_hash(&left, &value(1)), &leaf_hash(&right, &value(2)));
    for _ in 0..200 {
        expected = node_hash(&expected, &EMPTY_HASH);
    }
    assert_eq!(tree.root(), expected);
    let proof = tree.prove(&right);
    assert_eq!(proof.siblings.len(), 201);
    assert_eq!(proof.verify(&expected, &right), Ok(Some(value(2))));
    tree.assert_invariants();
}

#[test]
fn keys_differing_only_at_the_last_bit_sit_at_depth_256() {
    let mut tree = SparseMerkleTree::new();
    let left = [0u8; 32];
    let right = key_with_bit(255);
    tree.insert(left, value(1));
    tree.insert(right, value(2));
    let root = tree.root();
    let proof = tree.prove(&right);
    assert_eq!(proof.siblings.len(), MAX_DEPTH);
    assert!(verify_inclusion(&root, &right, &value(2), &proof.siblings));
    assert_eq!(root, reference_root(&[(left, value(1)), (right, value(2))]));
    tree.assert_invariants();
}

#[test]
fn update_changes_root_and_value() {
    let mut tree = SparseMerkleTree::new();
    let keys = [[1u8; 32], [2u8; 32], [0xF0; 32]];
    for key in keys {
        tree.insert(key, value(1));
    }
    let before = tree.root();
    tree.insert(keys[1], value(9));
    assert_eq!(tree.len(), 3);
    assert_eq!(tree.get(&keys[1]), Some(value(9)));
    let after = tree.root();
    assert_ne!(before, after);
    assert_eq!(after, reference_root(&[(keys[0], value(1)), (keys[1], value(9)), (keys[2], value(1))]));
    // Writing the same value again changes nothing.
    tree.insert(keys[1], value(9));
    assert_eq!(tree.root(), after);
    tree.insert(keys[1], value(1));
    assert_eq!(tree.root(), before);
    tree.assert_invariants();
}

#[test]
fn remove_back_to_empty() {
    let mut tree = SparseMerkleTree::new();
    let keys = [[0u8; 32], key_with_bit(0), key_with_bit(3), key_with_bit(255), [0xFF; 32]];
    for (index, key) in keys.iter().enumerate() {
        tree.insert(*key, value(index as u8));
    }
    tree.root();
    assert!(!tree.remove(&key_with_bit(100)), "absent key");
    for (index, key) in keys.iter().enumerate() {
        assert!(tree.remove(key));
        assert!(!tree.remove(key), "already removed");
        assert_eq!(tree.get(key), None);
        let live: Vec<(Hash, Hash)> =
            keys.iter().enumerate().skip(index + 1).map(|(index, key)| (*key, value(index as u8))).collect();
        let mut sorted = live.clone();
        sorted.sort();
        assert_eq!(tree.root(), reference_root(&sorted));
        tree.assert_invariants();
    }
    assert!(tree.is_empty());
    assert_eq!(tree.root(), EMPTY_HASH);
}

#[test]
fn proofs_for_present_and_absent_keys() {
    let mut tree = SparseMerkleTree::new();
    let present = [[0u8; 32], key_with_bit(1), key_with_bit(0), [0xFF; 32]];
    for (index, key) in present.iter().enumerate() {
        tree.insert(*key, value(index as u8 + 1));
    }
    let root = tree.root();
    for (index, key) in present.iter().enumerate() {
        let proof = tree.prove(key);
        assert_eq!(proof.verify(&root, key), Ok(Some(value(index as u8 + 1))));
        assert!(verify_inclusion(&root, key, &value(index as u8 + 1), &proof.siblings));
        assert!(!verify_inclusion(&root, key, &value(0xEE), &proof.siblings));
        assert!(!verify_exclusion(&root, key, &proof));
    }
    // Ends at another leaf sharing the path: 0100...01 meets the leaf of 0100...00, alone
    // in the 01 subtree.
    let mut absent_near_leaf = key_with_bit(1);
    absent_near_leaf[31] = 1;
    let proof = tree.prove(&absent_near_leaf);
    assert_eq!(proof.siblings.len(), 2);
    assert!(matches!(proof.terminal, Terminal::Leaf { key, .. } if key == key_with_bit(1)));
    assert_eq!(proof.verify(&root, &absent_near_leaf), Ok(None));
    assert!(verify_exclusion(&root, &absent_near_leaf, &proof));

    // Ends at an empty slot: both keys start with 0, so the root's right child is empty.
    let mut single = SparseMerkleTree::new();
    single.insert([0u8; 32], value(1));
    single.insert(key_with_bit(1), value(2));
    let single_root = single.root();
    let proof = single.prove(&key_with_bit(0));
    assert_eq!(proof.terminal, Terminal::Empty);
    assert_eq!(proof.siblings.len(), 1);
    assert!(verify_exclusion(&single_root, &key_with_bit(0), &proof));

    let mut empty = SparseMerkleTree::new();
    let proof = empty.prove(&[5; 32]);
    assert_eq!(proof, Proof { siblings: vec![], terminal: Terminal::Empty });
    assert!(verify_exclusion(&EMPTY_HASH, &[5; 32], &proof));
}

#[test]
fn exclusion_terminal_must_share_the_path() {
    let mut tree = SparseMerkleTree::new();
    tree.insert([0u8; 32], value(1));
    tree.insert(key_with_bit(0), value(2));
    let root = tree.root();
    // [0; 32] is alone in the left half, so its proof shows every other 0... key is absent.
    let proof = tree.prove(&[0u8; 32]);
    let left_half = [0x7F; 32];
    assert_eq!(proof.verify(&root, &left_half), Ok(None));
    assert_eq!(tree.prove(&left_half), proof);
    // It says nothing about keys in the right half.
    let right_half = key_with_bit(0).map(|byte| byte | 0x0F);
    assert_eq!(proof.verify(&root, &right_half), Err(MerkleError::TerminalOffPath { depth: 1 }));
    assert!(!verify_exclusion(&root, &right_half, &proof));
}

#[test]
fn proof_rejected_against_another_root() {
    let mut tree = SparseMerkleTree::new();
    for byte in 0..20u8 {
        tree.insert([byte.wrapping_mul(37); 32], value(byte));
    }
    let root = tree.root();
    let key = [37u8; 32];
    let proof = tree.prove(&key);
    assert_eq!(proof.verify(&root, &key), Ok(Some(value(1))));
    tree.insert([200; 32], value(9));
    let other_root = tree.root();
    assert_ne!(root, other_root);
    assert_eq!(proof.verify(&other_root, &key), Err(MerkleError::RootMismatch));
    assert!(!verify_inclusion(&other_root, &key, &value(1), &proof.siblings));
}

#[test]
fn proof_rejected_with_any_byte_changed() {
    let mut tree = SparseMerkleTree::new();
    for byte in 0..64u8 {
        tree.insert([byte.wrapping_mul(91); 32], value(byte));
    }
    let root = tree.root();
    let present = [91u8; 32];
    let absent = [92u8; 32];
    let inclusion = tree.prove(&present);
    let exclusion = tree.prove(&absent);
    assert_eq!(inclusion.verify(&root, &present), Ok(Some(value(1))));
    assert_eq!(exclusion.verify(&root, &absent), Ok(None));
    for (key, proof) in [(present, inclusion), (absent, exclusion)] {
        assert!(!proof.siblings.is_empty());
        for bad in tampered(&proof) {
            assert!(bad.verify(&root, &key).is_err(), "{bad:?}");
            assert!(!verify_inclusion(&root, &key, &value(1), &bad.siblings) || bad.siblings == proof.siblings);
            assert!(!verify_exclusion(&root, &key, &bad));
        }
        // Dropping or adding a sibling, or swapping the terminal for an empty one, fails too.
        let mut shorter = proof.clone();
        shorter.siblings.pop();
        assert!(shorter.verify(&root, &key).is_err());
        let mut longer = proof.clone();
        longer.siblings.push(EMPTY_HASH);
        assert!(longer.verify(&root, &key).is_err());
        if proof.terminal != Terminal::Empty {
            let emptied = Proof { terminal: Terminal::Empty, ..proof };
            assert!(emptied.verify(&root, &key).is_err());
        }
    }
}

#[test]
fn too_many_siblings_rejected() {
    let key = [3u8; 32];
    let proof =
        Proof { siblings: vec![EMPTY_HASH; MAX_DEPTH + 1], terminal: Terminal::Leaf { key, value_hash: value(1) } };
    let root = [9u8; 32];
    assert_eq!(proof.verify(&root, &key), Err(MerkleError::TooManySiblings { count: MAX_DEPTH + 1 }));
    assert!(!verify_inclusion(&root, &key, &value(1), &proof.siblings));
    assert!(!verify_exclusion(&root, &key, &proof));
    let huge = Proof { siblings: vec![[1; 32]; 100_000], terminal: Terminal::Empty };
    assert!(!verify_exclusion(&root, &key, &huge));
    // Exactly MAX_DEPTH siblings is allowed (and here simply does not match).
    let deepest = Proof { siblings: vec![EMPTY_HASH; MAX_DEPTH], terminal: Terminal::Empty };
    assert_eq!(deepest.verify(&root, &key), Err(MerkleError::RootMismatch));
}

#[test]
fn root_is_cached_and_arena_slots_are_reused() {
    let mut tree = SparseMerkleTree::new();
    for byte in 0..32u8 {
        tree.insert([byte; 32], value(byte));
    }
    let root = tree.root();
    assert_eq!(tree.root(), root);
    let clone = tree.clone();
    for byte in 0..32u8 {
        assert!(tree.remove(&[byte; 32]));
    }
    for byte in 0..32u8 {
        tree.insert([byte; 32], value(byte));
    }
    tree.assert_invariants();
    assert_eq!(tree.root(), root);
    assert_eq!(format!("{:?}", clone.get(&[3; 32])), format!("{:?}", Some(value(3))));
}

// ---------------------------------------------------------------------------------------
// Property tests
// ---------------------------------------------------------------------------------------

/// Keys drawn to make collisions and long shared prefixes common: random keys, single-bit
/// keys (any depth), and keys differing only in their last byte (paths ~248 deep).
fn key_strategy() -> impl Strategy<Value = Hash> {
    prop_oneof![
        any::<[u8; 32]>(),
        (0..MAX_DEPTH).prop_map(key_with_bit),
        any::<u8>().prop_map(|last| {
            let mut key = [0x5A; 32];
            key[31] = last;
            key
        }),
    ]
}

/// One step on a pool of keys: insert/update with a value, or remove.
#[derive(Debug, Clone)]
enum Op {
    Insert(usize, u8),
    Remove(usize),
}

fn pool_and_ops() -> impl Strategy<Value = (Vec<Hash>, Vec<Op>)> {
    prop::collection::vec(key_strategy(), 1..40).prop_flat_map(|pool| {
        let len = pool.len();
        let op = prop_oneof![
            3 => (0..len, any::<u8>()).prop_map(|(index, byte)| Op::Insert(index, byte)),
            1 => (0..len).prop_map(Op::Remove),
        ];
        (Just(pool), prop::collection::vec(op, 0..120))
    })
}

/// Applies `ops` to both the tree and a model map, optionally reading the root in between.
fn apply(tree: &mut SparseMerkleTree, model: &mut BTreeMap<Hash, Hash>, pool: &[Hash], ops: &[Op], root_every: usize) {
    for (step, op) in ops.iter().enumerate() {
        match *op {
            Op::Insert(index, byte) => {
                tree.insert(pool[index], value(byte));
                model.insert(pool[index], value(byte));
            }
            Op::Remove(index) => {
                assert_eq!(tree.remove(&pool[index]), model.remove(&pool[index]).is_some());
            }
        }
        if root_every > 0 && step % root_every == 0 {
            tree.root();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// (1) Any sequence of inserts/updates/removes gives the reference root of the live set.
    #[test]
    fn root_matches_reference((pool, ops) in pool_and_ops(), root_every in 0usize..8) {
        let mut tree = SparseMerkleTree::new();
        let mut model = BTreeMap::new();
        apply(&mut tree, &mut model, &pool, &ops, root_every);
        tree.assert_invariants();
        prop_assert_eq!(tree.len(), model.len());
        for key in &pool {
            prop_assert_eq!(tree.get(key), model.get(key).copied());
        }
        prop_assert_eq!(tree.root(), reference_root_of(&model));
    }

    /// (2) History independence: the same final set reached in another order, through other
    /// values, and with extra insert+remove pairs, has the same root.
    #[test]
    fn root_is_history_independent(
        (pool, ops) in pool_and_ops(),
        seed in any::<u64>(),
        extra in prop::collection::vec(key_strategy(), 0..20),
    ) {
        let mut first = SparseMerkleTree::new();
        let mut model = BTreeMap::new();
        apply(&mut first, &mut model, &pool, &ops, 3);

        // A different order: a seeded permutation of the final set, interleaved with
        // transient keys and stale values.
        let mut entries: Vec<(Hash, Hash)> = model.iter().map(|(k, v)| (*k, *v)).collect();
        let mut state = seed | 1;
        for index in (1..entries.len()).rev() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            entries.swap(index, (state % (index as u64 + 1)) as usize);
        }
        let mut second = SparseMerkleTree::new();
        for (step, (key, value_hash)) in entries.iter().enumerate() {
            if let Some(transient) = extra.get(step)
                && !model.contains_key(transient)
            {
                second.insert(*transient, value(0xEE));
            }
            second.insert(*key, value(value_hash[0].wrapping_add(1)));
            if step % 4 == 0 {
                second.root();
            }
            second.insert(*key, *value_hash);
        }
        for transient in &extra {
            if !model.contains_key(transient) {
                second.insert(*transient, value(0xEE));
                second.root();
                prop_assert!(second.remove(transient));
            }
        }
        second.assert_invariants();
        prop_assert_eq!(first.root(), second.root());
        prop_assert_eq!(first.len(), second.len());
    }

    /// (3) Every live key's inclusion proof verifies, every sampled absent key has a valid
    /// exclusion proof, and no single-byte change to a proof is accepted.
    #[test]
    fn proofs_verify_and_resist_tampering(
        (pool, ops) in pool_and_ops(),
        absent in prop::collection::vec(key_strategy(), 1..12),
        flips in prop::collection::vec(
            (any::<prop::sample::Index>(), any::<prop::sample::Index>(), 1u8..=255),
            1..32,
        ),
    ) {
        let mut tree = SparseMerkleTree::new();
        let mut model = BTreeMap::new();
        apply(&mut tree, &mut model, &pool, &ops, 5);
        let root = tree.root();
        let mut checked = Vec::new();
        for (key, value_hash) in &model {
            let proof = tree.prove(key);
            prop_assert_eq!(proof.verify(&root, key), Ok(Some(*value_hash)));
            prop_assert!(verify_inclusion(&root, key, value_hash, &proof.siblings));
            prop_assert!(!verify_exclusion(&root, key, &proof));
            checked.push((*key, proof));
        }
        for key in absent.iter().filter(|key| !model.contains_key(*key)) {
            let proof = tree.prove(key);
            prop_assert_eq!(proof.verify(&root, key), Ok(None));
            prop_assert!(verify_exclusion(&root, key, &proof));
            checked.push((*key, proof));
        }
        // Tampering: proptest picks the proofs, bytes and bit masks (the unit test
        // `proof_rejected_with_any_byte_changed` flips every byte of two proofs).
        for (which, position, mask) in &flips {
            let (key, proof) = which.get(&checked);
            let Some(bad) = flip_byte(proof, position.index(1 << 20), *mask) else {
                continue;
            };
            let verdict = bad.verify(&root, key);
            prop_assert!(verdict.is_err(), "accepted tampered proof: {:?}", verdict);
            prop_assert!(!verify_exclusion(&root, key, &bad));
            if let Some(value_hash) = model.get(key) {
                prop_assert!(
                    bad.siblings == proof.siblings
                        || !verify_inclusion(&root, key, value_hash, &bad.siblings)
                );
            }
        }
    }

    /// (4) The incremental root after a batch equals the root of a freshly built tree.
    #[test]
    fn incremental_root_equals_fresh_build(
        (pool, ops) in pool_and_ops(),
        split in any::<prop::sample::Index>(),
    ) {
        let (setup, batch) = ops.split_at(split.index(ops.len() + 1));
        let mut tree = SparseMerkleTree::new();
        let mut model = BTreeMap::new();
        apply(&mut tree, &mut model, &pool, setup, 0);
        tree.root();
        apply(&mut tree, &mut model, &pool, batch, 0);
        let incremental = tree.root();
        let mut fresh = tree_of(&model);
        prop_assert_eq!(incremental, fresh.root());
        tree.assert_invariants();
    }
}
