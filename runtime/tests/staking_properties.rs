//! Property tests for the staking economy over random sequences of bond,
//! delegate, redelegate, unbond, withdraw, claim, fee inflows and slashes.

mod common;

use std::collections::BTreeMap;

use common::*;
use proptest::prelude::*;
use vanna_proto::v1::action::Kind;
use vanna_proto::v1::{self as wire, Side};
use vanna_runtime::BlockContext;
use vanna_runtime::events::Event;
use vanna_runtime::ids::Address;
use vanna_runtime::sandbox::{Sandbox, add_validators, demo_genesis};
use vanna_runtime::staking::{EvidenceRecord, Offence, REWARD_SCALE};
use vanna_runtime::tx::{action, limit_order, place};

const DELEGATORS: [&str; 3] = ["d1", "d2", "d3"];
const VALIDATORS: [&str; 5] = ["val-a", "val-b", "val-c", "val-d", "val-e"];

#[derive(Clone, Debug)]
enum Op {
    Delegate { who: usize, to: usize, amount: u32 },
    Undelegate { who: usize, from: usize, amount: u32 },
    Redelegate { who: usize, from: usize, to: usize, amount: u32 },
    Withdraw { who: usize },
    Claim { who: usize, from: usize },
    Trade { lots: u32 },
    Slash { validator: usize, blocks_ago: u64 },
    Wait { ms: u32 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..3usize, 0..5usize, 1..5_000u32).prop_map(|(who, to, amount)| Op::Delegate { who, to, amount }),
        6 => (0..3usize, 0..5usize, 1..3_000u32).prop_map(|(who, from, amount)| Op::Undelegate { who, from, amount }),
        6 => (0..3usize, 0..5usize, 0..5usize, 1..3_000u32).prop_map(|(who, from, to, amount)| Op::Redelegate { who, from, to, amount }),
        2 => (0..3usize).prop_map(|who| Op::Withdraw { who }),
        4 => (0..3usize, 0..5usize).prop_map(|(who, from)| Op::Claim { who, from }),
        8 => (1..300u32).prop_map(|lots| Op::Trade { lots }),
        1 => (0..5usize, 0..6u64).prop_map(|(validator, blocks_ago)| Op::Slash { validator, blocks_ago }),
        2 => (1..4_000u32).prop_map(|ms| Op::Wait { ms }),
    ]
}

fn chain() -> Sandbox {
    let (mut genesis, mut signers) =
        demo_genesis(&[("d1", 0), ("d2", 0), ("d3", 0), ("buyer", 10_000_000), ("seller", 10_000_000)]);
    for account in genesis.accounts.iter_mut().skip(1).take(3) {
        account.vanna = vanna_runtime::money::Amount::from_micro(20_000_000_000);
    }
    genesis.staking.params.unbonding_period_ms = 5_000;
    genesis.staking.params.epoch_blocks = 4;
    signers.extend(add_validators(
        &mut genesis,
        &[
            ("val-a", 10_000, 0, "0.1"),
            ("val-b", 5_000, 0, "0.03"),
            ("val-c", 2_000, 0, "0"),
            ("val-d", 3_000, 0, "0.2"),
            ("val-e", 1_000, 0, "0.05"),
        ],
    ));
    Sandbox::new(&genesis, signers).unwrap()
}

fn stake_action(chain: &Sandbox, op: &Op) -> Option<(&'static str, wire::Action)> {
    let address = |name: &str| chain.address(name).as_bytes().to_vec();
    Some(match op {
        Op::Delegate { who, to, amount } => (
            DELEGATORS[*who],
            action(Kind::Delegate(wire::Delegate { validator: address(VALIDATORS[*to]), amount: amount.to_string() })),
        ),
        Op::Undelegate { who, from, amount } => (
            DELEGATORS[*who],
            action(Kind::Undelegate(wire::Undelegate {
                validator: address(VALIDATORS[*from]),
                amount: amount.to_string(),
            })),
        ),
        Op::Redelegate { who, from, to, amount } => (
            DELEGATORS[*who],
            action(Kind::Redelegate(wire::Redelegate {
                from_validator: address(VALIDATORS[*from]),
                to_validator: address(VALIDATORS[*to]),
                amount: amount.to_string(),
            })),
        ),
        Op::Withdraw { who } => (DELEGATORS[*who], action(Kind::WithdrawUnbonded(wire::WithdrawUnbonded {}))),
        Op::Claim { who, from } => {
            (DELEGATORS[*who], action(Kind::ClaimRewards(wire::ClaimRewards { validator: address(VALIDATORS[*from]) })))
        }
        _ => return None,
    })
}

/// What the reference model knows: rewards each delegation is entitled to,
/// in micro USD × REWARD_SCALE, rounded down once per block (so the exact
/// entitlement is below `entitled + blocks`).
#[derive(Default)]
struct Reference {
    entitled: BTreeMap<(Address, Address), u128>,
    paid: BTreeMap<(Address, Address), u128>,
    blocks: u128,
    fees_in: u128,
    paid_out: u128,
}

fn value(chain: &Sandbox, delegator: &Address, validator: &Address) -> u64 {
    let staking = &chain.state.staking;
    staking.delegations.get(&(*delegator, *validator)).map_or(0, |d| staking.validators[validator].tokens_for(d.shares))
}

fn run_ops(ops: &[Op]) -> BTreeMap<&'static str, usize> {
    let mut seen: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut chain = chain();
    let total_vanna = chain.state.total_vanna();
    let total_usd = chain.state.total_usd();
    let mut reference = Reference::default();
    for op in ops {
        let mut evidence = Vec::new();
        let mut transactions = Vec::new();
        let mut wait = 0;
        match op {
            Op::Trade { lots } => {
                let quantity = format!("{}", rust_decimal::Decimal::new(*lots as i64, 2));
                for (name, side) in [("seller", Side::Sell), ("buyer", Side::Buy)] {
                    let signer = chain.signer(name).clone();
                    let nonce = chain.next_nonce(&signer.address());
                    transactions.push(signer.sign(
                        &chain.state.params.chain_id,
                        nonce,
                        vec![place(limit_order(PUT, side, "4000", &quantity))],
                    ));
                }
            }
            Op::Slash { validator, blocks_ago } => {
                let key = chain.state.staking.validators[&chain.address(VALIDATORS[*validator])].consensus_key;
                let height = chain.state.height.saturating_sub(*blocks_ago);
                evidence.push(EvidenceRecord {
                    consensus_key: key,
                    offence: Offence::DoubleVote,
                    height,
                    reporter: None,
                });
            }
            Op::Wait { ms } => wait = *ms as u64,
            other => {
                let (name, action) = stake_action(&chain, other).unwrap();
                let signer = chain.signer(name).clone();
                let nonce = chain.next_nonce(&signer.address());
                transactions.push(signer.sign(&chain.state.params.chain_id, nonce, vec![action]));
            }
        }
        let context = BlockContext { evidence: evidence.clone(), ..BlockContext::after(&chain.state, 1_000 + wait) };
        // Snapshot before the block, for the slashing properties.
        let before: BTreeMap<(Address, Address), u64> =
            chain.state.staking.delegations.keys().map(|(d, v)| ((*d, *v), value(&chain, d, v))).collect();
        let before_shares: BTreeMap<(Address, Address), u128> =
            chain.state.staking.delegations.iter().map(|(k, d)| (*k, d.shares)).collect();
        let entries_before = chain.state.staking.unbonding.clone();
        let recent_before = chain.state.staking.recent_bonds.clone();
        let now_before = chain.state.time_ms;

        // The block in its steps, so that distribution can be observed alone.
        let state = &mut chain.state;
        let mut events = state.begin_block(&context).unwrap();
        if let Some(record) = evidence.first() {
            let operator =
                state.staking.validators.values().find(|v| v.consensus_key == record.consensus_key).unwrap().operator;
            let slashed =
                events.iter().any(|e| matches!(e, Event::Slashed { validator, .. } if *validator == operator));
            if slashed {
                check_slash(
                    &chain,
                    operator,
                    record.height,
                    &before,
                    &before_shares,
                    &entries_before,
                    &recent_before,
                    now_before + 1_000 + wait,
                );
            }
        }
        let state = &mut chain.state;
        for bytes in &transactions {
            state.apply_transaction(bytes, &mut events);
        }
        let pools: BTreeMap<Address, u64> = state.staking.validators.iter().map(|(a, v)| (*a, v.reward_pool)).collect();
        let shares: BTreeMap<(Address, Address), u128> =
            state.staking.delegations.iter().map(|(k, d)| (*k, d.shares)).collect();
        state.end_block(&context, &mut events);
        let root = state.state_root();
        assert_eq!(root, state.state_root_from_scratch(), "the incremental root commits to every change");
        for (operator, validator) in &state.staking.validators {
            let distributed = (validator.reward_pool - pools[operator]) as u128;
            if distributed == 0 {
                continue;
            }
            for ((delegator, v), s) in shares.iter().filter(|((_, v), _)| v == operator) {
                *reference.entitled.entry((*delegator, *v)).or_default() +=
                    distributed * REWARD_SCALE * s / validator.shares;
            }
        }
        reference.blocks += 1;
        for event in &events {
            let kind = match event {
                Event::Slashed { .. } => "slashed",
                Event::RewardsPaid { .. } => "rewards_paid",
                Event::Redelegated { .. } => "redelegated",
                Event::UnbondingWithdrawn { .. } => "withdrawn",
                Event::FeesDistributed { .. } => "fees_distributed",
                Event::Undelegated { .. } => "undelegated",
                _ => "other",
            };
            *seen.entry(kind).or_default() += 1;
            match event {
                Event::Filled(fill) => {
                    reference.fees_in += (fill.maker_fee.to_micro() + fill.taker_fee.to_micro()) as u128
                }
                Event::RewardsPaid { delegator, validator, amount } => {
                    *reference.paid.entry((*delegator, *validator)).or_default() += amount.to_micro() as u128;
                    reference.paid_out += amount.to_micro() as u128;
                }
                Event::CommissionPaid { amount, .. } => reference.paid_out += amount.to_micro() as u128,
                _ => {}
            }
        }
        chain.state.check_invariants();
        assert_eq!(chain.state.total_vanna(), total_vanna, "VANNA: liquid + bonded + unbonding + burned is conserved");
        assert_eq!(chain.state.total_usd(), total_usd, "USD is conserved");
        let remainder = chain.state.fee_pool.to_micro() as u128 + chain.state.staking.usd_held() as u128;
        assert_eq!(reference.paid_out + remainder, reference.fees_in, "paid out + undistributed = fees in");
        for ((delegator, validator), paid) in &reference.paid {
            let pending = chain.state.staking.pending_rewards(delegator, validator) as u128;
            let entitled = reference.entitled.get(&(*delegator, *validator)).copied().unwrap_or(0);
            assert!(
                (paid + pending) * REWARD_SCALE <= entitled + reference.blocks,
                "{delegator} claimed more than its share of {validator}"
            );
        }
    }
    seen
}

/// Right after a slash: delegations lost at most the fraction, stake bonded
/// after the offence lost nothing (beyond one micro unit of rounding), and
/// exactly the unbonding entries created after the offence were cut.
fn check_slash(
    chain: &Sandbox,
    operator: Address,
    infraction_height: u64,
    before: &BTreeMap<(Address, Address), u64>,
    before_shares: &BTreeMap<(Address, Address), u128>,
    entries_before: &BTreeMap<(Address, u64), vanna_runtime::staking::UnbondingEntry>,
    recent_before: &BTreeMap<(Address, Address, u64), u128>,
    now: u64,
) {
    let fraction = chain.state.staking.params.double_sign_slash;
    for ((delegator, validator), value_before) in before.iter().filter(|((_, v), _)| *v == operator) {
        let after = value(chain, delegator, validator);
        let floor = (rust_decimal::Decimal::from(*value_before) * (rust_decimal::Decimal::ONE - fraction)).floor();
        assert!(
            rust_decimal::Decimal::from(after) + rust_decimal::Decimal::ONE >= floor,
            "a slash took more than its fraction"
        );
        // A delegation bonded entirely after the offence keeps its value.
        let shares_before = before_shares[&(*delegator, *validator)];
        let tranches: Vec<u128> = recent_before
            .range((*validator, *delegator, infraction_height + 1)..=(*validator, *delegator, u64::MAX))
            .map(|(_, s)| *s)
            .collect();
        let bonded_after: u128 = tranches.iter().sum();
        if bonded_after == shares_before {
            // Each tranche's extra shares round down (against the delegator), and so does its value.
            let rounding = tranches.len() as u64 + 1;
            assert!(
                after + rounding >= *value_before,
                "stake bonded after the offence was slashed: {value_before} -> {after}"
            );
        }
    }
    for (key, entry) in entries_before.iter().filter(|(_, e)| e.validator == operator) {
        let now_entry = &chain.state.staking.unbonding[key];
        if entry.creation_height > infraction_height && entry.completion_ms > now {
            let cut = (rust_decimal::Decimal::from(entry.bonded_at(infraction_height)) * fraction).floor();
            let expected = entry.balance.saturating_sub(cut.try_into().unwrap());
            assert_eq!(now_entry.balance, expected, "stake unbonding since the offence is slashed by the fraction");
        } else {
            assert_eq!(now_entry.balance, entry.balance, "stake that left before the offence is not slashed");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn staking_conserves_pays_fairly_and_slashes_within_bounds(ops in prop::collection::vec(op(), 1..60)) {
        run_ops(&ops);
    }
}

#[test]
fn a_fixed_long_sequence_holds_too() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    use proptest::strategy::ValueTree;
    let mut seen: BTreeMap<&'static str, usize> = BTreeMap::new();
    for _ in 0..4 {
        let ops = prop::collection::vec(op(), 150..200).new_tree(&mut runner).unwrap().current();
        for (kind, count) in run_ops(&ops) {
            *seen.entry(kind).or_default() += count;
        }
    }
    for kind in ["slashed", "rewards_paid", "redelegated", "withdrawn", "fees_distributed", "undelegated"] {
        assert!(
            seen.get(kind).copied().unwrap_or(0) >= 3,
            "the sequences exercised {kind} only {:?} times",
            seen.get(kind)
        );
    }
}
