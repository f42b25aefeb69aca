//! Finalization: committing the chain up to the highest finalization once its
//! blocks are known, and forgetting what finality made useless.

use std::collections::BTreeSet;

use crate::messages::VoteKind;
use crate::scheme::Scheme;
use crate::types::{BlockHash, Header, View};

use super::{Action, Consensus, Finalized};

/// Finalized blocks kept to answer peers' block requests; older ones are the
/// node's block store's business.
const SERVED_FINALIZED_BLOCKS: usize = 256;

impl<S: Scheme> Consensus<S> {
    /// Commits the chain up to the highest finalization certificate once every
    /// block on the way is known; asks peers for missing ones.
    pub(super) fn try_commit(&mut self) {
        let Some(certificate) = self.finalize_target.clone() else {
            return;
        };
        let VoteKind::Finalize { height, block } = certificate.vote.kind else {
            return;
        };
        if height <= self.finalized.header.height {
            self.finalize_target = None;
            return;
        }
        let mut chain = Vec::new();
        let mut missing = Vec::new();
        let mut cursor = block;
        while cursor != self.finalized.hash {
            let Some(stored) = self.blocks.get(&cursor) else {
                missing.push(cursor);
                break;
            };
            if stored.header.height <= self.finalized.header.height {
                // Does not extend our finalized block: only possible with more than
                // a third of the stake byzantine. Refuse to execute; the operator must act.
                return;
            }
            if stored.payload.is_none() {
                missing.push(cursor);
            }
            chain.push(cursor);
            cursor = stored.header.parent;
        }
        if !missing.is_empty() {
            for hash in missing {
                self.want(hash);
            }
            return;
        }
        for hash in chain.into_iter().rev() {
            let Some(stored) = self.blocks.get(&hash) else {
                return;
            };
            let Some(payload) = stored.payload.clone() else {
                return;
            };
            // Checked when stored; checked again because executing a payload
            // its header does not commit to is the worst thing a node can do.
            assert_eq!(
                stored.header.payload_hash,
                Header::payload_hash_of(&payload),
                "stored payload matches its header"
            );
            let header = stored.header.clone();
            self.committed.insert(header.height, hash);
            self.out.push(Action::Finalized { header, payload, proof: certificate.clone() });
        }
        let header = self.blocks.get(&block).map(|b| b.header.clone()).unwrap_or_else(|| self.finalized.header.clone());
        self.finalized = Finalized {
            view: certificate.vote.view,
            hash: block,
            header,
            certificate: Some(certificate.clone()),
            certified: (block, height),
        };
        self.finalize_target = None;
        self.prune();
        if self.config.last_height.is_some_and(|last| height >= last) {
            self.done = true;
            return;
        }
        self.enter_view(View(certificate.vote.view.0.saturating_add(1)), true);
    }

    fn prune(&mut self) {
        let finalized_view = self.finalized.view;
        let finalized_height = self.finalized.header.height;
        self.rounds.retain(|view, _| *view > finalized_view);
        while self.committed.len() > SERVED_FINALIZED_BLOCKS {
            self.committed.pop_first();
        }
        let committed: BTreeSet<BlockHash> = self.committed.values().copied().collect();
        self.blocks.retain(|hash, block| block.header.height > finalized_height || committed.contains(hash));
        let blocks = &self.blocks;
        self.wanted.retain(|hash, _| blocks.get(hash).is_none_or(|b| b.payload.is_none()));
    }
}
