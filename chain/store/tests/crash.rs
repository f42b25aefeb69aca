//! kill -9 at random moments: a child process (this test binary, started
//! again with `VANNA_CRASH_CHILD` set) commits blocks, or appends to and
//! prunes a journal, in a loop until it is killed with SIGKILL; after each
//! kill the parent reopens what it left and checks that everything the child
//! reported as durable is there, complete and contiguous, and that nothing
//! partial is. Then the next child carries on from there.
//!
//! `VANNA_CRASH_ROUNDS` sets the number of kills per test (default 20; a long
//! run is e.g. `VANNA_CRASH_ROUNDS=500 cargo test --release -p vanna-store
//! --test crash`), `VANNA_CRASH_SEED` the seed of the kill times.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use vanna_store::{BlockStore, Journal, StoredBlock};

const CHILD: &str = "VANNA_CRASH_CHILD";
const CHILD_PATH: &str = "VANNA_CRASH_PATH";
/// A block's payload: about the size of a busy block.
const PAYLOAD_BYTES: usize = 64 * 1024;
/// The child prunes the journal to its last records this often.
const PRUNE_EVERY: u64 = 25;
const PRUNE_KEEP: u64 = 5;

fn rounds() -> u32 {
    std::env::var("VANNA_CRASH_ROUNDS").ok().and_then(|value| value.parse().ok()).unwrap_or(20)
}

/// A part of block `height` whose bytes say which block and part they are.
fn part(height: u64, tag: u8, size: usize) -> Vec<u8> {
    let mut bytes = vec![tag ^ height as u8; size];
    bytes[..8].copy_from_slice(&height.to_le_bytes());
    let end = size - 8;
    bytes[end..].copy_from_slice(&height.to_be_bytes());
    bytes
}

fn hash(height: u64) -> [u8; 32] {
    let mut hash = [0xa5; 32];
    hash[..8].copy_from_slice(&height.to_le_bytes());
    hash
}

fn block(height: u64) -> StoredBlock {
    StoredBlock {
        height,
        hash: hash(height),
        header: part(height, 1, 200),
        payload: part(height, 2, PAYLOAD_BYTES + height as usize % 1_000),
        certificate: part(height, 3, 180),
        receipts: part(height, 4, 4_000),
        state_root: [height as u8; 32],
    }
}

/// Journal record `index`: up to ~100 KiB, so that a kill can land inside a
/// write of several pages.
fn record(index: u64) -> Vec<u8> {
    part(index, 5, 16 + (index as usize * 7_919) % 100_000)
}

fn record_index(record: &[u8]) -> u64 {
    u64::from_le_bytes(record[..8].try_into().unwrap())
}

/// The child's loop; never returns. Reports each durable step on stdout.
fn run_child(kind: &str, path: &Path) -> ! {
    let mut out = std::io::stdout();
    match kind {
        "blocks" => {
            let store = BlockStore::open(path).unwrap();
            loop {
                let height = store.last_height().unwrap() + 1;
                store.commit(&block(height)).unwrap();
                writeln!(out, "durable {height}").unwrap();
                out.flush().unwrap();
            }
        }
        _ => {
            let mut journal = Journal::open(path).unwrap();
            let mut next = journal.records().last().map_or(0, |last| record_index(last) + 1);
            loop {
                journal.append(&record(next)).unwrap();
                writeln!(out, "durable {next}").unwrap();
                out.flush().unwrap();
                if next.is_multiple_of(PRUNE_EVERY) {
                    journal.rewrite(|record| record_index(record) + PRUNE_KEEP > next).unwrap();
                }
                next += 1;
            }
        }
    }
}

/// Starts a child running `test` with `kind` on `path`, kills it with
/// SIGKILL after a random delay, and returns the last step it reported.
fn kill_a_child(test: &str, kind: &str, path: &Path, rng: &mut impl Rng) -> Option<u64> {
    let child = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, kind)
        .env(CHILD_PATH, path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(rng.random_range(20..400)));
    let mut child = child;
    child.kill().unwrap();
    let output = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.strip_prefix("durable ")?.parse().ok())
        .next_back()
}

/// Runs `rounds()` kills; `check` gets the last step a child reported and
/// returns the total number of steps done so far.
fn crash_rounds(test: &str, kind: &str, path: &Path, mut check: impl FnMut(Option<u64>) -> u64) {
    let seed = std::env::var("VANNA_CRASH_SEED").ok().and_then(|value| value.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    eprintln!("{test}: VANNA_CRASH_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut reported = None;
    for _ in 0..rounds() {
        reported = kill_a_child(test, kind, path, &mut rng).or(reported);
        check(reported);
    }
    let done = check(reported);
    eprintln!("{test}: {done} steps over {} kills", rounds());
    assert!(done > u64::from(rounds()), "the children got some work done: {done} steps");
}

fn temporary(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("vanna-crash-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&path);
    path
}

#[test]
fn a_killed_writer_leaves_every_committed_block_complete_and_nothing_partial() {
    if let Ok(kind) = std::env::var(CHILD) {
        run_child(&kind, Path::new(&std::env::var(CHILD_PATH).unwrap()));
    }
    let dir = temporary("blocks");
    let test = "a_killed_writer_leaves_every_committed_block_complete_and_nothing_partial";
    // Blocks checked in an earlier round are checked again: a later crash
    // and recovery must not damage them either.
    crash_rounds(test, "blocks", &dir, |reported| {
        let store = BlockStore::open(&dir).unwrap();
        let last = store.last_height().unwrap();
        assert!(last >= reported.unwrap_or(0), "block {reported:?} was reported committed, the store ends at {last}");
        for height in 1..=last {
            assert_eq!(store.block(height).unwrap().as_ref(), Some(&block(height)), "block {height}");
            assert_eq!(store.height_of(&hash(height)).unwrap(), Some(height));
        }
        assert_eq!(store.block(last + 1).unwrap(), None, "nothing after the last height");
        assert_eq!(store.height_of(&hash(last + 1)).unwrap(), None, "no index entry after the last height");
        last
    });
}

#[test]
fn a_killed_journal_writer_leaves_whole_records_and_no_fragment() {
    if let Ok(kind) = std::env::var(CHILD) {
        run_child(&kind, Path::new(&std::env::var(CHILD_PATH).unwrap()));
    }
    let dir = temporary("journal");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("consensus.journal");
    let test = "a_killed_journal_writer_leaves_whole_records_and_no_fragment";
    crash_rounds(test, "journal", &path, |reported| {
        let journal = Journal::open(&path).unwrap();
        let records = journal.records();
        let Some(last) = records.last() else {
            assert_eq!(reported, None, "record {reported:?} was reported durable, the journal is empty");
            return 0;
        };
        let (first, last) = (record_index(&records[0]), record_index(last));
        assert!(last >= reported.unwrap_or(0), "record {reported:?} was reported durable, the journal ends at {last}");
        // Whole records, in order, none missing: pruning keeps a suffix.
        for (offset, stored) in records.iter().enumerate() {
            assert_eq!(stored, &record(first + offset as u64), "record {}", first + offset as u64);
        }
        assert_eq!(last - first + 1, records.len() as u64);
        // A kill between an append and its prune skips that prune: the next one comes PRUNE_EVERY later.
        let most = 2 * PRUNE_EVERY + PRUNE_KEEP;
        assert!(records.len() as u64 <= most, "pruning took effect: {} records", records.len());
        last + 1
    });
}
