//! The consensus journal: what the node's consensus core must find again
//! after a restart (its own votes and proposals, the certificates it saw),
//! appended and fsynced before a message leaves the node, in a
//! `vanna_durable::LogFile` of its own.

use std::path::Path;

use crate::StoreError;

/// Bounds of the journal: a record holds one consensus message, a proposal
/// with its block included; the file holds the messages since finality
/// last pruned it, which it does every few blocks.
pub const JOURNAL_LIMITS: vanna_durable::Limits =
    vanna_durable::Limits { max_record_bytes: 64 << 20, max_file_bytes: 1 << 30 };

/// An append-only journal of opaque records. Locked while open: a second
/// process on the same file refuses to start.
#[derive(Debug)]
pub struct Journal {
    log: vanna_durable::LogFile,
    records: Vec<Vec<u8>>,
}

impl Journal {
    /// Opens (creating if needed) the journal at `path`. A torn last record
    /// (a crash mid-append: it never left the node) is cut off; damage before
    /// it refuses to open.
    pub fn open(path: impl AsRef<Path>) -> Result<Journal, StoreError> {
        let (log, records) = vanna_durable::LogFile::open(path, JOURNAL_LIMITS)?;
        Ok(Journal { log, records })
    }

    /// Appends `record`; it is on disk when this returns.
    pub fn append(&mut self, record: &[u8]) -> Result<(), StoreError> {
        self.log.append(record)?;
        self.records.push(record.to_vec());
        Ok(())
    }

    /// Every record, oldest first.
    pub fn records(&self) -> &[Vec<u8>] {
        &self.records
    }

    /// The file's size, which is also about what the records hold in memory.
    pub fn len_bytes(&self) -> u64 {
        self.log.len_bytes()
    }

    /// Keeps only the records for which `keep` holds, atomically: after a
    /// crash the file holds the old journal or the new one, never a mix.
    pub fn rewrite(&mut self, keep: impl Fn(&[u8]) -> bool) -> Result<(), StoreError> {
        let kept: Vec<Vec<u8>> = self.records.iter().filter(|record| keep(record)).cloned().collect();
        self.log.replace(kept.iter().map(Vec::as_slice))?;
        self.records = kept;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn path(name: &str) -> std::path::PathBuf {
        let dir = crate::tests::temporary_dir(name);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("consensus.journal")
    }

    #[test]
    fn records_survive_a_reopen_and_a_rewrite_prunes_them() {
        let path = path("journal");
        {
            let mut journal = Journal::open(&path).unwrap();
            for record in [&b"vote 1"[..], b"vote 2", b"", b"vote 3"] {
                journal.append(record).unwrap();
            }
        }
        let mut journal = Journal::open(&path).unwrap();
        assert_eq!(journal.records(), [&b"vote 1"[..], b"vote 2", b"", b"vote 3"]);
        journal.rewrite(|record| record >= b"vote 2".as_slice()).unwrap();
        journal.append(b"vote 4").unwrap();
        assert_eq!(journal.records(), [&b"vote 2"[..], b"vote 3", b"vote 4"]);
        // Its size follows the records kept: what the node's pruning bound reads.
        let framed = |payload: &[u8]| vanna_durable::encode_record(payload).len() as u64;
        assert_eq!(journal.len_bytes(), framed(b"vote 2") + framed(b"vote 3") + framed(b"vote 4"));
        drop(journal);
        assert_eq!(Journal::open(&path).unwrap().records(), [&b"vote 2"[..], b"vote 3", b"vote 4"]);
    }

    #[test]
    fn a_second_open_is_refused_while_the_first_holds_the_journal() {
        let path = path("journal-lock");
        let journal = Journal::open(&path).unwrap();
        let error = Journal::open(&path).unwrap_err();
        assert!(error.to_string().contains("in use by another process"), "{error}");
        drop(journal);
        Journal::open(&path).unwrap();
    }

    #[test]
    fn a_torn_record_is_cut_and_damage_before_the_end_refuses_to_open() {
        let path = path("journal-torn");
        Journal::open(&path).unwrap().append(b"whole").unwrap();
        let torn = vanna_durable::encode_record(b"torn in the middle");
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(&torn[..12]).unwrap();
        {
            let mut journal = Journal::open(&path).unwrap();
            assert_eq!(journal.records(), [b"whole"]);
            journal.append(b"next").unwrap();
        }
        assert_eq!(Journal::open(&path).unwrap().records(), [&b"whole"[..], b"next"]);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[vanna_durable::RECORD_HEADER_BYTES] ^= 0x20;
        std::fs::write(&path, &bytes).unwrap();
        let error = Journal::open(&path).unwrap_err();
        assert!(
            matches!(error, StoreError::Journal(vanna_durable::DurableError::Corrupt { record: 1, .. })),
            "{error}"
        );
    }
}
