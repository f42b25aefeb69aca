//! Why a transaction or one of its actions was refused: every refusal a
//! trader can meet is a variant of [`TxError`], carrying the figures a person
//! needs to act on it; receipts show its `Display` text and its stable
//! `code()`. A refusal changes nothing. Failures of a whole block, which halt
//! a node, are the runtime's `BlockError`, a different type.

use rust_decimal::Decimal;
use thiserror::Error;

use crate::ids::{Address, OrderId};

/// Which field of a transaction a value error refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Amount,
    Price,
    Quantity,
    Strike,
    IndexPrice,
    TickSize,
    LotSize,
    Genesis,
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            Field::Amount => "amount",
            Field::Price => "price",
            Field::Quantity => "quantity",
            Field::Strike => "strike",
            Field::IndexPrice => "index price",
            Field::TickSize => "tick size",
            Field::LotSize => "lot size",
            Field::Genesis => "genesis value",
        };
        f.write_str(name)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum TxError {
    // --- the envelope: nothing is applied, the nonce is not consumed ---
    #[error("transaction is {size} bytes, more than the limit of {max}")]
    TransactionTooLarge { size: usize, max: usize },
    #[error("transaction could not be decoded: {0}")]
    Malformed(String),
    #[error("public key is not a valid compressed secp256k1 point")]
    BadPublicKey,
    #[error("signature is not 64 bytes of r || s")]
    BadSignatureEncoding,
    #[error("signature has a high S value; sign with low-S (s <= n/2)")]
    HighS,
    #[error("signature does not verify for this body and public key")]
    BadSignature,
    #[error("sender {sender} is not the address of the signing public key ({derived})")]
    SenderMismatch { sender: Address, derived: Address },
    #[error("wrong chain id: transaction is for {got:?}, this chain is {expected:?}")]
    WrongChainId { expected: String, got: String },
    #[error("stale nonce {got}: account {account} expects {expected} (already used)")]
    StaleNonce { account: Address, expected: u64, got: u64 },
    #[error("future nonce {got}: account {account} expects {expected}")]
    FutureNonce { account: Address, expected: u64, got: u64 },
    #[error("unknown account {0}: it holds nothing yet, fund it first")]
    UnknownAccount(Address),
    #[error("transaction has no actions")]
    NoActions,
    #[error("transaction has {count} actions, more than the limit of {max}")]
    TooManyActions { count: usize, max: usize },

    // --- values ---
    #[error("{field} {text:?} is not a plain decimal number")]
    MalformedNumber { field: Field, text: String },
    #[error("{field} must not be negative")]
    Negative { field: Field },
    #[error("{field} must be greater than zero")]
    NotPositive { field: Field },
    #[error("{field} has more than {max_decimals} decimal places")]
    TooPrecise { field: Field, max_decimals: u32 },
    #[error("{field} is above the maximum of {max}")]
    TooLarge { field: Field, max: Decimal },
    #[error("address must be 20 bytes, got {0}")]
    BadAddress(usize),
    #[error("asset must be USD or VANNA")]
    UnknownAsset,

    // --- instruments ---
    #[error("unknown series {0:?}")]
    UnknownSeries(String),
    #[error("unknown underlying {0:?}")]
    UnknownUnderlying(String),
    #[error("series name {name:?} is malformed: {why}")]
    BadSeriesName { name: String, why: &'static str },
    #[error("series {0} is already listed")]
    SeriesExists(String),
    #[error("series {name} expired at {expiry_ms} ms; block time is {now_ms} ms")]
    SeriesExpired { name: String, expiry_ms: u64, now_ms: u64 },
    #[error("underlying {underlying} already has {max} series listed")]
    TooManySeries { underlying: String, max: usize },
    #[error(
        "underlying {underlying} has had no valid oracle update since {last_update_ms} ms (block time {now_ms} ms): its markets accept only reduce-only orders and cancels"
    )]
    UnderlyingStale { underlying: String, last_update_ms: u64, now_ms: u64 },
    #[error("no margin tables for {underlying}: its series cannot be priced at the current oracle values")]
    MarginUnavailable { underlying: String },
    #[error("margin computation failed: {0}")]
    Margin(String),
    #[error("only the listing authority may {0}")]
    NotAuthorized(&'static str),

    // --- orders ---
    #[error("price {price} is not a multiple of the tick size {tick}")]
    OffTick { price: Decimal, tick: Decimal },
    #[error("quantity {quantity} is not a multiple of the lot size {lot}")]
    OffLot { quantity: Decimal, lot: Decimal },
    #[error("price {price} is above the maximum of {max}")]
    PriceTooHigh { price: Decimal, max: Decimal },
    #[error("quantity {quantity} is above the maximum of {max} contracts per order")]
    QuantityTooLarge { quantity: Decimal, max: Decimal },
    #[error("order type must be LIMIT or MARKET")]
    MissingOrderType,
    #[error("side must be BUY or SELL")]
    MissingSide,
    #[error("a limit order needs a price")]
    MissingPrice,
    #[error("a market order must not carry a price")]
    MarketOrderWithPrice,
    #[error("a market order must be IOC or FOK")]
    MarketOrderMustBeImmediate,
    #[error("post-only orders must rest: use GTC or GTT, not IOC or FOK")]
    PostOnlyImmediate,
    #[error("a GTT order needs expire_at_ms in the future (block time is {now_ms} ms)")]
    BadExpiry { now_ms: u64 },
    #[error("expire_at_ms is only for GTT orders")]
    ExpiryWithoutGtt,
    #[error("post-only order would cross the best {side} at {best}")]
    PostOnlyWouldCross { side: &'static str, best: Decimal },
    #[error("fill-or-kill order for {wanted} contracts can fill only {available} now")]
    FillOrKillUnfilled { wanted: Decimal, available: Decimal },
    #[error("no liquidity to fill a market order")]
    NoLiquidity,
    #[error("reduce-only order would not reduce: position is {position} contracts")]
    ReduceOnlyWouldIncrease { position: Decimal },
    #[error(
        "insufficient margin: after this {action} the account's equity would be {equity} USD, below its initial margin of {initial_margin} USD (its positions and every way its open orders could fill); add funds, cancel orders or reduce positions first"
    )]
    InsufficientMargin { action: &'static str, equity: Decimal, initial_margin: Decimal },
    #[error(
        "account {account} is not below maintenance margin (equity {equity} USD, maintenance margin {maintenance_margin} USD), so it cannot be liquidated"
    )]
    NotLiquidatable { account: Address, equity: Decimal, maintenance_margin: Decimal },
    #[error("an account cannot liquidate itself")]
    SelfLiquidation,
    #[error("the insurance fund account cannot {0}")]
    SystemAccount(&'static str),
    #[error("backstop discount {discount} is above the maximum of {max}")]
    BackstopDiscountTooHigh { discount: Decimal, max: Decimal },
    #[error("a keeper may hold at most {max} backstop offers")]
    TooManyBackstopOffers { max: u32 },
    #[error("no backstop offer {0} of this account")]
    UnknownBackstopOffer(u64),
    #[error("insufficient funds: {needed} {asset} needed, {available} available")]
    InsufficientFunds { asset: &'static str, needed: Decimal, available: Decimal },
    #[error("client order id {0} is already used by an open order")]
    DuplicateClientOrderId(u64),
    #[error("no open order {0}")]
    UnknownOrder(OrderId),
    #[error("no open order with client order id {0}")]
    UnknownClientOrderId(u64),
    #[error("order reference is empty: give an order id or a client order id")]
    MissingOrderRef,
    #[error("replace changes nothing: give a new price or quantity")]
    EmptyReplace,
    #[error("account already has {max} open orders")]
    TooManyOpenOrders { max: usize },
    #[error("account already has {max} open orders in this series")]
    TooManyOpenOrdersInSeries { max: usize },
    #[error("account already holds positions in {max} series")]
    TooManyPositions { max: usize },
    #[error("cancel-all needs a scope: a series, an underlying or everything")]
    MissingScope,
    #[error("transfer to the sender itself")]
    SelfTransfer,

    // --- staking ---
    #[error("{0} already operates a validator")]
    ValidatorExists(Address),
    #[error("no validator operated by {0}")]
    UnknownValidator(Address),
    #[error("consensus key is not a valid BLS12-381 G1 key (48 bytes compressed)")]
    BadConsensusKey,
    #[error("proof of possession does not verify for this consensus key")]
    BadProofOfPossession,
    #[error("this consensus key is already registered or was tombstoned")]
    ConsensusKeyTaken,
    #[error("moniker must be 1 to {max} characters")]
    BadMoniker { max: usize },
    #[error("{what} must be a fraction between 0 and 1, got {value}")]
    BadRate { what: &'static str, value: Decimal },
    #[error("commission {rate} is above the validator's maximum {max}")]
    CommissionAboveMax { rate: Decimal, max: Decimal },
    #[error("commission may move at most {max_change} per change, asked {change}")]
    CommissionChangeTooLarge { change: Decimal, max_change: Decimal },
    #[error("commission changed less than 24 hours ago; next change allowed at {next_ms} ms")]
    CommissionChangeTooSoon { next_ms: u64 },
    #[error("self-stake would be {stake} VANNA, below the minimum of {min}")]
    BelowMinSelfStake { stake: Decimal, min: Decimal },
    #[error("validator {0} is jailed")]
    ValidatorJailed(Address),
    #[error("validator {0} is tombstoned for double signing and can never return")]
    Tombstoned(Address),
    #[error("validator {0} is not jailed")]
    NotJailed(Address),
    #[error("validator is jailed until {until_ms} ms; block time is {now_ms} ms")]
    StillJailed { until_ms: u64, now_ms: u64 },
    #[error("validator {0} has no stake left to delegate to (fully slashed)")]
    ValidatorHasNoStake(Address),
    #[error("insufficient stake: {requested} VANNA asked, {available} delegated")]
    InsufficientStake { requested: Decimal, available: Decimal },
    #[error("amount is too small to buy a single share")]
    AmountTooSmall,
    #[error("already {max} unbonding entries with this validator; wait for one to mature")]
    TooManyUnbondingEntries { max: usize },
    #[error("already {max} redelegations between these validators; wait for one to mature")]
    TooManyRedelegationEntries { max: usize },
    #[error("stake redelegated to {0} is still maturing; it cannot be moved on until then")]
    RedelegationChain(Address),
    #[error("redelegation to the same validator")]
    SelfRedelegation,
    #[error("nothing has matured to withdraw")]
    NothingToWithdraw,
    #[error("no delegation from this account to validator {0}")]
    NoDelegation(Address),
    #[error("at most {max} validators may be registered")]
    TooManyValidators { max: usize },
}

impl From<vanna_crypto::CryptoError> for TxError {
    fn from(error: vanna_crypto::CryptoError) -> Self {
        use vanna_crypto::CryptoError;
        match error {
            CryptoError::BadPublicKey => TxError::BadPublicKey,
            CryptoError::BadSignatureEncoding => TxError::BadSignatureEncoding,
            CryptoError::HighS => TxError::HighS,
            CryptoError::BadSignature => TxError::BadSignature,
            CryptoError::Encoding(what) => TxError::Malformed(what.to_string()),
        }
    }
}

impl TxError {
    /// A stable machine-readable name for receipts and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            TxError::TransactionTooLarge { .. } => "transaction_too_large",
            TxError::Malformed(_) => "malformed",
            TxError::BadPublicKey => "bad_public_key",
            TxError::BadSignatureEncoding => "bad_signature_encoding",
            TxError::HighS => "high_s",
            TxError::BadSignature => "bad_signature",
            TxError::SenderMismatch { .. } => "sender_mismatch",
            TxError::WrongChainId { .. } => "wrong_chain_id",
            TxError::StaleNonce { .. } => "stale_nonce",
            TxError::FutureNonce { .. } => "future_nonce",
            TxError::UnknownAccount(_) => "unknown_account",
            TxError::NoActions => "no_actions",
            TxError::TooManyActions { .. } => "too_many_actions",
            TxError::MalformedNumber { .. } => "malformed_number",
            TxError::Negative { .. } => "negative",
            TxError::NotPositive { .. } => "not_positive",
            TxError::TooPrecise { .. } => "too_precise",
            TxError::TooLarge { .. } => "too_large",
            TxError::BadAddress(_) => "bad_address",
            TxError::UnknownAsset => "unknown_asset",
            TxError::UnknownSeries(_) => "unknown_series",
            TxError::UnknownUnderlying(_) => "unknown_underlying",
            TxError::BadSeriesName { .. } => "bad_series_name",
            TxError::SeriesExists(_) => "series_exists",
            TxError::SeriesExpired { .. } => "series_expired",
            TxError::TooManySeries { .. } => "too_many_series",
            TxError::UnderlyingStale { .. } => "underlying_stale",
            TxError::MarginUnavailable { .. } => "margin_unavailable",
            TxError::Margin(_) => "margin",
            TxError::NotAuthorized(_) => "not_authorized",
            TxError::OffTick { .. } => "off_tick",
            TxError::OffLot { .. } => "off_lot",
            TxError::PriceTooHigh { .. } => "price_too_high",
            TxError::QuantityTooLarge { .. } => "quantity_too_large",
            TxError::MissingOrderType => "missing_order_type",
            TxError::MissingSide => "missing_side",
            TxError::MissingPrice => "missing_price",
            TxError::MarketOrderWithPrice => "market_order_with_price",
            TxError::MarketOrderMustBeImmediate => "market_order_must_be_immediate",
            TxError::PostOnlyImmediate => "post_only_immediate",
            TxError::BadExpiry { .. } => "bad_expiry",
            TxError::ExpiryWithoutGtt => "expiry_without_gtt",
            TxError::PostOnlyWouldCross { .. } => "post_only_would_cross",
            TxError::FillOrKillUnfilled { .. } => "fill_or_kill_unfilled",
            TxError::NoLiquidity => "no_liquidity",
            TxError::ReduceOnlyWouldIncrease { .. } => "reduce_only_would_increase",
            TxError::InsufficientMargin { .. } => "insufficient_margin",
            TxError::NotLiquidatable { .. } => "not_liquidatable",
            TxError::SelfLiquidation => "self_liquidation",
            TxError::SystemAccount(_) => "system_account",
            TxError::BackstopDiscountTooHigh { .. } => "backstop_discount_too_high",
            TxError::TooManyBackstopOffers { .. } => "too_many_backstop_offers",
            TxError::UnknownBackstopOffer(_) => "unknown_backstop_offer",
            TxError::InsufficientFunds { .. } => "insufficient_funds",
            TxError::DuplicateClientOrderId(_) => "duplicate_client_order_id",
            TxError::UnknownOrder(_) => "unknown_order",
            TxError::UnknownClientOrderId(_) => "unknown_client_order_id",
            TxError::MissingOrderRef => "missing_order_ref",
            TxError::EmptyReplace => "empty_replace",
            TxError::TooManyOpenOrders { .. } => "too_many_open_orders",
            TxError::TooManyOpenOrdersInSeries { .. } => "too_many_open_orders_in_series",
            TxError::TooManyPositions { .. } => "too_many_positions",
            TxError::MissingScope => "missing_scope",
            TxError::SelfTransfer => "self_transfer",
            TxError::ValidatorExists(_) => "validator_exists",
            TxError::UnknownValidator(_) => "unknown_validator",
            TxError::BadConsensusKey => "bad_consensus_key",
            TxError::BadProofOfPossession => "bad_proof_of_possession",
            TxError::ConsensusKeyTaken => "consensus_key_taken",
            TxError::BadMoniker { .. } => "bad_moniker",
            TxError::BadRate { .. } => "bad_rate",
            TxError::CommissionAboveMax { .. } => "commission_above_max",
            TxError::CommissionChangeTooLarge { .. } => "commission_change_too_large",
            TxError::CommissionChangeTooSoon { .. } => "commission_change_too_soon",
            TxError::BelowMinSelfStake { .. } => "below_min_self_stake",
            TxError::ValidatorJailed(_) => "validator_jailed",
            TxError::Tombstoned(_) => "tombstoned",
            TxError::NotJailed(_) => "not_jailed",
            TxError::StillJailed { .. } => "still_jailed",
            TxError::ValidatorHasNoStake(_) => "validator_has_no_stake",
            TxError::InsufficientStake { .. } => "insufficient_stake",
            TxError::AmountTooSmall => "amount_too_small",
            TxError::TooManyUnbondingEntries { .. } => "too_many_unbonding_entries",
            TxError::TooManyRedelegationEntries { .. } => "too_many_redelegation_entries",
            TxError::RedelegationChain(_) => "redelegation_chain",
            TxError::SelfRedelegation => "self_redelegation",
            TxError::NothingToWithdraw => "nothing_to_withdraw",
            TxError::NoDelegation(_) => "no_delegation",
            TxError::TooManyValidators { .. } => "too_many_validators",
        }
    }
}
