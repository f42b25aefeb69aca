//! Append-only record files for what a validator must never lose: the
//! slashing-protection history (`vanna-signer`) and the consensus journal
//! (`vanna-store`).
//!
//! Owns one file discipline: each record is framed with its length and a
//! CRC32; every append is fsynced before it returns; a torn tail (a write
//! that never completed, so whatever it recorded never left the process) is
//! cut off and fsynced on open, so the next record is never glued onto a
//! fragment; damage anywhere before the last record refuses to open (acting
//! on a history that cannot be read could equivocate); a rewrite replaces the
//! file atomically (temporary file, fsync, rename, fsync of the directory);
//! a sibling `.lock` file is locked exclusively while the log is open, so a
//! second process on the same file refuses to start.
//!
//! Must not: interpret records (the callers encode them), or read more than
//! the stated limits.
//!
//! Record format, little-endian: `length: u32 | crc32(length ‖ payload): u32 |
//! payload`. The checksum covers the length, so a zero-filled tail (a
//! filesystem that extended the file before the data reached the disk) never
//! reads as an empty record.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Bytes before each record's payload: its length and its checksum.
pub const RECORD_HEADER_BYTES: usize = 8;

/// The bounds of one log: a longer record is refused on append and is
/// corruption on open; a longer file is refused on open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_record_bytes: usize,
    pub max_file_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum DurableError {
    #[error("{} is in use by another process", path.display())]
    Locked { path: PathBuf },
    #[error("{} is corrupt at record {record} (byte {offset}): {reason}; refusing to open it", path.display())]
    Corrupt { path: PathBuf, record: usize, offset: usize, reason: &'static str },
    #[error("{} holds {size} bytes, more than the limit of {max}", path.display())]
    FileTooLarge { path: PathBuf, size: u64, max: u64 },
    #[error("a record of {size} bytes is longer than the limit of {max}")]
    RecordTooLarge { size: usize, max: usize },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
}

/// Where decoding stopped on a damaged record: the record's number (from 1)
/// and byte offset, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Damage {
    pub record: usize,
    pub offset: usize,
    pub reason: &'static str,
}

fn checksum(length: &[u8; 4], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(length);
    hasher.update(payload);
    hasher.finalize()
}

/// One record as stored.
pub fn encode_record(payload: &[u8]) -> Vec<u8> {
    let length = u32::try_from(payload.len()).expect("callers bound records far below 4 GiB").to_le_bytes();
    let mut record = Vec::with_capacity(RECORD_HEADER_BYTES + payload.len());
    record.extend_from_slice(&length);
    record.extend_from_slice(&checksum(&length, payload).to_le_bytes());
    record.extend_from_slice(payload);
    record
}

/// The records of a log's bytes and the length of their complete prefix.
/// What follows that prefix is a torn tail: a header or payload cut short,
/// a last record whose checksum fails (its write never completed), or zeros
/// (the file was extended before the data reached the disk). A bad checksum
/// with other bytes after it, or a length above `max_record_bytes`, is
/// damage that no interrupted append can cause.
pub fn decode_records(bytes: &[u8], max_record_bytes: usize) -> Result<(Vec<&[u8]>, usize), Damage> {
    let mut records = Vec::new();
    let mut offset = 0;
    while bytes.len() - offset >= RECORD_HEADER_BYTES {
        let damage = |reason| Damage { record: records.len() + 1, offset, reason };
        let length: [u8; 4] = bytes[offset..offset + 4].try_into().expect("four bytes");
        let stored = u32::from_le_bytes(bytes[offset + 4..offset + 8].try_into().expect("four bytes"));
        let size = u32::from_le_bytes(length) as usize;
        if size > max_record_bytes {
            return Err(damage("length above the record limit"));
        }
        let end = offset + RECORD_HEADER_BYTES + size;
        if end > bytes.len() {
            break;
        }
        let payload = &bytes[offset + RECORD_HEADER_BYTES..end];
        if checksum(&length, payload) != stored {
            if end == bytes.len() || bytes[offset..].iter().all(|byte| *byte == 0) {
                break;
            }
            return Err(damage("checksum mismatch"));
        }
        records.push(payload);
        offset = end;
    }
    Ok((records, offset))
}

/// Replaces the file at `path` with `bytes` so that after a crash it holds
/// the old bytes or the new ones, never a mix: a temporary file beside it,
/// fsynced, renamed over it, then the directory fsynced (the rename itself
/// must reach the disk).
pub fn write_file_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    let mut file = File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)?;
    sync_parent(path)
}

/// Fsyncs the directory holding `path`, so that a name created, renamed or
/// removed there is durable.
pub fn sync_parent(path: &Path) -> std::io::Result<()> {
    match path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
        Some(parent) => File::open(parent)?.sync_all(),
        None => Ok(()),
    }
}

/// An open log file; see the crate documentation for its discipline.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    file: File,
    /// Never replaced (unlike the log when it is rewritten), so the lock
    /// always guards the path.
    _lock: File,
    limits: Limits,
    /// Bytes of complete records: what a failed append is cut back to.
    length: u64,
    /// A failed append whose fragment could not be cut off: the next append
    /// must cut it first.
    dirty: bool,
    /// The next append writes this many bytes, then fails (a full disk).
    #[cfg(feature = "faults")]
    fail_after: Option<usize>,
}

impl LogFile {
    /// Opens (creating if needed) and locks the log at `path`, cuts off a torn
    /// tail, and returns it with its records.
    pub fn open(path: impl AsRef<Path>, limits: Limits) -> Result<(LogFile, Vec<Vec<u8>>), DurableError> {
        let path = path.as_ref().to_path_buf();
        let io = |source| DurableError::Io { path: path.clone(), source };
        let mut lock_path = path.clone().into_os_string();
        lock_path.push(".lock");
        let lock = OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).map_err(io)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(DurableError::Locked { path }),
            Err(TryLockError::Error(error)) => return Err(io(error)),
        }
        let mut file = OpenOptions::new().create(true).append(true).read(true).open(&path).map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        if size > limits.max_file_bytes {
            return Err(DurableError::FileTooLarge { path, size, max: limits.max_file_bytes });
        }
        let mut bytes = Vec::with_capacity(size as usize);
        // Bounded even if the file grows behind our back.
        (&mut file).take(limits.max_file_bytes).read_to_end(&mut bytes).map_err(io)?;
        let (records, complete) =
            decode_records(&bytes, limits.max_record_bytes).map_err(|damage| DurableError::Corrupt {
                path: path.clone(),
                record: damage.record,
                offset: damage.offset,
                reason: damage.reason,
            })?;
        let records = records.into_iter().map(<[u8]>::to_vec).collect();
        let mut log = LogFile {
            path,
            file,
            _lock: lock,
            limits,
            length: complete as u64,
            dirty: false,
            #[cfg(feature = "faults")]
            fail_after: None,
        };
        if (complete as u64) < bytes.len() as u64 {
            log.cut_to_length()?;
        }
        // The file (and its lock) may have just been created: make the names durable.
        sync_parent(&log.path).map_err(|error| log.io(error))?;
        Ok((log, records))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes of complete records in the file.
    pub fn len_bytes(&self) -> u64 {
        self.length
    }

    fn io(&self, source: std::io::Error) -> DurableError {
        DurableError::Io { path: self.path.clone(), source }
    }

    fn check_record(&self, payload: &[u8]) -> Result<(), DurableError> {
        if payload.len() > self.limits.max_record_bytes {
            return Err(DurableError::RecordTooLarge { size: payload.len(), max: self.limits.max_record_bytes });
        }
        Ok(())
    }

    /// Cuts the file back to its complete records.
    fn cut_to_length(&mut self) -> Result<(), DurableError> {
        self.file.set_len(self.length).and_then(|()| self.file.sync_data()).map_err(|error| self.io(error))?;
        self.dirty = false;
        Ok(())
    }

    fn write_record(&mut self, record: &[u8]) -> std::io::Result<()> {
        #[cfg(feature = "faults")]
        if let Some(written) = self.fail_after.take() {
            self.file.write_all(&record[..written.min(record.len())])?;
            return Err(std::io::Error::other("injected: disk full"));
        }
        self.file.write_all(record)?;
        self.file.sync_data()
    }

    /// Appends one record; it is on disk when this returns. A failed append
    /// leaves no fragment behind (or, if even cutting it fails, the next
    /// append cuts it first).
    pub fn append(&mut self, payload: &[u8]) -> Result<(), DurableError> {
        self.check_record(payload)?;
        let record = encode_record(payload);
        if self.length + record.len() as u64 > self.limits.max_file_bytes {
            return Err(DurableError::FileTooLarge {
                path: self.path.clone(),
                size: self.length + record.len() as u64,
                max: self.limits.max_file_bytes,
            });
        }
        if self.dirty {
            self.cut_to_length()?;
        }
        if let Err(error) = self.write_record(&record) {
            self.dirty = true;
            let _ = self.cut_to_length();
            return Err(self.io(error));
        }
        self.length += record.len() as u64;
        Ok(())
    }

    /// Atomically replaces the whole log with `payloads`: after a crash the
    /// file holds either the old records or the new ones, never a mix.
    pub fn replace<'a>(&mut self, payloads: impl IntoIterator<Item = &'a [u8]>) -> Result<(), DurableError> {
        let mut bytes = Vec::new();
        for payload in payloads {
            self.check_record(payload)?;
            bytes.extend_from_slice(&encode_record(payload));
        }
        write_file_atomically(&self.path, &bytes).map_err(|error| self.io(error))?;
        self.file = OpenOptions::new().append(true).read(true).open(&self.path).map_err(|error| self.io(error))?;
        self.length = bytes.len() as u64;
        self.dirty = false;
        Ok(())
    }

    /// The next append writes `bytes` of its record, then fails like a full disk.
    #[cfg(feature = "faults")]
    pub fn fail_next_append_after(&mut self, bytes: usize) {
        self.fail_after = Some(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits { max_record_bytes: 1 << 16, max_file_bytes: 1 << 20 };

    fn temporary_path(name: &str) -> PathBuf {
        let directory = std::env::temp_dir().join(format!("vanna-durable-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&directory);
        std::fs::create_dir_all(&directory).unwrap();
        directory.join("log")
    }

    fn bytes_of(records: &[&[u8]]) -> Vec<u8> {
        records.iter().flat_map(|record| encode_record(record)).collect()
    }

    #[test]
    fn records_round_trip_and_a_torn_tail_is_reported_as_such() {
        let bytes = bytes_of(&[b"one", b"", b"three"]);
        let (records, complete) = decode_records(&bytes, 16).unwrap();
        assert_eq!(records, [&b"one"[..], b"", b"three"]);
        assert_eq!(complete, bytes.len());
        // Every cut inside the last record leaves the first two.
        let two = bytes_of(&[b"one", b""]).len();
        for cut in two..bytes.len() {
            assert_eq!(decode_records(&bytes[..cut], 16).unwrap(), (vec![&b"one"[..], b""], two));
        }
        // A zero-filled tail is torn, not an empty record.
        let mut zeros = bytes.clone();
        zeros.extend_from_slice(&[0; 12]);
        assert_eq!(decode_records(&zeros, 16).unwrap().1, bytes.len());
    }

    #[test]
    fn damage_before_the_end_or_an_impossible_length_is_corruption() {
        let mut bytes = bytes_of(&[b"one", b"two"]);
        bytes[RECORD_HEADER_BYTES] ^= 1;
        assert_eq!(decode_records(&bytes, 16), Err(Damage { record: 1, offset: 0, reason: "checksum mismatch" }));
        // The same damage in the last record is a write that never completed.
        let mut bytes = bytes_of(&[b"one", b"two"]);
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert_eq!(decode_records(&bytes, 16).unwrap().0, [&b"one"[..]]);
        let bytes = bytes_of(&[&[7; 17]]);
        assert_eq!(decode_records(&bytes, 16).unwrap_err().reason, "length above the record limit");
        // Text is no log.
        assert!(decode_records(b"{\"kind\":\"nullify\",\"epoch\":0}\n", 1 << 16).is_err());
    }

    #[test]
    fn a_torn_tail_is_cut_on_open_and_the_next_record_survives() {
        let path = temporary_path("torn");
        {
            let (mut log, records) = LogFile::open(&path, LIMITS).unwrap();
            assert!(records.is_empty());
            log.append(b"first").unwrap();
        }
        let torn = encode_record(b"never finished");
        OpenOptions::new().append(true).open(&path).unwrap().write_all(&torn[..torn.len() - 3]).unwrap();
        {
            let (mut log, records) = LogFile::open(&path, LIMITS).unwrap();
            assert_eq!(records, [b"first".to_vec()]);
            log.append(b"second").unwrap();
        }
        let (_, records) = LogFile::open(&path, LIMITS).unwrap();
        assert_eq!(records, [b"first".to_vec(), b"second".to_vec()]);
    }

    #[test]
    fn replace_is_atomic_and_the_lock_survives_it() {
        let path = temporary_path("replace");
        let (mut log, _) = LogFile::open(&path, LIMITS).unwrap();
        for record in [&b"a"[..], b"b", b"c"] {
            log.append(record).unwrap();
        }
        log.replace([&b"c"[..]]).unwrap();
        log.append(b"d").unwrap();
        let error = LogFile::open(&path, LIMITS).unwrap_err();
        assert!(matches!(error, DurableError::Locked { .. }), "{error}");
        assert!(error.to_string().contains("in use by another process"));
        drop(log);
        let (_, records) = LogFile::open(&path, LIMITS).unwrap();
        assert_eq!(records, [b"c".to_vec(), b"d".to_vec()]);
    }

    #[test]
    fn limits_hold_on_append_and_on_open() {
        let path = temporary_path("limits");
        let small = Limits { max_record_bytes: 4, max_file_bytes: 40 };
        let (mut log, _) = LogFile::open(&path, small).unwrap();
        assert!(matches!(log.append(b"12345"), Err(DurableError::RecordTooLarge { size: 5, max: 4 })));
        for _ in 0..3 {
            log.append(b"1234").unwrap();
        }
        assert!(matches!(log.append(b"1234"), Err(DurableError::FileTooLarge { .. })));
        drop(log);
        let tiny = Limits { max_record_bytes: 4, max_file_bytes: 20 };
        assert!(matches!(LogFile::open(&path, tiny), Err(DurableError::FileTooLarge { size: 36, max: 20, .. })));
    }
}
