//! A block's payload: what consensus orders and the runtime executes
//! (`vanna.v1.BlockPayload`), its limits, the canonical-order seed and the
//! transactions root. Pure.

use prost::Message;
use vanna_consensus::{ChainId, Epoch, View, hash_bytes};
use vanna_crypto::bls::{self, BlsPublicKey, BlsSecretKey, BlsSignature};
use vanna_proto::v1 as wire;
use vanna_types::limits::{MAX_ORACLE_REPORTS_PER_BLOCK, MAX_TRANSACTION_BYTES, MAX_TRANSACTIONS_PER_BLOCK};

/// Largest encoded payload a node proposes or accepts: the consensus
/// engine's `max_payload_bytes`, leaving room within the network's 4 MiB
/// consensus message for the proposal around it (about 11,000 transactions
/// of the typical 300 bytes).
pub const MAX_PAYLOAD_BYTES: usize = 3 * 1024 * 1024 + 512 * 1024;
/// Evidence records in one block.
pub const MAX_EVIDENCE_PER_BLOCK: usize = 64;
/// Largest encoded evidence message (two signed consensus messages).
pub const MAX_EVIDENCE_BYTES: usize = 4 * 1024;
/// Largest encoded parent certificate (a bitmap of at most 1,024 validators and one signature).
pub const MAX_CERTIFICATE_BYTES: usize = 1024;
/// Largest encoded oracle report carried in a block.
pub const MAX_REPORT_BYTES: usize = 64 * 1024;

const ORDER_SEED_DOMAIN: &[u8] = b"vanna/order-seed/v1";

/// Why a payload cannot be in a block. (Checks that need state, such as the
/// seed's signer or the parent certificate, are the application's.)
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("payload is {size} bytes, more than the limit of {max}")]
    TooLarge { size: usize, max: usize },
    #[error("payload does not decode: {0}")]
    Malformed(String),
    #[error("payload is not canonically encoded")]
    NotCanonical,
    #[error("payload carries {count} {what}, more than the limit of {max}")]
    TooMany { what: &'static str, count: usize, max: usize },
    #[error("{what} {index} is {size} bytes, more than the limit of {max}")]
    ItemTooLarge { what: &'static str, index: usize, size: usize, max: usize },
    #[error("transaction {index} is not a signed transaction")]
    UndecodableTransaction { index: usize },
    #[error("the order seed is not a BLS signature")]
    BadSeed,
}

/// A decoded payload within every limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    pub order_seed: Vec<u8>,
    pub transactions: Vec<Vec<u8>>,
    pub oracle_reports: Vec<Vec<u8>>,
    pub evidence: Vec<wire::Evidence>,
    pub parent_certificate: Vec<u8>,
}

impl Payload {
    pub fn encode(&self) -> Vec<u8> {
        wire::BlockPayload {
            order_seed: self.order_seed.clone(),
            transactions: self.transactions.clone(),
            oracle_reports: self.oracle_reports.clone(),
            evidence: self.evidence.clone(),
            parent_certificate: self.parent_certificate.clone(),
        }
        .encode_to_vec()
    }

    /// Decodes `bytes`, refusing anything over a limit, non-canonical bytes
    /// and transactions that are not signed transactions at all.
    pub fn decode(bytes: &[u8]) -> Result<Payload, PayloadError> {
        if bytes.len() > MAX_PAYLOAD_BYTES {
            return Err(PayloadError::TooLarge { size: bytes.len(), max: MAX_PAYLOAD_BYTES });
        }
        let decoded = wire::BlockPayload::decode(bytes).map_err(|error| PayloadError::Malformed(error.to_string()))?;
        if decoded.encoded_len() != bytes.len() || decoded.encode_to_vec() != bytes {
            return Err(PayloadError::NotCanonical);
        }
        let count =
            |what, count, max| if count > max { Err(PayloadError::TooMany { what, count, max }) } else { Ok(()) };
        count("transactions", decoded.transactions.len(), MAX_TRANSACTIONS_PER_BLOCK)?;
        count("oracle reports", decoded.oracle_reports.len(), MAX_ORACLE_REPORTS_PER_BLOCK)?;
        count("evidence records", decoded.evidence.len(), MAX_EVIDENCE_PER_BLOCK)?;
        let sized = |what, items: &[Vec<u8>], max| match items.iter().enumerate().find(|(_, item)| item.len() > max) {
            Some((index, item)) => Err(PayloadError::ItemTooLarge { what, index, size: item.len(), max }),
            None => Ok(()),
        };
        sized("transaction", &decoded.transactions, MAX_TRANSACTION_BYTES)?;
        sized("oracle report", &decoded.oracle_reports, MAX_REPORT_BYTES)?;
        let evidence_sizes: Vec<Vec<u8>> = decoded.evidence.iter().map(|e| vec![0; e.encoded_len()]).collect();
        sized("evidence record", &evidence_sizes, MAX_EVIDENCE_BYTES)?;
        if decoded.parent_certificate.len() > MAX_CERTIFICATE_BYTES {
            return Err(PayloadError::ItemTooLarge {
                what: "parent certificate",
                index: 0,
                size: decoded.parent_certificate.len(),
                max: MAX_CERTIFICATE_BYTES,
            });
        }
        for (index, bytes) in decoded.transactions.iter().enumerate() {
            if wire::SignedTransaction::decode(bytes.as_slice()).is_err() {
                return Err(PayloadError::UndecodableTransaction { index });
            }
        }
        BlsSignature::from_bytes(&decoded.order_seed).map_err(|_| PayloadError::BadSeed)?;
        Ok(Payload {
            order_seed: decoded.order_seed,
            transactions: decoded.transactions,
            oracle_reports: decoded.oracle_reports,
            evidence: decoded.evidence,
            parent_certificate: decoded.parent_certificate,
        })
    }

    /// The seed of the block's canonical transaction order.
    pub fn seed(&self) -> [u8; 32] {
        hash_bytes(ORDER_SEED_DOMAIN, &self.order_seed)
    }
}

fn seed_message(chain: ChainId, epoch: Epoch, view: View) -> Vec<u8> {
    let mut message = Vec::with_capacity(ORDER_SEED_DOMAIN.len() + 24);
    message.extend_from_slice(ORDER_SEED_DOMAIN);
    message.extend_from_slice(&chain.0.to_be_bytes());
    message.extend_from_slice(&epoch.0.to_be_bytes());
    message.extend_from_slice(&view.0.to_be_bytes());
    message
}

/// The proposer's order seed for `view`: its BLS signature over chain, epoch
/// and view. BLS signatures are unique, so the proposer cannot grind it, and
/// nobody else can compute it before the proposal.
pub fn order_seed(secret: &BlsSecretKey, chain: ChainId, epoch: Epoch, view: View) -> Vec<u8> {
    bls::sign(secret, &seed_message(chain, epoch, view)).to_bytes().to_vec()
}

/// Whether `seed` is `proposer`'s order seed for `view`.
pub fn seed_is_valid(seed: &[u8], proposer: &BlsPublicKey, chain: ChainId, epoch: Epoch, view: View) -> bool {
    BlsSignature::from_bytes(seed)
        .is_ok_and(|signature| bls::verify(proposer, &seed_message(chain, epoch, view), &signature))
}

/// The root of a block's transactions, committed in its header: a binary
/// Merkle tree over the transactions' hashes (leaves and inner nodes hashed
/// under different tags; an odd node is carried up as it is).
pub fn transactions_root(transactions: &[Vec<u8>]) -> [u8; 32] {
    let mut level: Vec<[u8; 32]> = transactions
        .iter()
        .map(|bytes| hash_bytes(b"vanna/tx-leaf/v1", &vanna_types::tx::transaction_hash(bytes)))
        .collect();
    if level.is_empty() {
        return hash_bytes(b"vanna/tx-root/empty", &[]);
    }
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| match pair {
                [left, right] => {
                    let mut both = [0u8; 64];
                    both[..32].copy_from_slice(left);
                    both[32..].copy_from_slice(right);
                    hash_bytes(b"vanna/tx-node/v1", &both)
                }
                [single] => *single,
                _ => unreachable!("chunks of two"),
            })
            .collect();
    }
    level[0]
}

/// The consensus chain id of a chain named `chain_id`: its signatures can
/// never be valid on another chain.
pub fn consensus_chain(chain_id: &str) -> ChainId {
    let digest = hash_bytes(b"vanna/chain/v1", chain_id.as_bytes());
    ChainId(u64::from_be_bytes(digest[..8].try_into().expect("8 bytes")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> BlsSecretKey {
        BlsSecretKey::from_seed(&[7; 32]).unwrap()
    }

    fn sample() -> Payload {
        let transaction = vanna_types::tx::Signer::from_seed("alice").sign("c", 0, vec![vanna_types::tx::cancel(1)]);
        Payload {
            order_seed: order_seed(&secret(), ChainId(1), Epoch(0), View(3)),
            transactions: vec![transaction],
            oracle_reports: vec![],
            evidence: vec![],
            parent_certificate: vec![],
        }
    }

    #[test]
    fn payloads_round_trip_and_refuse_what_is_not_canonical() {
        let payload = sample();
        let bytes = payload.encode();
        assert_eq!(Payload::decode(&bytes), Ok(payload));
        let mut longer = bytes.clone();
        // Field 1 again: a repeated scalar field, last one wins in protobuf.
        longer.extend_from_slice(&[0x0a, 0x00]);
        assert!(Payload::decode(&longer).is_err());
        assert!(matches!(Payload::decode(&[0xff; 9]), Err(PayloadError::Malformed(_))));
        assert!(matches!(Payload::decode(&vec![0; MAX_PAYLOAD_BYTES + 1]), Err(PayloadError::TooLarge { .. })));
        let junk = Payload { transactions: vec![vec![0xff; 3]], ..sample() };
        assert_eq!(Payload::decode(&junk.encode()), Err(PayloadError::UndecodableTransaction { index: 0 }));
    }

    #[test]
    fn the_seed_is_the_proposers_for_that_view_only() {
        let public = bls::public_key(&secret());
        let seed = order_seed(&secret(), ChainId(1), Epoch(0), View(3));
        assert!(seed_is_valid(&seed, &public, ChainId(1), Epoch(0), View(3)));
        assert!(!seed_is_valid(&seed, &public, ChainId(1), Epoch(0), View(4)));
        assert!(!seed_is_valid(&seed, &public, ChainId(2), Epoch(0), View(3)));
    }

    #[test]
    fn the_transactions_root_commits_to_order_and_content() {
        let a = vec![1u8; 10];
        let b = vec![2u8; 10];
        let c = vec![3u8; 10];
        let root = transactions_root(&[a.clone(), b.clone(), c.clone()]);
        assert_ne!(root, transactions_root(&[b.clone(), a.clone(), c.clone()]));
        assert_ne!(root, transactions_root(&[a.clone(), b.clone()]));
        assert_ne!(transactions_root(&[]), transactions_root(&[a]));
    }
}
