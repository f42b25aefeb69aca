//! The in-memory tree: two arenas (internal nodes, leaves) addressed by `u32`, free lists,
//! cached hashes and dirty flags.
//!
//! Invariants (checked by `assert_invariants` in tests):
//! - Shape is canonical: every internal node has two non-empty children, or one empty child
//!   and one internal child. A leaf sits at the highest position where it is alone, and its
//!   key starts with that position's path.
//! - Dirty flags are upward-closed: if a node is dirty, every ancestor is dirty. So `root()`
//!   finds every stale hash by descending through dirty nodes only, and marking a path
//!   dirty can stop at the first node that already is.
//! - Every arena slot is either reachable from the root exactly once or on its free list.

use crate::{EMPTY_HASH, Hash, MAX_DEPTH, Proof, Terminal, bit, common_prefix_bits, leaf_hash, node_hash};

/// Arena indices stay below 2^31 - 1, so the tag bit plus an index never equals
/// `NodeRef::EMPTY`. Reaching it would need about 200 GB of nodes.
const ARENA_LEN_MAX: usize = (1 << 31) - 1;

/// A child pointer: empty, a leaf (tag bit set) or an internal node, in 4 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct NodeRef(u32);

/// A decoded [`NodeRef`].
enum Slot {
    Empty,
    Leaf(usize),
    Internal(usize),
}

impl NodeRef {
    const EMPTY: NodeRef = NodeRef(u32::MAX);
    const LEAF_TAG: u32 = 1 << 31;

    fn leaf(index: usize) -> Self {
        assert!(index < ARENA_LEN_MAX, "leaf arena full");
        NodeRef(Self::LEAF_TAG | index as u32)
    }

    fn internal(index: usize) -> Self {
        assert!(index < ARENA_LEN_MAX, "internal node arena full");
        NodeRef(index as u32)
    }

    fn slot(self) -> Slot {
        if self == Self::EMPTY {
            Slot::Empty
        } else if self.0 & Self::LEAF_TAG != 0 {
            Slot::Leaf((self.0 & !Self::LEAF_TAG) as usize)
        } else {
            Slot::Internal(self.0 as usize)
        }
    }
}

/// An internal node: 8 bytes of children, 32 of cached hash, a dirty flag.
#[derive(Debug, Clone)]
struct Internal {
    children: [NodeRef; 2],
    /// Valid only when `dirty` is false.
    hash: Hash,
    dirty: bool,
}

/// A leaf: its key, value hash, cached leaf hash and a dirty flag.
#[derive(Debug, Clone)]
struct Leaf {
    key: Hash,
    value_hash: Hash,
    /// Valid only when `dirty` is false.
    hash: Hash,
    dirty: bool,
}

/// The internal nodes on the way from the root to a key's terminal slot, top-down.
/// At most one per depth `0..MAX_DEPTH`, kept on the stack.
struct Path {
    nodes: [u32; MAX_DEPTH],
    len: usize,
}

impl Path {
    fn new() -> Self {
        Path { nodes: [0; MAX_DEPTH], len: 0 }
    }

    fn push(&mut self, index: usize) {
        assert!(self.len < MAX_DEPTH, "tree deeper than {MAX_DEPTH}");
        self.nodes[self.len] = index as u32;
        self.len += 1;
    }
}

/// A binary sparse Merkle tree over 256-bit keys, compacted and updated incrementally.
///
/// Nodes live in two arenas (internal nodes and leaves, reused through free lists) and
/// point to each other by `u32` index; hashes are cached per node and recomputed lazily
/// by [`root`](Self::root) for the nodes a change marked dirty. See the crate docs for the
/// hashing rules. Holds at most 2^31 - 2 leaves (insert panics beyond, a capacity bug).
#[derive(Debug, Clone)]
pub struct SparseMerkleTree {
    root: NodeRef,
    internals: Vec<Internal>,
    leaves: Vec<Leaf>,
    internals_free: Vec<u32>,
    leaves_free: Vec<u32>,
    len: usize,
}

impl Default for SparseMerkleTree {
    fn default() -> Self {
        Self::new()
    }
}

impl SparseMerkleTree {
    /// An empty tree; its root is [`EMPTY_HASH`](crate::EMPTY_HASH).
    pub fn new() -> Self {
        SparseMerkleTree {
            root: NodeRef::EMPTY,
            internals: Vec::new(),
            leaves: Vec::new(),
            internals_free: Vec::new(),
            leaves_free: Vec::new(),
            len: 0,
        }
    }

    /// Inserts `key` with `value_hash`, or updates its value hash if present.
    ///
    /// Restructures the key's path and marks it dirty; no hashing happens until
    /// [`root`](Self::root) or [`prove`](Self::prove). Writing the value a key already has
    /// changes nothing.
    pub fn insert(&mut self, key: Hash, value_hash: Hash) {
        let mut path = Path::new();
        let terminal = self.descend(&key, &mut path);
        let replacement = match terminal.slot() {
            Slot::Empty => self.alloc_leaf(key, value_hash),
            Slot::Leaf(index) if self.leaves[index].key == key => {
                let leaf = &mut self.leaves[index];
                if leaf.value_hash != value_hash {
                    leaf.value_hash = value_hash;
                    leaf.dirty = true;
                    self.mark_dirty(&path.nodes[..path.len]);
                }
                return;
            }
            Slot::Leaf(index) => {
                let new_leaf = self.alloc_leaf(key, value_hash);
                let existing_key = self.leaves[index].key;
                self.split(path.len, terminal, &existing_key, new_leaf, &key)
            }
            Slot::Internal(_) => unreachable!("descend ends at a leaf or an empty slot"),
        };
        self.len += 1;
        self.set_child(&path, &key, replacement);
        self.mark_dirty(&path.nodes[..path.len]);
    }

    /// Removes `key`; returns whether it was present.
    ///
    /// Subtrees left with a single leaf collapse upward (the leaf moves to the highest
    /// position where it is alone, its hash unchanged), so the shape, and therefore the
    /// root, is the same as if the key had never been inserted.
    pub fn remove(&mut self, key: &Hash) -> bool {
        let mut path = Path::new();
        let terminal = self.descend(key, &mut path);
        let Slot::Leaf(index) = terminal.slot() else {
            return false;
        };
        if self.leaves[index].key != *key {
            return false;
        }
        self.leaves_free.push(index as u32);
        self.len -= 1;

        // `moved` replaces the subtree at `depth`: empty, or a single leaf lifted from below.
        let mut moved = NodeRef::EMPTY;
        let mut depth = path.len;
        while depth > 0 {
            let parent = path.nodes[depth - 1] as usize;
            let side = bit(key, depth - 1);
            let sibling = self.internals[parent].children[1 - side];
            let parent_keeps_two_leaves = match sibling.slot() {
                Slot::Internal(_) => true,
                Slot::Leaf(_) => moved != NodeRef::EMPTY,
                Slot::Empty => false,
            };
            if parent_keeps_two_leaves {
                self.internals[parent].children[side] = moved;
                self.mark_dirty(&path.nodes[..depth]);
                return true;
            }
            // The parent holds at most one leaf now: it is replaced by that leaf (or nothing).
            if sibling != NodeRef::EMPTY {
                moved = sibling;
            }
            self.internals_free.push(parent as u32);
            depth -= 1;
        }
        self.root = moved;
        true
    }

    /// The value hash stored under `key`, if any.
    pub fn get(&self, key: &Hash) -> Option<Hash> {
        let mut node = self.root;
        let mut depth = 0;
        loop {
            match node.slot() {
                Slot::Internal(index) => {
                    node = self.internals[index].children[bit(key, depth)];
                    depth += 1;
                }
                Slot::Leaf(index) => {
                    let leaf = &self.leaves[index];
                    return (leaf.key == *key).then_some(leaf.value_hash);
                }
                Slot::Empty => return None,
            }
        }
    }

    /// Number of keys in the tree.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if the tree holds no keys.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The root hash. Re-hashes only the nodes changed since the last call, bottom-up,
    /// each once; a single cached read when nothing changed.
    pub fn root(&mut self) -> Hash {
        self.refresh(self.root)
    }

    /// The root hash without hashing anything: `None` when a change since the
    /// last [`root`](Self::root) is not hashed yet.
    pub fn root_if_current(&self) -> Option<Hash> {
        match self.root.slot() {
            Slot::Empty => Some(EMPTY_HASH),
            Slot::Leaf(index) => (!self.leaves[index].dirty).then_some(self.leaves[index].hash),
            Slot::Internal(index) => (!self.internals[index].dirty).then_some(self.internals[index].hash),
        }
    }

    /// An inclusion proof for `key` if present, an exclusion proof otherwise, valid against
    /// the current [`root`](Self::root) (which it brings up to date first).
    pub fn prove(&mut self, key: &Hash) -> Proof {
        self.root();
        let mut siblings = Vec::new();
        let mut node = self.root;
        loop {
            match node.slot() {
                Slot::Internal(index) => {
                    let side = bit(key, siblings.len());
                    let children = self.internals[index].children;
                    siblings.push(self.cached_hash(children[1 - side]));
                    node = children[side];
                }
                Slot::Leaf(index) => {
                    let leaf = &self.leaves[index];
                    let terminal = Terminal::Leaf { key: leaf.key, value_hash: leaf.value_hash };
                    return Proof { siblings, terminal };
                }
                Slot::Empty => {
                    return Proof { siblings, terminal: Terminal::Empty };
                }
            }
        }
    }

    /// Walks `key`'s path from the root, recording the internal nodes in `path`, and returns
    /// the leaf or empty slot where it ends (at depth `path.len`).
    fn descend(&self, key: &Hash, path: &mut Path) -> NodeRef {
        let mut node = self.root;
        while let Slot::Internal(index) = node.slot() {
            node = self.internals[index].children[bit(key, path.len)];
            path.push(index);
        }
        node
    }

    /// Puts `node` in the slot at the end of `path` on `key`'s path (the root if empty).
    fn set_child(&mut self, path: &Path, key: &Hash, node: NodeRef) {
        match path.len.checked_sub(1) {
            Some(parent_depth) => {
                let parent = path.nodes[parent_depth] as usize;
                self.internals[parent].children[bit(key, parent_depth)] = node;
            }
            None => self.root = node,
        }
    }

    /// Marks the internal nodes of `path` dirty, bottom-up, stopping at the first one that
    /// already is (its ancestors are too: dirty flags are upward-closed).
    fn mark_dirty(&mut self, path: &[u32]) {
        for &index in path.iter().rev() {
            let node = &mut self.internals[index as usize];
            if node.dirty {
                break;
            }
            node.dirty = true;
        }
    }

    /// Builds the subtree that replaces leaf `existing` (key `existing_key`) at `depth` once
    /// `new_leaf` (key `new_key`, sharing the first `depth` bits) joins it: a chain of
    /// single-child internal nodes down to the first differing bit, where the two leaves split.
    fn split(
        &mut self,
        depth: usize,
        existing: NodeRef,
        existing_key: &Hash,
        new_leaf: NodeRef,
        new_key: &Hash,
    ) -> NodeRef {
        let split_depth = common_prefix_bits(existing_key, new_key);
        assert!(depth <= split_depth && split_depth < MAX_DEPTH, "split of distinct keys sharing the path so far");
        let mut children = [existing, existing];
        children[bit(new_key, split_depth)] = new_leaf;
        let mut subtree = self.alloc_internal(children);
        for chain_depth in (depth..split_depth).rev() {
            let mut children = [NodeRef::EMPTY; 2];
            children[bit(new_key, chain_depth)] = subtree;
            subtree = self.alloc_internal(children);
        }
        subtree
    }

    fn alloc_leaf(&mut self, key: Hash, value_hash: Hash) -> NodeRef {
        let leaf = Leaf { key, value_hash, hash: EMPTY_HASH, dirty: true };
        match self.leaves_free.pop() {
            Some(index) => {
                self.leaves[index as usize] = leaf;
                NodeRef::leaf(index as usize)
            }
            None => {
                let node = NodeRef::leaf(self.leaves.len());
                self.leaves.push(leaf);
                node
            }
        }
    }

    fn alloc_internal(&mut self, children: [NodeRef; 2]) -> NodeRef {
        let internal = Internal { children, hash: EMPTY_HASH, dirty: true };
        match self.internals_free.pop() {
            Some(index) => {
                self.internals[index as usize] = internal;
                NodeRef::internal(index as usize)
            }
            None => {
                let node = NodeRef::internal(self.internals.len());
                self.internals.push(internal);
                node
            }
        }
    }

    /// Brings the hash of `node`'s subtree up to date and returns it, descending only into
    /// dirty nodes. Recursion depth is bounded by the tree depth (at most 257 frames).
    fn refresh(&mut self, node: NodeRef) -> Hash {
        match node.slot() {
            Slot::Empty => EMPTY_HASH,
            Slot::Leaf(index) => {
                let leaf = &mut self.leaves[index];
                if leaf.dirty {
                    leaf.hash = leaf_hash(&leaf.key, &leaf.value_hash);
                    leaf.dirty = false;
                }
                leaf.hash
            }
            Slot::Internal(index) => {
                if !self.internals[index].dirty {
                    return self.internals[index].hash;
                }
                let [left, right] = self.internals[index].children;
                let left_hash = self.refresh(left);
                let right_hash = self.refresh(right);
                let internal = &mut self.internals[index];
                internal.hash = node_hash(&left_hash, &right_hash);
                internal.dirty = false;
                internal.hash
            }
        }
    }

    /// The cached hash of `node`; only valid right after [`refresh`](Self::refresh).
    fn cached_hash(&self, node: NodeRef) -> Hash {
        match node.slot() {
            Slot::Empty => EMPTY_HASH,
            Slot::Leaf(index) => {
                debug_assert!(!self.leaves[index].dirty);
                self.leaves[index].hash
            }
            Slot::Internal(index) => {
                debug_assert!(!self.internals[index].dirty);
                self.internals[index].hash
            }
        }
    }

    /// Checks the invariants listed in the module docs; panics on the first violation.
    #[cfg(test)]
    pub(crate) fn assert_invariants(&self) {
        let mut seen_internals = vec![false; self.internals.len()];
        let mut seen_leaves = vec![false; self.leaves.len()];
        let mut prefix = EMPTY_HASH;
        let leaf_count = self.check_subtree(self.root, 0, &mut prefix, true, &mut seen_internals, &mut seen_leaves);
        assert_eq!(leaf_count, self.len, "len matches reachable leaves");
        for &index in &self.internals_free {
            assert!(!std::mem::replace(&mut seen_internals[index as usize], true));
        }
        for &index in &self.leaves_free {
            assert!(!std::mem::replace(&mut seen_leaves[index as usize], true));
        }
        assert!(seen_internals.iter().all(|&seen| seen), "no leaked internal node");
        assert!(seen_leaves.iter().all(|&seen| seen), "no leaked leaf");
    }

    /// Checks the subtree at `depth` whose path is the first `depth` bits of `prefix`;
    /// returns its number of leaves.
    #[cfg(test)]
    fn check_subtree(
        &self,
        node: NodeRef,
        depth: usize,
        prefix: &mut Hash,
        parent_dirty: bool,
        seen_internals: &mut [bool],
        seen_leaves: &mut [bool],
    ) -> usize {
        match node.slot() {
            Slot::Empty => 0,
            Slot::Leaf(index) => {
                assert!(!std::mem::replace(&mut seen_leaves[index], true), "leaf reached twice");
                let leaf = &self.leaves[index];
                assert!(common_prefix_bits(&leaf.key, prefix) >= depth, "leaf off its path");
                assert!(parent_dirty || !leaf.dirty, "dirty leaf under a clean parent");
                1
            }
            Slot::Internal(index) => {
                assert!(depth < MAX_DEPTH, "internal node at depth {depth}");
                assert!(!std::mem::replace(&mut seen_internals[index], true), "node reached twice");
                let internal = &self.internals[index];
                assert!(parent_dirty || !internal.dirty, "dirty node under a clean parent");
                let mask = 0x80 >> (depth % 8);
                let mut counts = [0; 2];
                for (side, count) in counts.iter_mut().enumerate() {
                    if side == 0 {
                        prefix[depth / 8] &= !mask;
                    } else {
                        prefix[depth / 8] |= mask;
                    }
                    *count = self.check_subtree(
                        internal.children[side],
                        depth + 1,
                        prefix,
                        internal.dirty,
                        seen_internals,
                        seen_leaves,
                    );
                }
                let one_internal_child =
                    internal.children.iter().any(|child| matches!(child.slot(), Slot::Internal(_)));
                assert!(
                    (counts[0] > 0 && counts[1] > 0) || one_internal_child,
                    "internal node at depth {depth} is not canonical"
                );
                counts[0] + counts[1]
            }
        }
    }
}
