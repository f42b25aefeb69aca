//! The state commitment: a sparse Merkle tree (`vanna-merkle`) of leaves,
//! each SHA-256 of a canonical protobuf encoding, under keys tagged by kind
//! (`vanna_types::proof`): one per account, per underlying (its spec, and
//! its oracle state), per series, one for chain-wide values, and the staking
//! ledger's. Each step that changes state marks the leaves it touched; after
//! each block only those are re-encoded (`root.rs` for the runtime's own,
//! `vanna-staking` for the ledger's) and only their paths re-hashed.
//!
//! This module knows nothing of `State`: it keeps the tree and the marks.

use std::collections::BTreeSet;

use vanna_merkle::{Hash, SparseMerkleTree};
use vanna_types::proof::leaf_key;

use crate::ids::SeriesId;

pub use vanna_types::proof::{account_key, value_hash};

/// The tree and which of the runtime's leaves changed since the last root.
#[derive(Clone, Debug, Default)]
pub(crate) struct Commitment {
    pub(crate) tree: SparseMerkleTree,
    dirty_accounts: BTreeSet<u64>,
    dirty_series: BTreeSet<SeriesId>,
    dirty_underlyings: BTreeSet<String>,
    dirty_oracle: BTreeSet<String>,
    global_dirty: bool,
}

/// The runtime's leaves marked since the last root, taken for re-encoding.
#[derive(Debug, Default)]
pub(crate) struct Dirty {
    pub(crate) accounts: BTreeSet<u64>,
    pub(crate) series: BTreeSet<SeriesId>,
    pub(crate) underlyings: BTreeSet<String>,
    pub(crate) oracle: BTreeSet<String>,
    pub(crate) global: bool,
}

impl Commitment {
    pub(crate) fn touch_account(&mut self, owner: u64) {
        self.dirty_accounts.insert(owner);
    }

    pub(crate) fn touch_series(&mut self, series: SeriesId) {
        self.dirty_series.insert(series);
    }

    pub(crate) fn touch_underlying(&mut self, symbol: &str) {
        if !self.dirty_underlyings.contains(symbol) {
            self.dirty_underlyings.insert(symbol.to_string());
        }
    }

    pub(crate) fn touch_oracle(&mut self, symbol: &str) {
        if !self.dirty_oracle.contains(symbol) {
            self.dirty_oracle.insert(symbol.to_string());
        }
    }

    pub(crate) fn touch_global(&mut self) {
        self.global_dirty = true;
    }

    /// The root, if every change has been written into the tree and hashed
    /// (between blocks, once `State::state_root` has run).
    pub(crate) fn current_root(&self) -> Option<Hash> {
        let unmarked = self.dirty_accounts.is_empty()
            && self.dirty_series.is_empty()
            && self.dirty_underlyings.is_empty()
            && self.dirty_oracle.is_empty()
            && !self.global_dirty;
        unmarked.then(|| self.tree.root_if_current()).flatten()
    }

    /// Takes the marks, leaving none.
    pub(crate) fn take_dirty(&mut self) -> Dirty {
        Dirty {
            accounts: std::mem::take(&mut self.dirty_accounts),
            series: std::mem::take(&mut self.dirty_series),
            underlyings: std::mem::take(&mut self.dirty_underlyings),
            oracle: std::mem::take(&mut self.dirty_oracle),
            global: std::mem::take(&mut self.global_dirty),
        }
    }

    /// Writes a leaf's value, or removes the leaf.
    pub(crate) fn write(&mut self, key: Hash, value: Option<Hash>) {
        match value {
            Some(value) => self.tree.insert(key, value),
            None => {
                self.tree.remove(&key);
            }
        }
    }
}

pub(crate) fn series_key(name: &str) -> Hash {
    leaf_key(b"vanna/series", name.as_bytes())
}

pub(crate) fn underlying_key(symbol: &str) -> Hash {
    leaf_key(b"vanna/underlying", symbol.as_bytes())
}

pub(crate) fn oracle_key(symbol: &str) -> Hash {
    leaf_key(b"vanna/oracle", symbol.as_bytes())
}

pub(crate) fn global_key() -> Hash {
    leaf_key(b"vanna/global", b"")
}
