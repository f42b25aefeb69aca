//! The engine under an explicit, deterministic schedule.

mod harness;

use harness::Harness;
use vanna_consensus::{Height, Offence};

#[test]
fn four_honest_validators_finalize_a_block_per_view() {
    let mut harness = Harness::new(4, vec![], None);
    harness.run_fifo(4_000);
    harness.assert_safe();
    for chain in &harness.finalized {
        assert!(chain.len() >= 20, "only {} blocks finalized", chain.len());
        for (position, (height, _)) in chain.iter().enumerate() {
            assert_eq!(height.0, position as u64 + 1, "in order, no gaps");
        }
    }
    // No timeouts were needed: one view per block.
    let engine = harness.engines[0].as_ref().unwrap();
    assert!(engine.view().0 <= engine.finalized_height().0 + 2);
}

#[test]
fn a_silent_validator_costs_a_view_not_liveness() {
    let mut harness = Harness::new(4, vec![], None);
    // Validator 3 never receives nor sends: the others must nullify its views.
    harness.engines[3] = None;
    for _ in 0..20_000 {
        harness.pool.retain(|(to, _, _)| *to != 3);
        harness.run_fifo(1);
    }
    harness.assert_safe();
    assert!(harness.finalized[0].len() >= 10, "{} blocks", harness.finalized[0].len());
}

#[test]
fn the_epoch_ends_at_its_last_height_and_every_node_finishes() {
    let mut harness = Harness::new(4, vec![], Some(Height(5)));
    harness.run_fifo(20_000);
    harness.assert_safe();
    for (node, engine) in harness.engines.iter().enumerate() {
        let engine = engine.as_ref().unwrap();
        assert!(engine.is_done(), "node {node} not done");
        assert_eq!(engine.finalized_height(), Height(5));
        assert_eq!(harness.finalized[node].len(), 5);
    }
}

#[test]
fn an_equivocating_byzantine_is_caught_and_safety_holds() {
    let mut harness = Harness::new(4, vec![3], None);
    harness.run_fifo(30_000);
    harness.assert_safe();
    assert!(harness.finalized[0].len() >= 5);
    let offences: Vec<Offence> = harness.evidence.iter().map(|(_, e)| e.offence().unwrap()).collect();
    assert!(offences.contains(&Offence::FinalizeAndNullify));
    assert!(offences.contains(&Offence::ConflictingProposals));
    for (_, evidence) in &harness.evidence {
        assert_eq!(evidence.offender.0, 3);
        evidence.verify(harness::CHAIN, vanna_consensus::Epoch(0), &harness.validators).unwrap();
    }
}

#[test]
fn duplicated_messages_are_harmless_and_not_evidence() {
    let mut harness = Harness::new(4, vec![], None);
    for _ in 0..4_000 {
        // Every message arrives twice in a row (a copy, then the original in FIFO order).
        harness.deliver(0, true);
        harness.run_fifo(1);
    }
    harness.assert_safe();
    assert!(harness.finalized[0].len() >= 10);
    assert!(harness.evidence.is_empty());
}
