//! The simulator's attacker: a byzantine validator that holds only its own
//! key. It sees what is sent to it and may send anything on its own
//! connections: forged, replayed and tampered copies of others' messages,
//! swapped payloads, votes ahead of time, lying block responses, floods. It
//! cannot sign for anyone else: this module is given its own secret key and
//! nothing else (key derivation and the simulator's MAC keys are private to
//! `crate::world`), so a forgery here is always a bad signature.

use std::collections::VecDeque;

use vanna_consensus::{
    BlockHash, Certificate, ChainId, Epoch, Header, Height, Message, Scheme, Signable, SignedProposal, SignedVote,
    SignerBitmap, ValidatorIndex, View, Vote, VoteKind, hash_bytes,
};

use crate::rng::Rng;
use crate::{Attack, Attacks};

/// Messages kept to replay and tamper with.
const SEEN_KEPT: usize = 64;
/// Junk messages in one flood.
const FLOOD_MAX: u64 = 12;

/// A message for position `to`.
pub(crate) struct Outgoing<S: Scheme> {
    pub to: usize,
    pub message: Message<S>,
}

pub(crate) struct Adversary<S: Scheme> {
    me: usize,
    secret: S::SecretKey,
    chain: ChainId,
    attacks: Attacks,
    rng: Rng,
    seen: VecDeque<Message<S>>,
    /// Proposals seen, newest last (their blocks are what lies are told about).
    proposals: VecDeque<SignedProposal<S>>,
}

impl<S: Scheme> Adversary<S> {
    pub fn new(me: usize, secret: S::SecretKey, chain: ChainId, attacks: Attacks, seed: u64) -> Self {
        let rng = Rng::new(seed ^ (me as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
        Self { me, secret, chain, attacks, rng, seen: VecDeque::new(), proposals: VecDeque::new() }
    }

    fn on(&self, attack: Attack) -> bool {
        self.attacks.contains(attack)
    }

    fn sign(&self, message: &Signable) -> S::Signature {
        S::sign(&self.secret, &message.signing_bytes(self.chain))
    }

    /// A well-formed signature that verifies for nothing anyone will check.
    fn junk_signature(&mut self) -> S::Signature {
        S::sign(&self.secret, &self.rng.next().to_be_bytes())
    }

    fn other(&mut self, n: usize) -> usize {
        let pick = self.rng.below(n as u64 - 1) as usize;
        if pick >= self.me { pick + 1 } else { pick }
    }

    fn own_vote(&self, vote: Vote) -> Message<S> {
        let signature = self.sign(&Signable::Vote(vote));
        Message::Vote(SignedVote { vote, signer: ValidatorIndex(self.me as u32), signature })
    }

    /// What it does on receiving `message` from position `from` (of `n`).
    pub fn on_receive(&mut self, n: usize, from: usize, message: &Message<S>) -> Vec<Outgoing<S>> {
        let mut out = Vec::new();
        if n < 2 {
            return out;
        }
        match message {
            Message::Vote(vote) if self.on(Attack::Forge) && self.rng.per_mille(250) => {
                // A badly signed copy to its own signer and to someone else, and
                // the signer's predictable Nullify votes ahead, forged, to the signer.
                let forged = SignedVote { signature: self.junk_signature(), ..vote.clone() };
                let to = self.other(n);
                out.push(Outgoing { to: vote.signer.0 as usize, message: Message::Vote(forged.clone()) });
                out.push(Outgoing { to, message: Message::Vote(forged) });
                for ahead in 1..=3 {
                    let view = View(vote.vote.view.0 + ahead);
                    let predicted = Vote { epoch: vote.vote.epoch, view, kind: VoteKind::Nullify };
                    let forged = SignedVote { vote: predicted, signer: vote.signer, signature: self.junk_signature() };
                    out.push(Outgoing { to: vote.signer.0 as usize, message: Message::Vote(forged) });
                }
            }
            Message::Proposal(proposal) => {
                self.proposals.push_back(proposal.clone());
                if self.proposals.len() > SEEN_KEPT {
                    self.proposals.pop_front();
                }
                if self.on(Attack::Payload) && self.rng.per_mille(300) {
                    let mut payload = proposal.payload.clone();
                    payload.extend_from_slice(b"attacker's transactions");
                    let to = self.other(n);
                    out.push(Outgoing {
                        to,
                        message: Message::Proposal(SignedProposal { payload, ..proposal.clone() }),
                    });
                }
                if self.on(Attack::Future) && self.rng.per_mille(300) {
                    // Validly signed votes for views ahead: they must wait, not count early.
                    let epoch = proposal.header.epoch;
                    for ahead in 2..=4 {
                        let vote =
                            self.own_vote(Vote { epoch, view: View(proposal.view.0 + ahead), kind: VoteKind::Nullify });
                        out.extend((0..n).filter(|t| *t != self.me).map(|to| Outgoing { to, message: vote.clone() }));
                    }
                    let block = BlockHash(hash_bytes(b"vanna/sim/made-up", &self.rng.next().to_be_bytes()));
                    let kind = VoteKind::Notarize { height: Height(proposal.header.height.0 + 2), block };
                    let vote = self.own_vote(Vote { epoch, view: View(proposal.view.0 + 2), kind });
                    out.extend((0..n).filter(|t| *t != self.me).map(|to| Outgoing { to, message: vote.clone() }));
                }
            }
            Message::Certified { certificate, .. } | Message::Nullification(certificate)
                if self.on(Attack::Forge) && self.rng.per_mille(250) =>
            {
                let to = self.other(n);
                out.push(Outgoing { to, message: Message::Nullification(self.forge_certificate(certificate, n)) });
            }
            Message::BlockRequest { block } if self.on(Attack::Lying) => {
                if let Some(lie) = self.lie_about(*block) {
                    out.push(Outgoing { to: from, message: lie });
                }
            }
            _ => {}
        }
        self.remember(message);
        if self.on(Attack::Replay) && self.rng.per_mille(125) && !self.seen.is_empty() {
            let pick = self.rng.below(self.seen.len() as u64) as usize;
            let to = self.other(n);
            out.push(Outgoing { to, message: self.seen[pick].clone() });
        }
        if self.on(Attack::Tamper) && self.rng.per_mille(125) && !self.seen.is_empty() {
            let pick = self.rng.below(self.seen.len() as u64) as usize;
            let tampered = self.tamper(self.seen[pick].clone(), n);
            let to = self.other(n);
            out.push(Outgoing { to, message: tampered });
        }
        if self.on(Attack::Lying) && self.rng.per_mille(30) && !self.proposals.is_empty() {
            // Unrequested blocks, as if answering a request nobody made.
            let blocks = self.proposals.iter().rev().take(3).map(|p| (p.header.clone(), p.payload.clone())).collect();
            let to = self.other(n);
            out.push(Outgoing { to, message: Message::BlockResponse { blocks } });
        }
        if self.on(Attack::Flood) && self.rng.per_mille(60) {
            let to = self.other(n);
            for _ in 0..self.rng.range(1, FLOOD_MAX) {
                let junk = self.junk(n);
                out.push(Outgoing { to, message: junk });
            }
        }
        out
    }

    fn remember(&mut self, message: &Message<S>) {
        self.seen.push_back(message.clone());
        if self.seen.len() > SEEN_KEPT {
            self.seen.pop_front();
        }
    }

    /// A certificate with one signer moved or its vote changed: the aggregate no longer matches.
    fn forge_certificate(&mut self, certificate: &Certificate<S>, n: usize) -> Certificate<S> {
        let mut forged = certificate.clone();
        match self.rng.below(3) {
            0 => forged.vote.view = View(forged.vote.view.0 + 1 + self.rng.below(3)),
            1 => forged.vote = Vote { kind: VoteKind::Nullify, ..forged.vote },
            _ => {
                let mut signers = SignerBitmap::new(n);
                for index in 0..n {
                    signers.set(ValidatorIndex(index as u32));
                }
                forged.signers = signers;
            }
        }
        forged
    }

    fn tamper(&mut self, message: Message<S>, n: usize) -> Message<S> {
        match message {
            Message::Vote(mut vote) => {
                vote.vote.view = View(vote.vote.view.0 ^ (1 + self.rng.below(4)));
                Message::Vote(vote)
            }
            Message::Proposal(mut proposal) => {
                match self.rng.below(3) {
                    0 => proposal.header.block_time_ms = proposal.header.block_time_ms.wrapping_add(1),
                    1 => proposal.parent_view = View(proposal.parent_view.0.wrapping_sub(1)),
                    _ => proposal.signature = self.junk_signature(),
                }
                Message::Proposal(proposal)
            }
            Message::Certified { header, certificate } => {
                Message::Certified { header, certificate: self.forge_certificate(&certificate, n) }
            }
            Message::Nullification(certificate) => Message::Nullification(self.forge_certificate(&certificate, n)),
            Message::BlockResponse { mut blocks } => {
                if let Some((_, payload)) = blocks.first_mut() {
                    payload.push(0xaa);
                }
                Message::BlockResponse { blocks }
            }
            other => other,
        }
    }

    /// A block response that looks right and is not: the requested header
    /// with another payload, or followed by a block that is not its parent.
    fn lie_about(&mut self, block: BlockHash) -> Option<Message<S>> {
        let genuine = self.proposals.iter().find(|p| p.header.hash() == block)?.clone();
        let decoy = self.proposals.front().cloned()?;
        let blocks = if self.rng.below(2) == 0 {
            vec![(genuine.header, b"not the block's payload".to_vec())]
        } else {
            vec![(genuine.header, genuine.payload), (decoy.header, decoy.payload)]
        };
        Some(Message::BlockResponse { blocks })
    }

    fn junk(&mut self, n: usize) -> Message<S> {
        let number = self.rng.next();
        let view = View(number % 64);
        match self.rng.below(4) {
            0 => {
                let vote = Vote { epoch: Epoch(0), view, kind: VoteKind::Nullify };
                let signer = ValidatorIndex(self.me as u32);
                Message::Vote(SignedVote { vote, signer, signature: self.junk_signature() })
            }
            1 => Message::Status { epoch: Epoch(number % 3), view, finalized: Height(number % 1_000) },
            2 => Message::BlockRequest { block: BlockHash(hash_bytes(b"vanna/sim/junk", &number.to_be_bytes())) },
            _ => {
                let mut signers = SignerBitmap::new(n);
                signers.set(ValidatorIndex((number % n as u64) as u32));
                let vote = Vote { epoch: Epoch(0), view, kind: VoteKind::Nullify };
                Message::Nullification(Certificate { vote, signers, signature: self.junk_signature() })
            }
        }
    }

    /// As leader: invalid proposals, validly signed (each also equivocates).
    pub fn invalid_proposal(&mut self, proposal: &SignedProposal<S>, max_payload_bytes: usize) -> SignedProposal<S> {
        let mut bad = proposal.clone();
        match self.rng.below(5) {
            0 => bad.header.height = Height(bad.header.height.0 + 1),
            1 => bad.parent_view = bad.view,
            2 => bad.header.block_time_ms = bad.header.block_time_ms.saturating_add(3_600_000),
            3 => bad.header.proposer = ValidatorIndex(bad.header.proposer.0.wrapping_add(1)),
            _ => {
                bad.payload = vec![0x55; max_payload_bytes + 1];
                bad.header.payload_hash = Header::payload_hash_of(&bad.payload);
            }
        }
        bad.signature = self.sign(&bad.signable());
        bad
    }

    /// As leader: the same header and signature with a payload it does not commit to.
    pub fn mismatched_payload(&self, proposal: &SignedProposal<S>) -> SignedProposal<S> {
        let mut payload = proposal.payload.clone();
        payload.push(0xee);
        SignedProposal { payload, ..proposal.clone() }
    }

    /// The second proposal of an equivocating leader.
    pub fn second_proposal(&self, proposal: &SignedProposal<S>) -> SignedProposal<S> {
        let mut payload = proposal.payload.clone();
        payload.push(0xff);
        let mut header = proposal.header.clone();
        if header.view == proposal.view {
            header.transactions_root = hash_bytes(b"vanna/sim/txs", &payload);
            header.payload_hash = Header::payload_hash_of(&payload);
        } else {
            // A re-proposal: equivocate on the block itself.
            header.block_time_ms += 1;
        }
        let mut second = SignedProposal { payload, header, ..proposal.clone() };
        second.signature = self.sign(&second.signable());
        second
    }

    /// A vote contradicting `vote` (a notarize for another block, a nullify next to a finalize).
    pub fn conflicting_vote(&self, vote: Vote) -> Option<Message<S>> {
        let kind = match vote.kind {
            VoteKind::Notarize { height, block } => {
                VoteKind::Notarize { height, block: BlockHash(hash_bytes(b"vanna/sim/other", &block.0)) }
            }
            VoteKind::Finalize { .. } => VoteKind::Nullify,
            VoteKind::Nullify => return None,
        };
        Some(self.own_vote(Vote { kind, ..vote }))
    }

    /// A coalition member's notarize for an equivocating leader's second proposal.
    pub fn vote_for(&self, proposal: &SignedProposal<S>) -> Message<S> {
        let kind = VoteKind::Notarize { height: proposal.header.height, block: proposal.header.hash() };
        self.own_vote(Vote { epoch: proposal.header.epoch, view: proposal.view, kind })
    }

    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }
}
