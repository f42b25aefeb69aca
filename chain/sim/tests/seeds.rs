//! The CI run of the simulator: over a thousand seeds across configurations
//! (4 and 7 validators; byzantine or not; partitions; crashes with restarts
//! from the persisted protection store; epoch changes), a thousand seeds with
//! every attack and fault (`--attacks all`), plus a few seeds with real BLS
//! signatures. Every seed must be free of violations.
//! Long mode, by hand: `vanna simulate --validators 4 --byzantine 1 --partitions --crashes --attacks all --seeds 100000`.

use vanna_sim::{Attacks, SimConfig, Summary, run_seed};

fn config(
    validators: usize,
    byzantine: usize,
    partitions: bool,
    crashes: bool,
    epoch_length: Option<u64>,
) -> SimConfig {
    let mut config = SimConfig::new(validators, byzantine);
    config.partitions = partitions;
    config.crashes = crashes;
    config.epoch_length = epoch_length;
    config
}

fn run(name: &str, config: &SimConfig, seeds: std::ops::Range<u64>) -> Summary {
    let mut summary = Summary::default();
    for seed in seeds {
        summary.add(&run_seed(config, seed));
    }
    println!(
        "{name}: {} seeds, {} views, {} blocks, {} evidence, {} refused signatures, {} peers reported, slowest recovery {:?}, {} violations",
        summary.seeds,
        summary.views,
        summary.blocks_finalized,
        summary.evidence,
        summary.signatures_refused,
        summary.peers_reported,
        summary.slowest_recovery,
        summary.violations
    );
    assert_eq!(summary.violations, 0, "{name}: {:#?}", summary.violation_samples);
    assert!(summary.blocks_finalized >= summary.seeds * 5, "{name}: too few blocks");
    summary
}

#[test]
fn seeds_with_four_validators() {
    run("4 honest", &config(4, 0, false, false, None), 0..150);
    let byzantine = run("4 with 1 byzantine", &config(4, 1, false, false, None), 0..150);
    assert!(byzantine.evidence > 0, "byzantine seeds must produce evidence");
    run("4, partitions", &config(4, 1, true, false, None), 0..100);
    let crashes = run("4, partitions and crashes", &config(4, 0, true, true, None), 0..100);
    assert!(crashes.signatures_refused > 0, "restarts must meet the protection store");
    run("4, byzantine, partitions, epochs of 5", &config(4, 1, true, false, Some(5)), 0..75);
}

#[test]
fn seeds_with_seven_validators() {
    let byzantine = run("7 with 2 byzantine", &config(7, 2, false, false, None), 0..150);
    assert!(byzantine.evidence > 0);
    run("7, 1 byzantine, partitions and crashes", &config(7, 1, true, true, None), 0..100);
    run("7, 2 byzantine, partitions", &config(7, 2, true, false, None), 0..100);
    run("7, crashes, epochs of 5", &config(7, 0, true, true, Some(5)), 0..75);
}

/// The attacker and the harder world: 1,000 seeds with every attack and fault.
#[test]
fn a_thousand_seeds_with_every_attack() {
    let attacked = |validators, byzantine, partitions, crashes| {
        let mut config = config(validators, byzantine, partitions, crashes, None);
        config.attacks = Attacks::all();
        config
    };
    let four = run("4 with 1 attacker, all attacks, partitions, crashes", &attacked(4, 1, true, true), 0..500);
    let seven = run("7 with 2 attackers, all attacks, partitions, crashes", &attacked(7, 2, true, true), 0..300);
    run("7 with 2 attackers, all attacks", &attacked(7, 2, false, false), 0..150);
    run("1 validator, all faults", &attacked(1, 0, false, false), 0..50);
    for summary in [four, seven] {
        assert!(summary.evidence > 0 && summary.peers_reported > 0 && summary.signatures_refused > 0);
    }
}

#[test]
fn seeds_with_real_bls_signatures() {
    let mut four = config(4, 1, true, false, None);
    four.bls = true;
    run("BLS 4, byzantine, partitions", &four, 0..8);
    let mut seven = config(7, 2, false, false, Some(5));
    seven.bls = true;
    run("BLS 7, 2 byzantine, epochs", &seven, 0..4);
    let mut attacked = config(4, 1, true, true, None);
    attacked.bls = true;
    attacked.attacks = Attacks::all();
    run("BLS 4, 1 attacker, all attacks", &attacked, 0..6);
}
