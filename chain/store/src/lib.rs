//! The node's durable storage.
//!
//! Owns: finalized blocks with their finalization certificates and receipts
//! and the hash → height index, in sled, and state snapshots, in files of
//! their own ([`BlockStore`]);
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
//! Durability: [`BlockStore::commit`] writes a block's entries (block,
//! header, payload, certificate and receipts in chunks, hash index, last
//! height) in one sled batch, which sled applies atomically, then flushes
//! sled and fsyncs its log before returning; a crash at any moment leaves
//! every block up to the last height complete and nothing of a later one
//! (`tests/crash.rs` kills a writer with SIGKILL to check it). Snapshots are
//! files written atomically (temporary file, fsync, rename, fsync of the
//! directory): at 30 MB and more they would be sled "blobs", which sled
//! 0.34 does not fsync.

mod journal;

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub use journal::Journal;

/// Largest header, and largest certificate, stored.
pub const MAX_HEADER_BYTES: usize = 1 << 20;
/// Largest payload, and largest receipts, stored: above the runtime's
/// largest block (20,000 transactions of at most 8 KiB, plus oracle reports).
pub const MAX_BODY_BYTES: usize = 256 << 20;
/// Largest snapshot stored and read back (the runtime's own limit is lower).
pub const MAX_SNAPSHOT_BYTES: u64 = 4 << 30;
/// Most bytes [`BlockStore::blocks`] returns in one call (beyond its first block).
pub const MAX_BLOCKS_BATCH_BYTES: usize = 16 << 20;
/// Snapshots kept by default: the newest, and older ones in case it is damaged.
pub const DEFAULT_SNAPSHOTS_KEPT: usize = 3;
/// sled's page cache: blocks are written once and read rarely (catch-up), so
/// a small cache serves; the state lives in the runtime's memory.
pub const DEFAULT_CACHE_BYTES: u64 = 64 << 20;
/// A block's parts are stored in values of at most this many bytes. sled
/// 0.34 writes a tree node larger than a quarter of its 512 KiB log segment
/// to a "blob" file of its own, which it never fsyncs; a leaf holds at most
/// 16 entries, so 4 KiB values keep every node in the log, which the store
/// fsyncs.
pub const CHUNK_BYTES: usize = 4 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("block {height} does not follow the last stored block {last}")]
    OutOfOrder { height: u64, last: u64 },
    #[error("block {height}'s hash {} is already stored for block {existing}", hex(hash))]
    DuplicateHash { height: u64, hash: [u8; 32], existing: u64 },
    #[error("{what} of {size} bytes is longer than the limit of {max}")]
    TooLarge { what: &'static str, size: u64, max: u64 },
    #[error("stored entry {key} is damaged: {reason}")]
    Corrupt { key: String, reason: &'static str },
    #[error("the store needs at least one snapshot kept")]
    NoSnapshotsKept,
    #[error("database: {0}")]
    Database(#[from] sled::Error),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
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

/// A stored block's header and receipts bytes.
pub type HeaderAndReceipts = (Vec<u8>, Vec<u8>);

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
/// Then the height, the part's number and the chunk's number (u32).
const PART: &[u8] = b"part/";
const BY_HASH: &[u8] = b"hash/";
/// Then a transaction's hash: the height and position of the block that
/// included it.
const BY_TRANSACTION: &[u8] = b"tx/";
const LAST_HEIGHT: &[u8] = b"meta/last_height";

/// A block's parts, in the order of their lengths in its entry, and each one's limit.
const PARTS: [(&str, usize); 4] = [
    ("header", MAX_HEADER_BYTES),
    ("payload", MAX_BODY_BYTES),
    ("certificate", MAX_HEADER_BYTES),
    ("receipts", MAX_BODY_BYTES),
];

fn parts(block: &StoredBlock) -> [&[u8]; 4] {
    [&block.header, &block.payload, &block.certificate, &block.receipts]
}

fn height_key(prefix: &[u8], height: u64) -> Vec<u8> {
    [prefix, &height.to_be_bytes()].concat()
}

fn part_prefix(height: u64, part: u8) -> Vec<u8> {
    [PART, &height.to_be_bytes(), &[part]].concat()
}

/// A key as a person reads it: its prefix, then a height (and what follows
/// it in hex), or a hash in hex.
fn key_name(key: &[u8]) -> String {
    let split = key.iter().position(|byte| *byte == b'/').map_or(key.len(), |at| at + 1);
    let (prefix, id) = key.split_at(split);
    let id = match id.split_first_chunk::<8>() {
        Some((height, rest)) if prefix != BY_HASH && prefix != BY_TRANSACTION => {
            format!("{}/{}", u64::from_be_bytes(*height), hex(rest))
        }
        _ => hex(id),
    };
    format!("{}{id}", String::from_utf8_lossy(prefix))
}

fn check_size(what: &'static str, size: usize, max: usize) -> Result<(), StoreError> {
    if size > max {
        return Err(StoreError::TooLarge { what, size: size as u64, max: max as u64 });
    }
    Ok(())
}

/// The block entry: height, hash, state root, then each part's length (u32,
/// big-endian); the parts themselves are in chunks beside it.
fn encode_block(block: &StoredBlock) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(88);
    bytes.extend_from_slice(&block.height.to_be_bytes());
    bytes.extend_from_slice(&block.hash);
    bytes.extend_from_slice(&block.state_root);
    for part in parts(block) {
        bytes.extend_from_slice(&(part.len() as u32).to_be_bytes());
    }
    bytes
}

/// A block entry read back.
struct BlockEntry {
    height: u64,
    hash: [u8; 32],
    state_root: [u8; 32],
    lengths: [usize; 4],
}

fn decode_block(bytes: &[u8]) -> Option<BlockEntry> {
    let bytes: &[u8; 88] = bytes.try_into().ok()?;
    let mut lengths = [0; 4];
    for (at, length) in lengths.iter_mut().enumerate() {
        *length = u32::from_be_bytes(bytes[72 + 4 * at..76 + 4 * at].try_into().ok()?) as usize;
    }
    Some(BlockEntry {
        height: u64::from_be_bytes(bytes[..8].try_into().ok()?),
        hash: bytes[8..40].try_into().ok()?,
        state_root: bytes[40..72].try_into().ok()?,
        lengths,
    })
}

/// Opens sled at `path`. A store closed a moment ago may still hold its
/// file lock while sled's background flusher exits: retried for up to
/// two seconds before the lock counts as another process's.
fn open_sled(path: &Path, cache_bytes: u64) -> Result<sled::Db, StoreError> {
    let mut attempts = 0;
    loop {
        match sled::Config::new().path(path).cache_capacity(cache_bytes).open() {
            Err(sled::Error::Io(error)) if attempts < 100 && error.to_string().contains("could not acquire lock") => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return Ok(other?),
        }
    }
}

fn decode_height(key: &[u8], bytes: &[u8]) -> Result<u64, StoreError> {
    let height: [u8; 8] =
        bytes.try_into().map_err(|_| StoreError::Corrupt { key: key_name(key), reason: "not a height" })?;
    Ok(u64::from_be_bytes(height))
}

/// Finalized blocks, their certificates and receipts in sled (directory
/// `blocks/`), state snapshots as files (`snapshots/`). Safe to share
/// between threads; commits are serialized.
pub struct BlockStore {
    db: sled::Db,
    /// sled's log file, fsynced after each flush: sled 0.34 makes its log
    /// stable with `sync_file_range` on Linux, which neither flushes the
    /// drive's cache nor survives a power loss for certain.
    log: File,
    snapshots: PathBuf,
    config: StoreConfig,
    /// Held across a commit's check of the last height and its write, so two
    /// commits cannot both take the same height.
    commit_lock: Mutex<()>,
}

impl std::fmt::Debug for BlockStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockStore").field("snapshots", &self.snapshots).field("config", &self.config).finish()
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.to_path_buf(), source }
}

/// A snapshot's file name: its height in 20 digits, so names sort by height.
fn snapshot_name(height: u64) -> String {
    format!("{height:020}.snapshot")
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
        let blocks = dir.as_ref().join("blocks");
        let db = open_sled(&blocks, config.cache_bytes)?;
        let log_path = blocks.join("db");
        let log = File::open(&log_path).map_err(io_error(&log_path))?;
        let snapshots = dir.as_ref().join("snapshots");
        std::fs::create_dir_all(&snapshots).map_err(io_error(&snapshots))?;
        vanna_durable::sync_parent(&snapshots).map_err(io_error(&snapshots))?;
        Ok(BlockStore { db, log, snapshots, config, commit_lock: Mutex::new(()) })
    }

    /// The height of the last committed block; 0 (genesis) before the first.
    pub fn last_height(&self) -> Result<u64, StoreError> {
        match self.db.get(LAST_HEIGHT)? {
            Some(bytes) => decode_height(LAST_HEIGHT, &bytes),
            None => Ok(0),
        }
    }

    /// Stores `block`, which must be the one after the last: its entries in
    /// one atomic batch, flushed and fsynced before this returns. Only then
    /// does the block count as committed.
    pub fn commit(&self, block: &StoredBlock) -> Result<(), StoreError> {
        self.commit_indexed(block, &[])
    }

    /// [`BlockStore::commit`], indexing the hashes of the transactions the
    /// block carries, in block order, in the same batch.
    pub fn commit_indexed(&self, block: &StoredBlock, transactions: &[[u8; 32]]) -> Result<(), StoreError> {
        for ((what, max), part) in PARTS.iter().zip(parts(block)) {
            check_size(what, part.len(), *max)?;
        }
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
        for (number, part) in parts(block).into_iter().enumerate() {
            let prefix = part_prefix(block.height, number as u8);
            for (chunk, bytes) in part.chunks(CHUNK_BYTES).enumerate() {
                batch.insert([prefix.as_slice(), &(chunk as u32).to_be_bytes()].concat(), bytes);
            }
        }
        batch.insert([BY_HASH, block.hash.as_slice()].concat(), &block.height.to_be_bytes());
        for (position, transaction) in transactions.iter().enumerate() {
            let place = [block.height.to_be_bytes().as_slice(), &(position as u32).to_be_bytes()].concat();
            batch.insert([BY_TRANSACTION, transaction.as_slice()].concat(), place);
        }
        batch.insert(LAST_HEIGHT, &block.height.to_be_bytes());
        self.db.apply_batch(batch)?;
        self.flush()
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        self.log.sync_data().map_err(|source| StoreError::Io { path: "blocks/db".into(), source })
    }

    /// The block at `height`, complete, or `None` if it is not stored.
    pub fn block(&self, height: u64) -> Result<Option<StoredBlock>, StoreError> {
        let Some(entry) = self.entry(height)? else { return Ok(None) };
        let mut parts: [Vec<u8>; 4] = Default::default();
        for (number, part) in parts.iter_mut().enumerate() {
            *part = self.part(&entry, number)?;
        }
        let [header, payload, certificate, receipts] = parts;
        let (hash, state_root) = (entry.hash, entry.state_root);
        Ok(Some(StoredBlock { height, hash, header, payload, certificate, receipts, state_root }))
    }

    /// The header and receipts of the block at `height`, without reading
    /// its payload (for looking up one transaction's receipt).
    pub fn header_and_receipts(&self, height: u64) -> Result<Option<HeaderAndReceipts>, StoreError> {
        let Some(entry) = self.entry(height)? else { return Ok(None) };
        Ok(Some((self.part(&entry, 0)?, self.part(&entry, 3)?)))
    }

    fn entry(&self, height: u64) -> Result<Option<BlockEntry>, StoreError> {
        let block_key = height_key(BLOCK, height);
        let Some(bytes) = self.db.get(&block_key)? else { return Ok(None) };
        let corrupt = |reason| StoreError::Corrupt { key: key_name(&block_key), reason };
        let entry = decode_block(&bytes).ok_or_else(|| corrupt("not a block entry"))?;
        if entry.height != height {
            return Err(corrupt("holds another height"));
        }
        if entry.lengths.iter().zip(PARTS).any(|(length, (_, max))| *length > max) {
            return Err(corrupt("a part longer than its limit"));
        }
        Ok(Some(entry))
    }

    /// Part `number` of a block, from its chunks.
    fn part(&self, entry: &BlockEntry, number: usize) -> Result<Vec<u8>, StoreError> {
        let length = entry.lengths[number];
        let prefix = part_prefix(entry.height, number as u8);
        let mut part = Vec::with_capacity(length);
        // Written in the same batch as the block: anything missing or extra is damage.
        for (chunk, stored) in self.db.scan_prefix(&prefix).enumerate() {
            let (key, bytes) = stored?;
            let expected = [prefix.as_slice(), &(chunk as u32).to_be_bytes()].concat();
            if *key != *expected || bytes.len() > CHUNK_BYTES || part.len() + bytes.len() > length {
                return Err(StoreError::Corrupt { key: key_name(&key), reason: "a chunk out of place" });
            }
            part.extend_from_slice(&bytes);
        }
        if part.len() != length {
            let key = height_key(BLOCK, entry.height);
            return Err(StoreError::Corrupt { key: key_name(&key), reason: "a part shorter than its length" });
        }
        Ok(part)
    }

    /// The height of the stored block with this hash.
    pub fn height_of(&self, hash: &[u8; 32]) -> Result<Option<u64>, StoreError> {
        let hash_key = [BY_HASH, hash.as_slice()].concat();
        self.db.get(&hash_key)?.map(|bytes| decode_height(&hash_key, &bytes)).transpose()
    }

    /// The height and position in its block of a stored transaction.
    pub fn transaction(&self, hash: &[u8; 32]) -> Result<Option<(u64, u32)>, StoreError> {
        let key = [BY_TRANSACTION, hash.as_slice()].concat();
        let Some(bytes) = self.db.get(&key)? else { return Ok(None) };
        match bytes.split_first_chunk::<8>() {
            Some((height, position)) if position.len() == 4 => {
                let position: [u8; 4] = position.try_into().expect("four bytes");
                Ok(Some((u64::from_be_bytes(*height), u32::from_be_bytes(position))))
            }
            _ => Err(StoreError::Corrupt { key: key_name(&key), reason: "not a height and position" }),
        }
    }

    /// Up to `max` consecutive blocks from height `from`, for serving
    /// catch-up: fewer when the last stored block comes first or when they
    /// would pass [`MAX_BLOCKS_BATCH_BYTES`] (but always the first, if stored).
    pub fn blocks(&self, from: u64, max: usize) -> Result<Vec<StoredBlock>, StoreError> {
        let mut blocks = Vec::new();
        let mut bytes = 0;
        for height in (from..).take(max) {
            let Some(block) = self.block(height)? else { break };
            bytes += parts(&block).iter().map(|part| part.len()).sum::<usize>();
            if !blocks.is_empty() && bytes > MAX_BLOCKS_BATCH_BYTES {
                break;
            }
            blocks.push(block);
        }
        Ok(blocks)
    }

    /// Stores the state snapshot taken after block `height` as a file of its
    /// own, replaced atomically and fsynced before this returns, and keeps
    /// the newest `snapshots_kept` (by height).
    pub fn put_snapshot(&self, height: u64, bytes: &[u8]) -> Result<(), StoreError> {
        if bytes.len() as u64 > MAX_SNAPSHOT_BYTES {
            return Err(StoreError::TooLarge { what: "snapshot", size: bytes.len() as u64, max: MAX_SNAPSHOT_BYTES });
        }
        let path = self.snapshots.join(snapshot_name(height));
        vanna_durable::write_file_atomically(&path, bytes).map_err(io_error(&path))?;
        let heights = self.snapshot_heights()?;
        for old in &heights[..heights.len().saturating_sub(self.config.snapshots_kept)] {
            let path = self.snapshots.join(snapshot_name(*old));
            std::fs::remove_file(&path).map_err(io_error(&path))?;
        }
        vanna_durable::sync_parent(&path).map_err(io_error(&path))
    }

    /// The stored snapshots' heights, oldest first.
    pub fn snapshot_heights(&self) -> Result<Vec<u64>, StoreError> {
        let entries = std::fs::read_dir(&self.snapshots).map_err(io_error(&self.snapshots))?;
        let mut heights = Vec::new();
        for entry in entries {
            let name = entry.map_err(io_error(&self.snapshots))?.file_name();
            // Anything else there (an interrupted write's temporary file) is not a snapshot.
            let height =
                name.to_str().and_then(|name| name.strip_suffix(".snapshot")).and_then(|digits| digits.parse().ok());
            heights.extend(height.filter(|height| name.to_str() == Some(snapshot_name(*height).as_str())));
        }
        heights.sort_unstable();
        Ok(heights)
    }

    /// The newest snapshot and the height it was taken after.
    pub fn latest_snapshot(&self) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        let Some(&height) = self.snapshot_heights()?.last() else { return Ok(None) };
        Ok(Some((height, self.snapshot(height)?)))
    }

    /// The snapshot taken after block `height` (one of [`BlockStore::snapshot_heights`]).
    pub fn snapshot(&self, height: u64) -> Result<Vec<u8>, StoreError> {
        let path = self.snapshots.join(snapshot_name(height));
        let file = File::open(&path).map_err(io_error(&path))?;
        let size = file.metadata().map_err(io_error(&path))?.len();
        if size > MAX_SNAPSHOT_BYTES {
            return Err(StoreError::TooLarge { what: "stored snapshot", size, max: MAX_SNAPSHOT_BYTES });
        }
        let mut bytes = Vec::with_capacity(size as usize);
        file.take(MAX_SNAPSHOT_BYTES).read_to_end(&mut bytes).map_err(io_error(&path))?;
        Ok(bytes)
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
    fn included_transactions_are_found_by_hash_after_a_reopen() {
        let dir = temporary_dir("transactions");
        {
            let store = BlockStore::open(&dir).unwrap();
            store.commit_indexed(&block(1), &[[0xa1; 32], [0xa2; 32]]).unwrap();
            store.commit(&block(2)).unwrap();
            store.commit_indexed(&block(3), &[[0xa3; 32]]).unwrap();
        }
        let store = BlockStore::open(&dir).unwrap();
        assert_eq!(store.transaction(&[0xa1; 32]).unwrap(), Some((1, 0)));
        assert_eq!(store.transaction(&[0xa2; 32]).unwrap(), Some((1, 1)));
        assert_eq!(store.transaction(&[0xa3; 32]).unwrap(), Some((3, 0)));
        assert_eq!(store.transaction(&[0xa4; 32]).unwrap(), None);
        // A block's own hash is not a transaction's.
        assert_eq!(store.transaction(&block(1).hash).unwrap(), None);
        // Its receipts are read without the payload.
        let (header, receipts) = store.header_and_receipts(3).unwrap().unwrap();
        assert_eq!((header, receipts), (block(3).header, block(3).receipts));
        assert_eq!(store.header_and_receipts(4).unwrap(), None);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
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

    #[test]
    fn large_parts_stay_in_the_fsynced_log_and_never_become_sled_blobs() {
        let dir = temporary_dir("blobs");
        {
            let store = BlockStore::open(&dir).unwrap();
            for height in 1..=40 {
                let big = StoredBlock { payload: vec![7; 300 * 1024], receipts: vec![8; 200 * 1024], ..block(height) };
                store.commit(&big).unwrap();
            }
        }
        let store = BlockStore::open(&dir).unwrap();
        assert_eq!(store.block(40).unwrap().unwrap().payload, vec![7; 300 * 1024]);
        let blobs = std::fs::read_dir(dir.join("blocks/blobs")).map_or(0, |entries| entries.count());
        assert_eq!(blobs, 0, "sled wrote blobs, which it does not fsync");
    }

    #[test]
    fn an_interrupted_snapshot_write_is_not_a_snapshot() {
        let dir = temporary_dir("snapshot-tmp");
        let store = BlockStore::open(&dir).unwrap();
        store.put_snapshot(7, b"seven").unwrap();
        std::fs::write(dir.join("snapshots").join(format!("{}.tmp", snapshot_name(9))), b"half").unwrap();
        std::fs::write(dir.join("snapshots/junk"), b"?").unwrap();
        assert_eq!(store.snapshot_heights().unwrap(), [7]);
        assert_eq!(store.latest_snapshot().unwrap(), Some((7, b"seven".to_vec())));
    }
}
