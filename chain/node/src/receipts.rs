//! How a block's receipts are stored: each one's JSON, length-prefixed
//! (u32, big-endian), in block order, so that one transaction's receipt is
//! read without parsing the block's others.

use vanna_runtime::events::Receipt;

pub fn encode(receipts: &[Receipt]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for receipt in receipts {
        // A receipt is plain data (strings, numbers, enums): it always serializes.
        let json = serde_json::to_vec(receipt).unwrap_or_default();
        bytes.extend_from_slice(&(json.len() as u32).to_be_bytes());
        bytes.extend_from_slice(&json);
    }
    bytes
}

/// The JSON of the receipt at `position`, if the bytes hold that many.
pub fn at(bytes: &[u8], position: usize) -> Option<&[u8]> {
    let mut rest = bytes;
    for index in 0.. {
        let (length, tail) = rest.split_first_chunk::<4>()?;
        let length = u32::from_be_bytes(*length) as usize;
        if length > tail.len() {
            return None;
        }
        let (json, tail) = tail.split_at(length);
        if index == position {
            return Some(json);
        }
        rest = tail;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use vanna_runtime::events::TxStatus;

    #[test]
    fn each_receipt_is_found_at_its_position_and_nothing_past_the_end() {
        let receipt = |byte: u8, status: TxStatus| Receipt { tx_hash: [byte; 32], sender: None, nonce: None, status };
        let receipts = vec![
            receipt(1, TxStatus::Included { actions: Vec::new() }),
            receipt(2, TxStatus::Rejected { error: vanna_types::TxError::Malformed("cut short".into()) }),
        ];
        let bytes = encode(&receipts);
        for (position, receipt) in receipts.iter().enumerate() {
            assert_eq!(at(&bytes, position).unwrap(), serde_json::to_vec(receipt).unwrap().as_slice());
        }
        assert_eq!(at(&bytes, 2), None);
        assert_eq!(at(&bytes[..bytes.len() - 1], 1), None, "a cut receipt is not returned");
        assert_eq!(at(&[], 0), None);
    }
}
