//! The canonical order of a block's transactions. The proposer chooses which
//! transactions a block carries, never their order: cancels come first, then
//! makers' quotes (post-only orders and replaces), then everything else;
//! within a class, by SHA-256 of a seed and the transaction's hash, a key no
//! sender can aim at without knowing the seed; and each sender's
//! transactions in nonce order, whatever their keys. The node sorts its
//! proposals with [`canonical_order`] and refuses a proposal that
//! [`check_canonical`] refuses; the seed is the node's to choose (see
//! ARCHITECTURE.md: what a proposer can and cannot influence).
//!
//! Pure, and total over any bytes: an undecodable transaction sorts as
//! "everything else" under its hash, with no sender.

use std::collections::BTreeMap;

use prost::Message;
use sha2::{Digest, Sha256};
use vanna_proto::v1 as wire;
use vanna_proto::v1::action::Kind;

use crate::tx::transaction_hash;

/// The classes of a block, in execution order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum OrderClass {
    /// Only cancels (orders, cancel-all, backstop offers).
    Cancel,
    /// Only cancels, post-only orders and replaces: a maker's quotes.
    Quote,
    /// Everything else.
    Other,
}

/// What ordering needs of one transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Sortable {
    class: OrderClass,
    key: [u8; 32],
    sender: Option<(Vec<u8>, u64)>,
}

fn sortable(bytes: &[u8], seed: &[u8; 32]) -> Sortable {
    let key: [u8; 32] = Sha256::new().chain_update(seed).chain_update(transaction_hash(bytes)).finalize().into();
    let body = wire::SignedTransaction::decode(bytes)
        .ok()
        .and_then(|signed| wire::TransactionBody::decode(signed.body.as_slice()).ok());
    let Some(body) = body else {
        return Sortable { class: OrderClass::Other, key, sender: None };
    };
    let class = body.actions.iter().map(|action| action_class(action.kind.as_ref())).max().unwrap_or(OrderClass::Other);
    Sortable { class, key, sender: Some((body.sender, body.nonce)) }
}

fn action_class(kind: Option<&Kind>) -> OrderClass {
    match kind {
        Some(Kind::CancelOrder(_) | Kind::CancelAll(_) | Kind::CancelBackstop(_)) => OrderClass::Cancel,
        Some(Kind::PlaceOrder(order)) if order.post_only => OrderClass::Quote,
        Some(Kind::ReplaceOrder(_)) => OrderClass::Quote,
        _ => OrderClass::Other,
    }
}

/// The class of one encoded transaction.
pub fn class_of(bytes: &[u8]) -> OrderClass {
    sortable(bytes, &[0; 32]).class
}

/// The canonical order of `transactions` under `seed`: the indices of
/// `transactions` in the order they execute.
pub fn canonical_order(transactions: &[Vec<u8>], seed: &[u8; 32]) -> Vec<usize> {
    let items: Vec<Sortable> = transactions.iter().map(|bytes| sortable(bytes, seed)).collect();
    let mut slots: Vec<usize> = (0..items.len()).collect();
    slots.sort_by(|&a, &b| (items[a].class, items[a].key, a).cmp(&(items[b].class, items[b].key, b)));
    // Each sender keeps the slots its transactions' keys won, filled in nonce order.
    let mut by_sender: BTreeMap<&[u8], Vec<usize>> = BTreeMap::new();
    for (position, &index) in slots.iter().enumerate() {
        if let Some((sender, _)) = &items[index].sender {
            by_sender.entry(sender.as_slice()).or_default().push(position);
        }
    }
    let mut order = slots.clone();
    for positions in by_sender.values() {
        let mut mine: Vec<usize> = positions.iter().map(|&position| slots[position]).collect();
        mine.sort_by_key(|&index| (items[index].sender.as_ref().map(|(_, nonce)| *nonce), items[index].key, index));
        for (&position, index) in positions.iter().zip(mine) {
            order[position] = index;
        }
    }
    order
}

/// Why a block's transactions are not in canonical order.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("transaction {position} of the block is out of canonical order: transaction {expected} belongs there")]
pub struct OrderError {
    pub position: usize,
    pub expected: usize,
}

/// Refuses `transactions` unless they are already in canonical order under `seed`.
pub fn check_canonical(transactions: &[Vec<u8>], seed: &[u8; 32]) -> Result<(), OrderError> {
    match canonical_order(transactions, seed).into_iter().enumerate().find(|(position, index)| position != index) {
        Some((position, expected)) => Err(OrderError { position, expected }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::tx::{Signer, cancel, limit_order, place};

    fn order(post_only: bool) -> wire::Action {
        place(wire::PlaceOrder { post_only, ..limit_order("BTC-25DEC26-100000-C", wire::Side::Buy, "100", "1") })
    }

    fn tx(signer: &Signer, nonce: u64, actions: Vec<wire::Action>) -> Vec<u8> {
        signer.sign("vanna-test", nonce, actions)
    }

    #[test]
    fn classes_go_cancels_then_quotes_then_the_rest() {
        let alice = Signer::from_seed("alice");
        let bob = Signer::from_seed("bob");
        let carol = Signer::from_seed("carol");
        let txs = vec![
            tx(&alice, 0, vec![order(false)]),
            tx(&bob, 0, vec![order(true), cancel(3)]),
            tx(&carol, 0, vec![cancel(1)]),
            vec![0xff; 7],
        ];
        assert_eq!(class_of(&txs[0]), OrderClass::Other);
        assert_eq!(class_of(&txs[1]), OrderClass::Quote);
        assert_eq!(class_of(&txs[2]), OrderClass::Cancel);
        assert_eq!(class_of(&txs[3]), OrderClass::Other);
        let order = canonical_order(&txs, &[7; 32]);
        assert_eq!(&order[..2], &[2, 1]);
        let sorted: Vec<Vec<u8>> = order.iter().map(|&i| txs[i].clone()).collect();
        assert_eq!(check_canonical(&sorted, &[7; 32]), Ok(()));
        assert!(check_canonical(&txs, &[7; 32]).is_err());
    }

    proptest! {
        /// Whatever the mix, the order is a permutation, each class comes in
        /// turn, each sender's nonces ascend, sorting twice changes nothing,
        /// and the order does not depend on the order given.
        #[test]
        fn the_canonical_order_is_a_fixed_point_with_nonces_in_order(
            picks in prop::collection::vec((0usize..4, 0u64..6, 0u8..3), 0..40),
            seed in any::<[u8; 32]>(),
            rotate in 0usize..40,
        ) {
            let signers: Vec<Signer> = (0..4).map(|i| Signer::from_seed(&format!("s{i}"))).collect();
            let mut txs: Vec<Vec<u8>> = picks
                .iter()
                .map(|&(who, nonce, kind)| {
                    let action = match kind { 0 => cancel(nonce), 1 => order(true), _ => order(false) };
                    tx(&signers[who], nonce, vec![action])
                })
                .collect();
            let order = canonical_order(&txs, &seed);
            let mut seen = order.clone();
            seen.sort();
            prop_assert_eq!(seen, (0..txs.len()).collect::<Vec<_>>());
            let sorted: Vec<Vec<u8>> = order.iter().map(|&i| txs[i].clone()).collect();
            prop_assert!(check_canonical(&sorted, &seed).is_ok());
            let mut last_nonce: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
            for bytes in &sorted {
                let Sortable { sender: Some((sender, nonce)), .. } = sortable(bytes, &seed) else { continue };
                if let Some(previous) = last_nonce.insert(sender, nonce) {
                    prop_assert!(previous <= nonce);
                }
            }
            if !txs.is_empty() {
                let by = rotate % txs.len();
                txs.rotate_left(by);
                let again: Vec<Vec<u8>> = canonical_order(&txs, &seed).iter().map(|&i| txs[i].clone()).collect();
                prop_assert_eq!(again, sorted);
            }
        }
    }
}
