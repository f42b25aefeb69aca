//! What clients read of staking: the members of a validator set and the
//! evidence of offences a block carries. The ledger itself is the
//! runtime's.

use serde::Serialize;

use crate::ids::Address;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
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
    #[serde(serialize_with = "hex_key")]
    pub consensus_key: [u8; 48],
    pub offence: Offence,
    /// Height of the block in which the offence was committed.
    pub height: u64,
    /// The account that submitted the evidence, paid a share of the slash.
    pub reporter: Option<Address>,
}

/// One member of a validator set, as consensus consumes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ValidatorPower {
    #[serde(serialize_with = "hex_key")]
    pub consensus_key: [u8; 48],
    pub operator: Address,
    /// Bonded stake in micro VANNA.
    pub power: u64,
}

fn hex_key<S: serde::Serializer>(key: &[u8; 48], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&hex::encode(key))
}
