//! A minimal in-process driver for tests: engines, a message pool the test
//! schedules explicitly, immediate application and signer answers.

use std::collections::BTreeMap;
use std::sync::Arc;

use vanna_consensus::{
    Action, BlockHash, Certificate, ChainId, Config, Consensus, Epoch, Event, Fault, Header, Height, Message, Scheme,
    Signable, SignedProposal, SignedVote, TestScheme, TimerKind, Timing, ValidatorEntry, ValidatorIndex, ValidatorSet,
    View, Vote, VoteKind, hash_bytes,
};

pub const CHAIN: ChainId = ChainId(99);

pub struct Harness {
    pub validators: Arc<ValidatorSet<TestScheme>>,
    pub engines: Vec<Option<Consensus<TestScheme>>>,
    pub byzantine: Vec<usize>,
    /// (to, from, message) in flight.
    pub pool: Vec<(usize, usize, Message<TestScheme>)>,
    pub timers: Vec<BTreeMap<(u64, u64), (View, TimerKind)>>,
    pub finalized: Vec<Vec<(Height, BlockHash)>>,
    pub evidence: Vec<(usize, vanna_consensus::Evidence<TestScheme>)>,
    /// Every `Finalized` action: (node, header, payload, proof).
    pub commits: Vec<(usize, Header, Vec<u8>, Certificate<TestScheme>)>,
    /// (reporting node, peer, fault).
    pub misbehaving: Vec<(usize, ValidatorIndex, Fault)>,
    pub now_ms: u64,
    pub sequence: u64,
    /// Headers the byzantine validators learned from certificates, by view.
    pub certified: BTreeMap<View, Header>,
}

pub fn secret(index: usize) -> u64 {
    index as u64 + 1
}

pub fn config(
    validators: &Arc<ValidatorSet<TestScheme>>,
    me: usize,
    anchor: Header,
    anchor_proof: Option<Certificate<TestScheme>>,
    last_height: Option<Height>,
) -> Config<TestScheme> {
    Config {
        chain: CHAIN,
        epoch: Epoch(0),
        validators: Arc::clone(validators),
        me: Some(ValidatorIndex(me as u32)),
        anchor,
        anchor_proof,
        last_height,
        timing: Timing::default(),
        max_payload_bytes: 64,
        view_window: 32,
    }
}

impl Harness {
    pub fn new(n: usize, byzantine: Vec<usize>, last_height: Option<Height>) -> Self {
        let entries = (0..n).map(|i| ValidatorEntry { public_key: secret(i), operator: vec![], power: 1 }).collect();
        let validators = Arc::new(ValidatorSet::new(entries).unwrap());
        let genesis = Header::genesis(Epoch(0), 0, [0; 32]);
        let mut harness = Harness {
            validators: Arc::clone(&validators),
            engines: Vec::new(),
            byzantine: byzantine.clone(),
            pool: Vec::new(),
            timers: vec![BTreeMap::new(); n],
            finalized: vec![Vec::new(); n],
            evidence: Vec::new(),
            commits: Vec::new(),
            misbehaving: Vec::new(),
            now_ms: 0,
            sequence: 0,
            certified: BTreeMap::new(),
        };
        harness.certified.insert(View(0), genesis.clone());
        for i in 0..n {
            if byzantine.contains(&i) {
                harness.engines.push(None);
                continue;
            }
            let (engine, actions) =
                Consensus::new(config(&validators, i, genesis.clone(), None, last_height), 0).unwrap();
            harness.engines.push(Some(engine));
            harness.perform(i, actions);
        }
        harness
    }

    pub fn n(&self) -> usize {
        self.engines.len()
    }

    pub fn perform(&mut self, node: usize, actions: Vec<Action<TestScheme>>) {
        let mut queue: std::collections::VecDeque<_> = actions.into();
        while let Some(action) = queue.pop_front() {
            let follow = match action {
                Action::Broadcast(message) => {
                    self.learn(&message);
                    for to in 0..self.n() {
                        if to != node {
                            self.pool.push((to, node, message.clone()));
                        }
                    }
                    Vec::new()
                }
                Action::Send { to, message } => {
                    self.pool.push((to.0 as usize, node, message));
                    Vec::new()
                }
                Action::ScheduleTimeout { view, kind, after_ms } => {
                    self.sequence += 1;
                    self.timers[node].insert((self.now_ms + after_ms, self.sequence), (view, kind));
                    Vec::new()
                }
                Action::RequestProposal { view, parent } => {
                    let payload = view.0.to_be_bytes().to_vec();
                    let event = Event::ProposalPayload {
                        view,
                        block_time_ms: self.now_ms,
                        state_root: parent.transactions_root,
                        transactions_root: hash_bytes(b"txs", &payload),
                        payload,
                    };
                    self.handle(node, event)
                }
                Action::VerifyProposal { view, parent, header, payload } => {
                    let valid = header.state_root == parent.transactions_root
                        && header.transactions_root == hash_bytes(b"txs", &payload);
                    self.handle(node, Event::ProposalVerified { view, block: header.hash(), valid })
                }
                Action::Sign(message) => {
                    let signature = TestScheme::sign(&secret(node), &message.signing_bytes(CHAIN));
                    self.handle(node, Event::Signed { message, signature })
                }
                Action::Finalized { header, payload, proof } => {
                    assert_eq!(
                        header.payload_hash,
                        Header::payload_hash_of(&payload),
                        "node {node} finalized a payload its header does not commit to"
                    );
                    self.finalized[node].push((header.height, header.hash()));
                    self.commits.push((node, header, payload, proof));
                    Vec::new()
                }
                Action::Evidence(evidence) => {
                    self.evidence.push((node, evidence));
                    Vec::new()
                }
                Action::Certificate { .. } => Vec::new(),
                Action::Misbehaving { peer, fault } => {
                    assert!(
                        self.byzantine.contains(&(peer.0 as usize)),
                        "node {node} blamed honest {peer:?} for {fault:?}"
                    );
                    self.misbehaving.push((node, peer, fault));
                    Vec::new()
                }
            };
            queue.extend(follow);
        }
    }

    fn learn(&mut self, message: &Message<TestScheme>) {
        if let Message::Certified { header: Some(header), certificate } = message {
            self.certified.insert(certificate.vote.view, header.clone());
        }
    }

    pub fn handle(&mut self, node: usize, event: Event<TestScheme>) -> Vec<Action<TestScheme>> {
        let now = self.now_ms;
        self.engines[node].as_mut().map_or_else(Vec::new, |engine| engine.handle(now, event))
    }

    /// Delivers pool entry `index`; `keep` leaves a copy (duplication).
    pub fn deliver(&mut self, index: usize, keep: bool) {
        if self.pool.is_empty() {
            return;
        }
        let index = index % self.pool.len();
        let (to, from, message) = if keep { self.pool[index].clone() } else { self.pool.swap_remove(index) };
        if self.byzantine.contains(&to) {
            self.byzantine_react(to, &message);
            return;
        }
        let actions = self.handle(to, Event::Message { from: ValidatorIndex(from as u32), message });
        self.perform(to, actions);
    }

    /// Fires the next timer of `node` (advancing time to it).
    pub fn fire(&mut self, node: usize) {
        let node = node % self.n();
        let Some(((at, _), (view, kind))) = self.timers[node].pop_first() else {
            return;
        };
        self.now_ms = self.now_ms.max(at);
        let actions = self.handle(node, Event::Timeout { view, kind });
        self.perform(node, actions);
    }

    /// The strongest simple attacker: signs notarize and finalize votes for
    /// every block it hears of, nullifies every view, and as leader proposes
    /// two different blocks on every certified parent it knows.
    fn byzantine_react(&mut self, me: usize, message: &Message<TestScheme>) {
        let mut out = Vec::new();
        let vote = |view: View, kind: VoteKind| {
            let vote = Vote { epoch: Epoch(0), view, kind };
            let signature = TestScheme::sign(&secret(me), &Signable::Vote(vote).signing_bytes(CHAIN));
            Message::Vote(SignedVote { vote, signer: ValidatorIndex(me as u32), signature })
        };
        match message {
            Message::Proposal(proposal) => {
                let (height, block) = (proposal.header.height, proposal.header.hash());
                out.push(vote(proposal.view, VoteKind::Notarize { height, block }));
                out.push(vote(proposal.view, VoteKind::Finalize { height, block }));
                out.push(vote(proposal.view, VoteKind::Nullify));
                self.byzantine_propose(me, View(proposal.view.0 + 1), &mut out);
            }
            Message::Certified { certificate, .. } | Message::Nullification(certificate) => {
                self.byzantine_propose(me, View(certificate.vote.view.0 + 1), &mut out);
            }
            _ => {}
        }
        for message in out {
            for to in 0..self.n() {
                if to != me {
                    self.pool.push((to, me, message.clone()));
                }
            }
        }
    }

    fn byzantine_propose(&mut self, me: usize, view: View, out: &mut Vec<Message<TestScheme>>) {
        if self.validators.leader(view) != ValidatorIndex(me as u32) {
            return;
        }
        let parents: Vec<(View, Header)> =
            self.certified.range(..view).rev().take(2).map(|(v, h)| (*v, h.clone())).collect();
        for (parent_view, parent) in parents {
            for variant in 0..2u8 {
                let payload = vec![variant, me as u8];
                let header = Header {
                    parent: parent.hash(),
                    height: Height(parent.height.0 + 1),
                    epoch: Epoch(0),
                    view,
                    proposer: ValidatorIndex(me as u32),
                    block_time_ms: parent.block_time_ms,
                    state_root: parent.transactions_root,
                    transactions_root: hash_bytes(b"txs", &payload),
                    payload_hash: Header::payload_hash_of(&payload),
                };
                let signable = Signable::Proposal { epoch: Epoch(0), view, parent_view, block: header.hash() };
                let signature = TestScheme::sign(&secret(me), &signable.signing_bytes(CHAIN));
                out.push(Message::Proposal(SignedProposal { view, parent_view, header, payload, signature }));
            }
        }
    }

    /// Delivers everything in FIFO order, firing timers when the pool is empty.
    pub fn run_fifo(&mut self, steps: usize) {
        for _ in 0..steps {
            if self.pool.is_empty() {
                let next = (0..self.n()).filter_map(|i| self.timers[i].first_key_value().map(|(k, _)| (*k, i))).min();
                match next {
                    Some((_, node)) => self.fire(node),
                    None => return,
                }
            } else {
                self.deliver_first();
            }
        }
    }

    fn deliver_first(&mut self) {
        let (to, from, message) = self.pool.remove(0);
        if self.byzantine.contains(&to) {
            self.byzantine_react(to, &message);
            return;
        }
        let actions = self.handle(to, Event::Message { from: ValidatorIndex(from as u32), message });
        self.perform(to, actions);
    }

    /// No two honest nodes finalized different blocks at one height.
    pub fn assert_safe(&self) {
        let mut canonical: BTreeMap<Height, BlockHash> = BTreeMap::new();
        for chain in &self.finalized {
            for (height, hash) in chain {
                let existing = canonical.entry(*height).or_insert(*hash);
                assert_eq!(existing, hash, "conflicting finalized blocks at {height:?}");
            }
        }
    }
}
