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
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
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
    #[error("storage: {0}")]
    Io(#[from] std::io::Error),
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

/// Where records live. `append` must be durable when it returns.
pub trait Backend {
    fn load(&mut self) -> Result<Vec<Record>, Error>;
    fn append(&mut self, record: &Record) -> Result<(), Error>;
    /// Atomically replaces the whole history (used when pruning).
    fn replace(&mut self, records: &[Record]) -> Result<(), Error>;
}

/// An append-only JSON-lines file; every append is fsynced.
#[derive(Debug)]
pub struct FileBackend {
    path: PathBuf,
    file: File,
}

impl FileBackend {
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref().to_path_buf();
        let file = OpenOptions::new().create(true).append(true).read(true).open(&path)?;
        Ok(Self { path, file })
    }

    fn sync_directory(&self) -> Result<(), Error> {
        if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            File::open(parent)?.sync_all()?;
        }
        Ok(())
    }
}

impl Backend for FileBackend {
    fn load(&mut self) -> Result<Vec<Record>, Error> {
        let mut records = Vec::new();
        for line in BufReader::new(File::open(&self.path)?).lines() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            // A torn last line (crash mid-write) was never acknowledged: its
            // signature never left the process, so it is safe to skip.
            match serde_json::from_str(&line) {
                Ok(record) => records.push(record),
                Err(_) => break,
            }
        }
        Ok(records)
    }

    fn append(&mut self, record: &Record) -> Result<(), Error> {
        let mut line = serde_json::to_vec(record)?;
        line.push(b'\n');
        self.file.write_all(&line)?;
        self.file.sync_data()?;
        Ok(())
    }

    fn replace(&mut self, records: &[Record]) -> Result<(), Error> {
        let temporary = self.path.with_extension("tmp");
        {
            let mut file = File::create(&temporary)?;
            for record in records {
                let mut line = serde_json::to_vec(record)?;
                line.push(b'\n');
                file.write_all(&line)?;
            }
            file.sync_all()?;
        }
        std::fs::rename(&temporary, &self.path)?;
        self.sync_directory()?;
        self.file = OpenOptions::new().append(true).read(true).open(&self.path)?;
        Ok(())
    }
}

/// A shared in-memory "disk" for the simulator: it outlives the simulated
/// process, so a simulated crash and restart reopens the same history.
#[derive(Debug, Clone, Default)]
pub struct MemoryBackend {
    disk: Arc<Mutex<Vec<Record>>>,
}

impl Backend for MemoryBackend {
    fn load(&mut self) -> Result<Vec<Record>, Error> {
        Ok(self.disk.lock().map_err(|_| Error::Malformed("poisoned".into()))?.clone())
    }
    fn append(&mut self, record: &Record) -> Result<(), Error> {
        self.disk.lock().map_err(|_| Error::Malformed("poisoned".into()))?.push(record.clone());
        Ok(())
    }
    fn replace(&mut self, records: &[Record]) -> Result<(), Error> {
        *self.disk.lock().map_err(|_| Error::Malformed("poisoned".into()))? = records.to_vec();
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

    #[test]
    fn a_torn_final_line_is_ignored() {
        let path = temporary_path("torn");
        {
            let mut store = ProtectionStore::open(CHAIN, FileBackend::open(&path).unwrap()).unwrap();
            store.check_and_record(&notarize(1, 1)).unwrap();
        }
        OpenOptions::new().append(true).open(&path).unwrap().write_all(b"{\"kind\":\"notar").unwrap();
        let mut store = ProtectionStore::open(CHAIN, FileBackend::open(&path).unwrap()).unwrap();
        assert!(matches!(store.check_and_record(&notarize(1, 2)), Err(Error::Conflict(_))));
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
