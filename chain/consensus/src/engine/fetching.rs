//! Blocks: the engine's store of headers and payloads, asking peers for missing
//! blocks and answering their requests and their status.

use crate::limits::MAX_BLOCKS_PER_RESPONSE;
use crate::messages::Message;
use crate::scheme::Scheme;
use crate::types::{BlockHash, Header, ValidatorIndex};

use super::{Action, Block, Consensus, Fault};

/// Outstanding block requests at most; more waits for the next retry.
const MAX_WANTED_BLOCKS: usize = 64;

impl<S: Scheme> Consensus<S> {
    /// After the epoch's end, peers still in it get the final certificate
    /// (rate-limited per peer) so they can finish too.
    pub(super) fn on_message_when_done(&mut self, from: ValidatorIndex, message: Message<S>) {
        if self.validators().get(from).is_none() {
            return;
        }
        if let Message::BlockRequest { block } = message {
            self.serve_block(from, block);
            return;
        }
        self.reply_with_finalization(from);
    }

    /// Sends our latest finalization to a peer that is behind, at most once per retry period.
    pub(super) fn reply_with_finalization(&mut self, from: ValidatorIndex) {
        let Some(certificate) = self.finalized.certificate.clone() else {
            return;
        };
        let last = self.last_reply_ms.get(&from).copied();
        if last.is_some_and(|t| self.now_ms < t.saturating_add(self.config.timing.retry_ms)) {
            return;
        }
        self.last_reply_ms.insert(from, self.now_ms);
        let header = Some(self.finalized.header.clone());
        self.out.push(Action::Send { to: from, message: Message::Certified { header, certificate } });
    }

    pub(super) fn store_header(&mut self, header: Header) {
        let hash = header.hash();
        if header.height > self.finalized.header.height {
            self.blocks.entry(hash).or_insert(Block { header, payload: None });
        }
    }

    /// Stores a payload only if it hashes to its header's payload hash, and
    /// never over one already stored: a bad copy cannot displace the genuine one.
    pub(super) fn store_block(&mut self, header: Header, payload: Vec<u8>) {
        if header.payload_hash != Header::payload_hash_of(&payload) {
            return;
        }
        let hash = header.hash();
        if header.height > self.finalized.header.height {
            let block = self.blocks.entry(hash).or_insert(Block { header, payload: None });
            block.payload.get_or_insert(payload);
        }
    }

    pub(super) fn want(&mut self, hash: BlockHash) {
        if self.wanted.contains_key(&hash) || self.wanted.len() >= MAX_WANTED_BLOCKS {
            return;
        }
        self.wanted.insert(hash, 0);
        self.request_block(hash, 0);
    }

    /// Asks a different peer on each attempt.
    fn request_block(&mut self, block: BlockHash, attempt: u32) {
        let n = self.validators().len() as u64;
        let me = self.config.me.map_or(0, |m| u64::from(m.0));
        let mut peer = (me + 1 + u64::from(attempt)) % n;
        if Some(ValidatorIndex(peer as u32)) == self.config.me {
            peer = (peer + 1) % n;
        }
        if Some(ValidatorIndex(peer as u32)) == self.config.me {
            // A set of one: nobody to ask (the node feeds its own blocks with `Event::Block`).
            return;
        }
        self.out.push(Action::Send { to: ValidatorIndex(peer as u32), message: Message::BlockRequest { block } });
    }

    pub(super) fn serve_block(&mut self, to: ValidatorIndex, block: BlockHash) {
        let mut blocks = Vec::new();
        let mut cursor = block;
        while blocks.len() < MAX_BLOCKS_PER_RESPONSE {
            let Some(Block { header, payload: Some(payload) }) = self.blocks.get(&cursor) else {
                break;
            };
            blocks.push((header.clone(), payload.clone()));
            cursor = header.parent;
        }
        if !blocks.is_empty() {
            self.out.push(Action::Send { to, message: Message::BlockResponse { blocks } });
        }
    }

    /// Accepts the first block only if we asked for it, and each further one
    /// only if it is the parent of the previous: the hashes authenticate them
    /// all, and each payload must hash to its header's payload hash. A late
    /// answer (no longer wanted) is not a fault; a broken one is.
    pub(super) fn on_block_response(&mut self, from: ValidatorIndex, blocks: Vec<(Header, Vec<u8>)>) {
        if blocks.len() > MAX_BLOCKS_PER_RESPONSE {
            self.misbehaving(from, Fault::TooLarge);
            return;
        }
        let mut expected: Option<BlockHash> = None;
        for (header, payload) in blocks {
            let hash = header.hash();
            match expected {
                None if !self.wanted.contains_key(&hash) => break,
                Some(parent) if parent != hash => {
                    self.misbehaving(from, Fault::BadBlockResponse);
                    break;
                }
                _ => {}
            }
            if payload.len() > self.config.max_payload_bytes || header.payload_hash != Header::payload_hash_of(&payload)
            {
                self.misbehaving(from, Fault::BadBlockResponse);
                break;
            }
            if header.height <= self.finalized.header.height {
                break;
            }
            expected = Some(header.parent);
            self.wanted.remove(&hash);
            self.store_block(header, payload);
        }
        if expected.is_some() {
            self.try_commit();
        }
    }

    pub(super) fn retry_block_requests(&mut self) {
        let wanted: Vec<(BlockHash, u32)> = self.wanted.iter().map(|(h, a)| (*h, *a)).collect();
        for (hash, attempt) in wanted {
            self.wanted.insert(hash, attempt + 1);
            self.request_block(hash, attempt + 1);
        }
    }
}
