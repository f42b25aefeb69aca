//! The consensus wire codec: every message round-trips, every other input
//! gives a typed error (never a panic), each failure its own.

use std::sync::OnceLock;

use proptest::prelude::*;
use prost::Message as _;
use vanna_consensus::wire::{WireError, decode, encode};
use vanna_consensus::{
    BlockHash, Bls, BlsSecretKey, BlsSignature, Certificate, Epoch, Header, Height, MAX_BLOCK_REQUEST_BYTES,
    MAX_BLOCK_RESPONSE_BYTES, MAX_BLOCKS_PER_RESPONSE, MAX_CERTIFIED_BYTES, MAX_NULLIFICATION_BYTES, MAX_PAYLOAD_BYTES,
    MAX_PROPOSAL_BYTES, MAX_SIGNER_BITMAP_BYTES, MAX_STATUS_BYTES, MAX_VOTE_BYTES, Message, Scheme, SignedProposal,
    SignedVote, SignerBitmap, ValidatorIndex, View, Vote, VoteKind, hash_bytes,
};
use vanna_proto::v1 as pb;

/// Signatures by a few fixed keys, made once: signing is the slow part.
fn signatures() -> &'static [BlsSignature] {
    static SIGNATURES: OnceLock<Vec<BlsSignature>> = OnceLock::new();
    SIGNATURES.get_or_init(|| {
        let mut out = Vec::new();
        for key in 0..4u8 {
            let secret = BlsSecretKey::from_seed(&hash_bytes(b"wire-test", &[key])).unwrap();
            for message in 0..4u8 {
                out.push(Bls::sign(&secret, &[message]));
            }
        }
        out
    })
}

/// 96 bytes shaped like a compressed G2 point (compression flag set, no
/// infinity flag, both coordinates below the field modulus) that may or may
/// not be on the curve.
fn point_candidate(mut bytes: [u8; 96]) -> [u8; 96] {
    bytes[0] = 0x80 | (bytes[0] & 0x2f);
    bytes[48] &= 0x0f;
    bytes
}

fn arb_signature() -> BoxedStrategy<BlsSignature> {
    prop_oneof![
        (0..16usize).prop_map(|i| signatures()[i].clone()),
        // Any point on the curve, mostly outside the subgroup: decoding accepts it.
        proptest::array::uniform32(any::<u8>())
            .prop_flat_map(|a| (
                Just(a),
                proptest::array::uniform32(any::<u8>()),
                proptest::array::uniform32(any::<u8>())
            ))
            .prop_filter_map("not on the curve", |(a, b, c)| {
                let mut bytes = [0u8; 96];
                bytes[..32].copy_from_slice(&a);
                bytes[32..64].copy_from_slice(&b);
                bytes[64..].copy_from_slice(&c);
                BlsSignature::from_bytes(&point_candidate(bytes)).ok()
            }),
    ]
    .boxed()
}

/// Zero (a field left out of the encoding), small, or anything.
fn arb_u64() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0), 1..1_000u64, any::<u64>()]
}

fn arb_u32() -> impl Strategy<Value = u32> {
    prop_oneof![Just(0), 1..100u32, any::<u32>()]
}

fn arb_hash() -> impl Strategy<Value = [u8; 32]> {
    prop_oneof![Just([0; 32]), proptest::array::uniform32(any::<u8>())]
}

fn arb_header() -> BoxedStrategy<Header> {
    (arb_hash(), arb_u64(), arb_u64(), arb_u64(), arb_u32(), arb_u64(), arb_hash(), arb_hash(), arb_hash())
        .prop_map(
            |(parent, height, epoch, view, proposer, block_time_ms, state_root, transactions_root, payload_hash)| {
                Header {
                    parent: BlockHash(parent),
                    height: Height(height),
                    epoch: Epoch(epoch),
                    view: View(view),
                    proposer: ValidatorIndex(proposer),
                    block_time_ms,
                    state_root,
                    transactions_root,
                    payload_hash,
                }
            },
        )
        .boxed()
}

fn arb_payload() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..300)
}

fn arb_kind() -> impl Strategy<Value = VoteKind> {
    prop_oneof![
        (arb_u64(), arb_hash()).prop_map(|(h, b)| VoteKind::Notarize { height: Height(h), block: BlockHash(b) }),
        (arb_u64(), arb_hash()).prop_map(|(h, b)| VoteKind::Finalize { height: Height(h), block: BlockHash(b) }),
        Just(VoteKind::Nullify),
    ]
}

fn arb_vote(kind: impl Strategy<Value = VoteKind>) -> impl Strategy<Value = Vote> {
    (arb_u64(), arb_u64(), kind).prop_map(|(epoch, view, kind)| Vote { epoch: Epoch(epoch), view: View(view), kind })
}

fn arb_certificate(kind: impl Strategy<Value = VoteKind>) -> impl Strategy<Value = Certificate<Bls>> {
    let signers = proptest::collection::vec(any::<u8>(), 1..=MAX_SIGNER_BITMAP_BYTES)
        .prop_filter("names a signer", |bitmap| bitmap.iter().any(|byte| *byte != 0));
    (arb_vote(kind), signers, arb_signature()).prop_map(|(vote, signers, signature)| Certificate {
        vote,
        signers: SignerBitmap(signers),
        signature,
    })
}

fn arb_message() -> impl Strategy<Value = Message<Bls>> {
    let block_kind = arb_kind().prop_filter("names a block", |kind| *kind != VoteKind::Nullify);
    prop_oneof![
        (arb_u64(), arb_u64(), arb_header(), arb_payload(), arb_signature()).prop_map(
            |(view, parent_view, header, payload, signature)| Message::Proposal(SignedProposal {
                view: View(view),
                parent_view: View(parent_view),
                header,
                payload,
                signature,
            })
        ),
        (arb_vote(arb_kind()), arb_u32(), arb_signature()).prop_map(|(vote, signer, signature)| {
            Message::Vote(SignedVote { vote, signer: ValidatorIndex(signer), signature })
        }),
        (proptest::option::of(arb_header()), arb_certificate(block_kind))
            .prop_map(|(header, certificate)| Message::Certified { header, certificate }),
        arb_certificate(Just(VoteKind::Nullify)).prop_map(Message::Nullification),
        (arb_u64(), arb_u64(), arb_u64()).prop_map(|(epoch, view, finalized)| Message::Status {
            epoch: Epoch(epoch),
            view: View(view),
            finalized: Height(finalized),
        }),
        arb_hash().prop_map(|block| Message::BlockRequest { block: BlockHash(block) }),
        proptest::collection::vec((arb_header(), arb_payload()), 0..=MAX_BLOCKS_PER_RESPONSE)
            .prop_map(|blocks| Message::BlockResponse { blocks }),
    ]
}

fn limit_of(message: &Message<Bls>) -> usize {
    match message {
        Message::Proposal(_) => MAX_PROPOSAL_BYTES,
        Message::Vote(_) => MAX_VOTE_BYTES,
        Message::Certified { .. } => MAX_CERTIFIED_BYTES,
        Message::Nullification(_) => MAX_NULLIFICATION_BYTES,
        Message::Status { .. } => MAX_STATUS_BYTES,
        Message::BlockRequest { .. } => MAX_BLOCK_REQUEST_BYTES,
        Message::BlockResponse { .. } => MAX_BLOCK_RESPONSE_BYTES,
    }
}

/// What the codec promises for any input: refused with a typed error, or
/// accepted only as the one encoding of what it decodes to.
fn assert_refused_or_canonical(bytes: &[u8]) {
    if let Ok(message) = decode(bytes) {
        assert_eq!(encode(&message), bytes, "accepted a non-canonical encoding of {message:?}");
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    FlipBit(usize, u8),
    Set(usize, u8),
    Insert(usize, u8),
    Remove(usize),
}

fn arb_mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0..8u8).prop_map(|(at, bit)| Mutation::FlipBit(at, bit)),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Set(at, byte)),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert(at, byte)),
        any::<usize>().prop_map(Mutation::Remove),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for mutation in mutations {
        let len = bytes.len().max(1);
        match *mutation {
            Mutation::FlipBit(at, bit) if !bytes.is_empty() => bytes[at % len] ^= 1 << bit,
            Mutation::Set(at, byte) if !bytes.is_empty() => bytes[at % len] = byte,
            Mutation::Insert(at, byte) => bytes.insert(at % (bytes.len() + 1), byte),
            Mutation::Remove(at) if !bytes.is_empty() => {
                bytes.remove(at % len);
            }
            _ => {}
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_message_round_trips_within_its_kinds_limit(message in arb_message()) {
        let bytes = encode(&message);
        prop_assert!(bytes.len() <= limit_of(&message), "{} bytes", bytes.len());
        prop_assert_eq!(decode(&bytes), Ok(message));
    }

    #[test]
    fn truncated_encodings_are_refused(message in arb_message(), cut in any::<usize>()) {
        let bytes = encode(&message);
        let cut = cut % bytes.len();
        prop_assert!(decode(&bytes[..cut]).is_err());
    }

    #[test]
    fn mutated_encodings_are_refused_or_canonical(
        message in arb_message(),
        mutations in proptest::collection::vec(arb_mutation(), 1..4),
    ) {
        let bytes = encode(&message);
        let mutated = mutate(bytes.clone(), &mutations);
        assert_refused_or_canonical(&mutated);
        if mutated != bytes {
            prop_assert_ne!(decode(&mutated), Ok(message));
        }
    }

    #[test]
    fn random_bytes_are_refused_or_canonical(
        // Starting with a kind's key gets past the first check more often.
        key in prop_oneof![any::<u8>(), (1..=7u8).prop_map(|field| (field << 3) | 2)],
        rest in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        let mut bytes = vec![key];
        bytes.extend_from_slice(&rest);
        assert_refused_or_canonical(&bytes);
        assert_refused_or_canonical(&rest);
    }
}

/// The envelope of one `body` (every kind's key is one byte).
fn envelope(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![(kind << 3) | 2];
    prost::encode_length_delimiter(body.len(), &mut out).unwrap();
    out.extend_from_slice(body);
    out
}

const PROPOSAL: u8 = 1;
const VOTE: u8 = 2;
const CERTIFIED: u8 = 3;
const NULLIFICATION: u8 = 4;
const STATUS: u8 = 5;
const BLOCK_REQUEST: u8 = 6;
const BLOCK_RESPONSE: u8 = 7;

fn header() -> Header {
    Header::genesis(Epoch(1), 1_700_000_000_000, [9; 32])
}

fn wire_header() -> pb::BlockHeader {
    let header = header();
    pb::BlockHeader {
        parent: header.parent.0.to_vec(),
        height: header.height.0,
        epoch: header.epoch.0,
        view: header.view.0,
        proposer: header.proposer.0,
        block_time_ms: header.block_time_ms,
        state_root: header.state_root.to_vec(),
        transactions_root: header.transactions_root.to_vec(),
        payload_hash: header.payload_hash.to_vec(),
    }
}

fn wire_vote(kind: pb::vote::Kind) -> pb::Vote {
    pb::Vote { epoch: 1, view: 5, kind: Some(kind) }
}

fn notarize() -> pb::vote::Kind {
    pb::vote::Kind::Notarize(pb::VoteSubject { height: 3, block: vec![4; 32] })
}

fn signature_bytes() -> Vec<u8> {
    signatures()[0].to_bytes().to_vec()
}

fn wire_certificate(kind: pb::vote::Kind) -> pb::Certificate {
    pb::Certificate { vote: Some(wire_vote(kind)), signers: vec![0b111], signature: signature_bytes() }
}

fn wire_signed_vote(signature: Vec<u8>) -> pb::SignedVote {
    pb::SignedVote { vote: Some(wire_vote(notarize())), signer: 2, signature }
}

#[test]
fn the_largest_messages_fit_their_limits() {
    let widest = Header {
        parent: BlockHash([0xff; 32]),
        height: Height(u64::MAX),
        epoch: Epoch(u64::MAX),
        view: View(u64::MAX),
        proposer: ValidatorIndex(u32::MAX),
        block_time_ms: u64::MAX,
        state_root: [0xff; 32],
        transactions_root: [0xff; 32],
        payload_hash: [0xff; 32],
    };
    let signature = signatures()[0].clone();
    let kind = VoteKind::Finalize { height: Height(u64::MAX), block: BlockHash([0xff; 32]) };
    let vote = Vote { epoch: Epoch(u64::MAX), view: View(u64::MAX), kind };
    let certificate = |kind| Certificate {
        vote: Vote { kind, ..vote },
        signers: SignerBitmap(vec![0xff; MAX_SIGNER_BITMAP_BYTES]),
        signature: signature.clone(),
    };
    let payload = vec![0xab; MAX_PAYLOAD_BYTES];
    let largest = [
        Message::Proposal(SignedProposal {
            view: View(u64::MAX),
            parent_view: View(u64::MAX),
            header: widest.clone(),
            payload: payload.clone(),
            signature: signature.clone(),
        }),
        Message::Vote(SignedVote { vote, signer: ValidatorIndex(u32::MAX), signature: signature.clone() }),
        Message::Certified { header: Some(widest.clone()), certificate: certificate(kind) },
        Message::Nullification(certificate(VoteKind::Nullify)),
        Message::Status { epoch: Epoch(u64::MAX), view: View(u64::MAX), finalized: Height(u64::MAX) },
        Message::BlockRequest { block: BlockHash([0xff; 32]) },
    ];
    for message in largest {
        let bytes = encode(&message);
        assert!(bytes.len() <= limit_of(&message), "{} bytes for {:?}", bytes.len(), &bytes[..1]);
        assert_eq!(decode(&bytes), Ok(message));
    }
    // A response of full blocks is 128 MiB: its size is worked out from one
    // entry (the body of a one-block response) instead of being built.
    let one = encode(&Message::BlockResponse { blocks: vec![(widest, payload)] });
    let entry = prost::decode_length_delimiter(&one[1..]).unwrap();
    let body = MAX_BLOCKS_PER_RESPONSE * entry;
    let full = 1 + prost::length_delimiter_len(body) + body;
    assert!(full <= MAX_BLOCK_RESPONSE_BYTES, "{full} bytes");
}

#[test]
fn oversized_messages_are_refused_before_decoding() {
    let limits = [
        (PROPOSAL, MAX_PROPOSAL_BYTES),
        (VOTE, MAX_VOTE_BYTES),
        (CERTIFIED, MAX_CERTIFIED_BYTES),
        (NULLIFICATION, MAX_NULLIFICATION_BYTES),
        (STATUS, MAX_STATUS_BYTES),
        (BLOCK_REQUEST, MAX_BLOCK_REQUEST_BYTES),
        (BLOCK_RESPONSE, MAX_BLOCK_RESPONSE_BYTES),
    ];
    for (kind, limit) in limits {
        let mut bytes = vec![0; limit + 1];
        bytes[0] = (kind << 3) | 2;
        assert!(
            matches!(decode(&bytes), Err(WireError::TooLarge { bytes, limit: l, .. }) if bytes == limit + 1 && l == limit),
            "kind {kind}"
        );
    }
}

#[test]
fn empty_input_and_unknown_kinds_are_refused() {
    assert_eq!(decode(&[]), Err(WireError::Empty));
    // Field 8, field 1 as a varint, field 0.
    for first in [(8 << 3) | 2, 1 << 3, 0x02, 0xff] {
        assert_eq!(decode(&[first, 0]), Err(WireError::UnknownKind(first)));
    }
}

#[test]
fn broken_protobuf_is_refused() {
    // A body longer than what follows, a length varint that never ends, a
    // field inside that claims more bytes than its message holds.
    for bytes in [
        vec![0x2a, 0x05, 0x08],
        vec![0x2a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        vec![0x2a, 0x02, 0x0a, 0x05],
    ] {
        assert!(matches!(decode(&bytes), Err(WireError::NotProtobuf(_))), "{bytes:02x?}");
    }
}

#[test]
fn non_canonical_encodings_are_refused() {
    let status = |epoch: u64, view: u64| {
        encode(&Message::Status { epoch: Epoch(epoch), view: View(view), finalized: Height(0) })
    };
    assert_eq!(status(1, 2), [0x2a, 0x04, 0x08, 0x01, 0x10, 0x02]);
    let cases: [(&str, Vec<u8>); 8] = [
        ("a field at its default value written out", envelope(STATUS, &[0x08, 0x00])),
        ("a field repeated", envelope(STATUS, &[0x08, 0x01, 0x10, 0x02, 0x10, 0x02])),
        ("fields out of order", envelope(STATUS, &[0x10, 0x02, 0x08, 0x01])),
        ("an unknown field", envelope(STATUS, &[0x08, 0x01, 0x10, 0x02, 0x78, 0x01])),
        ("an over-long varint", envelope(STATUS, &[0x08, 0x81, 0x00, 0x10, 0x02])),
        ("an over-long envelope length", vec![0x2a, 0x84, 0x00, 0x08, 0x01, 0x10, 0x02]),
        ("a second message after the first", [status(1, 2), status(1, 2)].concat()),
        (
            "a nested message repeated (merged by protobuf)",
            envelope(PROPOSAL, &{
                let proposal = pb::Proposal {
                    view: 2,
                    parent_view: 1,
                    header: Some(wire_header()),
                    payload: vec![],
                    signature: signature_bytes(),
                };
                let mut body = proposal.encode_to_vec();
                body.extend(pb::Proposal { header: Some(wire_header()), ..Default::default() }.encode_to_vec());
                body
            }),
        ),
    ];
    for (case, bytes) in cases {
        assert_eq!(decode(&bytes), Err(WireError::NotCanonical), "{case}");
    }
}

#[test]
fn missing_fields_are_refused() {
    let body = |body| pb::ConsensusMessage { body: Some(body) }.encode_to_vec();
    use pb::consensus_message::Body;
    let cases = [
        (
            body(Body::Proposal(pb::Proposal { view: 1, signature: signature_bytes(), ..Default::default() })),
            "proposal.header",
        ),
        (body(Body::Vote(pb::SignedVote { vote: None, ..wire_signed_vote(signature_bytes()) })), "vote.vote"),
        (
            body(Body::Vote(pb::SignedVote {
                vote: Some(pb::Vote { epoch: 1, view: 5, kind: None }),
                ..wire_signed_vote(signature_bytes())
            })),
            "vote.kind",
        ),
        (
            body(Body::Certified(pb::Certified { header: Some(wire_header()), certificate: None })),
            "certified.certificate",
        ),
        (
            body(Body::Nullification(pb::Certificate {
                vote: None,
                ..wire_certificate(pb::vote::Kind::Nullify(pb::Nullify {}))
            })),
            "certificate.vote",
        ),
        (
            body(Body::BlockResponse(pb::BlockResponse { blocks: vec![pb::Block { header: None, payload: vec![1] }] })),
            "block.header",
        ),
    ];
    for (bytes, field) in cases {
        assert_eq!(decode(&bytes), Err(WireError::MissingField(field)));
    }
}

#[test]
fn hashes_of_the_wrong_length_are_refused() {
    let request = |block: Vec<u8>| envelope(BLOCK_REQUEST, &pb::BlockRequest { block }.encode_to_vec());
    for bytes in [0, 31, 33] {
        assert_eq!(
            decode(&request(vec![1; bytes])),
            Err(WireError::WrongLength { field: "block_request.block", bytes, expected: 32 })
        );
    }
    let short_parent =
        pb::Block { header: Some(pb::BlockHeader { parent: vec![1; 31], ..wire_header() }), payload: vec![] };
    let response = envelope(BLOCK_RESPONSE, &pb::BlockResponse { blocks: vec![short_parent] }.encode_to_vec());
    assert_eq!(decode(&response), Err(WireError::WrongLength { field: "header.parent", bytes: 31, expected: 32 }));
}

#[test]
fn bad_signature_bytes_are_refused() {
    let mut identity = vec![0; 96];
    identity[0] = 0xc0;
    let off_curve = (0u8..=255)
        .map(|i| point_candidate(hash_bytes(b"off-curve", &[i]).repeat(3).try_into().unwrap()))
        .find(|bytes| BlsSignature::from_bytes(bytes).is_err())
        .unwrap();
    let uncompressed = vec![0; 96];
    for signature in [vec![], signature_bytes()[..95].to_vec(), identity, off_curve.to_vec(), uncompressed] {
        let bytes = envelope(VOTE, &wire_signed_vote(signature).encode_to_vec());
        assert!(
            matches!(decode(&bytes), Err(WireError::BadSignature { field: "vote.signature", .. })),
            "{:?}",
            decode(&bytes)
        );
    }
}

#[test]
fn signatures_decode_without_the_subgroup_check() {
    // A point on the curve outside the subgroup: decoding keeps it, its
    // verification (which does the subgroup check) refuses it later.
    let outside = (0u8..=255)
        .map(|i| point_candidate(hash_bytes(b"subgroup", &[i]).repeat(3).try_into().unwrap()))
        .find(|bytes| blst::min_pk::Signature::from_bytes(bytes).is_ok_and(|point| !point.subgroup_check()))
        .unwrap();
    let bytes = envelope(VOTE, &wire_signed_vote(outside.to_vec()).encode_to_vec());
    let Ok(Message::Vote(vote)) = decode(&bytes) else { panic!("{:?}", decode(&bytes)) };
    assert_eq!(vote.signature.to_bytes(), outside);
}

#[test]
fn signer_bitmaps_are_checked() {
    let nullification = |signers: Vec<u8>| {
        let certificate = pb::Certificate { signers, ..wire_certificate(pb::vote::Kind::Nullify(pb::Nullify {})) };
        envelope(NULLIFICATION, &certificate.encode_to_vec())
    };
    assert_eq!(decode(&nullification(vec![])), Err(WireError::NoSigners));
    assert_eq!(decode(&nullification(vec![0, 0])), Err(WireError::NoSigners));
    assert_eq!(
        decode(&nullification(vec![1; MAX_SIGNER_BITMAP_BYTES + 1])),
        Err(WireError::OverLimit {
            what: "signer bitmap bytes",
            count: MAX_SIGNER_BITMAP_BYTES + 1,
            limit: MAX_SIGNER_BITMAP_BYTES
        })
    );
    assert!(decode(&nullification(vec![0, 1])).is_ok());
}

#[test]
fn certificates_of_the_wrong_kind_are_refused() {
    let nullify = wire_certificate(pb::vote::Kind::Nullify(pb::Nullify {}));
    let certified = pb::Certified { header: None, certificate: Some(nullify) };
    assert_eq!(
        decode(&envelope(CERTIFIED, &certified.encode_to_vec())),
        Err(WireError::WrongCertificateKind { message: "certified" })
    );
    let notarization = wire_certificate(notarize());
    assert_eq!(
        decode(&envelope(NULLIFICATION, &notarization.encode_to_vec())),
        Err(WireError::WrongCertificateKind { message: "nullification" })
    );
}

#[test]
fn block_counts_are_refused_before_decoding() {
    let block = pb::Block { header: Some(wire_header()), payload: vec![7] };
    let response = |count: usize| {
        envelope(BLOCK_RESPONSE, &pb::BlockResponse { blocks: vec![block.clone(); count] }.encode_to_vec())
    };
    let over = Err(WireError::OverLimit {
        what: "blocks in a response",
        count: MAX_BLOCKS_PER_RESPONSE + 1,
        limit: MAX_BLOCKS_PER_RESPONSE,
    });
    assert!(decode(&response(MAX_BLOCKS_PER_RESPONSE)).is_ok());
    assert_eq!(decode(&response(MAX_BLOCKS_PER_RESPONSE + 1)), over);
    // Five million empty entries of two bytes each, within the size limit:
    // refused by counting, never allocated as blocks.
    let empty_entries = [0x0a, 0x00].repeat(5_000_000);
    assert_eq!(decode(&envelope(BLOCK_RESPONSE, &empty_entries)), over);
    // Anything but block entries inside a response is not canonical.
    assert_eq!(decode(&envelope(BLOCK_RESPONSE, &[0x12, 0x00])), Err(WireError::NotCanonical));
}

#[test]
fn payloads_over_the_limit_are_refused() {
    let over =
        Err(WireError::OverLimit { what: "payload bytes", count: MAX_PAYLOAD_BYTES + 1, limit: MAX_PAYLOAD_BYTES });
    let proposal = pb::Proposal {
        view: 2,
        parent_view: 1,
        header: Some(wire_header()),
        payload: vec![1; MAX_PAYLOAD_BYTES + 1],
        signature: signature_bytes(),
    };
    assert_eq!(decode(&envelope(PROPOSAL, &proposal.encode_to_vec())), over);
    let block = pb::Block { header: Some(wire_header()), payload: vec![1; MAX_PAYLOAD_BYTES + 1] };
    assert_eq!(decode(&envelope(BLOCK_RESPONSE, &pb::BlockResponse { blocks: vec![block] }.encode_to_vec())), over);
}
