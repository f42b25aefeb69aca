//! Each refusal, the eviction, selection and pruning rules, and property
//! tests of the pool's invariants. Envelopes are built by hand over
//! arbitrary bytes: the pool never looks inside a transaction.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use vanna_types::tx::transaction_hash;
use vanna_types::{Address, Envelope};

use crate::{AccountView, Admitted, Config, Mempool, MempoolError, Pruned, TxHash};

fn address(who: u8) -> Address {
    Address([who; 20])
}

/// A distinct transaction per (who, nonce, variant), `size` bytes long (at least 10).
fn tx_variant(who: u8, nonce: u64, size: usize, variant: u8) -> (Vec<u8>, Envelope) {
    let mut bytes = vec![0u8; size.max(10)];
    bytes[0] = who;
    bytes[1..9].copy_from_slice(&nonce.to_be_bytes());
    bytes[9] = variant;
    let envelope = Envelope { hash: transaction_hash(&bytes), sender: address(who), nonce, size: bytes.len() };
    (bytes, envelope)
}

fn tx(who: u8, nonce: u64) -> (Vec<u8>, Envelope) {
    tx_variant(who, nonce, 100, 0)
}

fn small() -> Config {
    Config {
        max_transactions: 10,
        max_bytes: 100_000,
        max_per_account: 4,
        nonce_window: 8,
        ttl_ms: 1_000,
        verified_capacity: 100,
        refused_capacity: 100,
    }
}

fn offer(pool: &mut Mempool, (bytes, envelope): (Vec<u8>, Envelope), committed: u64) -> Result<Admitted, MempoolError> {
    let admitted = pool.insert(bytes, envelope, AccountView::Exists { nonce: committed }, 0);
    pool.check_invariants();
    admitted
}

fn hash(who: u8, nonce: u64) -> TxHash {
    tx(who, nonce).1.hash
}

fn all_at(nonce: u64) -> impl Fn(&Address) -> Option<u64> {
    move |_| Some(nonce)
}

fn chosen(pool: &Mempool, committed: impl Fn(&Address) -> Option<u64>, max_txs: usize) -> Vec<(u8, u64)> {
    pool.select(committed, max_txs, usize::MAX).iter().map(|s| (s.sender.0[0], s.nonce)).collect()
}

#[test]
fn a_ready_transaction_is_admitted_and_selected() {
    let mut pool = Mempool::new(small());
    let admitted = offer(&mut pool, tx(1, 0), 0).unwrap();
    assert_eq!(admitted, Admitted { ready: true, dropped: vec![] });
    assert!(pool.contains(&hash(1, 0)) && pool.is_verified(&hash(1, 0)));
    assert_eq!((pool.len(), pool.bytes()), (1, 100));
    let selected = pool.select(all_at(0), 10, 1_000);
    assert_eq!(selected.len(), 1);
    assert_eq!(selected[0].bytes, tx(1, 0).0);
    assert_eq!(selected[0].hash, hash(1, 0));
}

#[test]
fn an_unknown_sender_is_refused() {
    let mut pool = Mempool::new(small());
    let (bytes, envelope) = tx(1, 0);
    assert_eq!(pool.insert(bytes, envelope, AccountView::Missing, 0), Err(MempoolError::UnknownSender(address(1))));
    assert_eq!(AccountView::from(None), AccountView::Missing);
    assert_eq!(AccountView::from(Some(3)), AccountView::Exists { nonce: 3 });
    assert!(pool.is_empty());
    assert!(pool.is_verified(&hash(1, 0)), "its signature was verified all the same");
    assert!(!pool.contains(&hash(1, 0)));
}

#[test]
fn a_stale_nonce_is_refused_with_the_expected_one() {
    let mut pool = Mempool::new(small());
    assert_eq!(
        offer(&mut pool, tx(1, 2), 3),
        Err(MempoolError::StaleNonce { account: address(1), expected: 3, got: 2 })
    );
    // An older view than the pool already had does not bring a nonce back.
    offer(&mut pool, tx(1, 5), 5).unwrap();
    assert_eq!(
        offer(&mut pool, tx(1, 4), 2),
        Err(MempoolError::StaleNonce { account: address(1), expected: 5, got: 4 })
    );
}

#[test]
fn a_nonce_beyond_the_window_is_refused() {
    let mut pool = Mempool::new(small());
    offer(&mut pool, tx(1, 7), 0).unwrap();
    assert_eq!(
        offer(&mut pool, tx(1, 8), 0),
        Err(MempoolError::NonceTooFarAhead { account: address(1), expected: 0, got: 8, window: 8 })
    );
    assert_eq!(offer(&mut pool, tx(2, u64::MAX), 0).unwrap_err().code(), "nonce_too_far_ahead");
}

#[test]
fn a_duplicate_is_refused() {
    let mut pool = Mempool::new(small());
    offer(&mut pool, tx(1, 0), 0).unwrap();
    assert_eq!(offer(&mut pool, tx(1, 0), 0), Err(MempoolError::Duplicate { hash: hash(1, 0) }));
}

#[test]
fn a_pending_nonce_is_never_replaced() {
    let mut pool = Mempool::new(small());
    offer(&mut pool, tx(1, 0), 0).unwrap();
    let other = tx_variant(1, 0, 100, 1);
    assert_eq!(
        offer(&mut pool, other, 0),
        Err(MempoolError::NonceTaken { account: address(1), nonce: 0, pending: hash(1, 0) })
    );
    assert!(pool.contains(&hash(1, 0)));
}

#[test]
fn an_envelope_of_other_bytes_is_refused_and_not_taken_as_verified() {
    let mut pool = Mempool::new(small());
    let (_, envelope) = tx(1, 0);
    let (bytes, _) = tx(1, 1);
    let error = pool.insert(bytes.clone(), envelope, AccountView::Exists { nonce: 0 }, 0).unwrap_err();
    assert_eq!(error, MempoolError::EnvelopeMismatch { envelope: envelope.hash, bytes: transaction_hash(&bytes) });
    assert!(!pool.is_verified(&envelope.hash) && !pool.is_verified(&transaction_hash(&bytes)));
}

#[test]
fn a_full_account_refuses_a_higher_nonce_and_drops_its_highest_for_a_lower_one() {
    let mut pool = Mempool::new(small());
    for nonce in [0, 1, 5, 6] {
        offer(&mut pool, tx(1, nonce), 0).unwrap();
    }
    assert_eq!(offer(&mut pool, tx(1, 7), 0), Err(MempoolError::AccountFull { account: address(1), max: 4 }));
    // Nonce 2 is needed before 6 can ever be included.
    assert_eq!(offer(&mut pool, tx(1, 2), 0), Ok(Admitted { ready: true, dropped: vec![hash(1, 6)] }));
    assert_eq!(pool.nonces_of(&address(1)), vec![0, 1, 2, 5]);
    assert!(pool.is_verified(&hash(1, 6)), "a dropped entry stays known as verified");
    // Full with a contiguous run: nothing higher to drop.
    let mut pool = Mempool::new(small());
    for nonce in 0..4 {
        offer(&mut pool, tx(1, nonce), 0).unwrap();
    }
    assert!(matches!(offer(&mut pool, tx(1, 4), 0), Err(MempoolError::AccountFull { .. })));
}

/// Ten slots: accounts 1 and 2 hold 4 ready each, account 3 holds 2 waiting.
fn full_pool() -> Mempool {
    let mut pool = Mempool::new(small());
    for who in [1, 2] {
        for nonce in 0..4 {
            offer(&mut pool, tx(who, nonce), 0).unwrap();
        }
    }
    offer(&mut pool, tx(3, 2), 0).unwrap();
    offer(&mut pool, tx(3, 3), 0).unwrap();
    assert_eq!(pool.len(), 10);
    pool
}

#[test]
fn a_full_pool_drops_waiting_entries_first() {
    let mut pool = full_pool();
    // A ready newcomer takes the highest waiting entry of the account holding the most waiting.
    assert_eq!(offer(&mut pool, tx(4, 0), 0), Ok(Admitted { ready: true, dropped: vec![hash(3, 3)] }));
    // A waiting newcomer ranks below a waiting account of its own size plus one: refused.
    let refused = offer(&mut pool, tx(5, 1), 0);
    assert_eq!(refused, Err(MempoolError::PoolFull { count: 10, max_count: 10, bytes: 1_000, max_bytes: 100_000 }));
    assert_eq!(refused.unwrap_err().code(), "pool_full");
}

#[test]
fn a_full_pool_never_drops_a_ready_entry_for_a_waiting_one() {
    let mut pool = Mempool::new(small());
    for who in 1..=5 {
        offer(&mut pool, tx(who, 0), 0).unwrap();
        offer(&mut pool, tx(who, 1), 0).unwrap();
    }
    let before = pool.snapshot();
    assert!(matches!(offer(&mut pool, tx(9, 3), 0), Err(MempoolError::PoolFull { .. })));
    assert_eq!(pool.snapshot(), before, "a refusal changes nothing");
}

#[test]
fn a_full_pool_takes_from_the_account_holding_the_most() {
    let mut pool = full_pool();
    offer(&mut pool, tx(4, 0), 0).unwrap(); // drops (3, 3)
    offer(&mut pool, tx(5, 0), 0).unwrap(); // drops (3, 2), the last waiting one
    // All ready now: 1 and 2 hold 4 each; the older entry of the two highest goes.
    assert_eq!(offer(&mut pool, tx(6, 0), 0), Ok(Admitted { ready: true, dropped: vec![hash(1, 3)] }));
    assert_eq!(offer(&mut pool, tx(7, 0), 0), Ok(Admitted { ready: true, dropped: vec![hash(2, 3)] }));
    // Now 1 and 2 hold 3, the rest 1: account 6 may grow to 2, but not to
    // the 3 that account 2 still holds.
    assert_eq!(offer(&mut pool, tx(6, 1), 0).unwrap().dropped, vec![hash(1, 2)]);
    assert!(matches!(offer(&mut pool, tx(6, 2), 0), Err(MempoolError::PoolFull { .. })));
    assert_eq!(offer(&mut pool, tx(8, 0), 0).unwrap().dropped, vec![hash(2, 2)]);
}

#[test]
fn the_byte_limit_drops_as_many_entries_as_it_takes_or_none() {
    let config = Config { max_bytes: 1_000, ..small() };
    let mut pool = Mempool::new(config);
    for who in 1..=3 {
        for nonce in 0..3 {
            offer(&mut pool, tx_variant(who, nonce, 100, 0), 0).unwrap();
        }
    }
    // 900 bytes held; 350 more needs three 100-byte entries out.
    let big = tx_variant(9, 0, 350, 0);
    let admitted = offer(&mut pool, big, 0).unwrap();
    assert_eq!(admitted.dropped.len(), 3);
    assert_eq!(pool.bytes(), 950);
    // Larger than the whole pool: refused, nothing dropped.
    let before = pool.snapshot();
    assert!(matches!(offer(&mut pool, tx_variant(8, 0, 1_001, 0), 0), Err(MempoolError::PoolFull { .. })));
    assert_eq!(pool.snapshot(), before);
}

#[test]
fn a_gap_waits_until_it_fills() {
    let mut pool = Mempool::new(small());
    assert!(!offer(&mut pool, tx(1, 2), 0).unwrap().ready);
    assert!(!offer(&mut pool, tx(1, 1), 0).unwrap().ready);
    assert!(chosen(&pool, all_at(0), 10).is_empty(), "nothing ready before nonce 0");
    assert!(offer(&mut pool, tx(1, 0), 0).unwrap().ready);
    assert_eq!(chosen(&pool, all_at(0), 10), vec![(1, 0), (1, 1), (1, 2)]);
}

#[test]
fn selection_takes_turns_by_arrival_within_the_limits() {
    let mut pool = Mempool::new(Config { max_transactions: 100, ..small() });
    for nonce in 0..3 {
        offer(&mut pool, tx(2, nonce), 0).unwrap();
    }
    for nonce in 0..2 {
        offer(&mut pool, tx(1, nonce), 0).unwrap();
    }
    offer(&mut pool, tx(3, 1), 0).unwrap(); // waits for its nonce 0
    assert_eq!(chosen(&pool, all_at(0), 100), vec![(2, 0), (1, 0), (2, 1), (1, 1), (2, 2)]);
    assert_eq!(chosen(&pool, all_at(0), 3), vec![(2, 0), (1, 0), (2, 1)]);
    // An account the state no longer knows is skipped; another committed nonce starts the run there.
    let committed = |a: &Address| match a.0[0] {
        1 => None,
        _ => Some(1),
    };
    assert_eq!(chosen(&pool, committed, 100), vec![(2, 1), (3, 1), (2, 2)]);
    // Bytes: 250 fit two 100-byte transactions.
    assert_eq!(pool.select(all_at(0), 100, 250).len(), 2);
    assert!(pool.select(all_at(0), 100, 99).is_empty());
}

#[test]
fn an_account_whose_next_transaction_does_not_fit_is_passed_over() {
    let mut pool = Mempool::new(small());
    offer(&mut pool, tx_variant(1, 0, 100, 0), 0).unwrap();
    offer(&mut pool, tx_variant(1, 1, 500, 0), 0).unwrap();
    offer(&mut pool, tx_variant(1, 2, 100, 0), 0).unwrap();
    offer(&mut pool, tx_variant(2, 0, 100, 0), 0).unwrap();
    offer(&mut pool, tx_variant(2, 1, 100, 0), 0).unwrap();
    let picked: Vec<(u8, u64)> = pool.select(all_at(0), 10, 400).iter().map(|s| (s.sender.0[0], s.nonce)).collect();
    assert_eq!(picked, vec![(1, 0), (2, 0), (2, 1)], "(1, 2) never goes without (1, 1)");
}

#[test]
fn selection_never_exceeds_the_block_limit() {
    let config = Config {
        max_transactions: 30_000,
        max_bytes: 30_000 * 100,
        max_per_account: 100,
        nonce_window: 100,
        ..small()
    };
    let mut pool = Mempool::new(config);
    for who in 0..=255u8 {
        for nonce in 0..100 {
            if pool.len() < 21_000 {
                pool.insert(tx(who, nonce).0, tx(who, nonce).1, AccountView::Exists { nonce: 0 }, 0).unwrap();
            }
        }
    }
    let limit = vanna_types::limits::MAX_TRANSACTIONS_PER_BLOCK;
    assert_eq!(pool.select(all_at(0), usize::MAX, usize::MAX).len(), limit);
}

#[test]
fn on_finalized_removes_included_stale_and_expired_and_promotes_the_rest() {
    let mut pool = Mempool::new(small());
    let at = |pool: &mut Mempool, (bytes, envelope): (Vec<u8>, Envelope), now_ms| {
        pool.insert(bytes, envelope, AccountView::Exists { nonce: 0 }, now_ms).unwrap()
    };
    at(&mut pool, tx(5, 0), 0); // expires first
    at(&mut pool, tx(1, 0), 100);
    at(&mut pool, tx(1, 2), 100); // waits for 1
    at(&mut pool, tx(2, 0), 100); // account 2 will vanish
    at(&mut pool, tx(3, 0), 100); // will have used nonce 0 elsewhere
    at(&mut pool, tx(4, 0), 600);
    let committed = |a: &Address| match a.0[0] {
        1 => Some(2), // nonce 0 here, nonce 1 from another node
        2 => None,
        3 => Some(1),
        _ => Some(0),
    };
    let pruned = pool.on_finalized(committed, &[hash(1, 0), hash(9, 9)], 1_000);
    pool.check_invariants();
    assert_eq!(pruned, Pruned { included: 1, stale: 2, expired: 1 });
    assert_eq!(chosen(&pool, committed, 10), vec![(1, 2), (4, 0)], "(1, 2) is ready now");
    for (who, nonce) in [(1, 0), (2, 0), (3, 0), (5, 0)] {
        assert!(!pool.contains(&hash(who, nonce)) && pool.is_verified(&hash(who, nonce)));
    }
    // Time never goes backwards: an earlier now is the latest seen.
    let pruned = pool.on_finalized(committed, &[], 0);
    assert_eq!(pruned, Pruned::default());
    let pruned = pool.on_finalized(committed, &[], 1_600);
    assert_eq!(pruned.expired, 2, "(1, 2) at 1,100 ms and (4, 0) at 1,600 ms");
    assert!(pool.is_empty());
}

#[test]
fn verified_hashes_outlive_the_pool_up_to_the_capacity() {
    let mut pool = Mempool::new(Config { verified_capacity: 3, refused_capacity: 1, ..small() });
    for who in 1..=4 {
        offer(&mut pool, tx(who, 0), 0).unwrap();
    }
    let included: Vec<TxHash> = (1..=4).map(|who| hash(who, 0)).collect();
    pool.on_finalized(all_at(1), &included, 0);
    assert!(!pool.is_verified(&hash(1, 0)), "the oldest is forgotten");
    assert!((2..=4).all(|who| pool.is_verified(&hash(who, 0))));
    // Refusals have their own record and do not push the included out.
    for who in 5..=9 {
        let _ = offer(&mut pool, tx(who, 0), 1);
    }
    assert!((2..=4).all(|who| pool.is_verified(&hash(who, 0))));
    assert!(pool.is_verified(&hash(9, 0)) && !pool.is_verified(&hash(8, 0)));
    // Noted from a block.
    pool.note_verified(&hash(10, 0));
    assert!(pool.is_verified(&hash(10, 0)) && !pool.is_verified(&hash(2, 0)));
}

#[test]
fn every_refusal_says_what_to_do() {
    let errors = [
        MempoolError::Duplicate { hash: [0xab; 32] },
        MempoolError::UnknownSender(address(1)),
        MempoolError::StaleNonce { account: address(1), expected: 3, got: 2 },
        MempoolError::NonceTooFarAhead { account: address(1), expected: 0, got: 300, window: 256 },
        MempoolError::NonceTaken { account: address(1), nonce: 4, pending: [0xcd; 32] },
        MempoolError::AccountFull { account: address(1), max: 64 },
        MempoolError::PoolFull { count: 10, max_count: 10, bytes: 5, max_bytes: 9 },
        MempoolError::EnvelopeMismatch { envelope: [1; 32], bytes: [2; 32] },
    ];
    let codes: BTreeSet<&str> = errors.iter().map(MempoolError::code).collect();
    assert_eq!(codes.len(), errors.len());
    assert!(errors[0].to_string().contains(&"ab".repeat(32)));
    assert!(errors[3].to_string().contains("300") && errors[3].to_string().contains("256"));
    assert!(errors[4].to_string().contains(&"cd".repeat(32)));
}

/// One step of a random history against a small pool.
#[derive(Clone, Debug)]
enum Step {
    /// Account `who` (6 has no account) sends nonce `committed + ahead`, of `size` bytes.
    Send { who: u8, ahead: i64, size: usize, variant: u8 },
    /// A block includes the pool's choice (up to `max_txs`, `max_bytes`);
    /// `foreign` accounts also used `extra` nonces in transactions this node
    /// never saw; `elapsed_ms` passes.
    Block { max_txs: usize, max_bytes: usize, foreign: Vec<(u8, u64)>, elapsed_ms: u64 },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0u8..7, -1i64..8, 0usize..4, 0u8..2)
            .prop_map(|(who, ahead, size, variant)| Step::Send { who, ahead, size: 10 + size * 130, variant }),
        1 => (0usize..12, 0usize..3_000, prop::collection::vec((0u8..6, 1u64..3), 0..3), 0u64..700)
            .prop_map(|(max_txs, max_bytes, foreign, elapsed_ms)| Step::Block { max_txs, max_bytes, foreign, elapsed_ms }),
    ]
}

fn property_config() -> Config {
    Config {
        max_transactions: 12,
        max_bytes: 2_500,
        max_per_account: 3,
        nonce_window: 6,
        ttl_ms: 2_000,
        verified_capacity: 1_000,
        refused_capacity: 1_000,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever arrives: the structure stays consistent (ready runs
    /// contiguous from the committed nonce, counts and bytes within every
    /// limit); an insert is admitted or changes nothing; a waiting
    /// newcomer never drops a ready entry; a selection respects its limits
    /// and each account's nonce order from its committed nonce; and after a
    /// block nothing included, stale or expired is left.
    #[test]
    fn the_pool_keeps_its_invariants(steps in prop::collection::vec(step(), 1..80)) {
        let mut pool = Mempool::new(property_config());
        let mut committed: BTreeMap<Address, u64> = (0..6).map(|who| (address(who), 0)).collect();
        let mut now_ms = 0;
        for step in steps {
            match step {
                Step::Send { who, ahead, size, variant } => {
                    let known = committed.get(&address(who)).copied();
                    let nonce = known.unwrap_or(0).saturating_add_signed(ahead);
                    let (bytes, envelope) = tx_variant(who, nonce, size, variant);
                    let before = pool.snapshot();
                    let ready_before = pool.ready_hashes();
                    let view = AccountView::from(known);
                    match pool.insert(bytes, envelope, view, now_ms) {
                        Ok(admitted) => {
                            prop_assert!(pool.contains(&envelope.hash));
                            if !admitted.ready {
                                prop_assert!(admitted.dropped.iter().all(|hash| !ready_before.contains(hash)));
                            }
                            prop_assert!(admitted.dropped.iter().all(|hash| !pool.contains(hash) && pool.is_verified(hash)));
                        }
                        Err(_) => prop_assert_eq!(pool.snapshot(), before),
                    }
                    prop_assert!(pool.is_verified(&envelope.hash));
                }
                Step::Block { max_txs, max_bytes, foreign, elapsed_ms } => {
                    let view = |a: &Address| committed.get(a).copied();
                    let selected = pool.select(view, max_txs, max_bytes);
                    prop_assert!(selected.len() <= max_txs);
                    prop_assert!(selected.iter().map(|s| s.bytes.len()).sum::<usize>() <= max_bytes);
                    let mut next = committed.clone();
                    for chosen in &selected {
                        prop_assert_eq!(transaction_hash(&chosen.bytes), chosen.hash);
                        let expected = next.get_mut(&chosen.sender).unwrap();
                        prop_assert_eq!(chosen.nonce, *expected, "each account's run, in nonce order, from its committed nonce");
                        *expected += 1;
                    }
                    for (who, extra) in foreign {
                        *next.get_mut(&address(who)).unwrap() += extra;
                    }
                    committed = next;
                    now_ms += elapsed_ms;
                    let included: Vec<TxHash> = selected.iter().map(|s| s.hash).collect();
                    pool.on_finalized(|a| committed.get(a).copied(), &included, now_ms);
                    for hash in &included {
                        prop_assert!(!pool.contains(hash));
                    }
                    for (address, &nonce) in &committed {
                        prop_assert!(pool.nonces_of(address).iter().all(|&pending| pending >= nonce), "no stale entry");
                    }
                    prop_assert!(pool.oldest_arrival_ms().is_none_or(|arrived| arrived + 2_000 > now_ms), "nothing expired is left");
                }
            }
            pool.check_invariants();
        }
    }
}
