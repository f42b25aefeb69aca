//! Account signatures agree with every Wycheproof case for ECDSA secp256k1 /
//! SHA-256 with Bitcoin's low-S rule (valid, invalid and acceptable).

use k256::ecdsa::{Signature, VerifyingKey};
use serde::Deserialize;
use vanna_crypto::PublicKey;

#[derive(Deserialize)]
struct File {
    #[serde(rename = "numberOfTests")]
    number_of_tests: usize,
    #[serde(rename = "testGroups")]
    groups: Vec<Group>,
}

#[derive(Deserialize)]
struct Group {
    #[serde(rename = "publicKey")]
    public_key: Key,
    tests: Vec<Case>,
}

#[derive(Deserialize)]
struct Key {
    uncompressed: String,
}

#[derive(Deserialize)]
struct Case {
    #[serde(rename = "tcId")]
    id: u32,
    comment: String,
    msg: String,
    sig: String,
    result: String,
}

/// Our wire format is 64-byte r || s; a DER signature that does not parse
/// strictly cannot be expressed in it and counts as refused.
fn vanna_accepts(key: &PublicKey, message: &[u8], der: &[u8]) -> bool {
    let Ok(signature) = Signature::from_der(der) else {
        return false;
    };
    key.verify(message, &signature.to_bytes()).is_ok()
}

#[test]
fn agrees_with_every_wycheproof_bitcoin_case() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/vectors/ecdsa_secp256k1_sha256_bitcoin_test.json");
    let file: File = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let (mut checked, mut valid, mut invalid, mut acceptable) = (0, 0, 0, 0);
    for group in &file.groups {
        let key = VerifyingKey::from_sec1_bytes(&hex::decode(&group.public_key.uncompressed).unwrap()).unwrap();
        let key = PublicKey::from_compressed(key.to_encoded_point(true).as_bytes()).unwrap();
        for case in &group.tests {
            let accepted = vanna_accepts(&key, &hex::decode(&case.msg).unwrap(), &hex::decode(&case.sig).unwrap());
            match case.result.as_str() {
                "valid" => {
                    assert!(accepted, "case {} ({}) is valid but was refused", case.id, case.comment);
                    valid += 1;
                }
                "invalid" => {
                    assert!(!accepted, "case {} ({}) is invalid but was accepted", case.id, case.comment);
                    invalid += 1;
                }
                "acceptable" => acceptable += 1,
                other => panic!("unknown result {other}"),
            }
            checked += 1;
        }
    }
    assert_eq!(checked, file.number_of_tests);
    assert!(
        valid > 0 && invalid > 0,
        "both kinds of case were exercised: {valid} valid, {invalid} invalid, {acceptable} acceptable"
    );
}
