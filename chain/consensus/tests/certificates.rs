//! Finality certificates and evidence with real BLS signatures.

use vanna_consensus::{
    BlockHash, Bls, BlsSecretKey, Certificate, ChainId, Epoch, Error, Evidence, Height, Offence, Scheme, Signable,
    Signed, SignerBitmap, ValidatorEntry, ValidatorIndex, ValidatorSet, View, Vote, VoteKind, hash_bytes,
    proof_of_possession, verify_proof_of_possession,
};

const CHAIN: ChainId = ChainId(1);

fn keys(n: usize) -> Vec<BlsSecretKey> {
    (0..n).map(|i| BlsSecretKey::from_seed(&hash_bytes(b"cert-test", &[i as u8])).unwrap()).collect()
}

/// Secrets reordered to match the set's deterministic order.
fn set(n: usize) -> (ValidatorSet<Bls>, Vec<BlsSecretKey>) {
    let secrets = keys(n);
    let entries = secrets
        .iter()
        .map(|s| {
            // The staking ledger's registration check.
            assert!(verify_proof_of_possession(&Bls::public_key(s), &proof_of_possession(s)));
            ValidatorEntry { public_key: Bls::public_key(s), operator: vec![], power: 10 }
        })
        .collect();
    let set = ValidatorSet::new(entries).unwrap();
    let mut ordered = secrets.clone();
    ordered.sort_by_key(|s| set.index_of(&Bls::public_key(s)).unwrap());
    (set, ordered)
}

fn finalize_vote() -> Vote {
    Vote { epoch: Epoch(3), view: View(17), kind: VoteKind::Finalize { height: Height(12), block: BlockHash([7; 32]) } }
}

fn certificate(secrets: &[BlsSecretKey], signers: &[usize], vote: Vote) -> Certificate<Bls> {
    let message = Signable::Vote(vote).signing_bytes(CHAIN);
    let signatures: Vec<_> = signers.iter().map(|i| Bls::sign(&secrets[*i], &message)).collect();
    let mut bitmap = SignerBitmap::new(secrets.len());
    for i in signers {
        bitmap.set(ValidatorIndex(*i as u32));
    }
    Certificate { vote, signers: bitmap, signature: Bls::aggregate(&signatures.iter().collect::<Vec<_>>()).unwrap() }
}

#[test]
fn a_finality_certificate_verifies_with_the_validator_set_alone() {
    let (set, secrets) = set(10);
    let quorum: Vec<usize> = (0..7).collect();
    let certificate = certificate(&secrets, &quorum, finalize_vote());
    certificate.verify(CHAIN, Epoch(3), &set).unwrap();
    // Bound to chain, epoch, view, height and block.
    assert_eq!(certificate.verify(ChainId(2), Epoch(3), &set), Err(Error::InvalidSignature));
    assert_eq!(certificate.verify(CHAIN, Epoch(4), &set), Err(Error::WrongDomain));
    let mut moved = certificate.clone();
    moved.vote.view = View(18);
    assert_eq!(moved.verify(CHAIN, Epoch(3), &set), Err(Error::InvalidSignature));
    // A signer claimed but not included breaks it; a dropped signer too.
    let mut extra = certificate.clone();
    extra.signers.set(ValidatorIndex(9));
    assert_eq!(extra.verify(CHAIN, Epoch(3), &set), Err(Error::InvalidSignature));
}

#[test]
fn certificates_need_more_than_two_thirds_and_a_well_formed_bitmap() {
    let (set, secrets) = set(9);
    let six: Vec<usize> = (0..6).collect();
    assert_eq!(certificate(&secrets, &six, finalize_vote()).verify(CHAIN, Epoch(3), &set), Err(Error::NoQuorum));
    let seven: Vec<usize> = (0..7).collect();
    let mut certificate = certificate(&secrets, &seven, finalize_vote());
    certificate.verify(CHAIN, Epoch(3), &set).unwrap();
    certificate.signers.0.push(0);
    assert_eq!(certificate.verify(CHAIN, Epoch(3), &set), Err(Error::BadBitmap));
    certificate.signers.0 = vec![0xff, 0x80];
    assert_eq!(certificate.verify(CHAIN, Epoch(3), &set), Err(Error::BadBitmap));
}

#[test]
fn evidence_verifies_deterministically() {
    let (set, secrets) = set(4);
    let sign = |i: usize, message: Signable| Signed {
        message,
        signature: Bls::sign(&secrets[i], &message.signing_bytes(CHAIN)),
    };
    let notarize = |block: u8| {
        Signable::Vote(Vote {
            epoch: Epoch(0),
            view: View(5),
            kind: VoteKind::Notarize { height: Height(4), block: BlockHash([block; 32]) },
        })
    };
    let evidence = Evidence { offender: ValidatorIndex(2), first: sign(2, notarize(1)), second: sign(2, notarize(2)) };
    assert_eq!(evidence.verify(CHAIN, Epoch(0), &set), Ok(Offence::ConflictingNotarizes));
    let same = Evidence { offender: ValidatorIndex(2), first: sign(2, notarize(1)), second: sign(2, notarize(1)) };
    assert_eq!(same.verify(CHAIN, Epoch(0), &set), Err(Error::NoConflict));
    let framed = Evidence { offender: ValidatorIndex(1), first: sign(2, notarize(1)), second: sign(2, notarize(2)) };
    assert_eq!(framed.verify(CHAIN, Epoch(0), &set), Err(Error::InvalidSignature));

    let nullify = Signable::Vote(Vote { epoch: Epoch(0), view: View(5), kind: VoteKind::Nullify });
    let finalize = Signable::Vote(Vote {
        epoch: Epoch(0),
        view: View(5),
        kind: VoteKind::Finalize { height: Height(4), block: BlockHash([1; 32]) },
    });
    let contradiction = Evidence { offender: ValidatorIndex(0), first: sign(0, finalize), second: sign(0, nullify) };
    assert_eq!(contradiction.verify(CHAIN, Epoch(0), &set), Ok(Offence::FinalizeAndNullify));

    let proposal = |block: u8| Signable::Proposal {
        epoch: Epoch(0),
        view: View(5),
        parent_view: View(4),
        block: BlockHash([block; 32]),
    };
    let leader = set.leader(View(5)).0 as usize;
    let other = (leader + 1) % 4;
    let equivocation = Evidence {
        offender: ValidatorIndex(leader as u32),
        first: sign(leader, proposal(1)),
        second: sign(leader, proposal(2)),
    };
    assert_eq!(equivocation.verify(CHAIN, Epoch(0), &set), Ok(Offence::ConflictingProposals));
    let not_leader = Evidence {
        offender: ValidatorIndex(other as u32),
        first: sign(other, proposal(1)),
        second: sign(other, proposal(2)),
    };
    assert_eq!(not_leader.verify(CHAIN, Epoch(0), &set), Err(Error::NotLeader));
}

/// Regression (issue 12, finding 5): evidence signed in one epoch is refused
/// against another epoch's set, even when indices and keys happen to match.
#[test]
fn evidence_from_another_epoch_is_refused() {
    let (set, secrets) = set(4);
    let notarize = |block: u8| {
        let message = Signable::Vote(Vote {
            epoch: Epoch(1),
            view: View(5),
            kind: VoteKind::Notarize { height: Height(4), block: BlockHash([block; 32]) },
        });
        Signed { message, signature: Bls::sign(&secrets[2], &message.signing_bytes(CHAIN)) }
    };
    let evidence = Evidence { offender: ValidatorIndex(2), first: notarize(1), second: notarize(2) };
    assert_eq!(evidence.verify(CHAIN, Epoch(1), &set), Ok(Offence::ConflictingNotarizes));
    assert_eq!(evidence.verify(CHAIN, Epoch(0), &set), Err(Error::WrongDomain));
}
