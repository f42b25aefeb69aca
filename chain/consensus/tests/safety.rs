//! Property: whatever the delivery order, losses, duplicates and timer
//! firings, and with one byzantine validator of four signing everything,
//! honest validators never finalize conflicting blocks; and once delivery
//! becomes orderly again, finality resumes.

mod harness;

use harness::Harness;
use proptest::prelude::*;

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
            // Keep the pool bounded so long schedules stay cheap.
            if harness.pool.len() > 400 {
                harness.pool.drain(..200);
            }
        }
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
            if harness.pool.len() > 600 {
                harness.pool.drain(..300);
            }
        }
        harness.assert_safe();
    }
}
