//! Every bound on what validators send each other, in one place. The wire
//! codec checks a message's size against its kind's limit before decoding it,
//! then the counts inside; chain/CONSENSUS.md ("Wire codec") explains each.

use crate::validators::MAX_VALIDATORS;

/// Largest block payload (the application's transactions) on the wire: room
/// for a full block of the runtime's 20,000 transactions at about 200 bytes
/// each. `Config::max_payload_bytes` must not exceed it, or peers refuse the
/// node's proposals and blocks.
pub const MAX_PAYLOAD_BYTES: usize = 4 * 1024 * 1024;
/// Blocks in one response, so a node that fell behind walks back quickly.
pub const MAX_BLOCKS_PER_RESPONSE: usize = 32;
/// A certificate's signer bitmap: one bit per member of the largest set.
pub const MAX_SIGNER_BITMAP_BYTES: usize = MAX_VALIDATORS.div_ceil(8);

/// Room for a block's encoding beyond its payload: at most 199 bytes (the
/// header's fields at their widest and the framing of header, payload and
/// block).
const BLOCK_OVERHEAD_BYTES: usize = 256;

/// A proposal: a block's header and payload, two views and a signature, at
/// most `MAX_PAYLOAD_BYTES + 319` bytes.
pub const MAX_PROPOSAL_BYTES: usize = MAX_PAYLOAD_BYTES + 512;
/// A signed vote: at most 178 bytes.
pub const MAX_VOTE_BYTES: usize = 256;
/// A notarization or finalization with its header: at most 495 bytes.
pub const MAX_CERTIFIED_BYTES: usize = 512;
/// A nullification (no block, no header): at most 258 bytes.
pub const MAX_NULLIFICATION_BYTES: usize = 320;
/// A status: at most 35 bytes.
pub const MAX_STATUS_BYTES: usize = 64;
/// A block request: at most 36 bytes.
pub const MAX_BLOCK_REQUEST_BYTES: usize = 64;
/// A block response of `MAX_BLOCKS_PER_RESPONSE` full blocks.
pub const MAX_BLOCK_RESPONSE_BYTES: usize = MAX_BLOCKS_PER_RESPONSE * (MAX_PAYLOAD_BYTES + BLOCK_OVERHEAD_BYTES) + 16;
/// The largest message of any kind: the frame limit for a transport.
pub const MAX_MESSAGE_BYTES: usize = MAX_BLOCK_RESPONSE_BYTES;
