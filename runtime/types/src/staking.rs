//! What clients read of staking: the members of a validator set and the
//! evidence of offences a block carries. The ledger itself is the
//! runtime's.

use serde::{Deserialize, Serialize};

use crate::ids::Address;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Offence {
    /// Two different proposals for one view by its leader.
    DoubleProposal,
    /// Two conflicting votes by one validator in one view.
    DoubleVote,
    /// Votes that contradict the finality rule (finalize and timeout in one view).
    FinalityViolation,
    /// Missed more than the allowed share of the signing window.
    Downtime,
}

/// Evidence that consensus has already verified, as the block hands it over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct EvidenceRecord {
    #[serde(serialize_with = "key_bytes::serialize")]
    pub consensus_key: [u8; 48],
    pub offence: Offence,
    /// Height of the block in which the offence was committed.
    pub height: u64,
    /// The account that submitted the evidence, paid a share of the slash.
    pub reporter: Option<Address>,
}

/// One member of a validator set, as consensus consumes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidatorPower {
    #[serde(with = "key_bytes")]
    pub consensus_key: [u8; 48],
    pub operator: Address,
    /// Bonded stake in micro VANNA.
    pub power: u64,
}

/// serde for a 48-byte BLS consensus key (serde's arrays stop at 32): hex in
/// human-readable formats (JSON events), raw bytes in binary ones (state
/// snapshots).
pub mod key_bytes {
    use serde::de::{Error, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(key: &[u8; 48], serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&hex::encode(key))
        } else {
            serializer.serialize_bytes(key)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<[u8; 48], D::Error> {
        struct Key;
        impl Visitor<'_> for Key {
            type Value = [u8; 48];
            fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
                formatter.write_str("a 48-byte key, as bytes or hex")
            }
            fn visit_bytes<E: Error>(self, bytes: &[u8]) -> Result<[u8; 48], E> {
                bytes.try_into().map_err(|_| E::invalid_length(bytes.len(), &self))
            }
            fn visit_str<E: Error>(self, text: &str) -> Result<[u8; 48], E> {
                let bytes = hex::decode(text).map_err(|_| E::custom("a key is hex"))?;
                self.visit_bytes(&bytes)
            }
        }
        if deserializer.is_human_readable() {
            deserializer.deserialize_str(Key)
        } else {
            deserializer.deserialize_bytes(Key)
        }
    }
}
