//! Regressions for the holes of issue 12: each test is an attack that worked
//! against the engine before, driven by hand.

mod harness;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use harness::{CHAIN, Harness, config, secret};
use vanna_consensus::{
    Action, BlockHash, Certificate, Config, Consensus, Epoch, Event, Fault, Header, Height, Message, Scheme, Signable,
    SignedProposal, SignedVote, SignerBitmap, TestScheme, Timing, ValidatorEntry, ValidatorIndex, ValidatorSet, View,
    Vote, VoteKind,
};

fn nullify(view: u64) -> Vote {
    Vote { epoch: Epoch(0), view: View(view), kind: VoteKind::Nullify }
}

/// Finding 1 over a whole run: badly signed copies of each honest node's own
/// (predictable) Nullify votes, sent to it ahead of time by the byzantine
/// validator, get the forger reported and leave finality going. (Under this
/// FIFO schedule the old code recovered too, through the last node to time
/// out; `a_forged_copy_of_an_own_vote_never_displaces_it` is the regression.)
#[test]
fn forged_copies_of_a_nodes_own_future_votes_do_not_halt_the_chain() {
    let mut harness = Harness::new(4, vec![3], None);
    for victim in 0..3 {
        for view in 1..=40 {
            let forged = SignedVote { vote: nullify(view), signer: ValidatorIndex(victim as u32), signature: 0 };
            harness.pool.insert(0, (victim, 3, Message::Vote(forged)));
            harness.deliver(0, false);
        }
    }
    // Validator 3 stays silent from here on (its messages are dropped).
    for _ in 0..30_000 {
        harness.pool.retain(|(_, from, _)| *from != 3);
        harness.run_fifo(1);
    }
    harness.assert_safe();
    for node in 0..3 {
        assert!(harness.finalized[node].len() >= 10, "node {node} finalized {} blocks", harness.finalized[node].len());
    }
    // Each victim disconnects the forger after its first forged vote.
    for victim in 0..3 {
        assert!(harness.misbehaving.contains(&(victim, ValidatorIndex(3), Fault::NotSigner)));
    }
}

/// Finding 2: a copy of the leader's proposal with a swapped payload (the
/// signature covers the header only) reached the victim first; it was stored,
/// the genuine copy dropped as a duplicate, and the victim finalized the
/// attacker's payload under the honest block hash. The harness checks every
/// `Finalized` payload against its header.
#[test]
fn a_swapped_payload_is_never_stored_nor_finalized() {
    // Validator 3 relays (and otherwise signs everything it sees).
    let mut harness = Harness::new(4, vec![3], None);
    let mut tampered = std::collections::BTreeSet::new();
    for _ in 0..30_000 {
        if let Some((0, from, Message::Proposal(proposal))) = harness.pool.first().cloned()
            && proposal.header.view == proposal.view
            && from != 3
            && tampered.insert(proposal.view)
        {
            let swapped = SignedProposal { payload: b"attacker's transactions".to_vec(), ..proposal };
            harness.pool.insert(0, (0, 3, Message::Proposal(swapped)));
        }
        harness.run_fifo(1);
    }
    harness.assert_safe();
    assert!(!tampered.is_empty());
    assert!(harness.finalized[0].len() >= 5, "the victim still finalizes: {}", harness.finalized[0].len());
    let honest: Vec<_> =
        harness.commits.iter().filter(|(node, ..)| *node == 1).map(|(_, h, p, _)| (h.hash(), p)).collect();
    for (node, header, payload, _) in harness.commits.iter().filter(|(node, ..)| *node == 0) {
        assert_ne!(payload.as_slice(), b"attacker's transactions", "node {node}");
        if let Some((_, expected)) = honest.iter().find(|(hash, _)| *hash == header.hash()) {
            assert_eq!(payload, *expected);
        }
    }
    assert!(harness.misbehaving.contains(&(0, ValidatorIndex(3), Fault::NotSigner)));
}

/// A block response whose payload does not match its header is refused and
/// blamed; the genuine block is still accepted afterwards.
#[test]
fn a_lying_block_response_does_not_block_the_genuine_one() {
    let mut harness = Harness::new(4, vec![], None);
    harness.run_fifo(2_000);
    let (_, header, payload, _) = harness.commits.iter().find(|(node, ..)| *node == 1).cloned().unwrap();
    // A fresh node that only knows genesis and learns the finalization of `header`.
    let validators = Arc::clone(&harness.validators);
    let genesis = Header::genesis(Epoch(0), 0, [0; 32]);
    let (mut engine, _) = Consensus::new(config(&validators, 0, genesis, None, None), 0).unwrap();
    let proof = harness.commits.iter().find(|(n, h, ..)| *n == 1 && h.height == header.height).unwrap().3.clone();
    let actions = engine.handle(
        0,
        Event::Message { from: ValidatorIndex(1), message: Message::Certified { header: None, certificate: proof } },
    );
    assert!(actions.iter().any(|a| matches!(a, Action::Send { message: Message::BlockRequest { .. }, .. })));
    let lie = Message::BlockResponse { blocks: vec![(header.clone(), b"not the block".to_vec())] };
    let actions = engine.handle(0, Event::Message { from: ValidatorIndex(2), message: lie });
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Misbehaving { peer: ValidatorIndex(2), fault: Fault::BadBlockResponse }))
    );
    let truth = Message::BlockResponse { blocks: vec![(header.clone(), payload.clone())] };
    let actions = engine.handle(0, Event::Message { from: ValidatorIndex(3), message: truth });
    let finalized: Vec<_> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Finalized { header, payload, .. } => Some((header.clone(), payload.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(finalized.last(), Some(&(header, payload)));
}

/// Counts verifications: what junk costs.
static VERIFICATIONS: AtomicU64 = AtomicU64::new(0);

#[derive(Debug, Clone, Copy)]
struct Counting;

impl Scheme for Counting {
    type SecretKey = u64;
    type PublicKey = u64;
    type Signature = u64;
    fn public_key(secret: &u64) -> u64 {
        TestScheme::public_key(secret)
    }
    fn public_key_bytes(key: &u64) -> Vec<u8> {
        TestScheme::public_key_bytes(key)
    }
    fn sign(secret: &u64, message: &[u8]) -> u64 {
        TestScheme::sign(secret, message)
    }
    fn verify(key: &u64, message: &[u8], signature: &u64) -> bool {
        VERIFICATIONS.fetch_add(1, Ordering::Relaxed);
        TestScheme::verify(key, message, signature)
    }
    fn aggregate(signatures: &[&u64]) -> Option<u64> {
        TestScheme::aggregate(signatures)
    }
    fn verify_aggregate(keys: &[&u64], message: &[u8], aggregate: &u64) -> bool {
        VERIFICATIONS.fetch_add(1, Ordering::Relaxed);
        TestScheme::verify_aggregate(keys, message, aggregate)
    }
}

fn counting_engine() -> Consensus<Counting> {
    let entries = (0..4).map(|i| ValidatorEntry { public_key: secret(i), operator: vec![], power: 1 }).collect();
    let config = Config {
        chain: CHAIN,
        epoch: Epoch(0),
        validators: Arc::new(ValidatorSet::new(entries).unwrap()),
        me: Some(ValidatorIndex(0)),
        anchor: Header::genesis(Epoch(0), 0, [0; 32]),
        anchor_proof: None,
        last_height: None,
        timing: Timing::default(),
        max_payload_bytes: 64,
        view_window: 32,
    };
    Consensus::new(config, 0).unwrap().0
}

/// Finding 4: 1,000 forged certificates cost 1,000 aggregate verifications and
/// 1,000 forged conflicting votes 996 single ones, and nobody was blamed.
/// Now the first junk message gets its sender reported and ignored, and a
/// flood of validly signed conflicting votes costs a bounded amount per view.
#[test]
fn junk_costs_a_bounded_number_of_verifications_and_its_sender_is_reported() {
    let mut engine = counting_engine();
    let before = VERIFICATIONS.load(Ordering::Relaxed);
    let mut reported = Vec::new();
    for i in 0..1_000u64 {
        let mut signers = SignerBitmap::new(4);
        for signer in 0..3 {
            signers.set(ValidatorIndex(signer));
        }
        let forged = Certificate { vote: nullify(1 + i % 30), signers, signature: i };
        let actions =
            engine.handle(0, Event::Message { from: ValidatorIndex(1), message: Message::Nullification(forged) });
        reported.extend(actions.into_iter().filter(|a| matches!(a, Action::Misbehaving { .. })));
        let kind = VoteKind::Notarize { height: Height(1), block: BlockHash([i as u8; 32]) };
        let forged =
            SignedVote { vote: Vote { epoch: Epoch(0), view: View(1), kind }, signer: ValidatorIndex(2), signature: i };
        let actions = engine.handle(0, Event::Message { from: ValidatorIndex(2), message: Message::Vote(forged) });
        reported.extend(actions.into_iter().filter(|a| matches!(a, Action::Misbehaving { .. })));
    }
    let junk = VERIFICATIONS.load(Ordering::Relaxed) - before;
    assert!(junk <= 4, "{junk} verifications for 2,000 junk messages");
    assert_eq!(reported.len(), 2, "{reported:?}");

    // Validly signed conflicting votes from validator 3 (it holds its own key):
    // one piece of evidence, then nothing more to verify in that view.
    let before = VERIFICATIONS.load(Ordering::Relaxed);
    let mut evidence = 0;
    for i in 0..1_000u64 {
        let kind = VoteKind::Notarize { height: Height(1), block: BlockHash([(i % 251) as u8; 32]) };
        let vote = Vote { epoch: Epoch(0), view: View(2), kind };
        let signature = Counting::sign(&secret(3), &Signable::Vote(vote).signing_bytes(CHAIN));
        let message = Message::Vote(SignedVote { vote, signer: ValidatorIndex(3), signature });
        let actions = engine.handle(0, Event::Message { from: ValidatorIndex(3), message });
        evidence += actions.iter().filter(|a| matches!(a, Action::Evidence(_))).count();
    }
    let spent = VERIFICATIONS.load(Ordering::Relaxed) - before;
    assert_eq!(evidence, 1);
    assert!(spent <= 16, "{spent} verifications for 1,000 conflicting votes");
}

/// Finding 5: a node that made a finalized block durable and stopped before
/// the rest of the batch restarted anchored at that block with the view of
/// the batch's certificate, so it took the block as the one that view
/// certified and would vote for (or propose) a child of it, conflicting with
/// the finalized end of the batch. Crashes at every step of a batch.
#[test]
fn a_restart_at_any_step_of_a_finalization_batch_anchors_exactly() {
    // Node 0 hears no finalize votes or finalizations, so it falls behind on finality only.
    let mut harness = Harness::new(4, vec![], None);
    for _ in 0..500 {
        harness.pool.retain(|(to, _, message)| {
            *to != 0
                || !matches!(
                    message,
                    Message::Vote(SignedVote { vote: Vote { kind: VoteKind::Finalize { .. }, .. }, .. })
                        | Message::Certified {
                            certificate: Certificate { vote: Vote { kind: VoteKind::Finalize { .. }, .. }, .. },
                            ..
                        }
                )
        });
        harness.run_fifo(1);
    }
    assert!(harness.commits.iter().all(|(node, ..)| *node != 0));
    let (_, _, _, latest) = harness.commits.iter().rev().find(|(node, ..)| *node == 1).cloned().unwrap();
    let header = harness.commits.iter().rev().find(|(node, ..)| *node == 1).unwrap().1.clone();
    let before = harness.commits.len();
    let actions = harness.handle(
        0,
        Event::Message {
            from: ValidatorIndex(1),
            message: Message::Certified { header: Some(header), certificate: latest.clone() },
        },
    );
    harness.perform(0, actions);
    let batch: Vec<(Header, Vec<u8>, Certificate<TestScheme>)> = harness.commits[before..]
        .iter()
        .filter(|(node, ..)| *node == 0)
        .map(|(_, h, p, c)| (h.clone(), p.clone(), c.clone()))
        .collect();
    assert!(batch.len() >= 3, "a batch of {} blocks", batch.len());
    let last = batch.last().unwrap().0.clone();
    let view = latest.vote.view;
    let validators = Arc::clone(&harness.validators);
    let next_leader = validators.leader(View(view.0 + 1));
    for step in 0..batch.len() {
        let (anchor, _, proof) = batch[step].clone();
        let (mut engine, actions) =
            Consensus::new(config(&validators, 0, anchor.clone(), Some(proof.clone()), None), harness.now_ms).unwrap();
        // The rest of the batch is fetched: the block the proof's view certified first.
        if anchor != last {
            let wanted = last.hash();
            assert!(
                actions.iter().any(
                    |a| matches!(a, Action::Send { message: Message::BlockRequest { block }, .. } if *block == wanted)
                ),
                "step {step}"
            );
        }
        // The next leader proposes a child of the anchor in the view after the
        // proof's: it conflicts with the batch's end unless the anchor is that end.
        let payload = b"fork".to_vec();
        let child = Header {
            parent: anchor.hash(),
            height: Height(anchor.height.0 + 1),
            epoch: Epoch(0),
            view: View(view.0 + 1),
            proposer: next_leader,
            block_time_ms: anchor.block_time_ms,
            state_root: anchor.transactions_root,
            transactions_root: vanna_consensus::hash_bytes(b"txs", &payload),
            payload_hash: Header::payload_hash_of(&payload),
        };
        let signable = Signable::Proposal { epoch: Epoch(0), view: child.view, parent_view: view, block: child.hash() };
        let signature = TestScheme::sign(&secret(next_leader.0 as usize), &signable.signing_bytes(CHAIN));
        let proposal =
            SignedProposal { view: child.view, parent_view: view, header: child.clone(), payload, signature };
        let mut queue =
            engine.handle(harness.now_ms, Event::Message { from: next_leader, message: Message::Proposal(proposal) });
        let mut signed = Vec::new();
        while let Some(action) = queue.pop() {
            match action {
                Action::VerifyProposal { view, header, .. } => {
                    queue.extend(
                        engine.handle(
                            harness.now_ms,
                            Event::ProposalVerified { view, block: header.hash(), valid: true },
                        ),
                    );
                }
                Action::Sign(message) => signed.push(message),
                _ => {}
            }
        }
        let voted = signed.iter().any(|m| matches!(m, Signable::Vote(Vote { kind: VoteKind::Notarize { block, .. }, .. }) if *block == child.hash()));
        assert_eq!(voted, anchor == last, "step {step} of {}: notarized a child of the anchor", batch.len());
        // Fed the rest of the batch, the restarted engine commits exactly it.
        let rest: Vec<(Header, Vec<u8>)> =
            batch[step + 1..].iter().rev().map(|(h, p, _)| (h.clone(), p.clone())).collect();
        if !rest.is_empty() {
            let actions = engine.handle(
                harness.now_ms,
                Event::Message { from: ValidatorIndex(2), message: Message::BlockResponse { blocks: rest.clone() } },
            );
            let committed: Vec<Header> = actions
                .iter()
                .filter_map(|a| match a {
                    Action::Finalized { header, .. } => Some(header.clone()),
                    _ => None,
                })
                .collect();
            assert_eq!(committed, rest.iter().rev().map(|(h, _)| h.clone()).collect::<Vec<_>>(), "step {step}");
        }
        assert_eq!(engine.finalized_hash(), last.hash(), "step {step}");
    }
}

/// Finding 1, the mechanism on one engine: a badly signed copy of its own
/// Nullify vote reaches validator 0 before it times out; its genuine vote and
/// the other two honest votes must still form the nullification (before the
/// fix the genuine vote was dropped as a duplicate of the forged copy, and
/// the forged copy was later thrown out, leaving two votes of the three needed).
#[test]
fn a_forged_copy_of_an_own_vote_never_displaces_it() {
    let validators = Arc::new(
        ValidatorSet::new(
            (0..4).map(|i| ValidatorEntry { public_key: secret(i), operator: vec![], power: 1 }).collect(),
        )
        .unwrap(),
    );
    let genesis = Header::genesis(Epoch(0), 0, [0; 32]);
    let (mut engine, _) = Consensus::new(config(&validators, 0, genesis, None, None), 0).unwrap();
    let view = engine.view();
    let forged = SignedVote { vote: nullify(view.0), signer: ValidatorIndex(0), signature: 7 };
    let mut actions = engine.handle(0, Event::Message { from: ValidatorIndex(3), message: Message::Vote(forged) });
    actions.extend(engine.handle(1_000, Event::Timeout { view, kind: vanna_consensus::TimerKind::Leader }));
    let sign = |i: usize| TestScheme::sign(&secret(i), &Signable::Vote(nullify(view.0)).signing_bytes(CHAIN));
    actions
        .extend(engine.handle(1_000, Event::Signed { message: Signable::Vote(nullify(view.0)), signature: sign(0) }));
    for i in 1..3 {
        let vote = SignedVote { vote: nullify(view.0), signer: ValidatorIndex(i as u32), signature: sign(i) };
        actions.extend(
            engine.handle(1_000, Event::Message { from: ValidatorIndex(i as u32), message: Message::Vote(vote) }),
        );
    }
    assert!(actions.iter().any(|a| matches!(a, Action::Broadcast(Message::Nullification(_)))), "no nullification");
    assert!(engine.view() > view);
}
