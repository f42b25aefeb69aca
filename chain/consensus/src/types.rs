use sha2::{Digest, Sha256};

/// Position of a validator in its set's deterministic order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ValidatorIndex(pub u32);

/// A consensus round; one leader per view. Views only grow within an epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct View(pub u64);

/// Number of blocks since genesis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Height(pub u64);

/// A span of heights run by one validator set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Epoch(pub u64);

/// Separates signatures of different chains (mainnet, testnets, simulations).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChainId(pub u64);

/// SHA-256 of a header's canonical encoding.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct BlockHash(pub [u8; 32]);

impl std::fmt::Debug for BlockHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for byte in &self.0[..4] {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// A 32-byte Merkle or content root supplied by the application.
pub type Root = [u8; 32];

/// SHA-256 with a domain tag, so hashes of different kinds never collide.
pub fn hash_bytes(domain: &[u8], bytes: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update((domain.len() as u64).to_be_bytes());
    hasher.update(domain);
    hasher.update(bytes);
    hasher.finalize().into()
}

/// The block header. Execution happens only once a block is final, so the
/// state root is the one after the parent (known to the application once the
/// parent's chain is known; it may compute it speculatively without committing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub parent: BlockHash,
    pub height: Height,
    pub epoch: Epoch,
    pub view: View,
    pub proposer: ValidatorIndex,
    /// Milliseconds since the Unix epoch; monotonic along the chain and no later
    /// than a voter's own clock plus the allowed drift.
    pub block_time_ms: u64,
    /// State root after executing the parent block.
    pub state_root: Root,
    /// The application's root of this block's transactions (for inclusion proofs).
    pub transactions_root: Root,
    /// SHA-256 of the payload bytes, so consensus can check a fetched payload
    /// against its header without understanding transactions.
    pub payload_hash: Root,
}

/// Size of the canonical header encoding.
pub const HEADER_BYTES: usize = 32 + 8 + 8 + 8 + 4 + 8 + 32 + 32 + 32;

impl Header {
    /// Fixed-width big-endian encoding; the block hash is over these bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_BYTES);
        out.extend_from_slice(&self.parent.0);
        out.extend_from_slice(&self.height.0.to_be_bytes());
        out.extend_from_slice(&self.epoch.0.to_be_bytes());
        out.extend_from_slice(&self.view.0.to_be_bytes());
        out.extend_from_slice(&self.proposer.0.to_be_bytes());
        out.extend_from_slice(&self.block_time_ms.to_be_bytes());
        out.extend_from_slice(&self.state_root);
        out.extend_from_slice(&self.transactions_root);
        out.extend_from_slice(&self.payload_hash);
        out
    }

    /// The inverse of `encode`, for headers read back from storage or a
    /// peer. Only the canonical encoding is accepted.
    pub fn decode(bytes: &[u8]) -> Option<Header> {
        if bytes.len() != HEADER_BYTES {
            return None;
        }
        let hash = |at: usize| -> Root { bytes[at..at + 32].try_into().expect("32 bytes") };
        let word = |at: usize| u64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let header = Header {
            parent: BlockHash(hash(0)),
            height: Height(word(32)),
            epoch: Epoch(word(40)),
            view: View(word(48)),
            proposer: ValidatorIndex(u32::from_be_bytes(bytes[56..60].try_into().expect("4 bytes"))),
            block_time_ms: word(60),
            state_root: hash(68),
            transactions_root: hash(100),
            payload_hash: hash(132),
        };
        debug_assert_eq!(header.encode(), bytes);
        Some(header)
    }

    pub fn hash(&self) -> BlockHash {
        BlockHash(hash_bytes(b"vanna/header/v1", &self.encode()))
    }

    /// The payload hash a header must carry for `payload`.
    pub fn payload_hash_of(payload: &[u8]) -> Root {
        hash_bytes(b"vanna/payload/v1", payload)
    }

    /// The first block of a chain: no parent, height 0, view 0.
    pub fn genesis(epoch: Epoch, block_time_ms: u64, state_root: Root) -> Header {
        Header {
            parent: BlockHash::default(),
            height: Height(0),
            epoch,
            view: View(0),
            proposer: ValidatorIndex(0),
            block_time_ms,
            state_root,
            transactions_root: [0; 32],
            payload_hash: Header::payload_hash_of(&[]),
        }
    }
}
