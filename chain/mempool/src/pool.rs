//! The pending transactions, their indexes and the record of verified
//! signatures. See the crate documentation for the rules.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use vanna_types::limits::MAX_TRANSACTIONS_PER_BLOCK;
use vanna_types::tx::transaction_hash;
use vanna_types::{Address, Envelope};

use crate::error::MempoolError;
use crate::recent::Recent;

/// A transaction's id: SHA-256 of its signed bytes.
pub type TxHash = [u8; 32];

/// The pool's bounds. Every one of them is a hard limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Pending transactions, all accounts together.
    pub max_transactions: usize,
    /// Their signed bytes, all accounts together.
    pub max_bytes: usize,
    /// Pending transactions of one account.
    pub max_per_account: usize,
    /// Only nonces from an account's committed nonce to `nonce_window - 1`
    /// past it are taken: a gap waits, but not forever ahead.
    pub nonce_window: u64,
    /// How long a transaction may stay pending, in milliseconds.
    pub ttl_ms: u64,
    /// Hashes remembered as verified after they leave the pool (included,
    /// evicted, expired) or that the node verified for a block.
    pub verified_capacity: usize,
    /// Hashes remembered as verified though the pool refused them, so a
    /// gossiped copy is not verified again. Kept apart from the above so
    /// that replayed or refused transactions cannot push out the hashes of
    /// blocks still to execute.
    pub refused_capacity: usize,
}

impl Default for Config {
    /// 100,000 transactions (roughly 35 MiB with their indexes for typical
    /// orders of 200 bytes; at most 256 MiB of signed bytes), 64 per account
    /// (so no account fills a block of 20,000), a 10-minute life, and
    /// verified hashes for four full blocks after they leave.
    fn default() -> Self {
        Config {
            max_transactions: 100_000,
            max_bytes: 256 << 20,
            max_per_account: 64,
            nonce_window: 256,
            ttl_ms: 10 * 60 * 1_000,
            verified_capacity: 4 * MAX_TRANSACTIONS_PER_BLOCK,
            refused_capacity: 65_536,
        }
    }
}

/// What the node's committed state says of a sender at admission.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccountView {
    /// No such account: it holds nothing and cannot send.
    Missing,
    /// The account exists and `nonce` is the next one it must use.
    Exists { nonce: u64 },
}

impl From<Option<u64>> for AccountView {
    fn from(committed: Option<u64>) -> Self {
        committed.map_or(AccountView::Missing, |nonce| AccountView::Exists { nonce })
    }
}

/// A transaction the pool took.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admitted {
    /// Whether it extends its account's ready run (selectable now) rather
    /// than waiting for a lower nonce.
    pub ready: bool,
    /// Transactions dropped to make room for it, or found stale under the
    /// newer committed nonce it came with.
    pub dropped: Vec<TxHash>,
}

/// A transaction chosen for a proposal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selected {
    pub hash: TxHash,
    pub sender: Address,
    pub nonce: u64,
    pub bytes: Vec<u8>,
}

/// What [`Mempool::on_finalized`] removed, for the node's logs and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    pub included: usize,
    /// Nonce below the committed one, or the account is gone.
    pub stale: usize,
    pub expired: usize,
}

#[derive(Debug)]
struct Entry {
    hash: TxHash,
    bytes: Vec<u8>,
    /// Arrival order, unique: the pool's tie-breaker and expiry order.
    seq: u64,
    arrived_ms: u64,
}

/// An account's place in the eviction order, by its highest-nonce entry
/// (dropping the highest nonce never breaks the run below it): waiting
/// before ready, then the account holding the most, then the oldest entry.
type EvictionKey = (bool, Reverse<usize>, u64, Address);

#[derive(Debug)]
struct Account {
    /// The committed nonce as last told; every entry's nonce is at least this.
    base: u64,
    entries: BTreeMap<u64, Entry>,
    /// Length of the contiguous run of entries from `base`: the ready ones.
    ready: u64,
    /// Its key in `Mempool::eviction`, while it has entries.
    eviction: Option<EvictionKey>,
}

impl Account {
    fn new(base: u64) -> Self {
        Account { base, entries: BTreeMap::new(), ready: 0, eviction: None }
    }

    /// Whether `nonce` would extend the ready run.
    fn extends_run(&self, nonce: u64) -> bool {
        nonce.checked_sub(self.base) == Some(self.ready)
    }

    fn recount_ready(&mut self) {
        self.ready = run_length(&self.entries, self.base);
    }
}

/// How many nonces from `from` on are present without a gap.
fn run_length(entries: &BTreeMap<u64, Entry>, from: u64) -> u64 {
    let mut expected = from;
    let mut length = 0;
    for &nonce in entries.range(from..).map(|(nonce, _)| nonce) {
        if nonce != expected {
            break;
        }
        length += 1;
        expected = expected.wrapping_add(1);
    }
    length
}

/// An entry taken out, with where it was, so that it can be put back.
#[derive(Debug)]
struct Taken {
    sender: Address,
    nonce: u64,
    entry: Entry,
}

/// Why an admission found no room (the figures are taken after rollback).
enum NoRoom {
    Account,
    Pool,
}

/// The pending transactions of every account; see the crate documentation.
#[derive(Debug)]
pub struct Mempool {
    config: Config,
    accounts: BTreeMap<Address, Account>,
    by_hash: HashMap<TxHash, (Address, u64)>,
    /// Every entry by arrival, oldest first: expiry walks it from the front.
    arrivals: BTreeMap<u64, (Address, u64)>,
    /// One key per account with entries; the first is the next victim.
    eviction: BTreeSet<EvictionKey>,
    count: usize,
    bytes: usize,
    next_seq: u64,
    /// The latest time seen; an earlier `now_ms` is taken as this one.
    now_ms: u64,
    verified: Recent,
    refused: Recent,
}

impl Mempool {
    pub fn new(config: Config) -> Self {
        Mempool {
            verified: Recent::new(config.verified_capacity),
            refused: Recent::new(config.refused_capacity),
            config,
            accounts: BTreeMap::new(),
            by_hash: HashMap::new(),
            arrivals: BTreeMap::new(),
            eviction: BTreeSet::new(),
            count: 0,
            bytes: 0,
            next_seq: 0,
            now_ms: 0,
        }
    }

    /// Pending transactions.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Signed bytes of the pending transactions.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether the transaction is pending.
    pub fn contains(&self, hash: &TxHash) -> bool {
        self.by_hash.contains_key(hash)
    }

    /// Whether this node verified the transaction's signature: it is
    /// pending, or it left the pool or was refused recently (within the
    /// configured capacities), or [`Mempool::note_verified`] recorded it.
    /// For `apply_block_with`, and to skip verifying a gossiped copy again.
    pub fn is_verified(&self, hash: &TxHash) -> bool {
        self.contains(hash) || self.verified.contains(hash) || self.refused.contains(hash)
    }

    /// Records a transaction the node verified without offering it to the
    /// pool (for example one of a proposal it received), so that executing
    /// its block does not verify it again.
    pub fn note_verified(&mut self, hash: &TxHash) {
        self.verified.insert(*hash);
    }

    /// Offers a transaction whose envelope `open_envelope` accepted (so its
    /// signature verified), with its sender's committed state. Either it is
    /// admitted, possibly dropping lower-priority entries, or it is refused
    /// and the pending set is left exactly as it was.
    pub fn insert(
        &mut self,
        bytes: Vec<u8>,
        envelope: Envelope,
        committed: AccountView,
        now_ms: u64,
    ) -> Result<Admitted, MempoolError> {
        let hash = transaction_hash(&bytes);
        if hash != envelope.hash {
            return Err(MempoolError::EnvelopeMismatch { envelope: envelope.hash, bytes: hash });
        }
        if self.contains(&hash) {
            return Err(MempoolError::Duplicate { hash });
        }
        self.now_ms = self.now_ms.max(now_ms);
        let admitted = self.admit(bytes, envelope, committed);
        if admitted.is_err() {
            self.refused.insert(hash);
        }
        admitted
    }

    fn admit(&mut self, bytes: Vec<u8>, envelope: Envelope, view: AccountView) -> Result<Admitted, MempoolError> {
        let Envelope { hash, sender, nonce, .. } = envelope;
        let AccountView::Exists { nonce: committed } = view else {
            return Err(MempoolError::UnknownSender(sender));
        };
        let stored_base = self.accounts.get(&sender).map(|account| account.base);
        // Committed nonces only grow: an older view than the pool's is outdated.
        let base = stored_base.map_or(committed, |stored| stored.max(committed));
        if nonce < base {
            return Err(MempoolError::StaleNonce { account: sender, expected: base, got: nonce });
        }
        let window = self.config.nonce_window;
        if nonce - base >= window {
            return Err(MempoolError::NonceTooFarAhead { account: sender, expected: base, got: nonce, window });
        }
        if let Some(pending) = self.accounts.get(&sender).and_then(|account| account.entries.get(&nonce)) {
            return Err(MempoolError::NonceTaken { account: sender, nonce, pending: pending.hash });
        }

        // From here on every change is logged so that a refusal can undo it.
        let mut taken = Vec::new();
        self.accounts.entry(sender).or_insert_with(|| Account::new(base));
        if stored_base.is_some_and(|stored| stored < base) {
            self.raise_base(sender, base, &mut taken);
        }
        if let Err(no_room) = self.make_room(sender, nonce, bytes.len(), &mut taken) {
            self.rollback(sender, stored_base, taken);
            return Err(match no_room {
                NoRoom::Account => MempoolError::AccountFull { account: sender, max: self.config.max_per_account },
                NoRoom::Pool => MempoolError::PoolFull {
                    count: self.count,
                    max_count: self.config.max_transactions,
                    bytes: self.bytes,
                    max_bytes: self.config.max_bytes,
                },
            });
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let ready = self.accounts[&sender].extends_run(nonce);
        self.put(sender, nonce, Entry { hash, bytes, seq, arrived_ms: self.now_ms });
        Ok(Admitted { ready, dropped: self.retire(taken) })
    }

    /// Drops entries until the account and the pool can take one more
    /// transaction of `size` bytes, or says why it cannot.
    fn make_room(&mut self, sender: Address, nonce: u64, size: usize, taken: &mut Vec<Taken>) -> Result<(), NoRoom> {
        let account = &self.accounts[&sender];
        if account.entries.len() >= self.config.max_per_account {
            // A full account makes room for a lower nonce by dropping its
            // highest, which is waiting: the lower one is needed first.
            match account.entries.last_key_value() {
                Some((&highest, _)) if nonce < highest => taken.push(self.take(sender, highest)),
                _ => return Err(NoRoom::Account),
            }
        }
        if size > self.config.max_bytes {
            return Err(NoRoom::Pool);
        }
        while self.count >= self.config.max_transactions || self.bytes + size > self.config.max_bytes {
            let account = &self.accounts[&sender];
            let incoming = (account.extends_run(nonce), Reverse(account.entries.len() + 1));
            let Some(&(victim_ready, victim_count, _, victim)) = self.eviction.first() else {
                return Err(NoRoom::Pool);
            };
            // Only strictly lower priority gives way, so an account never
            // grows past others by pushing them out.
            if (victim_ready, victim_count) >= incoming {
                return Err(NoRoom::Pool);
            }
            let highest = *self.accounts[&victim].entries.keys().next_back().expect("indexed accounts have entries");
            taken.push(self.take(victim, highest));
        }
        Ok(())
    }

    /// Puts back what an admission took, newest first, and the account's
    /// base as it was.
    fn rollback(&mut self, sender: Address, stored_base: Option<u64>, taken: Vec<Taken>) {
        for Taken { sender, nonce, entry } in taken.into_iter().rev() {
            self.put(sender, nonce, entry);
        }
        match stored_base {
            None => {
                let account = self.accounts.remove(&sender);
                debug_assert!(account.is_some_and(|account| account.entries.is_empty()));
            }
            Some(base) => {
                let account = self.accounts.get_mut(&sender).expect("the sender's account was kept");
                account.base = base;
                account.recount_ready();
                self.reindex(sender);
            }
        }
    }

    /// The proposer's choice: ready runs (each account's entries from its
    /// committed nonce on, without a gap), one transaction per account per
    /// round, accounts in the order their first ready entry arrived, until
    /// `max_txs` (never more than `MAX_TRANSACTIONS_PER_BLOCK`) or
    /// `max_bytes` of signed bytes. An account whose next transaction does
    /// not fit is passed over from then on, since its later nonces cannot
    /// go before it. Accounts for which `committed` says `None` are skipped.
    /// The node then sorts the choice into the canonical order.
    pub fn select(
        &self,
        committed: impl Fn(&Address) -> Option<u64>,
        max_txs: usize,
        max_bytes: usize,
    ) -> Vec<Selected> {
        let max_txs = max_txs.min(MAX_TRANSACTIONS_PER_BLOCK);
        let mut runs: Vec<(u64, &Address, &Account, u64)> = self
            .accounts
            .iter()
            .filter_map(|(address, account)| {
                let next = committed(address)?;
                account.entries.get(&next).map(|first| (first.seq, address, account, next))
            })
            .collect();
        runs.sort_unstable_by_key(|&(seq, ..)| seq);
        let mut turns = VecDeque::from(runs);
        let mut chosen = Vec::new();
        let mut bytes = 0;
        while chosen.len() < max_txs
            && let Some((seq, address, account, nonce)) = turns.pop_front()
        {
            let Some(entry) = account.entries.get(&nonce) else { continue };
            if entry.bytes.len() > max_bytes - bytes {
                continue;
            }
            bytes += entry.bytes.len();
            chosen.push(Selected { hash: entry.hash, sender: *address, nonce, bytes: entry.bytes.clone() });
            if let Some(next) = nonce.checked_add(1) {
                turns.push_back((seq, address, account, next));
            }
        }
        chosen
    }

    /// After each finalized block, with the committed nonces after executing
    /// it: removes the block's transactions (`included`), every entry whose
    /// nonce is below its account's committed nonce (or whose account is
    /// gone), and those older than the time-to-live; entries whose gap the
    /// block filled become ready. Whatever leaves is remembered as verified.
    pub fn on_finalized(
        &mut self,
        committed: impl Fn(&Address) -> Option<u64>,
        included: &[TxHash],
        now_ms: u64,
    ) -> Pruned {
        self.now_ms = self.now_ms.max(now_ms);
        let mut left = Vec::new();
        for hash in included {
            if let Some(&(sender, nonce)) = self.by_hash.get(hash) {
                left.push(self.take(sender, nonce));
            }
        }
        let included = left.len();
        let senders: Vec<Address> = self.accounts.keys().copied().collect();
        for sender in senders {
            match committed(&sender) {
                None => {
                    let nonces: Vec<u64> = self.accounts[&sender].entries.keys().copied().collect();
                    left.extend(nonces.into_iter().map(|nonce| self.take(sender, nonce)));
                }
                Some(nonce) if nonce > self.accounts[&sender].base => self.raise_base(sender, nonce, &mut left),
                Some(_) => {}
            }
        }
        let stale = left.len() - included;
        while let Some((_, &(sender, nonce))) = self.arrivals.first_key_value() {
            let entry = &self.accounts[&sender].entries[&nonce];
            if entry.arrived_ms.saturating_add(self.config.ttl_ms) > self.now_ms {
                break;
            }
            left.push(self.take(sender, nonce));
        }
        let expired = left.len() - included - stale;
        self.retire(left);
        Pruned { included, stale, expired }
    }

    /// Sets an account's committed nonce, dropping the entries below it.
    fn raise_base(&mut self, sender: Address, base: u64, taken: &mut Vec<Taken>) {
        let stale: Vec<u64> = self.accounts[&sender].entries.range(..base).map(|(&nonce, _)| nonce).collect();
        taken.extend(stale.into_iter().map(|nonce| self.take(sender, nonce)));
        let account = self.accounts.get_mut(&sender).expect("raising a known account");
        account.base = base;
        account.recount_ready();
        self.reindex(sender);
    }

    /// Entries that left for good: remembered as verified, their emptied
    /// accounts forgotten.
    fn retire(&mut self, left: Vec<Taken>) -> Vec<TxHash> {
        left.into_iter()
            .map(|Taken { sender, entry, .. }| {
                self.verified.insert(entry.hash);
                if self.accounts.get(&sender).is_some_and(|account| account.entries.is_empty()) {
                    self.accounts.remove(&sender);
                }
                entry.hash
            })
            .collect()
    }

    /// Adds an entry to its (existing) account and every index.
    fn put(&mut self, sender: Address, nonce: u64, entry: Entry) {
        let account = self.accounts.get_mut(&sender).expect("entries go into a known account");
        self.by_hash.insert(entry.hash, (sender, nonce));
        self.arrivals.insert(entry.seq, (sender, nonce));
        self.count += 1;
        self.bytes += entry.bytes.len();
        let extends = account.extends_run(nonce);
        account.entries.insert(nonce, entry);
        if extends {
            account.recount_ready();
        }
        self.reindex(sender);
    }

    /// Removes a present entry from its account and every index (the
    /// account stays, possibly empty, so that the entry can be put back).
    fn take(&mut self, sender: Address, nonce: u64) -> Taken {
        let account = self.accounts.get_mut(&sender).expect("taking from a known account");
        let entry = account.entries.remove(&nonce).expect("taking a present entry");
        if nonce - account.base < account.ready {
            account.ready = nonce - account.base;
        }
        self.by_hash.remove(&entry.hash);
        self.arrivals.remove(&entry.seq);
        self.count -= 1;
        self.bytes -= entry.bytes.len();
        self.reindex(sender);
        Taken { sender, nonce, entry }
    }

    fn reindex(&mut self, sender: Address) {
        let Some(account) = self.accounts.get_mut(&sender) else { return };
        if let Some(old) = account.eviction.take() {
            self.eviction.remove(&old);
        }
        if let Some((_, highest)) = account.entries.last_key_value() {
            let count = account.entries.len();
            let key = (count as u64 == account.ready, Reverse(count), highest.seq, sender);
            self.eviction.insert(key);
            account.eviction = Some(key);
        }
    }
}

#[cfg(test)]
impl Mempool {
    /// Every structural invariant, checked from scratch.
    pub(crate) fn check_invariants(&self) {
        let (mut count, mut bytes) = (0, 0);
        for (address, account) in &self.accounts {
            assert!(!account.entries.is_empty(), "no empty account is kept");
            assert!(account.entries.len() <= self.config.max_per_account);
            assert!(*account.entries.keys().next().unwrap() >= account.base, "no stale entry");
            assert!(account.entries.keys().next_back().unwrap() - account.base < self.config.nonce_window);
            assert_eq!(account.ready, run_length(&account.entries, account.base));
            for (&nonce, entry) in &account.entries {
                assert_eq!(self.by_hash.get(&entry.hash), Some(&(*address, nonce)));
                assert_eq!(self.arrivals.get(&entry.seq), Some(&(*address, nonce)));
                assert!(entry.arrived_ms <= self.now_ms);
                count += 1;
                bytes += entry.bytes.len();
            }
            assert!(self.eviction.contains(&account.eviction.unwrap()));
        }
        assert_eq!((count, bytes), (self.count, self.bytes));
        assert_eq!(self.by_hash.len(), count);
        assert_eq!(self.arrivals.len(), count);
        assert_eq!(self.eviction.len(), self.accounts.len());
        assert!(count <= self.config.max_transactions && bytes <= self.config.max_bytes);
    }

    /// The pending set as comparable data: (account, base, nonce, hash, arrival).
    pub(crate) fn snapshot(&self) -> Vec<(Address, u64, u64, TxHash, u64)> {
        self.accounts
            .iter()
            .flat_map(|(address, account)| {
                account.entries.iter().map(|(&nonce, entry)| (*address, account.base, nonce, entry.hash, entry.seq))
            })
            .collect()
    }

    /// Hashes of the entries in their account's ready run.
    pub(crate) fn ready_hashes(&self) -> BTreeSet<TxHash> {
        self.accounts
            .values()
            .flat_map(|account| account.entries.values().take(account.ready as usize).map(|entry| entry.hash))
            .collect()
    }

    /// When the oldest pending entry arrived.
    pub(crate) fn oldest_arrival_ms(&self) -> Option<u64> {
        let (_, (sender, nonce)) = self.arrivals.first_key_value()?;
        Some(self.accounts[sender].entries[nonce].arrived_ms)
    }

    /// Pending entries of one account, by nonce.
    pub(crate) fn nonces_of(&self, sender: &Address) -> Vec<u64> {
        self.accounts.get(sender).map_or(Vec::new(), |account| account.entries.keys().copied().collect())
    }
}
