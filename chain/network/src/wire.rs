//! Frames on a link: what the node sends and receives ([`Message`]), the
//! link's own frames, and [`decode`], the one function that turns a peer's
//! bytes into a checked frame. Every limit of `lib.rs` is enforced here, in
//! both directions: the node cannot send what a peer would refuse.

use bytes::Bytes;
use prost::Message as _;
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder};
use tonic_prost::ProstEncoder;
use vanna_proto::v1::PeerFrame;
use vanna_proto::v1::peer_frame::{self, DisconnectReason as WireReason, Kind};

use crate::{
    MAX_CONSENSUS_MESSAGE_BYTES, MAX_ORACLE_REPORT_BYTES, MAX_SYNC_BLOCKS, MAX_SYNC_RESPONSE_BYTES,
    MAX_TRANSACTION_BYTES, MAX_TRANSACTIONS_PER_FRAME, NetworkError,
};

/// What the node exchanges with peers. The bytes are opaque here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// An encoded consensus message (the consensus wire codec's).
    Consensus(Bytes),
    /// Signed transactions, gossiped.
    Transactions(Vec<Bytes>),
    /// A signed oracle report, gossiped.
    OracleReport(Bytes),
    /// Finalized blocks from `from_height` on, at most `max`.
    SyncRequest { from_height: u64, max: u32 },
    /// Consecutive finalized blocks (each with its certificate) from `from_height`.
    SyncResponse { from_height: u64, blocks: Vec<Bytes> },
    /// The sender's latest finalized height.
    Status { finalized_height: u64 },
}

impl Message {
    /// Checks every limit of its kind.
    pub fn check(&self) -> Result<(), NetworkError> {
        match self {
            Self::Consensus(message) => {
                if message.is_empty() {
                    return Err(NetworkError::Invalid("empty consensus message"));
                }
                at_most("consensus message", message.len(), MAX_CONSENSUS_MESSAGE_BYTES)
            }
            Self::Transactions(transactions) => {
                if transactions.is_empty() {
                    return Err(NetworkError::Invalid("empty transaction batch"));
                }
                count_at_most("transaction batch", transactions.len(), MAX_TRANSACTIONS_PER_FRAME)?;
                transactions.iter().try_for_each(|t| at_most("transaction", t.len(), MAX_TRANSACTION_BYTES))
            }
            Self::OracleReport(report) => at_most("oracle report", report.len(), MAX_ORACLE_REPORT_BYTES),
            Self::SyncRequest { max, .. } => {
                if *max == 0 || *max > MAX_SYNC_BLOCKS {
                    return Err(NetworkError::Invalid("sync request must ask for 1 to MAX_SYNC_BLOCKS blocks"));
                }
                Ok(())
            }
            Self::SyncResponse { blocks, .. } => {
                count_at_most("sync response", blocks.len(), MAX_SYNC_BLOCKS as usize)?;
                at_most("sync response", blocks.iter().map(Bytes::len).sum(), MAX_SYNC_RESPONSE_BYTES)
            }
            Self::Status { .. } => Ok(()),
        }
    }

    /// The kind, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Consensus(_) => "consensus",
            Self::Transactions(_) => "transactions",
            Self::OracleReport(_) => "oracle report",
            Self::SyncRequest { .. } => "sync request",
            Self::SyncResponse { .. } => "sync response",
            Self::Status { .. } => "status",
        }
    }

    pub(crate) fn into_frame(self) -> PeerFrame {
        let kind = match self {
            Self::Consensus(message) => Kind::Consensus(peer_frame::Consensus { message }),
            Self::Transactions(transactions) => Kind::Transactions(peer_frame::Transactions { transactions }),
            Self::OracleReport(report) => Kind::OracleReport(peer_frame::OracleReport { report }),
            Self::SyncRequest { from_height, max } => Kind::SyncRequest(peer_frame::SyncRequest { from_height, max }),
            Self::SyncResponse { from_height, blocks } => {
                Kind::SyncResponse(peer_frame::SyncResponse { from_height, blocks })
            }
            Self::Status { finalized_height } => Kind::Status(peer_frame::Status { finalized_height }),
        };
        PeerFrame { kind: Some(kind) }
    }
}

/// A checked frame from a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// Checked by [`crate::handshake::check_hello`].
    Hello(peer_frame::Hello),
    /// Checked by [`crate::handshake::check_proof`].
    Proof(peer_frame::Proof),
    Message(Message),
    Ping(u64),
    Pong(u64),
    Goodbye(WireReason),
}

impl Received {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Hello(_) => "hello",
            Self::Proof(_) => "proof",
            Self::Message(message) => message.kind(),
            Self::Ping(_) => "ping",
            Self::Pong(_) => "pong",
            Self::Goodbye(_) => "goodbye",
        }
    }
}

/// Decodes and checks one frame of a peer's bytes (without the gRPC length
/// prefix; tonic has already refused anything over `MAX_FRAME_BYTES`).
///
/// Before protobuf decoding allocates anything, the repeated fields are
/// counted on the raw bytes: an 8 MiB frame of empty entries would otherwise
/// become millions of `Bytes` handles.
pub fn decode(bytes: Bytes) -> Result<Received, NetworkError> {
    count_repeated(&bytes)?;
    let frame = PeerFrame::decode(bytes).map_err(|e| NetworkError::Malformed(e.to_string()))?;
    let received = match frame.kind.ok_or(NetworkError::EmptyFrame)? {
        Kind::Hello(hello) => Received::Hello(hello),
        Kind::Proof(proof) => Received::Proof(proof),
        Kind::Consensus(c) => Received::Message(Message::Consensus(c.message)),
        Kind::Transactions(t) => Received::Message(Message::Transactions(t.transactions)),
        Kind::OracleReport(r) => Received::Message(Message::OracleReport(r.report)),
        Kind::SyncRequest(r) => Received::Message(Message::SyncRequest { from_height: r.from_height, max: r.max }),
        Kind::SyncResponse(r) => {
            Received::Message(Message::SyncResponse { from_height: r.from_height, blocks: r.blocks })
        }
        Kind::Status(s) => Received::Message(Message::Status { finalized_height: s.finalized_height }),
        Kind::Ping(p) => Received::Ping(p.nonce),
        Kind::Pong(p) => Received::Pong(p.nonce),
        Kind::Goodbye(g) => Received::Goodbye(WireReason::try_from(g.reason).unwrap_or(WireReason::Unspecified)),
    };
    if let Received::Message(message) = &received {
        message.check()?;
    }
    Ok(received)
}

fn at_most(what: &'static str, got: usize, max: usize) -> Result<(), NetworkError> {
    if got > max { Err(NetworkError::TooLarge { what, got, max }) } else { Ok(()) }
}

fn count_at_most(what: &'static str, got: usize, max: usize) -> Result<(), NetworkError> {
    if got > max { Err(NetworkError::TooMany { what, got, max }) } else { Ok(()) }
}

const WIRE_VARINT: u64 = 0;
const WIRE_FIXED64: u64 = 1;
const WIRE_LEN: u64 = 2;
const WIRE_FIXED32: u64 = 5;
/// `PeerFrame` field numbers of the kinds with a repeated field, and the
/// number of that field inside them.
const TRANSACTIONS_FIELD: u64 = 4;
const TRANSACTIONS_REPEATED_FIELD: u64 = 1;
const SYNC_RESPONSE_FIELD: u64 = 7;
const SYNC_RESPONSE_REPEATED_FIELD: u64 = 2;

/// Counts the entries of the repeated fields across every occurrence of
/// their message (protobuf merges repeated occurrences of a field).
fn count_repeated(bytes: &[u8]) -> Result<(), NetworkError> {
    let (mut transactions, mut blocks) = (0usize, 0usize);
    for_each_field(bytes, |number, wire, body| {
        let (counter, inner, max, what) = match number {
            TRANSACTIONS_FIELD => {
                (&mut transactions, TRANSACTIONS_REPEATED_FIELD, MAX_TRANSACTIONS_PER_FRAME, "transaction batch")
            }
            SYNC_RESPONSE_FIELD => {
                (&mut blocks, SYNC_RESPONSE_REPEATED_FIELD, MAX_SYNC_BLOCKS as usize, "sync response")
            }
            _ => return Ok(()),
        };
        if wire != WIRE_LEN {
            return Ok(()); // prost refuses a message field of another wire type.
        }
        for_each_field(body, |number, _, _| {
            if number == inner {
                *counter += 1;
                count_at_most(what, *counter, max)?;
            }
            Ok(())
        })
    })
}

/// Walks one level of protobuf fields, handing each field's number, wire
/// type and (for length-delimited fields) body to `visit`.
fn for_each_field(
    mut bytes: &[u8],
    mut visit: impl FnMut(u64, u64, &[u8]) -> Result<(), NetworkError>,
) -> Result<(), NetworkError> {
    while !bytes.is_empty() {
        let key = read_varint(&mut bytes)?;
        let (number, wire) = (key >> 3, key & 7);
        let body: &[u8] = match wire {
            WIRE_VARINT => {
                read_varint(&mut bytes)?;
                &[]
            }
            WIRE_FIXED64 => skip(&mut bytes, 8)?,
            WIRE_FIXED32 => skip(&mut bytes, 4)?,
            WIRE_LEN => {
                let len = usize::try_from(read_varint(&mut bytes)?).unwrap_or(usize::MAX);
                skip(&mut bytes, len)?
            }
            // Groups (3, 4) are not in proto3; 6 and 7 do not exist.
            _ => return Err(NetworkError::Malformed(format!("wire type {wire}"))),
        };
        visit(number, wire, body)?;
    }
    Ok(())
}

fn skip<'a>(bytes: &mut &'a [u8], len: usize) -> Result<&'a [u8], NetworkError> {
    if bytes.len() < len {
        return Err(NetworkError::Malformed("field runs past the end of the frame".into()));
    }
    let (head, rest) = bytes.split_at(len);
    *bytes = rest;
    Ok(head)
}

fn read_varint(bytes: &mut &[u8]) -> Result<u64, NetworkError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first().ok_or_else(|| NetworkError::Malformed("truncated varint".into()))?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(NetworkError::Malformed("varint longer than 10 bytes".into()))
}

/// One frame as tonic hands it over: its size (for the byte rate limit) and
/// what it decoded to. A refused frame is delivered as an error, not a
/// transport failure, so the link says why it closed.
#[derive(Debug)]
pub(crate) struct Decoded {
    pub bytes: usize,
    pub frame: Result<Received, NetworkError>,
}

/// tonic codec of both ends: prost encoding out, [`decode`] in.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FrameCodec;

#[derive(Debug)]
pub(crate) struct FrameDecoder;

impl Codec for FrameCodec {
    type Encode = PeerFrame;
    type Decode = Decoded;
    type Encoder = ProstEncoder<PeerFrame>;
    type Decoder = FrameDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }
    fn decoder(&mut self) -> Self::Decoder {
        FrameDecoder
    }
}

impl Decoder for FrameDecoder {
    type Item = Decoded;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Decoded>, Status> {
        let bytes = bytes::Buf::remaining(src);
        // Zero-copy: the frame's `Bytes` fields share tonic's buffer.
        let data = bytes::Buf::copy_to_bytes(src, bytes);
        Ok(Some(Decoded { bytes, frame: decode(data) }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(kind: Kind) -> Bytes {
        PeerFrame { kind: Some(kind) }.encode_to_vec().into()
    }

    #[test]
    fn every_message_round_trips() {
        let messages = [
            Message::Consensus(Bytes::from_static(b"vote")),
            Message::Transactions(vec![Bytes::from_static(b"a"), Bytes::from_static(b"")]),
            Message::OracleReport(Bytes::from_static(b"report")),
            Message::SyncRequest { from_height: 7, max: MAX_SYNC_BLOCKS },
            Message::SyncResponse { from_height: 7, blocks: vec![Bytes::from_static(b"block")] },
            Message::SyncResponse { from_height: 9, blocks: vec![] },
            Message::Status { finalized_height: 3 },
        ];
        for message in messages {
            let bytes: Bytes = message.clone().into_frame().encode_to_vec().into();
            assert_eq!(decode(bytes).unwrap(), Received::Message(message));
        }
    }

    #[test]
    fn each_limit_is_refused_one_past_its_edge() {
        let big = |n: usize| Bytes::from(vec![7u8; n]);
        let fits = [
            Message::Consensus(big(MAX_CONSENSUS_MESSAGE_BYTES)),
            Message::Transactions(vec![big(MAX_TRANSACTION_BYTES); MAX_TRANSACTIONS_PER_FRAME]),
            Message::OracleReport(big(MAX_ORACLE_REPORT_BYTES)),
            Message::SyncResponse { from_height: 0, blocks: vec![big(MAX_SYNC_RESPONSE_BYTES / 32); 32] },
        ];
        for message in fits {
            assert_eq!(message.check(), Ok(()), "{}", message.kind());
        }
        let over = [
            Message::Consensus(big(MAX_CONSENSUS_MESSAGE_BYTES + 1)),
            Message::Consensus(Bytes::new()),
            Message::Transactions(vec![big(1); MAX_TRANSACTIONS_PER_FRAME + 1]),
            Message::Transactions(vec![big(MAX_TRANSACTION_BYTES + 1)]),
            Message::Transactions(vec![]),
            Message::OracleReport(big(MAX_ORACLE_REPORT_BYTES + 1)),
            Message::SyncRequest { from_height: 0, max: 0 },
            Message::SyncRequest { from_height: 0, max: MAX_SYNC_BLOCKS + 1 },
            Message::SyncResponse { from_height: 0, blocks: vec![big(1); MAX_SYNC_BLOCKS as usize + 1] },
            Message::SyncResponse { from_height: 0, blocks: vec![big(MAX_SYNC_RESPONSE_BYTES / 2 + 1); 2] },
        ];
        for message in over {
            let bytes: Bytes = message.clone().into_frame().encode_to_vec().into();
            assert!(decode(bytes).is_err(), "{message:?} should be refused");
        }
    }

    /// Many empty entries are refused by counting, before prost allocates a handle for each.
    #[test]
    fn repeated_entries_are_counted_across_occurrences_before_decoding() {
        let mut bytes = Vec::new();
        for _ in 0..3 {
            let batch = PeerFrame {
                kind: Some(Kind::Transactions(peer_frame::Transactions {
                    transactions: vec![Bytes::new(); MAX_TRANSACTIONS_PER_FRAME / 2],
                })),
            };
            bytes.extend(batch.encode_to_vec());
        }
        assert_eq!(
            count_repeated(&bytes),
            Err(NetworkError::TooMany {
                what: "transaction batch",
                got: MAX_TRANSACTIONS_PER_FRAME + 1,
                max: MAX_TRANSACTIONS_PER_FRAME
            })
        );
        // Two occurrences merge into one batch of exactly the limit.
        let two: Bytes = bytes[..bytes.len() / 3 * 2].to_vec().into();
        let Ok(Received::Message(Message::Transactions(merged))) = decode(two) else { panic!("two halves decode") };
        assert_eq!(merged.len(), MAX_TRANSACTIONS_PER_FRAME);
    }

    #[test]
    fn garbage_is_an_error_never_a_panic() {
        let cases: [&[u8]; 7] = [
            &[],
            &[0xff; 11],
            &[0x22, 0x05, 0x0a],
            &[0x23],
            &[0x0f],
            &[0x22, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            &[0x3a, 0x02, 0x12, 0x09],
        ];
        for case in cases {
            assert!(decode(Bytes::copy_from_slice(case)).is_err(), "{case:?}");
        }
        assert_eq!(decode(Bytes::new()), Err(NetworkError::EmptyFrame));
        let goodbye = encoded(Kind::Goodbye(peer_frame::Goodbye { reason: 999 }));
        assert_eq!(decode(goodbye), Ok(Received::Goodbye(WireReason::Unspecified)));
    }
}
