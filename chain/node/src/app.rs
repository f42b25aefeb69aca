//! The application consensus drives: it builds proposals, verifies them
//! before this validator votes, and executes finalized blocks with the
//! runtime, exactly once and in height order. Synchronous and free of IO:
//! the shell hands it what consensus and the mempool produced.
//!
//! A header carries the state root after its parent. A block's effects
//! count only once it is final, so when a proposal builds on a block that is
//! notarized but not yet final, its root comes from executing the pending
//! chain on a copy of the state (speculatively). The state after a block is
//! a function of the block's hash alone, so when that block becomes final
//! its speculative result is adopted instead of executing it a second time.

use std::collections::BTreeMap;
use std::sync::Arc;

use prost::Message as _;
use vanna_consensus::{BlockHash, Bls, Certificate, ChainId, Epoch, Header, Root, ValidatorEntry, ValidatorSet, View};
use vanna_crypto::bls::{BlsPublicKey, BlsSecretKey};
use vanna_proto::v1 as wire;
use vanna_runtime::ordering::{canonical_order, check_canonical};
use vanna_runtime::{Address, BlockContext, BlockOutput, State, apply_block_with};

use crate::evidence::{decode_certificate, decode_evidence, encode_certificate, evidence_epoch, ledger_record};
use crate::payload::{MAX_PAYLOAD_BYTES, Payload, order_seed, seed_is_valid, transactions_root};

/// Blocks kept that are known but not final (proposed or verified): enough
/// for the views a leader may build across while finality catches up.
const MAX_PENDING_BLOCKS: usize = 512;
/// States after pending blocks kept at once (each is a copy of the whole
/// state): the tip being built on and a fork or two.
const MAX_SPECULATED: usize = 4;

/// A pending block executed on a copy of the state.
struct Speculated {
    height: u64,
    state: State,
    output: BlockOutput,
}

/// Why the application cannot go on. Each halts the node: continuing would
/// settle balances on a state other validators do not have.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(
        "state diverged at height {height}: this node's state root after height {height} is {ours}, the chain's header says {theirs}; stopping"
    )]
    Diverged { height: u64, ours: String, theirs: String },
    #[error("finalized block at height {got} does not follow the executed height {executed}")]
    OutOfOrder { executed: u64, got: u64 },
    #[error("finalized block at height {height} cannot be executed: {why}")]
    BadBlock { height: u64, why: String },
    #[error("the runtime refused block {height}: {0}", height = .1)]
    Runtime(vanna_runtime::BlockError, u64),
    #[error("the validator set of epoch {epoch} is unusable: {why}")]
    ValidatorSet { epoch: u64, why: String },
    #[error(
        "the stored snapshot does not decode ({0}); a data directory written by an older version cannot be resumed: start from a fresh one (`vanna localnet --reset`)"
    )]
    Snapshot(String),
}

/// Whether this validator should vote for a proposal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Valid,
    Invalid(String),
    /// The parent's state is not known yet (its chain has not arrived):
    /// ask again when it has.
    Unknown,
}

/// What goes into a proposal besides its transactions.
#[derive(Debug, Default)]
pub struct ProposalInputs {
    pub transactions: Vec<Vec<u8>>,
    pub oracle_reports: Vec<Vec<u8>>,
    pub evidence: Vec<wire::Evidence>,
    /// The certificate that certified the parent (none for genesis).
    pub parent_certificate: Option<Certificate<Bls>>,
}

/// A proposal's header fields and payload, as consensus takes them.
#[derive(Debug)]
pub struct Proposal {
    pub block_time_ms: u64,
    pub state_root: Root,
    pub transactions_root: Root,
    pub payload: Vec<u8>,
}

/// A finalized block executed.
#[derive(Debug)]
pub struct Executed {
    pub output: BlockOutput,
    /// Set when this block ended an epoch: the next epoch's validators.
    pub next_epoch: Option<(Epoch, Arc<ValidatorSet<Bls>>)>,
}

/// The chain's identity as consensus and the runtime see it.
#[derive(Debug, Clone)]
pub struct ChainInfo {
    pub chain_id: String,
    pub consensus: ChainId,
    pub epoch_blocks: u64,
}

pub struct App {
    info: ChainInfo,
    state: State,
    /// Header of the last executed block (the genesis header at first).
    executed: Header,
    /// The state root after it.
    root: Root,
    pending: BTreeMap<BlockHash, (Header, Vec<u8>)>,
    /// Roots after pending blocks, worked out speculatively.
    roots: BTreeMap<BlockHash, Root>,
    /// States after the pending blocks worked out last: what a proposal on
    /// one selects transactions against, and what its finalization adopts.
    speculated: BTreeMap<BlockHash, Speculated>,
    /// Validator sets by epoch: the current one and the one before it (a
    /// block's parent certificate and late evidence may come from it).
    sets: BTreeMap<Epoch, Arc<ValidatorSet<Bls>>>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "App(height {}, epoch {})", self.executed.height.0, self.executed.epoch.0)
    }
}

/// The consensus validator set of the staking ledger's current active set.
pub fn validator_set(state: &State) -> Result<ValidatorSet<Bls>, String> {
    let entries = state
        .staking
        .active
        .iter()
        .map(|member| {
            let public_key = BlsPublicKey::from_bytes(&member.consensus_key).map_err(|error| error.to_string())?;
            Ok(ValidatorEntry { public_key, operator: member.operator.as_bytes().to_vec(), power: member.power })
        })
        .collect::<Result<Vec<_>, String>>()?;
    ValidatorSet::new(entries).map_err(|error| error.to_string())
}

/// The genesis header every node derives from the same genesis state.
pub fn genesis_header(state: &mut State) -> Header {
    Header::genesis(Epoch(0), state.time_ms, state.state_root())
}

impl App {
    /// An application at `executed` (the genesis header, or the last block
    /// restored), whose state is `state`.
    pub fn new(info: ChainInfo, mut state: State, executed: Header) -> Result<App, AppError> {
        let root = state.state_root();
        let epoch = Epoch(state.staking.epoch);
        let set = validator_set(&state).map_err(|why| AppError::ValidatorSet { epoch: epoch.0, why })?;
        let mut sets = BTreeMap::new();
        sets.insert(epoch, Arc::new(set));
        Ok(App {
            info,
            state,
            executed,
            root,
            pending: BTreeMap::new(),
            roots: BTreeMap::new(),
            speculated: BTreeMap::new(),
            sets,
        })
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// A snapshot of what a restart needs: the state and the previous
    /// epoch's validator set (the current one is the state's active set).
    pub fn snapshot(&self) -> Vec<u8> {
        let (epoch, _) = self.epoch();
        let previous = self.sets.range(..epoch).next_back();
        wire::NodeSnapshot {
            state: self.state.snapshot(),
            previous_epoch: previous.map_or(0, |(epoch, _)| epoch.0),
            previous_validators: previous.map_or_else(Vec::new, |(_, set)| {
                set.entries()
                    .iter()
                    .map(|entry| wire::SetMember {
                        public_key: entry.public_key.to_bytes().to_vec(),
                        operator: entry.operator.clone(),
                        power: entry.power,
                    })
                    .collect()
            }),
        }
        .encode_to_vec()
    }

    /// The application restored from `snapshot` (as [`App::snapshot`] wrote
    /// it) at `executed`.
    pub fn from_snapshot(info: ChainInfo, snapshot: &[u8], executed: Header) -> Result<App, AppError> {
        let restore = |why: String| AppError::Snapshot(why);
        let decoded = wire::NodeSnapshot::decode(snapshot).map_err(|error| restore(error.to_string()))?;
        let state = State::from_snapshot(&decoded.state).map_err(|error| restore(error.to_string()))?;
        let mut app = App::new(info, state, executed)?;
        if !decoded.previous_validators.is_empty() {
            let entries = decoded
                .previous_validators
                .into_iter()
                .map(|member| {
                    let public_key =
                        BlsPublicKey::from_bytes(&member.public_key).map_err(|e| restore(e.to_string()))?;
                    Ok(ValidatorEntry { public_key, operator: member.operator, power: member.power })
                })
                .collect::<Result<Vec<_>, AppError>>()?;
            let set = ValidatorSet::new(entries).map_err(|error| restore(error.to_string()))?;
            app.sets.insert(Epoch(decoded.previous_epoch), Arc::new(set));
        }
        Ok(app)
    }

    pub fn info(&self) -> &ChainInfo {
        &self.info
    }

    pub fn executed(&self) -> &Header {
        &self.executed
    }

    pub fn root(&self) -> Root {
        self.root
    }

    /// The current epoch (of the next block to execute) and its validators.
    pub fn epoch(&self) -> (Epoch, Arc<ValidatorSet<Bls>>) {
        let (epoch, set) = self.sets.last_key_value().expect("the current epoch's set is always known");
        (*epoch, set.clone())
    }

    /// The last height of `epoch`.
    pub fn last_height(&self, epoch: Epoch) -> u64 {
        (epoch.0 + 1) * self.info.epoch_blocks.max(1)
    }

    fn set_of(&self, epoch: Epoch) -> Option<&Arc<ValidatorSet<Bls>>> {
        self.sets.get(&epoch)
    }

    /// Keeps a block this node proposed or found valid, so that a child's
    /// root can be worked out before it is final.
    pub fn remember(&mut self, header: &Header, payload: &[u8]) {
        if header.height <= self.executed.height {
            return;
        }
        if self.pending.len() >= MAX_PENDING_BLOCKS {
            // The oldest are the likeliest to be dead forks.
            let lowest = self.pending.iter().min_by_key(|(_, (h, _))| h.height).map(|(hash, _)| *hash);
            if let Some(hash) = lowest {
                self.pending.remove(&hash);
                self.roots.remove(&hash);
            }
        }
        self.pending.insert(header.hash(), (header.clone(), payload.to_vec()));
    }

    /// The state root after the block `hash`: known if executed, else worked
    /// out from the pending chain down to the executed block (or the nearest
    /// block whose state is kept), if it is all here. `verified` names the
    /// transactions whose signatures this node checked already.
    pub fn root_after(&mut self, hash: BlockHash, verified: &dyn Fn(&[u8; 32]) -> bool) -> Option<Root> {
        if hash == self.executed.hash() {
            return Some(self.root);
        }
        if let Some(speculated) = self.speculated.get(&hash) {
            return Some(speculated.output.state_root);
        }
        if let Some(root) = self.roots.get(&hash) {
            return Some(*root);
        }
        let mut chain = Vec::new();
        let mut cursor = hash;
        while cursor != self.executed.hash() && !self.speculated.contains_key(&cursor) {
            let (header, payload) = self.pending.get(&cursor)?;
            if header.height <= self.executed.height {
                return None;
            }
            chain.push((header.clone(), payload.clone()));
            cursor = header.parent;
        }
        chain.reverse();
        let (mut state, mut parent_root) = match self.speculated.get(&cursor) {
            Some(base) => (base.state.clone(), base.output.state_root),
            None => (self.state.clone(), self.root),
        };
        let mut last = None;
        for (header, payload) in chain {
            if header.state_root != parent_root {
                return None;
            }
            let payload = Payload::decode(&payload).ok()?;
            let context = self.context(&header, &payload).ok()?;
            let output = apply_block_with(&mut state, &context, &payload.transactions, verified).ok()?;
            parent_root = output.state_root;
            self.roots.insert(header.hash(), parent_root);
            last = Some((header.height.0, output));
        }
        let (height, output) = last?;
        if self.speculated.len() >= MAX_SPECULATED {
            // The lowest are the likeliest to be final soon or dead forks.
            let lowest = self.speculated.iter().min_by_key(|(_, kept)| kept.height).map(|(hash, _)| *hash);
            if let Some(lowest) = lowest {
                self.speculated.remove(&lowest);
            }
        }
        self.speculated.insert(hash, Speculated { height, state, output });
        Some(parent_root)
    }

    /// The state after block `hash`: the executed state, or the state after
    /// a pending block on it (worked out as `root_after` does).
    pub fn state_after(&mut self, hash: BlockHash, verified: &dyn Fn(&[u8; 32]) -> bool) -> Option<&State> {
        if hash == self.executed.hash() {
            return Some(&self.state);
        }
        if !self.speculated.contains_key(&hash) {
            // Only the root may be kept: work the state out again.
            self.roots.remove(&hash);
            self.root_after(hash, verified)?;
        }
        self.speculated.get(&hash).map(|speculated| &speculated.state)
    }

    /// The runtime's context of a block: its height and time, who signed
    /// its parent (from the parent certificate), its evidence and reports.
    fn context(&self, header: &Header, payload: &Payload) -> Result<BlockContext, String> {
        let signers = if payload.parent_certificate.is_empty() {
            None
        } else {
            let certificate = decode_certificate(&payload.parent_certificate).map_err(|e| e.to_string())?;
            let set = self.set_of(certificate.vote.epoch).ok_or_else(|| {
                format!("no validator set for the parent certificate's epoch {}", certificate.vote.epoch.0)
            })?;
            let signers = certificate.signers.signers(set.len()).map_err(|e| e.to_string())?;
            Some(signers.iter().filter_map(|index| set.get(*index).map(|entry| entry.public_key.to_bytes())).collect())
        };
        let proposer =
            self.set_of(header.epoch).and_then(|set| set.get(header.proposer)).map(|entry| entry.operator.clone());
        let reporter = proposer.and_then(|bytes| Address::from_slice(&bytes).ok());
        let mut evidence = Vec::new();
        for record in &payload.evidence {
            let decoded = decode_evidence(record).map_err(|e| e.to_string())?;
            let set = self
                .set_of(evidence_epoch(&decoded))
                .ok_or_else(|| "evidence from an epoch whose validators are forgotten".to_string())?;
            let offence = decoded
                .verify(self.info.consensus, evidence_epoch(&decoded), set)
                .map_err(|e| format!("evidence does not verify: {e}"))?;
            let key = set.get(decoded.offender).map(|entry| entry.public_key.to_bytes()).ok_or("unknown offender")?;
            let height = match decoded.first.message {
                vanna_consensus::Signable::Vote(vanna_consensus::Vote {
                    kind:
                        vanna_consensus::VoteKind::Notarize { height, .. }
                        | vanna_consensus::VoteKind::Finalize { height, .. },
                    ..
                }) => height.0,
                _ => header.height.0.saturating_sub(1),
            };
            evidence.push(ledger_record(offence, key, height, reporter));
        }
        Ok(BlockContext {
            height: header.height.0,
            time_ms: header.block_time_ms,
            signers,
            evidence,
            oracle_reports: payload.oracle_reports.clone(),
        })
    }

    /// Builds this validator's proposal for `view` on `parent`, if the
    /// parent's root is known.
    pub fn build(
        &mut self,
        parent: &Header,
        view: View,
        epoch: Epoch,
        now_ms: u64,
        secret: &BlsSecretKey,
        inputs: ProposalInputs,
        verified: &dyn Fn(&[u8; 32]) -> bool,
    ) -> Option<Proposal> {
        let state_root = self.root_after(parent.hash(), verified)?;
        let mut payload = Payload {
            order_seed: order_seed(secret, self.info.consensus, epoch, view),
            transactions: Vec::new(),
            oracle_reports: inputs.oracle_reports,
            evidence: inputs.evidence,
            parent_certificate: inputs.parent_certificate.as_ref().map(encode_certificate).unwrap_or_default(),
        };
        // Trim the transactions to the payload limit, then put them in canonical order.
        let mut budget = MAX_PAYLOAD_BYTES.saturating_sub(payload.encode().len() + 1024);
        let mut transactions = Vec::new();
        for transaction in inputs.transactions {
            let cost = transaction.len() + 8;
            if cost > budget {
                break;
            }
            budget -= cost;
            transactions.push(transaction);
        }
        let seed = payload.seed();
        let order = canonical_order(&transactions, &seed);
        payload.transactions = order.into_iter().map(|index| transactions[index].clone()).collect();
        let transactions_root = transactions_root(&payload.transactions);
        // Block time never goes backwards along the chain.
        let block_time_ms = now_ms.max(parent.block_time_ms);
        Some(Proposal { block_time_ms, state_root, transactions_root, payload: payload.encode() })
    }

    /// Everything this validator can check of a proposal without executing it.
    pub fn verify(
        &mut self,
        parent: &Header,
        header: &Header,
        payload_bytes: &[u8],
        verified: &dyn Fn(&[u8; 32]) -> bool,
    ) -> Verdict {
        let payload = match Payload::decode(payload_bytes) {
            Ok(payload) => payload,
            Err(error) => return Verdict::Invalid(error.to_string()),
        };
        let Some(set) = self.set_of(header.epoch).cloned() else {
            return Verdict::Invalid(format!("no validator set for epoch {}", header.epoch.0));
        };
        let Some(proposer) = set.get(header.proposer) else {
            return Verdict::Invalid("proposer is not in the validator set".into());
        };
        if !seed_is_valid(&payload.order_seed, &proposer.public_key, self.info.consensus, header.epoch, header.view) {
            return Verdict::Invalid("the order seed is not the proposer's for this view".into());
        }
        if let Err(error) = check_canonical(&payload.transactions, &payload.seed()) {
            return Verdict::Invalid(error.to_string());
        }
        if transactions_root(&payload.transactions) != header.transactions_root {
            return Verdict::Invalid("transactions root does not match the transactions".into());
        }
        if let Err(why) = self.check_parent_certificate(parent, &payload) {
            return Verdict::Invalid(why);
        }
        if let Err(why) = self.check_reports(&payload) {
            return Verdict::Invalid(why);
        }
        // Evidence is checked by building the context: it must all verify.
        if let Err(why) = self.context(header, &payload) {
            return Verdict::Invalid(why);
        }
        match self.root_after(parent.hash(), verified) {
            None => Verdict::Unknown,
            Some(root) if root != header.state_root => Verdict::Invalid(format!(
                "state root {} is not the root after the parent, {}",
                hex::encode(header.state_root),
                hex::encode(root)
            )),
            Some(_) => {
                self.remember(header, payload_bytes);
                Verdict::Valid
            }
        }
    }

    fn check_parent_certificate(&self, parent: &Header, payload: &Payload) -> Result<(), String> {
        if parent.height.0 == 0 {
            return if payload.parent_certificate.is_empty() {
                Ok(())
            } else {
                Err("the first block has no parent certificate".into())
            };
        }
        let certificate =
            decode_certificate(&payload.parent_certificate).map_err(|e| format!("parent certificate: {e}"))?;
        let subject = match certificate.vote.kind {
            vanna_consensus::VoteKind::Notarize { block, .. } | vanna_consensus::VoteKind::Finalize { block, .. } => {
                block
            }
            vanna_consensus::VoteKind::Nullify => return Err("the parent certificate certifies no block".into()),
        };
        if subject != parent.hash() {
            return Err("the parent certificate is for another block".into());
        }
        let epoch = certificate.vote.epoch;
        let set = self.set_of(epoch).ok_or_else(|| format!("no validator set for epoch {}", epoch.0))?;
        certificate.verify(self.info.consensus, epoch, set).map_err(|e| format!("parent certificate: {e}"))
    }

    fn check_reports(&self, payload: &Payload) -> Result<(), String> {
        let limits = self.state.oracle.params().limits.clone();
        let mut reporters = std::collections::BTreeSet::new();
        for (index, bytes) in payload.oracle_reports.iter().enumerate() {
            let report = vanna_oracle::verify_report(&self.info.chain_id, bytes, &limits)
                .map_err(|error| format!("oracle report {index}: {error}"))?;
            let reporter = Address(*report.reporter.as_bytes());
            if !self.state.staking.is_active(&reporter) {
                return Err(format!("oracle report {index} is from {reporter}, not an active validator"));
            }
            if !reporters.insert(reporter) {
                return Err(format!("two oracle reports from {reporter}"));
            }
        }
        Ok(())
    }

    /// Executes the next finalized block. `verified(hash)` names the
    /// transactions whose signatures this node checked at admission.
    pub fn execute(
        &mut self,
        header: &Header,
        payload_bytes: &[u8],
        verified: &dyn Fn(&[u8; 32]) -> bool,
    ) -> Result<Executed, AppError> {
        let height = header.height.0;
        if height != self.executed.height.0 + 1 || header.parent != self.executed.hash() {
            return Err(AppError::OutOfOrder { executed: self.executed.height.0, got: height });
        }
        if header.state_root != self.root {
            return Err(AppError::Diverged {
                height: self.executed.height.0,
                ours: hex::encode(self.root),
                theirs: hex::encode(header.state_root),
            });
        }
        let bad = |why: String| AppError::BadBlock { height, why };
        let epoch_before = self.state.staking.epoch;
        let output = match self.speculated.remove(&header.hash()) {
            // Worked out already from this very block: the same result.
            Some(speculated) => {
                self.state = speculated.state;
                speculated.output
            }
            None => {
                let payload = Payload::decode(payload_bytes).map_err(|e| bad(e.to_string()))?;
                let context = self.context(header, &payload).map_err(bad)?;
                apply_block_with(&mut self.state, &context, &payload.transactions, verified)
                    .map_err(|error| AppError::Runtime(error, height))?
            }
        };
        self.root = output.state_root;
        self.executed = header.clone();
        self.pending.retain(|_, (pending, _)| pending.height > header.height);
        let live: std::collections::BTreeSet<BlockHash> = self.pending.keys().copied().collect();
        self.roots.retain(|hash, _| live.contains(hash));
        self.speculated.retain(|hash, _| live.contains(hash));
        let mut next_epoch = None;
        if self.state.staking.epoch != epoch_before {
            let epoch = Epoch(self.state.staking.epoch);
            let set =
                Arc::new(validator_set(&self.state).map_err(|why| AppError::ValidatorSet { epoch: epoch.0, why })?);
            self.sets.insert(epoch, set.clone());
            while self.sets.len() > 2 {
                self.sets.pop_first();
            }
            next_epoch = Some((epoch, set));
        }
        Ok(Executed { output, next_epoch })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vanna_consensus::{Height, ValidatorIndex};
    use vanna_proto::v1::Side;
    use vanna_runtime::devnet::{add_validators, consensus_secret, demo_genesis};
    use vanna_runtime::tx::{limit_order, place};

    /// Two applications from one genesis, a block of trades on it, and the
    /// block's header with the root after its parent.
    fn two_apps_and_a_block() -> (App, App, Header, Vec<u8>) {
        let (mut genesis, signers) = demo_genesis(&[("alice", 1_000_000), ("bob", 1_000_000)]);
        add_validators(&mut genesis, &[("val-a", 10_000, 0, "0.1")]);
        let info = ChainInfo {
            chain_id: genesis.chain_id.clone(),
            consensus: crate::payload::consensus_chain(&genesis.chain_id),
            epoch_blocks: 100,
        };
        let app = |genesis: &vanna_runtime::Genesis| {
            let mut state = genesis.build().unwrap();
            let header = genesis_header(&mut state);
            App::new(info.clone(), state, header).unwrap()
        };
        let (mut first, second) = (app(&genesis), app(&genesis));
        let parent = first.executed().clone();
        let transactions = signers
            .iter()
            .filter(|(name, _)| name == "alice" || name == "bob")
            .enumerate()
            .map(|(index, (_, signer))| {
                let side = if index == 0 { Side::Buy } else { Side::Sell };
                signer.sign(&info.chain_id, 0, vec![place(limit_order("BTC-25DEC26-100000-C", side, "5000", "0.1"))])
            })
            .collect();
        let inputs = ProposalInputs { transactions, ..ProposalInputs::default() };
        let secret = consensus_secret("val-a");
        let block_time_ms = parent.block_time_ms + 1_000;
        let proposal =
            first.build(&parent, View(1), Epoch(0), block_time_ms, &secret, inputs, &|_| false).expect("a proposal");
        let header = Header {
            parent: parent.hash(),
            height: Height(1),
            epoch: Epoch(0),
            view: View(1),
            proposer: ValidatorIndex(0),
            block_time_ms: proposal.block_time_ms,
            state_root: proposal.state_root,
            transactions_root: proposal.transactions_root,
            payload_hash: Header::payload_hash_of(&proposal.payload),
        };
        (first, second, header, proposal.payload)
    }

    #[test]
    fn a_final_block_worked_out_speculatively_ends_in_the_state_executing_it_gives() {
        let (mut speculating, mut executing, header, payload) = two_apps_and_a_block();
        speculating.remember(&header, &payload);
        let speculative_root = speculating.root_after(header.hash(), &|_| false).expect("the chain is known");
        assert!(speculating.state_after(header.hash(), &|_| false).is_some());

        let adopted = speculating.execute(&header, &payload, &|_| false).unwrap();
        let executed = executing.execute(&header, &payload, &|_| false).unwrap();
        assert_eq!(adopted.output.state_root, speculative_root);
        assert_eq!(adopted.output.state_root, executed.output.state_root);
        assert_eq!(adopted.output.receipts, executed.output.receipts);
        assert_eq!(adopted.output.events, executed.output.events);
        assert_eq!(speculating.state().snapshot(), executing.state().snapshot());
        // Both filled the trade.
        assert!(adopted.output.events.iter().any(|event| matches!(event, vanna_runtime::events::Event::Filled(_))));
    }
}
