//! The node's durable storage.
//!
//! Owns: finalized blocks with their finalization certificates and receipts,
//! the hash → height index and state snapshots, in sled ([`BlockStore`]);
//! and the consensus journal, in an fsynced file of its own ([`Journal`],
//! kept out of sled like the signer's slashing protection: what decides
//! whether a validator may sign must not depend on a database's recovery).
//!
//! Must not: interpret what it stores. Blocks, certificates, receipts,
//! snapshots and journal records are opaque bytes that the node encodes.
//!
//! How the node uses it:
//!
//! ```no_run
//! use vanna_store::{BlockStore, Journal, StoredBlock};
//!
//! # fn main() -> Result<(), vanna_store::StoreError> {
//! let store = BlockStore::open("data/store")?;
//! // On restart: the latest snapshot, then replay the blocks after it.
//! let (from, _snapshot) = store.latest_snapshot()?.unwrap_or((0, Vec::new()));
//! for height in from + 1..=store.last_height()? {
//!     let _block = store.block(height)?.expect("blocks up to last_height are all stored");
//! }
//! // Each finalized block, once executed: it counts as committed when this returns.
//! let block = StoredBlock {
//!     height: store.last_height()? + 1,
//!     hash: [1; 32],
//!     header: b"header".to_vec(),
//!     payload: b"transactions".to_vec(),
//!     certificate: b"certificate".to_vec(),
//!     receipts: b"receipts".to_vec(),
//!     state_root: [2; 32],
//! };
//! store.commit(&block)?;
//! // Every N blocks, the runtime's `State::snapshot()`.
//! store.put_snapshot(block.height, b"snapshot bytes")?;
//!
//! // The consensus journal: durable before a message leaves the node.
//! let mut journal = Journal::open("data/consensus.journal")?;
//! journal.append(b"my vote")?;
//! // After a finalization, drop what no restart needs any more.
//! journal.rewrite(|record| record != b"my vote")?;
//! # Ok(())
//! # }
//! ```
//!
//! Durability: [`BlockStore::commit`] writes a block's five entries (block,
//! certificate, receipts, hash index, last height) in one sled batch, which
//! sled applies atomically, and flushes before returning; a crash at any
//! moment leaves every block up to the last height complete and nothing of a
//! later one (`tests/crash.rs` kills a writer with SIGKILL to check it).

mod journal;

use std::path::Path;
use std::sync::Mutex;

pub use journal::Journal;

/// Largest header, and largest certificate, stored.
pub const MAX_HEADER_BYTES: usize = 1 << 20;
/// Largest payload, and largest receipts, stored: above the runtime's
/// largest block (20,000 transactions of at most 8 KiB, plus oracle reports).
pub const MAX_BODY_BYTES: usize = 256 << 20;
/// Largest snapshot stored (the runtime's own limit is lower).
pub const MAX_SNAPSHOT_BYTES: usize = 4 << 30;
/// Most bytes [`BlockStore::blocks`] returns in one call (beyond its first block).
pub const MAX_BLOCKS_BATCH_BYTES: usize = 16 << 20;
/// Snapshots kept by default: the newest, and older ones in case it is damaged.
pub const DEFAULT_SNAPSHOTS_KEPT: usize = 3;
/// sled's page cache: blocks are written once and read rarely (catch-up), so
/// a small cache serves; the state lives in the runtime's memory.
pub const DEFAULT_CACHE_BYTES: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("block {height} does not follow the last stored block {last}")]
    OutOfOrder { height: u64, last: u64 },
    #[error("block {height}'s hash {} is already stored for block {existing}", hex(hash))]
    DuplicateHash { height: u64, hash: [u8; 32], existing: u64 },
    #[error("{what} of {size} bytes is longer than the limit of {max}")]
    TooLarge { what: &'static str, size: usize, max: usize },
    #[error("stored entry {key} is damaged: {reason}")]
    Corrupt { key: String, reason: &'static str },
    #[error("the store needs at least one snapshot kept")]
    NoSnapshotsKept,
    #[error("database: {0}")]
    Database(#[from] sled::Error),
    #[error("journal: {0}")]
    Journal(#[from] vanna_durable::DurableError),
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A finalized block as the node stores it; every field but the height and
/// the hashes is opaque encoded bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredBlock {
    pub height: u64,
    pub hash: [u8; 32],
    pub header: Vec<u8>,
    pub payload: Vec<u8>,
    /// The finalization certificate.
    pub certificate: Vec<u8>,
    pub receipts: Vec<u8>,
    /// The state root after executing the block.
    pub state_root: [u8; 32],
}

/// How a [`BlockStore`] is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreConfig {
    /// Snapshots kept; older ones are removed when a new one is put.
    pub snapshots_kept: usize,
    pub cache_bytes: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig { snapshots_kept: DEFAULT_SNAPSHOTS_KEPT, cache_bytes: DEFAULT_CACHE_BYTES }
    }
}

// Keys in sled's one default tree (a sled batch covers one tree): a prefix
// per kind, then the height big-endian, so heights sort numerically.
const BLOCK: &[u8] = b"block/";
const CERTIFICATE: &[u8] = b"cert/";
const RECEIPTS: &[u8] = b"receipts/";
const BY_HASH: &[u8] = b"hash/";
const SNAPSHOT: &[u8] = b"snapshot/";
const LAST_HEIGHT: &[u8] = b"meta/last_height";

fn key(prefix: &[u8], id: &[u8]) -> Vec<u8> {
    [prefix, id].concat()
}

fn height_key(prefix: &[u8], height: u64) -> Vec<u8> {
    key(prefix, &height.to_be_bytes())
}

fn key_name(key: &[u8]) -> String {
    let split = key.iter().position(|byte| *byte == b'/').map_or(key.len(), |at| at + 1);
    let (prefix, id) = key.split_at(split);
    match <[u8; 8]>::try_from(id) {
        Ok(height) => format!("{}{}", String::from_utf8_lossy(prefix), u64::from_be_bytes(height)),
        Err(_) => format!("{}{}", String::from_utf8_lossy(prefix), hex(id)),
    }
}

fn check_size(what: &'static str, bytes: &[u8], max: usize) -> Result<(), StoreError> {
    if bytes.len() > max {
        return Err(StoreError::TooLarge { what, size: bytes.len(), max });
    }
    Ok(())
}

/// The block entry: height, hash, state root, then header and payload, each
/// after its length (u32, big-endian).
fn encode_block(block: &StoredBlock) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(80 + block.header.len() + block.payload.len());
    bytes.extend_from_slice(&block.height.to_be_bytes());
    bytes.extend_from_slice(&block.hash);
    bytes.extend_from_slice(&block.state_root);
    for part in [&block.header, &block.payload] {
        bytes.extend_from_slice(&(part.len() as u32).to_be_bytes());
        bytes.extend_from_slice(part);
    }
    bytes
}

/// Reads an encoded block entry back, refusing anything it would not have written.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, count: usize) -> Option<&'a [u8]> {
        let (taken, rest) = self.bytes.split_at_checked(count)?;
        self.bytes = rest;
        Some(taken)
    }

    fn part(&mut self, max: usize) -> Option<Vec<u8>> {
        let length = u32::from_be_bytes(self.take(4)?.try_into().ok()?) as usize;
        (length <= max).then_some(())?;
        self.take(length).map(<[u8]>::to_vec)
    }
}

/// A block entry as a block still without its certificate and receipts.
fn decode_block(bytes: &[u8]) -> Option<StoredBlock> {
    let mut reader = Reader { bytes };
    let height = u64::from_be_bytes(reader.take(8)?.try_into().ok()?);
    let hash = reader.take(32)?.try_into().ok()?;
    let state_root = reader.take(32)?.try_into().ok()?;
    let header = reader.part(MAX_HEADER_BYTES)?;
    let payload = reader.part(MAX_BODY_BYTES)?;
    let block =
        StoredBlock { height, hash, header, payload, certificate: Vec::new(), receipts: Vec::new(), state_root };
    reader.bytes.is_empty().then_some(block)
}

fn decode_height(key: &[u8], bytes: &[u8]) -> Result<u64, StoreError> {
    let height: [u8; 8] =
        bytes.try_into().map_err(|_| StoreError::Corrupt { key: key_name(key), reason: "not a height" })?;
    Ok(u64::from_be_bytes(height))
}

/// Finalized blocks, their certificates and receipts, and state snapshots,
/// in sled. Safe to share between threads; commits are serialized.
pub struct BlockStore {
    db: sled::Db,
    config: StoreConfig,
    /// Held across a commit's check of the last height and its write, so two
    /// commits cannot both take the same height.
    commit_lock: Mutex<()>,
}

impl std::fmt::Debug for BlockStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockStore").field("config", &self.config).finish_non_exhaustive()
    }
}

impl BlockStore {
    /// Opens (creating if needed) the store in directory `dir` with the default config.
    pub fn open(dir: impl AsRef<Path>) -> Result<BlockStore, StoreError> {
        BlockStore::open_with(dir, StoreConfig::default())
    }

    pub fn open_with(dir: impl AsRef<Path>, config: StoreConfig) -> Result<BlockStore, StoreError> {
        if config.snapshots_kept == 0 {
            return Err(StoreError::NoSnapshotsKept);
        }
        let db = sled::Config::new().path(dir.as_ref()).cache_capacity(config.cache_bytes).open()?;
        Ok(BlockStore { db, config, commit_lock: Mutex::new(()) })
    }

    /// The height of the last committed block; 0 (genesis) before the first.
    pub fn last_height(&self) -> Result<u64, StoreError> {
        match self.db.get(LAST_HEIGHT)? {
            Some(bytes) => decode_height(LAST_HEIGHT, &bytes),
            None => Ok(0),
        }
    }

    /// Stores `block`, which must be the one after the last: its entries in
    /// one atomic batch, flushed to disk before this returns. Only then does
    /// the block count as committed.
    pub fn commit(&self, block: &StoredBlock) -> Result<(), StoreError> {
        check_size("header", &block.header, MAX_HEADER_BYTES)?;
        check_size("certificate", &block.certificate, MAX_HEADER_BYTES)?;
        check_size("payload", &block.payload, MAX_BODY_BYTES)?;
        check_size("receipts", &block.receipts, MAX_BODY_BYTES)?;
        // A poisoned lock only means another commit panicked; the check below still holds.
        let _guard = self.commit_lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let last = self.last_height()?;
        if block.height != last + 1 {
            return Err(StoreError::OutOfOrder { height: block.height, last });
        }
        if let Some(existing) = self.height_of(&block.hash)? {
            return Err(StoreError::DuplicateHash { height: block.height, hash: block.hash, existing });
        }
        let mut batch = sled::Batch::default();
        batch.insert(height_key(BLOCK, block.height), encode_block(block));
        batch.insert(height_key(CERTIFICATE, block.height), block.certificate.as_slice());
        batch.insert(height_key(RECEIPTS, block.height), block.receipts.as_slice());
        batch.insert(key(BY_HASH, &block.hash), &block.height.to_be_bytes());
        batch.insert(LAST_HEIGHT, &block.height.to_be_bytes());
        self.db.apply_batch(batch)?;
        self.db.flush()?;
        Ok(())
    }

    /// The block at `height`, complete, or `None` if it is not stored.
    pub fn block(&self, height: u64) -> Result<Option<StoredBlock>, StoreError> {
        let block_key = height_key(BLOCK, height);
        let Some(bytes) = self.db.get(&block_key)? else { return Ok(None) };
        let corrupt = |key: &[u8], reason| StoreError::Corrupt { key: key_name(key), reason };
        let mut block = decode_block(&bytes).ok_or_else(|| corrupt(&block_key, "not a block entry"))?;
        if block.height != height {
            return Err(corrupt(&block_key, "holds another height"));
        }
        // Written in the same batch as the block: missing means damage.
        let part = |prefix, max| -> Result<Vec<u8>, StoreError> {
            let part_key = height_key(prefix, height);
            let bytes = self.db.get(&part_key)?.ok_or_else(|| corrupt(&part_key, "missing beside its block"))?;
            if bytes.len() > max {
                return Err(corrupt(&part_key, "longer than the limit"));
            }
            Ok(bytes.to_vec())
        };
        block.certificate = part(CERTIFICATE, MAX_HEADER_BYTES)?;
        block.receipts = part(RECEIPTS, MAX_BODY_BYTES)?;
        Ok(Some(block))
    }

    /// The height of the stored block with this hash.
    pub fn height_of(&self, hash: &[u8; 32]) -> Result<Option<u64>, StoreError> {
        let hash_key = key(BY_HASH, hash);
        self.db.get(&hash_key)?.map(|bytes| decode_height(&hash_key, &bytes)).transpose()
    }

    /// Up to `max` consecutive blocks from height `from`, for serving
    /// catch-up: fewer when the last stored block comes first or when they
    /// would pass [`MAX_BLOCKS_BATCH_BYTES`] (but always the first, if stored).
    pub fn blocks(&self, from: u64, max: usize) -> Result<Vec<StoredBlock>, StoreError> {
        let mut blocks = Vec::new();
        let mut bytes = 0;
        for height in (from..).take(max) {
            let Some(block) = self.block(height)? else { break };
            bytes += block.header.len() + block.payload.len() + block.certificate.len() + block.receipts.len();
            if !blocks.is_empty() && bytes > MAX_BLOCKS_BATCH_BYTES {
                break;
            }
            blocks.push(block);
        }
        Ok(blocks)
    }

    /// Stores the state snapshot taken after block `height`, flushed before
    /// this returns, keeping the newest `snapshots_kept` (by height).
    pub fn put_snapshot(&self, height: u64, bytes: &[u8]) -> Result<(), StoreError> {
        check_size("snapshot", bytes, MAX_SNAPSHOT_BYTES)?;
        let mut heights = self.snapshot_heights()?;
        if let Err(at) = heights.binary_search(&height) {
            heights.insert(at, height);
        }
        let removed = heights.len().saturating_sub(self.config.snapshots_kept);
        let mut batch = sled::Batch::default();
        batch.insert(height_key(SNAPSHOT, height), bytes);
        for old in &heights[..removed] {
            batch.remove(height_key(SNAPSHOT, *old));
        }
        self.db.apply_batch(batch)?;
        self.db.flush()?;
        Ok(())
    }

    /// The stored snapshots' heights, oldest first.
    pub fn snapshot_heights(&self) -> Result<Vec<u64>, StoreError> {
        self.db
            .scan_prefix(SNAPSHOT)
            .keys()
            .map(|entry| {
                let entry = entry?;
                decode_height(&entry, &entry[SNAPSHOT.len()..])
            })
            .collect()
    }

    /// The newest snapshot and the height it was taken after.
    pub fn latest_snapshot(&self) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        let Some(entry) = self.db.scan_prefix(SNAPSHOT).next_back() else { return Ok(None) };
        let (entry_key, bytes) = entry?;
        let height = decode_height(&entry_key, &entry_key[SNAPSHOT.len()..])?;
        Ok(Some((height, bytes.to_vec())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn temporary_dir(name: &str) -> std::path::PathBuf {
        let directory = std::env::temp_dir().join(format!("vanna-store-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&directory);
        directory
    }

    fn block(height: u64) -> StoredBlock {
        let byte = height as u8;
        StoredBlock {
            height,
            hash: [byte; 32],
            header: vec![byte; 100],
            payload: vec![byte.wrapping_add(1); 1_000 + height as usize],
            certificate: vec![byte.wrapping_add(2); 150],
            receipts: vec![byte.wrapping_add(3); 300],
            state_root: [byte.wrapping_add(4); 32],
        }
    }

    #[test]
    fn blocks_and_snapshots_survive_a_reopen() {
        let dir = temporary_dir("reopen");
        {
            let store = BlockStore::open(&dir).unwrap();
            assert_eq!(store.last_height().unwrap(), 0);
            assert_eq!(store.block(1).unwrap(), None);
            assert_eq!(store.latest_snapshot().unwrap(), None);
            for height in 1..=5 {
                store.commit(&block(height)).unwrap();
            }
            store.put_snapshot(4, b"state at 4").unwrap();
            // Dropped without any shutdown step, like a killed process.
        }
        let store = BlockStore::open(&dir).unwrap();
        assert_eq!(store.last_height().unwrap(), 5);
        for height in 1..=5 {
            assert_eq!(store.block(height).unwrap(), Some(block(height)));
            assert_eq!(store.height_of(&block(height).hash).unwrap(), Some(height));
        }
        assert_eq!(store.block(6).unwrap(), None);
        assert_eq!(store.height_of(&[0xee; 32]).unwrap(), None);
        assert_eq!(store.latest_snapshot().unwrap(), Some((4, b"state at 4".to_vec())));
        assert_eq!(store.blocks(2, 10).unwrap(), (2..=5).map(block).collect::<Vec<_>>());
        assert_eq!(store.blocks(2, 2).unwrap().len(), 2);
        assert!(store.blocks(6, 10).unwrap().is_empty());
    }

    #[test]
    fn only_the_next_height_is_committed() {
        let store = BlockStore::open(temporary_dir("order")).unwrap();
        assert!(matches!(store.commit(&block(2)), Err(StoreError::OutOfOrder { height: 2, last: 0 })));
        store.commit(&block(1)).unwrap();
        assert!(matches!(store.commit(&block(1)), Err(StoreError::OutOfOrder { height: 1, last: 1 })));
        assert!(matches!(store.commit(&block(3)), Err(StoreError::OutOfOrder { height: 3, last: 1 })));
        let same_hash = StoredBlock { hash: block(1).hash, ..block(2) };
        assert!(matches!(store.commit(&same_hash), Err(StoreError::DuplicateHash { existing: 1, .. })));
        let huge = StoredBlock { certificate: vec![0; MAX_HEADER_BYTES + 1], ..block(2) };
        assert!(matches!(store.commit(&huge), Err(StoreError::TooLarge { what: "certificate", .. })));
        store.commit(&block(2)).unwrap();
        assert_eq!(store.last_height().unwrap(), 2);
    }

    #[test]
    fn a_catch_up_batch_is_bounded_in_bytes() {
        let store = BlockStore::open(temporary_dir("batch")).unwrap();
        let big = |height| StoredBlock { payload: vec![0; MAX_BLOCKS_BATCH_BYTES / 3], ..block(height) };
        for height in 1..=5 {
            store.commit(&big(height)).unwrap();
        }
        assert_eq!(store.blocks(1, 100).unwrap().len(), 2);
        // One block always goes, whatever its size.
        let store = BlockStore::open(temporary_dir("batch-one")).unwrap();
        store.commit(&StoredBlock { payload: vec![0; MAX_BLOCKS_BATCH_BYTES + 1], ..block(1) }).unwrap();
        assert_eq!(store.blocks(1, 100).unwrap().len(), 1);
    }

    #[test]
    fn the_newest_snapshots_are_kept() {
        let config = StoreConfig { snapshots_kept: 2, ..StoreConfig::default() };
        let store = BlockStore::open_with(temporary_dir("snapshots"), config).unwrap();
        for height in [10, 20, 30, 40] {
            store.put_snapshot(height, &height.to_be_bytes()).unwrap();
        }
        assert_eq!(store.snapshot_heights().unwrap(), [30, 40]);
        assert_eq!(store.latest_snapshot().unwrap(), Some((40, 40u64.to_be_bytes().to_vec())));
        // Putting one again replaces it.
        store.put_snapshot(40, b"again").unwrap();
        assert_eq!(store.snapshot_heights().unwrap(), [30, 40]);
        assert_eq!(store.latest_snapshot().unwrap().unwrap().1, b"again");
        let none = StoreConfig { snapshots_kept: 0, ..StoreConfig::default() };
        assert!(matches!(BlockStore::open_with(temporary_dir("none"), none), Err(StoreError::NoSnapshotsKept)));
    }
}
