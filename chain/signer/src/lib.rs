//! Slashing protection for Vanna validators (Lighthouse-style).
//!
//! Owns: the durable record of every consensus message a validator signed,
//! the refusal to sign anything that would make an offence together with a
//! recorded message, and the JSON interchange format to move that history
//! between machines. A record is written and fsynced before the signature is
//! returned, so a crash, restart or duplicated process can never equivocate.
//!
//! Must not: decide what to sign (the consensus core does) or hold more than
//! one validator's key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use vanna_consensus::{BlockHash, ChainId, Epoch, Height, Offence, Scheme, Signable, View, Vote, VoteKind};

/// Interchange format version.
const INTERCHANGE_VERSION: u32 = 1;
/// Records retained at most; the node prunes below its finalized view long before.
const MAX_RECORDS: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("refused: would commit {0:?} with an earlier signature")]
    Conflict(Offence),
    #[error("refused: epoch {0} view {1} is at or below the protection watermark")]
    BelowWatermark(u64, u64),
    #[error("refused: protection history is full ({0} records)")]
    Full(usize),
    #[error("interchange is for chain {found}, this store is for chain {expected}")]
    WrongChain { expected: u64, found: u64 },
    #[error("unsupported interchange version {0}")]
    Version(u32),
    #[error("malformed record: {0}")]
    Malformed(String),
    #[error("protection history is corrupt at record {record} ({reason}); refusing to sign on top of it")]
    Corrupt { record: usize, reason: &'static str },
    #[error("protection history {0} is in use by another process")]
    Locked(PathBuf),
    #[error("storage: {0}")]
    Io(#[from] std::io::Error),
    #[error("protection history: {0}")]
    Log(vanna_durable::DurableError),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

/// One signed message as stored and exchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// `proposal`, `notarize`, `finalize`, `nullify`, or `watermark`.
    pub kind: String,
    pub epoch: u64,
    pub view: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_view: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u64>,
    /// Hex block hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block: Option<String>,
}

impl Record {
    pub fn from_signable(message: &Signable) -> Record {
        let (kind, parent_view, height, block) = match *message {
            Signable::Proposal { parent_view, block, .. } => ("proposal", Some(parent_view.0), None, Some(block)),
            Signable::Vote(Vote { kind: VoteKind::Notarize { height, block }, .. }) => {
                ("notarize", None, Some(height.0), Some(block))
            }
            Signable::Vote(Vote { kind: VoteKind::Finalize { height, block }, .. }) => {
                ("finalize", None, Some(height.0), Some(block))
            }
            Signable::Vote(Vote { kind: VoteKind::Nullify, .. }) => ("nullify", None, None, None),
        };
        Record {
            kind: kind.to_owned(),
            epoch: message.epoch().0,
            view: message.view().0,
            parent_view,
            height,
            block: block.map(|b| hex::encode(b.0)),
        }
    }

    fn watermark(epoch: u64, view: u64) -> Record {
        Record { kind: "watermark".to_owned(), epoch, view, parent_view: None, height: None, block: None }
    }

    /// `None` for a watermark record.
    pub fn to_signable(&self) -> Result<Option<Signable>, Error> {
        let malformed = || Error::Malformed(format!("{self:?}"));
        let block = || -> Result<BlockHash, Error> {
            let text = self.block.as_ref().ok_or_else(malformed)?;
            let bytes = hex::decode(text).map_err(|_| malformed())?;
            Ok(BlockHash(bytes.try_into().map_err(|_| malformed())?))
        };
        let epoch = Epoch(self.epoch);
        let view = View(self.view);
        let height = || self.height.map(Height).ok_or_else(malformed);
        let vote = |kind| Ok(Some(Signable::Vote(Vote { epoch, view, kind })));
        match self.kind.as_str() {
            "watermark" => Ok(None),
            "proposal" => {
                let parent_view = View(self.parent_view.ok_or_else(malformed)?);
                Ok(Some(Signable::Proposal { epoch, view, parent_view, block: block()? }))
            }
            "notarize" => vote(VoteKind::Notarize { height: height()?, block: block()? }),
            "finalize" => vote(VoteKind::Finalize { height: height()?, block: block()? }),
            "nullify" => vote(VoteKind::Nullify),
            _ => Err(malformed()),
        }
    }
}

/// The portable history: what a validator moving machines carries along.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interchange {
    pub version: u32,
    pub chain: u64,
    /// Nothing at or below (epoch, view) may be signed.
    pub watermark: Option<(u64, u64)>,
    pub records: Vec<Record>,
}

/// Where records live. `append` must be durable when it returns, and must
/// leave nothing of a record behind when it fails.
pub trait Backend {
    fn load(&mut self) -> Result<Vec<Record>, Error>;
    fn append(&mut self, record: &Record) -> Result<(), Error>;
    /// Atomically replaces the whole history (used when pruning).
    fn replace(&mut self, records: &[Record]) -> Result<(), Error>;
}

/// Bounds of the history file: a record is a few hundred bytes of JSON, and
/// the store holds at most [`MAX_RECORDS`] of them.
const LIMITS: vanna_durable::Limits =
    vanna_durable::Limits { max_record_bytes: 4 * 1024, max_file_bytes: MAX_RECORDS as u64 * 512 };

/// One record as stored: its JSON in a `vanna-durable` record (length and
/// checksum).
fn encode_record(record: &Record) -> Result<Vec<u8>, Error> {
    Ok(vanna_durable::encode_record(&serde_json::to_vec(record)?))
}

/// Parses a history's records. Each must be a signable record, or the history
/// is corrupt and the store refuses to open: signing on top of a history it
/// cannot read could equivocate.
fn parse_records<'a>(records: impl IntoIterator<Item = &'a [u8]>) -> Result<Vec<Record>, Error> {
    records
        .into_iter()
        .enumerate()
        .map(|(number, json)| {
            let corrupt = |reason| Error::Corrupt { record: number + 1, reason };
            let record: Record = serde_json::from_slice(json).map_err(|_| corrupt("not a record"))?;
            record.to_signable().map_err(|_| corrupt("not a signable message"))?;
            Ok(record)
        })
        .collect()
}

/// Parses a history's bytes (the framing of `vanna_durable::decode_records`:
/// a torn tail is a write that never completed, whose signature never left
/// the process). Returns the records and the length of the complete prefix.
fn decode_log(bytes: &[u8]) -> Result<(Vec<Record>, usize), Error> {
    let (records, complete) = vanna_durable::decode_records(bytes, LIMITS.max_record_bytes)
        .map_err(|damage| Error::Corrupt { record: damage.record, reason: damage.reason })?;
    Ok((parse_records(records)?, complete))
}

impl From<vanna_durable::DurableError> for Error {
    fn from(error: vanna_durable::DurableError) -> Self {
        use vanna_durable::DurableError;
        match error {
            DurableError::Locked { path } => Error::Locked(path),
            DurableError::Corrupt { record, reason, .. } => Error::Corrupt { record, reason },
            DurableError::Io { source, .. } => Error::Io(source),
            other => Error::Log(other),
        }
    }
}

/// The history in a `vanna_durable::LogFile`: every append fsynced, a torn
/// tail cut on open, pruning an atomic rewrite, and the file locked
/// exclusively for the backend's life, so a second process on the same
/// history refuses to start.
#[derive(Debug)]
pub struct FileBackend {
    log: vanna_durable::LogFile,
    /// The records read at open, until `load` hands them over.
    opened: Vec<Vec<u8>>,
}

impl FileBackend {
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        let (log, opened) = vanna_durable::LogFile::open(path, LIMITS)?;
        Ok(Self { log, opened })
    }
}

impl Backend for FileBackend {
    fn load(&mut self) -> Result<Vec<Record>, Error> {
        parse_records(std::mem::take(&mut self.opened).iter().map(Vec::as_slice))
    }

    fn append(&mut self, record: &Record) -> Result<(), Error> {
        Ok(self.log.append(&serde_json::to_vec(record)?)?)
    }

    fn replace(&mut self, records: &[Record]) -> Result<(), Error> {
        let encoded = records.iter().map(serde_json::to_vec).collect::<Result<Vec<_>, _>>()?;
        Ok(self.log.replace(encoded.iter().map(Vec::as_slice))?)
    }
}

/// What the next append to a [`MemoryBackend`] suffers (the simulator's disk faults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteFault {
    /// The process dies after writing this many bytes of the record: the
    /// fragment stays on disk and the append reports failure.
    Torn(usize),
    /// The write fails after this many bytes (a full disk); the backend cuts
    /// the fragment off and reports failure.
    Failed(usize),
    /// The record is written twice (a retried write that had succeeded).
    Duplicated,
}

#[derive(Debug, Default)]
struct MemoryDisk {
    bytes: Vec<u8>,
    fault: Option<WriteFault>,
}

/// A shared in-memory "disk" for the simulator: it outlives the simulated
/// process, so a simulated crash and restart reopens the same history. It
/// stores the file backend's bytes, so loading goes through the same checks.
#[derive(Debug, Clone, Default)]
pub struct MemoryBackend {
    disk: Arc<Mutex<MemoryDisk>>,
    /// Bytes of complete records as this handle knows them.
    length: usize,
}

impl MemoryBackend {
    /// The next append suffers `fault`.
    pub fn inject(&self, fault: WriteFault) {
        if let Ok(mut disk) = self.disk.lock() {
            disk.fault = Some(fault);
        }
    }
}

fn lock_disk(disk: &Mutex<MemoryDisk>) -> Result<std::sync::MutexGuard<'_, MemoryDisk>, Error> {
    disk.lock().map_err(|_| Error::Io(std::io::Error::other("memory disk poisoned")))
}

impl Backend for MemoryBackend {
    fn load(&mut self) -> Result<Vec<Record>, Error> {
        let mut disk = lock_disk(&self.disk)?;
        let (records, complete) = decode_log(&disk.bytes)?;
        disk.bytes.truncate(complete);
        drop(disk);
        self.length = complete;
        Ok(records)
    }

    fn append(&mut self, record: &Record) -> Result<(), Error> {
        let line = encode_record(record)?;
        let length = self.length;
        let mut disk = lock_disk(&self.disk)?;
        disk.bytes.truncate(length);
        match disk.fault.take() {
            None => disk.bytes.extend_from_slice(&line),
            Some(WriteFault::Duplicated) => {
                disk.bytes.extend_from_slice(&line);
                disk.bytes.extend_from_slice(&line);
            }
            Some(WriteFault::Torn(written)) => {
                disk.bytes.extend_from_slice(&line[..written.min(line.len().saturating_sub(1))]);
                return Err(Error::Io(std::io::Error::other("injected: torn write")));
            }
            Some(WriteFault::Failed(written)) => {
                disk.bytes.extend_from_slice(&line[..written.min(line.len())]);
                disk.bytes.truncate(length);
                return Err(Error::Io(std::io::Error::other("injected: failed write")));
            }
        }
        self.length = disk.bytes.len();
        Ok(())
    }

    fn replace(&mut self, records: &[Record]) -> Result<(), Error> {
        let mut bytes = Vec::new();
        for record in records {
            bytes.extend_from_slice(&encode_record(record)?);
        }
        let mut disk = lock_disk(&self.disk)?;
        self.length = bytes.len();
        disk.bytes = bytes;
        Ok(())
    }
}

/// The protection history of one validator on one chain.
#[derive(Debug)]
pub struct ProtectionStore<B: Backend> {
    chain: ChainId,
    backend: B,
    signed: BTreeMap<(Epoch, View), Vec<Signable>>,
    watermark: Option<(Epoch, View)>,
    records: usize,
}

impl<B: Backend> ProtectionStore<B> {
    pub fn open(chain: ChainId, mut backend: B) -> Result<Self, Error> {
        let records = backend.load()?;
        let mut store = Self { chain, backend, signed: BTreeMap::new(), watermark: None, records: 0 };
        for record in &records {
            store.remember(record)?;
        }
        Ok(store)
    }

    fn remember(&mut self, record: &Record) -> Result<(), Error> {
        match record.to_signable()? {
            None => {
                let mark = (Epoch(record.epoch), View(record.view));
                self.watermark = Some(self.watermark.map_or(mark, |m| m.max(mark)));
            }
            Some(message) => {
                let slot = self.signed.entry((message.epoch(), message.view())).or_default();
                if !slot.contains(&message) {
                    slot.push(message);
                    self.records += 1;
                }
            }
        }
        Ok(())
    }

    /// Refuses `message` if it conflicts with anything recorded; otherwise
    /// records it durably. Re-signing an identical message is allowed.
    pub fn check_and_record(&mut self, message: &Signable) -> Result<(), Error> {
        let key = (message.epoch(), message.view());
        if let Some(mark) = self.watermark
            && key <= mark
        {
            return Err(Error::BelowWatermark(key.0.0, key.1.0));
        }
        if let Some(previous) = self.signed.get(&key) {
            if previous.contains(message) {
                return Ok(());
            }
            if let Some(offence) = previous.iter().find_map(|p| Offence::between(p, message)) {
                return Err(Error::Conflict(offence));
            }
        }
        if self.records >= MAX_RECORDS {
            return Err(Error::Full(MAX_RECORDS));
        }
        let record = Record::from_signable(message);
        self.backend.append(&record)?;
        self.remember(&record)
    }

    /// Forgets history at or below (epoch, view) and refuses to sign there from now on.
    pub fn prune_through(&mut self, epoch: Epoch, view: View) -> Result<(), Error> {
        let mark = (epoch, view);
        if self.watermark.is_some_and(|m| m >= mark) {
            return Ok(());
        }
        let kept = self.signed.split_off(&(epoch, View(view.0.saturating_add(1))));
        let mut records = vec![Record::watermark(epoch.0, view.0)];
        records.extend(kept.values().flatten().map(Record::from_signable));
        self.backend.replace(&records)?;
        self.records = kept.values().map(Vec::len).sum();
        self.signed = kept;
        self.watermark = Some(mark);
        Ok(())
    }

    pub fn export(&self) -> Interchange {
        Interchange {
            version: INTERCHANGE_VERSION,
            chain: self.chain.0,
            watermark: self.watermark.map(|(e, v)| (e.0, v.0)),
            records: self.signed.values().flatten().map(Record::from_signable).collect(),
        }
    }

    /// Merges another machine's history (union of records, highest watermark).
    pub fn import(&mut self, interchange: &Interchange) -> Result<(), Error> {
        if interchange.version != INTERCHANGE_VERSION {
            return Err(Error::Version(interchange.version));
        }
        if interchange.chain != self.chain.0 {
            return Err(Error::WrongChain { expected: self.chain.0, found: interchange.chain });
        }
        for record in &interchange.records {
            // Validate everything before writing anything.
            record.to_signable()?;
        }
        if let Some((epoch, view)) = interchange.watermark {
            let record = Record::watermark(epoch, view);
            self.backend.append(&record)?;
            self.remember(&record)?;
        }
        for record in &interchange.records {
            if let Some(message) = record.to_signable()?
                && !self.signed.get(&(message.epoch(), message.view())).is_some_and(|s| s.contains(&message))
            {
                self.backend.append(record)?;
                self.remember(record)?;
            }
        }
        Ok(())
    }
}

/// A validator's key behind its protection store: the only way the node gets
/// a consensus signature.
#[derive(Debug)]
pub struct Signer<S: Scheme, B: Backend> {
    secret: S::SecretKey,
    store: ProtectionStore<B>,
}

impl<S: Scheme, B: Backend> Signer<S, B> {
    pub fn new(secret: S::SecretKey, store: ProtectionStore<B>) -> Self {
        Self { secret, store }
    }

    /// Records durably, then signs; refuses conflicts.
    pub fn sign(&mut self, message: &Signable) -> Result<S::Signature, Error> {
        self.store.check_and_record(message)?;
        Ok(S::sign(&self.secret, &message.signing_bytes(self.store.chain)))
    }

    pub fn store(&self) -> &ProtectionStore<B> {
        &self.store
    }
    pub fn store_mut(&mut self) -> &mut ProtectionStore<B> {
        &mut self.store
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;
    use std::io::Write;
    use vanna_consensus::TestScheme;

    const CHAIN: ChainId = ChainId(7);

    fn notarize(view: u64, block: u8) -> Signable {
        let kind = VoteKind::Notarize { height: Height(view), block: BlockHash([block; 32]) };
        Signable::Vote(Vote { epoch: Epoch(0), view: View(view), kind })
    }
    fn finalize(view: u64, block: u8) -> Signable {
        let kind = VoteKind::Finalize { height: Height(view), block: BlockHash([block; 32]) };
        Signable::Vote(Vote { epoch: Epoch(0), view: View(view), kind })
    }
    fn nullify(view: u64) -> Signable {
        Signable::Vote(Vote { epoch: Epoch(0), view: View(view), kind: VoteKind::Nullify })
    }
    fn proposal(view: u64, block: u8) -> Signable {
        Signable::Proposal {
            epoch: Epoch(0),
            view: View(view),
            parent_view: View(view - 1),
            block: BlockHash([block; 32]),
        }
    }

    fn temporary_path(name: &str) -> PathBuf {
        let directory = std::env::temp_dir().join(format!("vanna-signer-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&directory);
        std::fs::create_dir_all(&directory).unwrap();
        directory.join("protection.jsonl")
    }

    #[test]
    fn refuses_every_offence_and_allows_identical_resigning() {
        let mut store = ProtectionStore::open(CHAIN, MemoryBackend::default()).unwrap();
        store.check_and_record(&notarize(5, 1)).unwrap();
        store.check_and_record(&notarize(5, 1)).unwrap();
        assert!(matches!(store.check_and_record(&notarize(5, 2)), Err(Error::Conflict(Offence::ConflictingNotarizes))));
        store.check_and_record(&nullify(5)).unwrap();
        assert!(matches!(store.check_and_record(&finalize(5, 1)), Err(Error::Conflict(Offence::FinalizeAndNullify))));
        store.check_and_record(&finalize(6, 1)).unwrap();
        assert!(matches!(store.check_and_record(&nullify(6)), Err(Error::Conflict(Offence::FinalizeAndNullify))));
        assert!(matches!(store.check_and_record(&finalize(6, 2)), Err(Error::Conflict(Offence::ConflictingFinalizes))));
        store.check_and_record(&proposal(7, 1)).unwrap();
        assert!(matches!(store.check_and_record(&proposal(7, 2)), Err(Error::Conflict(Offence::ConflictingProposals))));
        // Notarizing one block and finalizing another notarized one is not an offence.
        store.check_and_record(&notarize(8, 1)).unwrap();
        store.check_and_record(&finalize(8, 2)).unwrap();
    }

    #[test]
    fn refusals_survive_a_kill_and_restart() {
        let path = temporary_path("restart");
        {
            let mut signer = Signer::<TestScheme, _>::new(
                3,
                ProtectionStore::open(CHAIN, FileBackend::open(&path).unwrap()).unwrap(),
            );
            signer.sign(&notarize(10, 1)).unwrap();
            signer.sign(&nullify(11)).unwrap();
            // Dropped without any shutdown step, like a killed process.
        }
        let mut signer =
            Signer::<TestScheme, _>::new(3, ProtectionStore::open(CHAIN, FileBackend::open(&path).unwrap()).unwrap());
        assert!(matches!(signer.sign(&notarize(10, 2)), Err(Error::Conflict(_))));
        assert!(matches!(signer.sign(&finalize(11, 1)), Err(Error::Conflict(_))));
        assert_eq!(signer.sign(&notarize(10, 1)).unwrap(), TestScheme::sign(&3, &notarize(10, 1).signing_bytes(CHAIN)));
    }

    fn open_file(path: &Path) -> ProtectionStore<FileBackend> {
        ProtectionStore::open(CHAIN, FileBackend::open(path).unwrap()).unwrap()
    }

    /// Regression (issue 12, finding 3): the torn line used to stay in the
    /// file, the next record was glued onto it, and the restart after that
    /// dropped everything from there on, so view 7 could be signed twice.
    #[test]
    fn a_torn_last_line_is_cut_off_so_later_records_survive_restarts() {
        let path = temporary_path("torn");
        open_file(&path).check_and_record(&notarize(1, 1)).unwrap();
        let torn = encode_record(&Record::from_signable(&notarize(1, 2))).unwrap();
        OpenOptions::new().append(true).open(&path).unwrap().write_all(&torn[..torn.len() / 2]).unwrap();
        {
            let mut store = open_file(&path);
            assert!(matches!(store.check_and_record(&notarize(1, 2)), Err(Error::Conflict(_))));
            store.check_and_record(&notarize(7, 1)).unwrap();
        }
        let mut store = open_file(&path);
        assert!(matches!(store.check_and_record(&notarize(7, 2)), Err(Error::Conflict(_))));
        assert!(matches!(store.check_and_record(&notarize(1, 2)), Err(Error::Conflict(_))));
        assert_eq!(store.export().records.len(), 2);
    }

    /// A write that fails part-way (a full disk) leaves no fragment: later
    /// records are appended cleanly and survive a restart.
    #[test]
    fn a_write_failing_part_way_leaves_no_fragment() {
        let path = temporary_path("partial");
        {
            let mut backend = FileBackend::open(&path).unwrap();
            backend.log.fail_next_append_after(9);
            let mut store = ProtectionStore::open(CHAIN, backend).unwrap();
            assert!(matches!(store.check_and_record(&notarize(3, 1)), Err(Error::Io(_))));
            // Not recorded, so a different block may still be signed.
            store.check_and_record(&notarize(3, 2)).unwrap();
            store.check_and_record(&nullify(4)).unwrap();
        }
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(decode_log(&bytes).unwrap().1, bytes.len(), "no fragment left in the file");
        let mut store = open_file(&path);
        assert!(matches!(store.check_and_record(&notarize(3, 1)), Err(Error::Conflict(_))));
        assert!(matches!(store.check_and_record(&finalize(4, 1)), Err(Error::Conflict(_))));
    }

    #[test]
    fn a_corrupt_record_before_the_end_refuses_to_open() {
        let path = temporary_path("corrupt");
        {
            let mut store = open_file(&path);
            store.check_and_record(&notarize(1, 1)).unwrap();
            store.check_and_record(&notarize(2, 1)).unwrap();
        }
        let mut bytes = std::fs::read(&path).unwrap();
        // Flip a digit of the first record's view: still JSON, wrong checksum.
        let at = bytes.windows(8).position(|w| w == b"\"view\":1").unwrap() + 7;
        bytes[at] = b'5';
        std::fs::write(&path, &bytes).unwrap();
        let open = |path: &Path| FileBackend::open(path).and_then(|backend| ProtectionStore::open(CHAIN, backend));
        let error = open(&path).unwrap_err();
        assert!(matches!(error, Error::Corrupt { record: 1, .. }), "{error}");
        // An unframed line is corrupt too, wherever it is.
        std::fs::write(&path, b"{\"kind\":\"nullify\",\"epoch\":0,\"view\":3}\n").unwrap();
        assert!(matches!(open(&path), Err(Error::Corrupt { .. })));
    }

    /// Regression (issue 12, finding 3): two processes on one file both signed.
    /// flock locks belong to an open file, so a second open in this process
    /// meets the lock exactly as a second process would.
    #[test]
    fn a_second_process_on_the_same_history_refuses_to_start() {
        let path = temporary_path("lock");
        let first = FileBackend::open(&path).unwrap();
        let error = FileBackend::open(&path).unwrap_err();
        assert!(matches!(error, Error::Locked(_)), "{error}");
        assert!(error.to_string().contains("in use by another process"));
        let mut store = ProtectionStore::open(CHAIN, first).unwrap();
        // Pruning replaces the file; the lock still guards the path.
        store.check_and_record(&notarize(5, 1)).unwrap();
        store.prune_through(Epoch(0), View(2)).unwrap();
        assert!(matches!(FileBackend::open(&path), Err(Error::Locked(_))));
        drop(store);
        FileBackend::open(&path).unwrap();
    }

    #[test]
    fn memory_disk_faults_never_lose_or_glue_records() {
        let disk = MemoryBackend::default();
        let mut store = ProtectionStore::open(CHAIN, disk.clone()).unwrap();
        store.check_and_record(&notarize(1, 1)).unwrap();
        disk.inject(WriteFault::Duplicated);
        store.check_and_record(&notarize(2, 1)).unwrap();
        disk.inject(WriteFault::Failed(5));
        assert!(store.check_and_record(&notarize(3, 1)).is_err());
        store.check_and_record(&notarize(3, 2)).unwrap();
        disk.inject(WriteFault::Torn(20));
        assert!(store.check_and_record(&notarize(4, 1)).is_err());
        // The process died mid-write; the restart cuts the fragment off.
        drop(store);
        let mut store = ProtectionStore::open(CHAIN, disk.clone()).unwrap();
        for (view, block) in [(1, 2), (2, 2), (3, 1)] {
            assert!(matches!(store.check_and_record(&notarize(view, block)), Err(Error::Conflict(_))));
        }
        store.check_and_record(&notarize(4, 2)).unwrap();
        store.check_and_record(&notarize(5, 1)).unwrap();
        drop(store);
        let store = ProtectionStore::open(CHAIN, disk).unwrap();
        assert_eq!(store.export().records.len(), 5);
    }

    #[test]
    fn export_then_import_on_a_fresh_store_preserves_refusals() {
        let mut old = ProtectionStore::open(CHAIN, FileBackend::open(temporary_path("export")).unwrap()).unwrap();
        old.check_and_record(&notarize(3, 1)).unwrap();
        old.check_and_record(&nullify(4)).unwrap();
        old.check_and_record(&proposal(5, 9)).unwrap();
        old.prune_through(Epoch(0), View(2)).unwrap();
        let json = serde_json::to_string(&old.export()).unwrap();

        let path = temporary_path("import");
        let mut fresh = ProtectionStore::open(CHAIN, FileBackend::open(&path).unwrap()).unwrap();
        fresh.import(&serde_json::from_str(&json).unwrap()).unwrap();
        drop(fresh);
        let mut fresh = ProtectionStore::open(CHAIN, FileBackend::open(&path).unwrap()).unwrap();
        assert!(matches!(fresh.check_and_record(&notarize(3, 2)), Err(Error::Conflict(_))));
        assert!(matches!(fresh.check_and_record(&finalize(4, 1)), Err(Error::Conflict(_))));
        assert!(matches!(fresh.check_and_record(&proposal(5, 8)), Err(Error::Conflict(_))));
        assert!(matches!(fresh.check_and_record(&notarize(2, 1)), Err(Error::BelowWatermark(0, 2))));
        fresh.check_and_record(&notarize(6, 1)).unwrap();

        let mut other_chain = ProtectionStore::open(ChainId(8), MemoryBackend::default()).unwrap();
        assert!(matches!(other_chain.import(&serde_json::from_str(&json).unwrap()), Err(Error::WrongChain { .. })));
    }

    #[test]
    fn pruning_survives_restart() {
        let path = temporary_path("prune");
        {
            let mut store = ProtectionStore::open(CHAIN, FileBackend::open(&path).unwrap()).unwrap();
            for view in 1..=20 {
                store.check_and_record(&notarize(view, 1)).unwrap();
            }
            store.prune_through(Epoch(0), View(15)).unwrap();
            store.check_and_record(&notarize(21, 1)).unwrap();
        }
        let mut store = ProtectionStore::open(CHAIN, FileBackend::open(&path).unwrap()).unwrap();
        assert_eq!(store.export().records.len(), 6);
        assert!(matches!(store.check_and_record(&notarize(15, 2)), Err(Error::BelowWatermark(0, 15))));
        assert!(matches!(store.check_and_record(&notarize(21, 2)), Err(Error::Conflict(_))));
    }
}
