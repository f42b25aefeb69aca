//! Identifiers: account addresses, order ids and series handles.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::TxError;

/// An account address: the first 20 bytes of SHA-256 of the account's compressed
/// secp256k1 public key. Shown as `0x` and 40 lowercase hex digits.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address(pub [u8; 20]);

impl Address {
    pub fn from_slice(bytes: &[u8]) -> Result<Self, TxError> {
        let array: [u8; 20] = bytes.try_into().map_err(|_| TxError::BadAddress(bytes.len()))?;
        Ok(Address(array))
    }

    pub fn as_bytes(&self) -> &[u8; 20] {
        &self.0
    }

    /// The insurance fund's account: a hash with no known key behind it, so
    /// no transaction can ever be signed for it. Genesis may fund it.
    pub fn insurance_fund() -> Self {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(b"vanna/insurance-fund");
        Address(digest[..20].try_into().expect("a SHA-256 digest has 20 leading bytes"))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{}", hex::encode(self.0))
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Address {
    type Err = TxError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let digits = text.strip_prefix("0x").unwrap_or(text);
        let bytes = hex::decode(digits).map_err(|_| TxError::BadAddress(digits.len() / 2))?;
        Address::from_slice(&bytes)
    }
}

impl Serialize for Address {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A chain-wide order id, assigned in order of acceptance and never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct OrderId(pub u64);

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Index of a listed series in listing order; the series' name is its public id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SeriesId(pub u32);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_round_trips_and_refuses_bad_lengths() {
        let address = Address([0xab; 20]);
        let text = address.to_string();
        assert_eq!(text, format!("0x{}", "ab".repeat(20)));
        assert_eq!(text.parse::<Address>().unwrap(), address);
        assert_eq!("0xabcd".parse::<Address>(), Err(TxError::BadAddress(2)));
        assert!("0xzz".parse::<Address>().is_err());
        assert_eq!(Address::from_slice(&[0; 21]), Err(TxError::BadAddress(21)));
    }
}
