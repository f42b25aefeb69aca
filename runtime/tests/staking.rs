//! The staking economy through transactions and blocks: registration,
//! delegation, exact fee rewards, unbonding, redelegation, slashing, jailing
//! and epochs.

mod common;

use common::*;
use vanna_proto::v1::action::Kind;
use vanna_proto::v1::{self as wire, Side};
use vanna_runtime::TxError;
use vanna_runtime::events::Event;
use vanna_runtime::sandbox::{Sandbox, consensus_secret, secret_to_public};
use vanna_runtime::staking::{EvidenceRecord, Offence};
use vanna_runtime::tx::{action, limit_order, place};

fn delegate(chain: &Sandbox, validator: &str, amount: &str) -> wire::Action {
    action(Kind::Delegate(wire::Delegate {
        validator: chain.address(validator).as_bytes().to_vec(),
        amount: amount.into(),
    }))
}

fn undelegate(chain: &Sandbox, validator: &str, amount: &str) -> wire::Action {
    action(Kind::Undelegate(wire::Undelegate {
        validator: chain.address(validator).as_bytes().to_vec(),
        amount: amount.into(),
    }))
}

fn redelegate(chain: &Sandbox, from: &str, to: &str, amount: &str) -> wire::Action {
    action(Kind::Redelegate(wire::Redelegate {
        from_validator: chain.address(from).as_bytes().to_vec(),
        to_validator: chain.address(to).as_bytes().to_vec(),
        amount: amount.into(),
    }))
}

fn claim(chain: &Sandbox, validator: &str) -> wire::Action {
    action(Kind::ClaimRewards(wire::ClaimRewards { validator: chain.address(validator).as_bytes().to_vec() }))
}

fn register(name: &str, commission: &str, self_stake: &str) -> wire::Action {
    let secret = consensus_secret(name);
    action(Kind::RegisterValidator(wire::RegisterValidator {
        consensus_key: secret_to_public(&secret).to_vec(),
        proof_of_possession: vanna_crypto::bls::proof_of_possession(&secret).to_bytes().to_vec(),
        moniker: name.into(),
        commission_rate: commission.into(),
        max_commission_rate: "0.2".into(),
        max_commission_change: "0.01".into(),
        self_stake: self_stake.into(),
    }))
}

fn trade(chain: &mut Sandbox) {
    run(chain, "bob", vec![place(limit_order(PUT, Side::Sell, "4000", "1"))]);
    let (_, block) = run(chain, "alice", vec![place(limit_order(PUT, Side::Buy, "4000", "1"))]);
    assert_eq!(fills(&block).len(), 1);
}

fn tokens(chain: &Sandbox, validator: &str) -> u64 {
    chain.state.staking.validators[&chain.address(validator)].tokens
}

#[test]
fn genesis_validators_form_the_active_set() {
    let chain = staked_sandbox();
    let active = &chain.state.staking.active;
    assert_eq!(active.len(), 2);
    // Equal power: ties break by operator address.
    assert!(active[0].operator < active[1].operator);
    assert_eq!(active[0].power, 10_000_000_000);
}

#[test]
fn fees_are_paid_to_validators_and_delegators_exactly() {
    let mut chain = staked_sandbox();
    let (usd_a, _) = usd(&chain, "val-a");
    trade(&mut chain);
    // 67.9 USD of fees split evenly by power: 33.95 each; val-a keeps 10%.
    let val_a = &chain.state.staking.validators[&chain.address("val-a")];
    assert_eq!(val_a.commission_pending, 3_395_000);
    assert_eq!(val_a.reward_pool, 30_555_000);
    assert_eq!(chain.state.fee_pool.value(), dec("0"));
    let (receipt, _) = act(&mut chain, "val-a", |c| vec![claim(c, "val-a")]);
    assert!(receipt.first_error().is_none());
    assert_eq!(usd(&chain, "val-a").0 - usd_a, dec("33.95"));
}

#[test]
fn a_delegator_earns_in_proportion_to_its_stake() {
    let mut chain = staked_sandbox();
    // Alice doubles val-b's stake; after that, val-b's delegators split 50/50.
    act(&mut chain, "alice", |c| vec![delegate(c, "val-b", "10000")]);
    assert_eq!(tokens(&chain, "val-b"), 20_000_000_000);
    trade(&mut chain);
    // Power is fixed for the epoch (10,000 : 10,000): val-b gets 33.95 and keeps
    // 5% = 1.6975; its delegators split 32.2525 by shares, half each.
    let (before, _) = usd(&chain, "alice");
    act(&mut chain, "alice", |c| vec![claim(c, "val-b")]);
    let earned = usd(&chain, "alice").0 - before;
    let val_b = &chain.state.staking.validators[&chain.address("val-b")];
    assert_eq!(val_b.commission_pending, 1_697_500);
    assert_eq!(earned, dec("16.12625"));
    assert_eq!(chain.state.staking.pending_rewards(&chain.address("val-b"), &chain.address("val-b")), 16_126_250);
    // What did not divide stays in the pool: nothing is created or lost.
    let fund = dec(&vanna_runtime::sandbox::DEMO_INSURANCE_FUND_USD.to_string());
    assert_eq!(chain.state.total_usd().value(), dec("3000000") + fund);
}

#[test]
fn unbonding_matures_and_redelegation_cannot_chain() {
    let mut chain = staked_sandbox();
    chain.state.staking.params.unbonding_period_ms = 3_000;
    act(&mut chain, "alice", |c| vec![delegate(c, "val-a", "1000")]);
    let (receipt, _) = act(&mut chain, "alice", |c| vec![undelegate(c, "val-a", "400")]);
    assert!(receipt.first_error().is_none());
    assert_eq!(vanna(&chain, "alice"), dec("49000"));
    let (receipt, _) = run(&mut chain, "alice", vec![action(Kind::WithdrawUnbonded(wire::WithdrawUnbonded {}))]);
    assert_eq!(action_error(&receipt), TxError::NothingToWithdraw);
    chain.produce_block();
    chain.produce_block();
    run(&mut chain, "alice", vec![action(Kind::WithdrawUnbonded(wire::WithdrawUnbonded {}))]);
    assert_eq!(vanna(&chain, "alice"), dec("49400"));
    // Redelegate a→b, then b→a is refused while the first move matures.
    let (receipt, _) = act(&mut chain, "alice", |c| vec![redelegate(c, "val-a", "val-b", "300")]);
    assert!(receipt.first_error().is_none());
    let (receipt, _) = act(&mut chain, "alice", |c| vec![redelegate(c, "val-b", "val-a", "100")]);
    assert_eq!(action_error(&receipt), TxError::RedelegationChain(chain.address("val-b")));
    let (receipt, _) = act(&mut chain, "alice", |c| vec![undelegate(c, "val-a", "301")]);
    assert!(matches!(action_error(&receipt), TxError::InsufficientStake { .. }));
}

#[test]
fn entry_limits_and_refusals_name_their_reason() {
    let mut chain = staked_sandbox();
    act(&mut chain, "alice", |c| vec![delegate(c, "val-a", "100")]);
    let max = chain.state.staking.params.max_entries;
    for _ in 0..max {
        let (receipt, _) = act(&mut chain, "alice", |c| vec![undelegate(c, "val-a", "1")]);
        assert!(receipt.first_error().is_none());
    }
    let (receipt, _) = act(&mut chain, "alice", |c| vec![undelegate(c, "val-a", "1")]);
    assert_eq!(action_error(&receipt), TxError::TooManyUnbondingEntries { max });
    let (receipt, _) = act(&mut chain, "alice", |c| vec![delegate(c, "alice", "1")]);
    assert_eq!(action_error(&receipt), TxError::UnknownValidator(chain.address("alice")));
    let (receipt, _) = act(&mut chain, "alice", |c| vec![delegate(c, "val-a", "60000")]);
    assert!(matches!(action_error(&receipt), TxError::InsufficientFunds { asset: "VANNA", .. }));
    let (receipt, _) = act(&mut chain, "alice", |c| vec![delegate(c, "val-a", "0.0000001")]);
    assert!(matches!(action_error(&receipt), TxError::TooPrecise { .. }));
    // The operator may not leave itself below the minimum self-stake.
    let (receipt, _) = act(&mut chain, "val-a", |c| vec![undelegate(c, "val-a", "9500")]);
    assert_eq!(action_error(&receipt), TxError::BelowMinSelfStake { stake: dec("500"), min: dec("1000") });
}

#[test]
fn registration_checks_key_proof_commission_and_stake() {
    let mut chain = staked_sandbox();
    let (receipt, _) = run(&mut chain, "carol", vec![register("carol-node", "0.3", "2000")]);
    assert_eq!(action_error(&receipt), TxError::CommissionAboveMax { rate: dec("0.3"), max: dec("0.2") });
    let (receipt, _) = run(&mut chain, "carol", vec![register("carol-node", "0.1", "999")]);
    assert_eq!(action_error(&receipt), TxError::BelowMinSelfStake { stake: dec("999"), min: dec("1000") });
    let mut bad_proof = register("carol-node", "0.1", "2000");
    if let Some(Kind::RegisterValidator(r)) = &mut bad_proof.kind {
        r.proof_of_possession =
            vanna_crypto::bls::proof_of_possession(&consensus_secret("someone-else")).to_bytes().to_vec();
    }
    let (receipt, _) = run(&mut chain, "carol", vec![bad_proof]);
    assert_eq!(action_error(&receipt), TxError::BadProofOfPossession);
    let (receipt, _) = run(&mut chain, "carol", vec![register("val-a", "0.1", "2000")]);
    assert_eq!(action_error(&receipt), TxError::ConsensusKeyTaken);
    let (receipt, _) = run(&mut chain, "carol", vec![register("carol-node", "0.1", "2000")]);
    assert!(receipt.first_error().is_none());
    let (receipt, _) = run(&mut chain, "carol", vec![register("carol-node-2", "0.1", "2000")]);
    assert_eq!(action_error(&receipt), TxError::ValidatorExists(chain.address("carol")));
    // Commission edits: within the maximum change, once a day.
    let edit = |rate: &str| {
        action(Kind::EditValidator(wire::EditValidator { commission_rate: rate.into(), moniker: String::new() }))
    };
    let (receipt, _) = run(&mut chain, "carol", vec![edit("0.12")]);
    assert_eq!(
        action_error(&receipt),
        TxError::CommissionChangeTooLarge { change: dec("0.02"), max_change: dec("0.01") }
    );
    let (receipt, _) = run(&mut chain, "carol", vec![edit("0.11")]);
    assert!(matches!(action_error(&receipt), TxError::CommissionChangeTooSoon { .. }));
    chain.block_interval_ms = 24 * 3_600_000;
    chain.produce_block();
    let (receipt, _) = run(&mut chain, "carol", vec![edit("0.11")]);
    assert!(receipt.first_error().is_none());
    // The new validator joins the active set at the next epoch boundary.
    chain.block_interval_ms = 1_000;
    let (epoch, set) = chain.state.staking.epoch_validator_set();
    assert_eq!(set.len(), 2);
    while !chain.state.height.is_multiple_of(chain.state.staking.params.epoch_blocks) {
        chain.produce_block();
    }
    let (next_epoch, set) = chain.state.staking.epoch_validator_set();
    assert_eq!((next_epoch, set.len()), (epoch + 1, 3));
    assert!(set.iter().any(|member| member.operator == chain.address("carol")));
}

#[test]
fn double_signing_slashes_bonded_and_later_unbonding_stake_and_tombstones() {
    let mut chain = staked_sandbox();
    act(&mut chain, "alice", |c| vec![delegate(c, "val-a", "2000")]);
    act(&mut chain, "bob", |c| vec![delegate(c, "val-a", "2000")]);
    // Bob starts unbonding before the offence, alice after it.
    act(&mut chain, "bob", |c| vec![undelegate(c, "val-a", "1000")]);
    let offence_height = chain.state.height;
    act(&mut chain, "alice", |c| vec![undelegate(c, "val-a", "1000")]);
    let key = chain.state.staking.validators[&chain.address("val-a")].consensus_key;
    let total_vanna = chain.state.total_vanna();
    let carol_before = vanna(&chain, "carol");
    chain.evidence.push(EvidenceRecord {
        consensus_key: key,
        offence: Offence::DoubleVote,
        height: offence_height,
        reporter: Some(chain.address("carol")),
    });
    let block = chain.produce_block();
    chain.state.check_invariants();
    let slashed = block.events.iter().find_map(|e| match e {
        Event::Slashed { bonded, unbonding, redelegated, reporter_reward, burned, .. } => {
            Some((bonded.value(), unbonding.value(), redelegated.value(), reporter_reward.value(), burned.value()))
        }
        _ => None,
    });
    // Bonded 12,000 × 5% = 600; alice's 1,000 unbonding × 5% = 50; bob's is untouched.
    assert_eq!(slashed, Some((dec("600"), dec("50"), dec("0"), dec("65"), dec("585"))));
    assert_eq!(vanna(&chain, "carol") - carol_before, dec("65"));
    assert_eq!(chain.state.total_vanna(), total_vanna, "burned VANNA is still counted");
    let validator = &chain.state.staking.validators[&chain.address("val-a")];
    assert!(validator.jailed && validator.tombstoned);
    // The same evidence again changes nothing.
    chain.evidence.push(EvidenceRecord {
        consensus_key: key,
        offence: Offence::DoubleVote,
        height: offence_height,
        reporter: None,
    });
    let block = chain.produce_block();
    assert!(!block.events.iter().any(|e| matches!(e, Event::Slashed { .. })));
    let (receipt, _) = run(&mut chain, "val-a", vec![action(Kind::Unjail(wire::Unjail {}))]);
    assert_eq!(action_error(&receipt), TxError::Tombstoned(chain.address("val-a")));
    let (receipt, _) = act(&mut chain, "alice", |c| vec![delegate(c, "val-a", "1")]);
    assert_eq!(action_error(&receipt), TxError::Tombstoned(chain.address("val-a")));
}

#[test]
fn downtime_jails_with_a_small_slash_and_unjail_waits() {
    let mut chain = staked_sandbox();
    let key = chain.state.staking.validators[&chain.address("val-b")].consensus_key;
    chain.offline.insert(key);
    let window = chain.state.staking.params.signed_blocks_window as u64;
    let mut jailed_at = None;
    for _ in 0..window {
        let block = chain.produce_block();
        if block.events.iter().any(|e| matches!(e, Event::Jailed { offence: Offence::Downtime, .. })) {
            jailed_at = Some(chain.state.height);
            break;
        }
    }
    // More than half of a 100-block window: jailed at the 51st miss.
    assert_eq!(jailed_at, Some(51));
    assert_eq!(tokens(&chain, "val-b"), 9_999_000_000, "0.01% of 10,000 VANNA burned");
    chain.offline.clear();
    let (receipt, _) = run(&mut chain, "val-b", vec![action(Kind::Unjail(wire::Unjail {}))]);
    assert!(matches!(action_error(&receipt), TxError::StillJailed { .. }));
    chain.block_interval_ms = chain.state.staking.params.downtime_jail_ms;
    chain.produce_block();
    let (receipt, _) = run(&mut chain, "val-b", vec![action(Kind::Unjail(wire::Unjail {}))]);
    assert!(receipt.first_error().is_none());
    assert!(!chain.state.staking.validators[&chain.address("val-b")].jailed);
}

#[test]
fn jailed_validators_leave_the_set_at_the_next_epoch_and_earn_nothing_meanwhile() {
    let mut chain = staked_sandbox();
    let key = chain.state.staking.validators[&chain.address("val-b")].consensus_key;
    chain.evidence.push(EvidenceRecord {
        consensus_key: key,
        offence: Offence::DoubleProposal,
        height: 0,
        reporter: None,
    });
    chain.produce_block();
    assert_eq!(chain.state.staking.active.len(), 2, "the set changes only at an epoch boundary");
    trade(&mut chain);
    assert_eq!(chain.state.staking.validators[&chain.address("val-b")].reward_pool, 0);
    while !chain.state.height.is_multiple_of(chain.state.staking.params.epoch_blocks) {
        chain.produce_block();
    }
    let active: Vec<_> = chain.state.staking.active.iter().map(|m| m.operator).collect();
    assert_eq!(active, vec![chain.address("val-a")]);
}

#[test]
fn stake_bonded_after_the_offence_is_spared_even_once_unbonding() {
    let mut chain = staked_sandbox();
    let offence_height = chain.state.height;
    act(&mut chain, "bob", |c| vec![delegate(c, "val-a", "1000")]);
    act(&mut chain, "bob", |c| vec![undelegate(c, "val-a", "600")]);
    let key = chain.state.staking.validators[&chain.address("val-a")].consensus_key;
    chain.evidence.push(EvidenceRecord {
        consensus_key: key,
        offence: Offence::DoubleVote,
        height: offence_height,
        reporter: None,
    });
    let block = chain.produce_block();
    assert_eq!(block.state_root, chain.state.state_root_from_scratch());
    let bob = chain.address("bob");
    let entry = chain.state.staking.unbonding.iter().find(|((d, _), _)| *d == bob).unwrap().1;
    assert_eq!(entry.balance, entry.initial_balance, "bonded after the offence, so not slashed while unbonding");
    // Still bonded: 400 VANNA worth, unchanged (to the micro unit, rounding against bob).
    let value = chain.state.staking.delegations_of(&bob)[0].2;
    assert!((399_999_999..=400_000_000).contains(&value), "{value}");
}

#[test]
fn rewards_paid_during_a_slash_are_committed() {
    let mut chain = staked_sandbox();
    act(&mut chain, "bob", |c| vec![delegate(c, "val-a", "2000")]);
    trade(&mut chain);
    let bob = chain.address("bob");
    assert!(chain.state.staking.pending_rewards(&bob, &chain.address("val-a")) > 0);
    let key = chain.state.staking.validators[&chain.address("val-a")].consensus_key;
    // An offence before bob bonded: his shares are topped up, his rewards paid first.
    chain.evidence.push(EvidenceRecord { consensus_key: key, offence: Offence::DoubleVote, height: 0, reporter: None });
    let block = chain.produce_block();
    assert_eq!(block.state_root, chain.state.state_root_from_scratch());
    let proof = prost::Message::encode_to_vec(&chain.state.prove_account(&bob).unwrap());
    let proven = vanna_runtime::verify_account_proof(&block.state_root, &bob, &proof).unwrap();
    assert_eq!(proven.usd, chain.state.account(&bob).unwrap().usd.to_string());
}

#[test]
fn huge_amounts_are_refused_not_a_panic() {
    let mut chain = staked_sandbox();
    let (receipt, _) = act(&mut chain, "alice", |c| vec![delegate(c, "val-a", "99999999999999999999")]);
    assert!(matches!(action_error(&receipt), TxError::TooLarge { .. }));
}

#[test]
fn more_refusals_with_their_reasons() {
    let mut chain = staked_sandbox();
    let edit = |rate: &str, moniker: &str| {
        action(Kind::EditValidator(wire::EditValidator { commission_rate: rate.into(), moniker: moniker.into() }))
    };
    let (receipt, _) = run(&mut chain, "alice", vec![edit("0.1", "")]);
    assert_eq!(action_error(&receipt), TxError::UnknownValidator(chain.address("alice")));
    let (receipt, _) = run(&mut chain, "val-a", vec![edit("", &"x".repeat(65))]);
    assert_eq!(action_error(&receipt), TxError::BadMoniker { max: 64 });
    let (receipt, _) = run(&mut chain, "val-a", vec![edit("", &"x".repeat(64))]);
    assert!(receipt.first_error().is_none());
    let (receipt, _) = run(&mut chain, "val-a", vec![action(Kind::Unjail(wire::Unjail {}))]);
    assert_eq!(action_error(&receipt), TxError::NotJailed(chain.address("val-a")));
    let (receipt, _) = run(&mut chain, "alice", vec![action(Kind::Unjail(wire::Unjail {}))]);
    assert_eq!(action_error(&receipt), TxError::UnknownValidator(chain.address("alice")));
    // Redelegation entries between one pair of validators are bounded.
    act(&mut chain, "alice", |c| vec![delegate(c, "val-a", "100")]);
    let max = chain.state.staking.params.max_entries;
    for _ in 0..max {
        let (receipt, _) = act(&mut chain, "alice", |c| vec![redelegate(c, "val-a", "val-b", "1")]);
        assert!(receipt.first_error().is_none());
    }
    let (receipt, _) = act(&mut chain, "alice", |c| vec![redelegate(c, "val-a", "val-b", "1")]);
    assert_eq!(action_error(&receipt), TxError::TooManyRedelegationEntries { max });
    let (receipt, _) = act(&mut chain, "alice", |c| vec![redelegate(c, "val-a", "val-a", "1")]);
    assert_eq!(action_error(&receipt), TxError::SelfRedelegation);
}

#[test]
fn registered_validators_are_bounded_and_queries_answer() {
    use vanna_runtime::staking::MAX_VALIDATORS;
    let (mut genesis, mut signers) = vanna_runtime::sandbox::demo_genesis(&[("alice", 0)]);
    let names: Vec<String> = (0..MAX_VALIDATORS).map(|i| format!("v{i}")).collect();
    let specs: Vec<(&str, u64, u64, &str)> = names.iter().map(|n| (n.as_str(), 1_000, 0, "0")).collect();
    signers.extend(vanna_runtime::sandbox::add_validators(&mut genesis, &specs));
    genesis.accounts[1].vanna = vanna_runtime::money::Amount::from_micro(5_000_000_000);
    let mut chain = Sandbox::new(&genesis, signers).unwrap();
    assert_eq!(chain.state.staking.validators.len(), MAX_VALIDATORS);
    let (receipt, _) = run(&mut chain, "alice", vec![register("alice-node", "0.1", "2000")]);
    assert_eq!(action_error(&receipt), TxError::TooManyValidators { max: MAX_VALIDATORS });
    // Queries: the active set is the top 100 by stake; queues by delegator.
    assert_eq!(chain.state.staking.active.len(), 100);
    let staking = &chain.state.staking;
    assert!(staking.is_active(&staking.active[99].operator));
    assert_eq!(staking.validators.keys().filter(|operator| !staking.is_active(operator)).count(), MAX_VALIDATORS - 100);
    act(&mut chain, "alice", |c| {
        vec![delegate(c, "v0", "10"), undelegate(c, "v0", "4"), redelegate(c, "v0", "v1", "3")]
    });
    let alice = chain.address("alice");
    assert_eq!(chain.state.staking.unbonding_of(&alice).len(), 1);
    assert_eq!(chain.state.staking.redelegations_of(&alice).len(), 1);
    assert_eq!(chain.state.staking.validator(&chain.address("v1")).unwrap().tokens, 1_003_000_000);
}
