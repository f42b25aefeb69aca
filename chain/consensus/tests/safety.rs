//! Property: whatever the delivery order, losses, duplicates and timer
//! firings, and with one byzantine validator of four signing everything,
//! honest validators never finalize conflicting blocks; and once delivery
//! becomes orderly again, finality resumes. And nothing a peer sends makes
//! the engine panic; unsigned or badly signed garbage never moves finality.

mod harness;

use harness::Harness;
use proptest::prelude::*;
use vanna_consensus::{
    BlockHash, Certificate, Epoch, Event, Header, Height, Message, SignedProposal, SignedVote, SignerBitmap,
    ValidatorIndex, View, Vote, VoteKind,
};

#[derive(Debug, Clone)]
enum Step {
    Deliver(usize),
    Duplicate(usize),
    Drop(usize),
    Fire(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        24 => any::<usize>().prop_map(Step::Deliver),
        1 => any::<usize>().prop_map(Step::Duplicate),
        1 => any::<usize>().prop_map(Step::Drop),
        2 => any::<usize>().prop_map(Step::Fire),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn no_conflicting_finality_under_any_schedule(byzantine in 0usize..4, steps in prop::collection::vec(step(), 200..1500)) {
        let mut harness = Harness::new(4, vec![byzantine], None);
        run_schedule(&mut harness, steps, 400);
        harness.assert_safe();
        // Then the network stabilises: finality must resume, still safely.
        let before: Vec<usize> = harness.finalized.iter().map(Vec::len).collect();
        harness.run_fifo(6_000);
        harness.assert_safe();
        for node in (0..4).filter(|node| *node != byzantine) {
            prop_assert!(harness.finalized[node].len() > before[node], "node {} made no progress", node);
        }
        for (_, evidence) in &harness.evidence {
            prop_assert_eq!(evidence.offender.0 as usize, byzantine);
        }
    }

    #[test]
    fn seven_validators_two_byzantine(steps in prop::collection::vec(step(), 300..1500)) {
        let mut harness = Harness::new(7, vec![1, 5], None);
        run_schedule(&mut harness, steps, 600);
        harness.assert_safe();
    }
}

/// Applies a random schedule; the message pool is halved whenever it exceeds
/// `pool_cap`, so long schedules stay cheap.
fn run_schedule(harness: &mut Harness, steps: Vec<Step>, pool_cap: usize) {
    for step in steps {
        match step {
            Step::Deliver(i) => harness.deliver(i, false),
            Step::Duplicate(i) => harness.deliver(i, true),
            Step::Drop(i) => {
                if !harness.pool.is_empty() {
                    let len = harness.pool.len();
                    harness.pool.swap_remove(i % len);
                }
            }
            Step::Fire(node) => harness.fire(node),
        }
        if harness.pool.len() > pool_cap {
            harness.pool.drain(..pool_cap / 2);
        }
    }
}

fn header(n: u64) -> Header {
    Header {
        parent: BlockHash([n as u8; 32]),
        height: Height(n % 7),
        epoch: Epoch(n % 2),
        view: View(n),
        proposer: ValidatorIndex((n % 5) as u32),
        block_time_ms: n,
        state_root: [1; 32],
        transactions_root: [2; 32],
        payload_hash: [3; 32],
    }
}

fn message(kind: u8, a: u64, b: u64, bytes: Vec<u8>) -> Message<vanna_consensus::TestScheme> {
    let view = View(if a.is_multiple_of(3) { u64::MAX - (a % 2) } else { a % 40 });
    let vote_kind = match b % 3 {
        0 => VoteKind::Notarize { height: Height(b % 5), block: BlockHash([b as u8; 32]) },
        1 => VoteKind::Finalize { height: Height(b % 5), block: BlockHash([b as u8; 32]) },
        _ => VoteKind::Nullify,
    };
    let vote = Vote { epoch: Epoch(b % 2), view, kind: vote_kind };
    match kind % 7 {
        0 => Message::Vote(SignedVote { vote, signer: ValidatorIndex((a % 9) as u32), signature: b }),
        1 => Message::Proposal(SignedProposal {
            view,
            parent_view: View(b % 50),
            header: header(a),
            payload: bytes,
            signature: a ^ b,
        }),
        2 => Message::Certified {
            header: Some(header(b)),
            certificate: Certificate { vote, signers: SignerBitmap(bytes), signature: a },
        },
        3 => Message::Nullification(Certificate { vote, signers: SignerBitmap(bytes), signature: b }),
        4 => Message::BlockRequest { block: BlockHash([a as u8; 32]) },
        5 => Message::BlockResponse { blocks: vec![(header(a), bytes.clone()), (header(b), bytes)] },
        _ => Message::Status { epoch: Epoch(a % 2), view, finalized: Height(b) },
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn garbage_never_panics_nor_finalizes(
        inputs in prop::collection::vec((any::<u8>(), any::<u64>(), any::<u64>(), prop::collection::vec(any::<u8>(), 0..80), 0u32..12), 1..300)
    ) {
        let mut harness = Harness::new(4, vec![], None);
        harness.pool.clear();
        for (kind, a, b, bytes, from) in inputs {
            let event = Event::Message { from: ValidatorIndex(from), message: message(kind, a, b, bytes) };
            let _ = harness.handle(0, event);
            let _ = harness.handle(0, Event::Timeout { view: View(a % 40), kind: vanna_consensus::TimerKind::Retry });
            let _ = harness.handle(0, Event::ProposalVerified { view: View(b % 40), block: BlockHash([a as u8; 32]), valid: a % 2 == 0 });
        }
        let engine = harness.engines[0].as_ref().unwrap();
        prop_assert_eq!(engine.finalized_height(), Height(0));
    }
}
