//! Building and signing transactions, for clients, tests and tools. The
//! runtime itself only reads transactions.

use prost::Message;
use sha2::{Digest, Sha256};
use vanna_crypto::SigningKey;
use vanna_crypto::secp256k1::{address_of, public_key_of, sign, signing_key_from_seed};
use vanna_proto::v1 as wire;
use vanna_proto::v1::action::Kind;

use crate::ids::Address;

/// SHA-256 of the whole signed transaction bytes: the transaction's id.
pub fn transaction_hash(signed_bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(signed_bytes).into()
}

/// An account key with its address, for signing transactions.
#[derive(Clone)]
pub struct Signer {
    key: SigningKey,
    public_key: [u8; 33],
    address: Address,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({})", self.address)
    }
}

impl Signer {
    pub fn new(key: SigningKey) -> Self {
        let public_key = public_key_of(&key);
        let address = Address(address_of(&public_key));
        Signer { key, public_key, address }
    }

    /// A key derived from a seed phrase: for demos, tests and benchmarks only.
    pub fn from_seed(seed: &str) -> Self {
        Signer::new(signing_key_from_seed(seed))
    }

    /// The signing key, for other schemes over the same key (oracle reports).
    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    pub fn address(&self) -> Address {
        self.address
    }

    /// Signs a transaction body and returns the encoded `SignedTransaction`.
    pub fn sign(&self, chain_id: &str, nonce: u64, actions: Vec<wire::Action>) -> Vec<u8> {
        self.sign_body(&wire::TransactionBody {
            chain_id: chain_id.to_string(),
            sender: self.address.as_bytes().to_vec(),
            nonce,
            actions,
            memo: Vec::new(),
        })
    }

    /// Signs any body (its `sender` should be this signer's address).
    pub fn sign_body(&self, body: &wire::TransactionBody) -> Vec<u8> {
        let body = body.encode_to_vec();
        let signature = sign(&self.key, &body).to_vec();
        wire::SignedTransaction { body, public_key: self.public_key.to_vec(), signature }.encode_to_vec()
    }
}

/// Wraps any action payload.
pub fn action(kind: Kind) -> wire::Action {
    wire::Action { kind: Some(kind) }
}

/// A GTC limit order; adjust the other fields with struct update syntax.
pub fn limit_order(series: &str, side: wire::Side, price: &str, quantity: &str) -> wire::PlaceOrder {
    wire::PlaceOrder {
        series: series.to_string(),
        side: side as i32,
        order_type: wire::OrderType::Limit as i32,
        price: price.to_string(),
        quantity: quantity.to_string(),
        time_in_force: wire::TimeInForce::Gtc as i32,
        ..Default::default()
    }
}

/// An immediate-or-cancel market order.
pub fn market_order(series: &str, side: wire::Side, quantity: &str) -> wire::PlaceOrder {
    wire::PlaceOrder {
        series: series.to_string(),
        side: side as i32,
        order_type: wire::OrderType::Market as i32,
        quantity: quantity.to_string(),
        time_in_force: wire::TimeInForce::Ioc as i32,
        ..Default::default()
    }
}

pub fn place(order: wire::PlaceOrder) -> wire::Action {
    action(Kind::PlaceOrder(order))
}

pub fn cancel(order_id: u64) -> wire::Action {
    action(Kind::CancelOrder(wire::CancelOrder {
        order: Some(wire::OrderRef { id: Some(wire::order_ref::Id::OrderId(order_id)) }),
    }))
}

pub fn cancel_by_client_id(client_order_id: u64) -> wire::Action {
    action(Kind::CancelOrder(wire::CancelOrder {
        order: Some(wire::OrderRef { id: Some(wire::order_ref::Id::ClientOrderId(client_order_id)) }),
    }))
}

pub fn cancel_all(scope: wire::cancel_all::Scope) -> wire::Action {
    action(Kind::CancelAll(wire::CancelAll { scope: Some(scope) }))
}

pub fn replace(order_id: u64, price: &str, quantity: &str) -> wire::Action {
    action(Kind::ReplaceOrder(wire::ReplaceOrder {
        order: Some(wire::OrderRef { id: Some(wire::order_ref::Id::OrderId(order_id)) }),
        price: price.to_string(),
        quantity: quantity.to_string(),
    }))
}

pub fn transfer(to: Address, asset: wire::Asset, amount: &str) -> wire::Action {
    action(Kind::Transfer(wire::Transfer {
        to: to.as_bytes().to_vec(),
        asset: asset as i32,
        amount: amount.to_string(),
    }))
}

/// A standing backstop offer: `max_notional` and `collateral` in USD, `discount` a fraction of mark.
pub fn register_backstop(underlying: &str, max_notional: &str, discount: &str, collateral: &str) -> wire::Action {
    action(Kind::RegisterBackstop(wire::RegisterBackstop {
        underlying: underlying.to_string(),
        max_notional: max_notional.to_string(),
        discount: discount.to_string(),
        collateral: collateral.to_string(),
    }))
}

pub fn cancel_backstop(offer_id: u64) -> wire::Action {
    action(Kind::CancelBackstop(wire::CancelBackstop { offer_id }))
}

pub fn liquidate(account: Address) -> wire::Action {
    action(Kind::Liquidate(wire::Liquidate { account: account.as_bytes().to_vec() }))
}

pub fn list_series(series: &str) -> wire::Action {
    action(Kind::ListSeries(wire::ListSeries { series: series.to_string() }))
}
