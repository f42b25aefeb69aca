//! State snapshots: the whole state after a block as bytes, so that a node
//! restarts from its latest snapshot and replays only the blocks after it.
//!
//! Format, integers little-endian:
//!
//! | bytes | field |
//! | --- | --- |
//! | 8 | magic `VANNASNP` |
//! | 4 | format version ([`SNAPSHOT_FORMAT_VERSION`]) |
//! | 1 + n | chain id: its length, then its ASCII bytes |
//! | 8 | height |
//! | 8 | block time, ms |
//! | 32 | state root |
//! | 8 | body length |
//! | 32 | SHA-256 of the body |
//! | body | the state's serde form in MessagePack |
//!
//! The body holds everything that affects future execution and that nothing
//! else determines: accounts (balances, nonces, public keys as their 33
//! compressed bytes, exposures with locks), open orders, each book's resting
//! orders in priority order with their sequence numbers, markets with their
//! participants and holder sets, the staking ledger, the oracle with its
//! latest reports and index history, the fee pool, ids and counters, GTT
//! expiries, unsettled series, backstop offers, genesis margin and
//! liquidation settings, the insurance fund's handle and the accounts left
//! for the next block's re-check (`risk_dirty`). What only mirrors or derives
//! from that is rebuilt on load: the address and name indices, each
//! account's inline positions, open-order, client-id and offer sets, the
//! margin tables, the at-risk index (sound, so the same accounts are
//! liquidated: `an_index_rebuilt_from_state_makes_the_same_liquidations`)
//! and the commitment tree, whose root must equal the header's.
//!
//! MessagePack rather than a schema-less format such as postcard: the
//! decimal type's serde form is read back through `deserialize_any`, which
//! only a self-describing format supports. Encoding is deterministic (maps
//! are `BTreeMap`s, integers take their shortest form), so one state gives
//! one byte string.
//!
//! A snapshot that is too large, truncated, followed by trailing bytes,
//! damaged (checksum), of another format, or inconsistent (a handle that
//! names nothing, a root that does not match) is refused with a
//! [`SnapshotError`]; loading never panics on one. The checksum guards
//! against damage; the parts of a snapshot that the state root does not
//! commit to are trusted to come from a node that executed the chain.

use std::collections::BTreeMap;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use vanna_merkle::Hash;

use crate::genesis::{CHAIN_ID_MAX_LEN, chain_id_is_valid};
use crate::ids::{Address, OrderId};
use crate::state::State;

pub const SNAPSHOT_MAGIC: &[u8; 8] = b"VANNASNP";
// The chain id's length takes one byte.
const _: () = assert!(CHAIN_ID_MAX_LEN <= u8::MAX as usize);
pub const SNAPSHOT_FORMAT_VERSION: u32 = 1;
/// Largest snapshot loaded: about 3,000,000 accounts with positions (a
/// 100,000-account state with five positions each takes ~35 MB), and a
/// bound on the memory that loading one can take.
pub const MAX_SNAPSHOT_BYTES: usize = 1 << 30;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot of {size} bytes is larger than the limit of {max}")]
    TooLarge { size: usize, max: usize },
    #[error("snapshot is truncated: its {what} needs {needed} bytes, {available} are left")]
    Truncated { what: &'static str, needed: u64, available: usize },
    #[error("not a state snapshot (no VANNASNP magic)")]
    BadMagic,
    #[error("snapshot format version {found}; this runtime reads version {supported}")]
    UnsupportedVersion { found: u32, supported: u32 },
    #[error("snapshot header names no valid chain id")]
    BadChainId,
    #[error("{count} bytes follow the snapshot's {what}")]
    TrailingBytes { what: &'static str, count: usize },
    #[error("snapshot body does not match its checksum")]
    ChecksumMismatch,
    #[error("snapshot body does not decode: {0}")]
    Undecodable(String),
    #[error("snapshot header says {field} {header}, its state says {body}")]
    HeaderMismatch { field: &'static str, header: String, body: String },
    #[error("snapshot state is inconsistent: {0}")]
    Inconsistent(String),
    #[error("snapshot state root {computed} differs from its header's {header}")]
    RootMismatch { header: String, computed: String },
}

/// The header fields, as read.
struct Header {
    chain_id: String,
    height: u64,
    time_ms: u64,
    state_root: Hash,
    body_len: u64,
    body_hash: [u8; 32],
}

/// Reads the snapshot front to back, refusing to read past its end.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, what: &'static str, count: u64) -> Result<&'a [u8], SnapshotError> {
        let truncated = || SnapshotError::Truncated { what, needed: count, available: self.bytes.len() };
        let count = usize::try_from(count).map_err(|_| truncated())?;
        let (taken, rest) = self.bytes.split_at_checked(count).ok_or_else(truncated)?;
        self.bytes = rest;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], SnapshotError> {
        Ok(self.take(what, N as u64)?.try_into().expect("took N bytes"))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, SnapshotError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
}

fn read_header(reader: &mut Reader<'_>) -> Result<Header, SnapshotError> {
    if reader.array::<8>("magic")? != *SNAPSHOT_MAGIC {
        return Err(SnapshotError::BadMagic);
    }
    let version = u32::from_le_bytes(reader.array("format version")?);
    if version != SNAPSHOT_FORMAT_VERSION {
        return Err(SnapshotError::UnsupportedVersion { found: version, supported: SNAPSHOT_FORMAT_VERSION });
    }
    let [length] = reader.array("chain id length")?;
    let chain_id = reader.take("chain id", u64::from(length))?;
    let chain_id = std::str::from_utf8(chain_id).map_err(|_| SnapshotError::BadChainId)?.to_string();
    if !chain_id_is_valid(&chain_id) {
        return Err(SnapshotError::BadChainId);
    }
    Ok(Header {
        chain_id,
        height: reader.u64("height")?,
        time_ms: reader.u64("block time")?,
        state_root: reader.array("state root")?,
        body_len: reader.u64("body length")?,
        body_hash: reader.array("body checksum")?,
    })
}

impl State {
    /// The state as snapshot bytes (see the module documentation). Take it
    /// between blocks, once `apply_block` (or `state_root`) has brought the
    /// commitment up to date: its root goes into the header.
    pub fn snapshot(&self) -> Vec<u8> {
        let state_root = self
            .commitment
            .current_root()
            .filter(|_| self.staking.touched.is_empty())
            .expect("a snapshot is taken between blocks, after the state root");
        let body = rmp_serde::to_vec(self).expect("the state serializes");
        let mut bytes = Vec::with_capacity(body.len() + 200);
        bytes.extend_from_slice(SNAPSHOT_MAGIC);
        bytes.extend_from_slice(&SNAPSHOT_FORMAT_VERSION.to_le_bytes());
        bytes.push(self.params.chain_id.len() as u8);
        bytes.extend_from_slice(self.params.chain_id.as_bytes());
        bytes.extend_from_slice(&self.height.to_le_bytes());
        bytes.extend_from_slice(&self.time_ms.to_le_bytes());
        bytes.extend_from_slice(&state_root);
        bytes.extend_from_slice(&(body.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&Sha256::digest(&body));
        bytes.extend_from_slice(&body);
        bytes
    }

    /// Loads a state from [`State::snapshot`] bytes: decodes it, rebuilds
    /// what derives from it, and checks the full state root against the
    /// header's. The state is then ready for the next block.
    pub fn from_snapshot(bytes: &[u8]) -> Result<State, SnapshotError> {
        if bytes.len() > MAX_SNAPSHOT_BYTES {
            return Err(SnapshotError::TooLarge { size: bytes.len(), max: MAX_SNAPSHOT_BYTES });
        }
        let mut reader = Reader { bytes };
        let header = read_header(&mut reader)?;
        let body = reader.take("body", header.body_len)?;
        if !reader.bytes.is_empty() {
            return Err(SnapshotError::TrailingBytes { what: "body", count: reader.bytes.len() });
        }
        if <[u8; 32]>::from(Sha256::digest(body)) != header.body_hash {
            return Err(SnapshotError::ChecksumMismatch);
        }
        let mut decoder = rmp_serde::Deserializer::new(std::io::Cursor::new(body));
        let mut state =
            State::deserialize(&mut decoder).map_err(|error| SnapshotError::Undecodable(error.to_string()))?;
        let read = decoder.position() as usize;
        if read != body.len() {
            return Err(SnapshotError::TrailingBytes { what: "state in the body", count: body.len() - read });
        }
        let mismatch = |field, header: String, body: String| Err(SnapshotError::HeaderMismatch { field, header, body });
        if header.chain_id != state.params.chain_id {
            return mismatch("chain id", header.chain_id, state.params.chain_id);
        }
        if header.height != state.height {
            return mismatch("height", header.height.to_string(), state.height.to_string());
        }
        if header.time_ms != state.time_ms {
            return mismatch("block time", header.time_ms.to_string(), state.time_ms.to_string());
        }
        state.rebuild_indices().map_err(SnapshotError::Inconsistent)?;
        state.commitment.tree = state.full_tree();
        let computed = state.commitment.tree.root();
        if computed != header.state_root {
            return Err(SnapshotError::RootMismatch {
                header: hex::encode(header.state_root),
                computed: hex::encode(computed),
            });
        }
        state.rebuild_margin_tables();
        state.rebuild_at_risk_index();
        Ok(state)
    }

    /// Rebuilds the indices that mirror stored values, checking every handle
    /// and id the stored values name, so that nothing after this can index
    /// out of bounds.
    fn rebuild_indices(&mut self) -> Result<(), String> {
        let accounts = self.accounts.len() as u64;
        let markets = self.markets.len();
        for (at, account) in self.accounts.iter_mut().enumerate() {
            if account.owner != at as u64 {
                return Err(format!("account {} is stored at {at} with handle {}", account.address, account.owner));
            }
            if self.account_index.insert(account.address, account.owner).is_some() {
                return Err(format!("account {} appears twice", account.address));
            }
            if let Some(series) = account.exposures.keys().find(|series| series.0 as usize >= markets) {
                return Err(format!("account {} holds unknown series {}", account.address, series.0));
            }
            account.positions = account
                .exposures
                .iter()
                .filter(|(_, exposure)| exposure.position_lots != 0)
                .map(|(series, exposure)| (*series, exposure.position_lots))
                .collect();
        }
        if self.accounts.get(self.insurance_fund as usize).map(|fund| fund.address) != Some(Address::insurance_fund()) {
            return Err(format!("handle {} is not the insurance fund", self.insurance_fund));
        }
        for (at, market) in self.markets.iter_mut().enumerate() {
            if market.id.0 as usize != at {
                return Err(format!("series {} is stored at {at} with id {}", market.spec.name, market.id.0));
            }
            if !self.underlyings.contains_key(&market.spec.underlying) {
                return Err(format!("series {} has no listed underlying", market.spec.name));
            }
            if self.series_by_name.insert(market.spec.name.to_string(), market.id).is_some() {
                return Err(format!("series {} appears twice", market.spec.name));
            }
            if let Some(owner) = market.participants.iter().copied().find(|owner| *owner >= accounts) {
                return Err(format!("series {} names unknown account {owner}", market.spec.name));
            }
            market.lot_units = crate::margin_tables::lot_units(market.lot);
            market.risk_slot = self.risk.slot_for(&market.spec.underlying);
        }
        if self.underlyings.keys().any(|symbol| self.oracle.index(symbol.as_str()).is_none()) {
            return Err("an underlying has no oracle index".into());
        }
        for (id, info) in &self.orders {
            let account = self.accounts.get_mut(info.account as usize).filter(|account| account.address == info.owner);
            let account = account.ok_or_else(|| format!("order {id} names an unknown account"))?;
            let market = self
                .markets
                .get(info.series.0 as usize)
                .ok_or_else(|| format!("order {id} names an unknown series"))?;
            if market.book.get(id.0).is_none_or(|resting| resting.owner != info.account) {
                return Err(format!("order {id} does not rest in its book"));
            }
            account.open_orders.insert(*id);
            if info.client_order_id != 0 && account.client_orders.insert(info.client_order_id, *id).is_some() {
                return Err(format!("client order id {} is used twice", info.client_order_id));
            }
        }
        if self.markets.iter().map(|market| market.book.len()).sum::<usize>() != self.orders.len() {
            return Err("a book holds an order the state does not know".into());
        }
        for (id, offer) in &self.backstops {
            let keeper = self.account_index.get(&offer.keeper).filter(|_| offer.id == *id);
            let keeper = keeper.ok_or_else(|| format!("backstop offer {id} names an unknown keeper"))?;
            self.accounts[*keeper as usize].backstop_offers.insert(*id);
        }
        let order_expires = |(expire_at_ms, id): &(u64, OrderId)| {
            self.orders.get(id).is_some_and(|info| info.expire_at_ms == *expire_at_ms)
        };
        if !self.gtt_expiries.iter().all(order_expires) {
            return Err("a good-til-time expiry names no such order".into());
        }
        let unsettled: BTreeMap<_, _> = self.unsettled.iter().map(|(expiry, series)| (*series, *expiry)).collect();
        for market in &self.markets {
            let listed = unsettled.get(&market.id);
            if listed != market.settled_at.is_none().then_some(&market.spec.expiry_ms) {
                return Err(format!("series {} is not awaiting settlement exactly while unsettled", market.spec.name));
            }
        }
        if unsettled.len() != self.unsettled.len() || unsettled.keys().any(|series| series.0 as usize >= markets) {
            return Err("the unsettled series are not each listed once".into());
        }
        if let Some(owner) = self.risk_dirty.iter().find(|owner| **owner >= accounts) {
            return Err(format!("re-check names unknown account {owner}"));
        }
        Ok(())
    }
}
