//! What a block reports: one receipt per transaction and an ordered list of
//! events (fills, cancels, transfers...), both deterministic.

use std::sync::Arc;

use rust_decimal::Decimal;
use serde::Serialize;

use crate::error::TxError;
use crate::ids::{Address, OrderId};
use crate::money::{Amount, Price};
use crate::staking::{Offence, ValidatorPower};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Asset {
    Usd,
    Vanna,
}

impl Asset {
    pub fn symbol(self) -> &'static str {
        match self {
            Asset::Usd => "USD",
            Asset::Vanna => "VANNA",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum OrderSide {
    Buy,
    Sell,
}

/// Why an order (or what was left of it) left the book.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum CancelReason {
    /// Cancelled by its owner (by id, client id or cancel-all).
    User,
    /// The unfilled rest of an IOC, FOK or market order.
    Unfilled,
    /// Its good-til-time expiry passed.
    Expired,
    /// Self-trade prevention.
    SelfTrade,
    /// A reduce-only order larger than the position it reduces.
    ReduceOnly,
    /// The order swept more resting orders than one order may.
    MaxFills,
    /// Replaced by an amended order with the same id.
    Replaced,
    /// Its series expired and was cash-settled.
    Settled,
    /// Its account was liquidated.
    Liquidation,
    /// Its account owed more at a settlement than its free cash: its orders
    /// were cancelled to release their locks towards the payment.
    SettlementPayment,
}

/// Where a liquidated position went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum LiquidationStep {
    /// A keeper's standing backstop offer took it at mark ∓ its discount.
    Backstop,
    /// Immediate-or-cancel orders in the book, within the price band.
    Book,
    /// The insurance fund took it at mark, covering any shortfall.
    InsuranceFund,
    /// Auto-deleveraging against opposite positions at the bankruptcy price.
    Deleverage,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Fill {
    pub series: Arc<str>,
    pub price: Price,
    pub contracts: Decimal,
    pub premium: Amount,
    pub taker_side: OrderSide,
    pub maker: Address,
    pub maker_order: OrderId,
    pub maker_fee: Amount,
    pub taker: Address,
    pub taker_order: OrderId,
    pub taker_fee: Amount,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Event {
    /// Shorts of an expiring series could not pay in full: the insurance fund
    /// covered `insurance_paid` and the longs' payouts were cut by `haircut`.
    SettlementShortfall {
        series: Arc<str>,
        shortfall: Amount,
        insurance_paid: Amount,
        haircut: Amount,
    },
    /// A short of an expiring series whose free cash did not cover what it
    /// owed sold its other positions at this block's marks (the steps are
    /// the `PositionLiquidated` events before this one). `equity` is its
    /// equity at those marks less what it owed, before any sale: the most
    /// its default may cost others. `paid` below `owed` is a default: it paid
    /// all it had and every position it held was handed on;
    /// `positions_left` is how many no step could take.
    SettlementSales {
        account: Address,
        series: Arc<str>,
        owed: Amount,
        paid: Amount,
        equity: Option<Decimal>,
        positions_left: u32,
    },
    /// An account below maintenance margin is being liquidated in this block.
    LiquidationStarted {
        account: Address,
        equity: Decimal,
        maintenance_margin: Decimal,
        initial_margin: Decimal,
        /// Equity was below the full-close fraction: every position is closed.
        full: bool,
        /// The sender of the `Liquidate` transaction, if one triggered it.
        keeper: Option<Address>,
    },
    /// Part or all of one position left the liquidated account.
    PositionLiquidated {
        account: Address,
        series: Arc<str>,
        step: LiquidationStep,
        /// Signed contracts closed: positive when a long was sold.
        contracts: Decimal,
        /// Who took it (none for the book: see the fills).
        counterparty: Option<Address>,
        /// Per-contract price of the transfer (none for the book).
        price: Option<Decimal>,
        /// USD the account received (negative: paid) for it.
        cash: Decimal,
    },
    /// The insurance fund paid for a shortfall: the account's cash could not
    /// cover closing at mark, so it closed at its bankruptcy price.
    InsuranceFundUsed {
        account: Address,
        series: Arc<str>,
        amount: Amount,
    },
    /// An opposite position was reduced by auto-deleveraging.
    Deleveraged {
        liquidated: Address,
        counterparty: Address,
        series: Arc<str>,
        /// Signed contracts the counterparty's position changed by.
        contracts: Decimal,
        /// Per contract, what the liquidated account paid or received: its
        /// bankruptcy price when it buys back a short.
        price: Decimal,
        /// What the insurance fund added so that the counterparty was paid
        /// mark (also an `InsuranceFundUsed` event).
        insurance_paid: Amount,
    },
    /// The penalty of one liquidation: the keepers' shares (by the notional
    /// each took) and the insurance fund's.
    LiquidationPenalty {
        account: Address,
        total: Amount,
        keepers: Vec<(Address, Amount)>,
        insurance_amount: Amount,
    },
    LiquidationFinished {
        account: Address,
        /// None when its figures cannot be computed (an underlying cannot be priced).
        equity: Option<Decimal>,
        maintenance_margin: Option<Decimal>,
        cash: Amount,
        /// Positions that no step could take (normally none).
        positions_left: u32,
    },
    BackstopRegistered {
        offer: u64,
        keeper: Address,
        underlying: String,
        max_notional: Amount,
        discount: Decimal,
        collateral: Amount,
    },
    BackstopCancelled {
        offer: u64,
        keeper: Address,
        collateral_released: Amount,
    },
    Transferred {
        from: Address,
        to: Address,
        asset: Asset,
        amount: Amount,
    },
    OrderAccepted {
        order: OrderId,
        owner: Address,
        series: Arc<str>,
        side: OrderSide,
        price: Price,
        contracts: Decimal,
    },
    OrderRested {
        order: OrderId,
        owner: Address,
        series: Arc<str>,
        contracts: Decimal,
    },
    Filled(Fill),
    OrderReduced {
        order: OrderId,
        owner: Address,
        remaining: Decimal,
        reason: CancelReason,
    },
    OrderCancelled {
        order: OrderId,
        owner: Address,
        series: Arc<str>,
        remaining: Decimal,
        reason: CancelReason,
    },
    SeriesListed {
        series: Arc<str>,
        expiry_ms: u64,
    },
    /// A series cash-settled at expiry and retired. `from_twap` is false when
    /// the index history did not cover the TWAP window and the index at
    /// settlement time was used instead. Payouts are signed (longs receive,
    /// shorts pay), by account address, and sum to zero.
    SeriesSettled {
        series: Arc<str>,
        settlement_price: Price,
        from_twap: bool,
        payouts: Vec<(Address, Decimal)>,
    },
    /// The oracle moved an underlying's index (stepping toward the aggregate
    /// when `clamped`); stakes are in micro VANNA of active power.
    IndexUpdated {
        underlying: String,
        index: Decimal,
        aggregate: Decimal,
        clamped: bool,
        covered_stake: u128,
        total_stake: u128,
    },
    SurfaceUpdated {
        underlying: String,
        expiries: usize,
    },
    /// Reports counted, but from two thirds of the active stake or less.
    OracleQuorumMissed {
        underlying: String,
        covered_stake: u128,
        total_stake: u128,
    },
    /// No accepted update for `stale_after_ms`: its markets are reduce-only.
    UnderlyingStale {
        underlying: String,
    },
    UnderlyingFresh {
        underlying: String,
    },
    /// A verified report (or one underlying of it) that did not count.
    OracleReportIgnored {
        reporter: Address,
        underlying: String,
        reason: &'static str,
    },
    /// A report in the block context that failed verification (signature,
    /// chain, encoding, limits), by its position in the context.
    OracleReportRejected {
        position: usize,
        reason: String,
    },
    ValidatorRegistered {
        operator: Address,
        moniker: String,
        self_stake: Amount,
    },
    Delegated {
        delegator: Address,
        validator: Address,
        amount: Amount,
    },
    Undelegated {
        delegator: Address,
        validator: Address,
        amount: Amount,
        completion_ms: u64,
    },
    Redelegated {
        delegator: Address,
        from: Address,
        to: Address,
        amount: Amount,
    },
    UnbondingWithdrawn {
        delegator: Address,
        amount: Amount,
    },
    RewardsPaid {
        delegator: Address,
        validator: Address,
        amount: Amount,
    },
    CommissionPaid {
        validator: Address,
        amount: Amount,
    },
    FeesDistributed {
        amount: Amount,
        remaining_in_pool: Amount,
    },
    Slashed {
        validator: Address,
        offence: Offence,
        infraction_height: u64,
        height: u64,
        bonded: Amount,
        unbonding: Amount,
        redelegated: Amount,
        reporter_reward: Amount,
        burned: Amount,
    },
    Jailed {
        validator: Address,
        offence: Offence,
        height: u64,
        until_ms: u64,
    },
    Unjailed {
        validator: Address,
    },
    ValidatorSetChanged {
        epoch: u64,
        validators: Vec<ValidatorPower>,
    },
}

/// The result of one order action.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OrderOutcome {
    pub order: OrderId,
    pub filled_contracts: Decimal,
    /// Contracts left resting in the book (zero if none rest).
    pub resting_contracts: Decimal,
    /// Set when the unfilled rest was cancelled instead of resting.
    pub cancelled: Option<CancelReason>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum ActionOutcome {
    Transferred,
    Order(OrderOutcome),
    Cancelled {
        orders: u32,
    },
    Replaced(OrderOutcome),
    Reduced {
        order: OrderId,
        remaining: Decimal,
    },
    SeriesListed,
    Staked,
    BackstopRegistered {
        offer: u64,
    },
    BackstopCancelled {
        offer: u64,
    },
    /// A `Liquidate` transaction liquidated the account now.
    Liquidated {
        positions_closed: u32,
    },
    /// A `Liquidate` transaction found the account already liquidated in this
    /// block: nothing changed.
    AlreadyLiquidated,
}

/// What happened to one transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum TxStatus {
    /// Not applied at all: the envelope failed (signature, chain id, nonce,
    /// size, decoding). Nothing changed; the nonce was not consumed.
    Rejected {
        #[serde(serialize_with = "serialize_error")]
        error: TxError,
    },
    /// Included: the nonce was consumed and each action either applied in full
    /// or failed without changing anything, as its result says.
    Included { actions: Vec<ActionResult> },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum ActionResult {
    Ok(ActionOutcome),
    Failed {
        #[serde(serialize_with = "serialize_error")]
        error: TxError,
    },
}

fn serialize_error<S: serde::Serializer>(error: &TxError, serializer: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeStruct;
    let mut state = serializer.serialize_struct("Error", 2)?;
    state.serialize_field("code", error.code())?;
    state.serialize_field("message", &error.to_string())?;
    state.end()
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Receipt {
    #[serde(serialize_with = "serialize_hash")]
    pub tx_hash: [u8; 32],
    pub sender: Option<Address>,
    pub nonce: Option<u64>,
    pub status: TxStatus,
}

fn serialize_hash<S: serde::Serializer>(hash: &[u8; 32], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&hex::encode(hash))
}

impl Receipt {
    /// The first error of the transaction, if any: the envelope's, or an action's.
    pub fn first_error(&self) -> Option<&TxError> {
        match &self.status {
            TxStatus::Rejected { error } => Some(error),
            TxStatus::Included { actions } => actions.iter().find_map(|result| match result {
                ActionResult::Failed { error } => Some(error),
                ActionResult::Ok(_) => None,
            }),
        }
    }
}
