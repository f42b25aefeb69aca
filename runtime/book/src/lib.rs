//! `vanna-book`: the central limit order book of ONE options series, matching at
//! price-time priority on integer prices (ticks) and sizes (lots).
//!
//! What it owns: resting orders, their price levels and FIFO queues, and the
//! matching loop that takes liquidity for an incoming order.
//!
//! What it must never do: IO, read a clock, use randomness, or let hash-map
//! iteration order influence a result. It knows nothing about accounts,
//! collateral, fees or decimals: the runtime converts prices and quantities to
//! ticks and lots, and applies its policies (self-trade prevention,
//! reduce-only) through [`MatchPolicy`] at fill time.
//!
//! Architecture invariant, checked by [`Book::check_invariants`] and by debug
//! assertions after every mutation: the book is never crossed after a public
//! call, each level's total equals the sum of its orders, orders within a level
//! are in strictly increasing `sequence` (FIFO), and the id index agrees with
//! the order arena.
//!
//! Layout, for speed: orders live in an arena (`Vec`) with a free list; each
//! price level is an intrusive doubly linked FIFO list through the arena, so a
//! cancel is O(1) once the level is found; levels are a `BTreeMap` per side
//! keyed so that the best price is always the first key; an `FxHashMap` maps
//! order ids to arena slots and is only ever used for lookups.
//!
//! ```
//! use vanna_book::{Book, MatchEvent, NoPolicy, RestingOrder, Side, StopReason, Taker};
//!
//! let mut book = Book::new();
//! let ask = RestingOrder {
//!     id: 1, owner: 10, side: Side::Sell, price_ticks: 101, remaining_lots: 5, sequence: 1, flags: 0,
//! };
//! book.insert(ask).unwrap();
//! let taker = Taker {
//!     id: 2, owner: 20, side: Side::Buy, limit_price_ticks: 102, lots: 3, max_fills: 16, flags: 0,
//! };
//! let mut events = Vec::new();
//! let outcome = book.match_incoming(&taker, &mut NoPolicy, &mut events);
//! assert_eq!((outcome.filled_lots, outcome.stop), (3, StopReason::Filled));
//! assert!(matches!(events[0], MatchEvent::Fill(fill) if fill.price_ticks == 101 && fill.lots == 3));
//! assert_eq!(book.best_ask(), Some((101, 2)));
//! ```

mod book;
#[cfg(test)]
mod reference;

pub use book::{Book, LevelOrders, MAX_ORDERS};

/// Identifier of an order, globally unique, assigned by the runtime.
pub type OrderId = u64;

/// Handle of the account owning an order, assigned by the runtime.
pub type OwnerId = u64;

/// Side of an order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub enum Side {
    /// Bid: wants to buy, matches asks at or below its limit.
    Buy,
    /// Ask: wants to sell, matches bids at or above its limit.
    Sell,
}

impl Side {
    /// The side an order of this side trades against.
    pub const fn opposite(self) -> Side {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        }
    }
}

/// An order resting in the book.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RestingOrder {
    /// Unique order id.
    pub id: OrderId,
    /// Owning account.
    pub owner: OwnerId,
    /// Side of the book the order rests on.
    pub side: Side,
    /// Limit price in ticks; valid resting prices are `1..=u64::MAX - 1`.
    pub price_ticks: u64,
    /// Lots still open; always greater than zero while the order rests.
    pub remaining_lots: u64,
    /// Time priority: must be greater than every sequence already at its level.
    pub sequence: u64,
    /// Opaque to the book; for the runtime's policy (e.g. reduce-only, self-trade mode).
    pub flags: u32,
}

/// An incoming order that takes liquidity in [`Book::match_incoming`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Taker {
    /// Id of the incoming order (not looked up in the book).
    pub id: OrderId,
    /// Owning account.
    pub owner: OwnerId,
    /// Side of the incoming order; it matches against the opposite side.
    pub side: Side,
    /// Buy: highest acceptable price (`u64::MAX` = market);
    /// sell: lowest acceptable price (`0` = market).
    pub limit_price_ticks: u64,
    /// Lots to fill.
    pub lots: u64,
    /// Bound on work: the number of makers the matching loop may examine,
    /// whether they are filled or cancelled by the policy.
    pub max_fills: u32,
    /// Opaque to the book; for the runtime's policy.
    pub flags: u32,
}

/// What the policy wants done with the maker at the head of the best level.
///
/// A maker can never be skipped (left resting while the taker trades behind
/// it): that would break price-time priority, and a remainder rested by the
/// runtime could then cross it. Hence the only choices are to fill it, remove
/// it, or stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MakerDecision {
    /// Fill `min(max_lots, maker remaining, taker remaining)` lots at the
    /// maker's price. `max_lots == 0` is exactly [`MakerDecision::CancelMaker`]:
    /// the maker is removed and reported as [`MatchEvent::MakerCancelled`].
    /// When `max_lots` is what limited the fill, the maker keeps its place at
    /// the head of its level and the policy is asked about it again on the next
    /// step (which counts against `max_fills` like any other step).
    Fill {
        /// Upper bound on the lots filled against this maker in this step.
        max_lots: u64,
    },
    /// Remove the maker from the book (e.g. self-trade prevention
    /// "cancel resting") and continue with the next maker.
    CancelMaker,
    /// Stop matching now; the maker is left untouched (e.g. "cancel incoming").
    StopTaker,
}

/// The runtime's hook into matching: self-trade prevention and reduce-only
/// limits are applied here, at fill time, one maker at a time.
pub trait MatchPolicy {
    /// Decide what to do with `maker`, the oldest order at the best crossing
    /// price, while the taker still has `taker_remaining_lots` (> 0) to fill.
    fn on_maker(&mut self, maker: &RestingOrder, taker: &Taker, taker_remaining_lots: u64) -> MakerDecision;

    /// Called after each fill has been applied to the book, in fill order.
    fn on_fill(&mut self, fill: &Fill) {
        let _ = fill;
    }
}

/// Fills every maker fully: plain price-time matching, for benches and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NoPolicy;

impl MatchPolicy for NoPolicy {
    fn on_maker(&mut self, _: &RestingOrder, _: &Taker, _: u64) -> MakerDecision {
        MakerDecision::Fill { max_lots: u64::MAX }
    }
}

/// One trade between a resting maker and the taker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fill {
    /// Resting order that was hit.
    pub maker_id: OrderId,
    /// Owner of the resting order.
    pub maker_owner: OwnerId,
    /// Incoming order.
    pub taker_id: OrderId,
    /// Owner of the incoming order.
    pub taker_owner: OwnerId,
    /// Trade price: the maker's price.
    pub price_ticks: u64,
    /// Lots traded, always greater than zero.
    pub lots: u64,
    /// Maker's remaining lots after this fill; 0 means it left the book.
    pub maker_remaining_lots: u64,
}

/// What happened during [`Book::match_incoming`], in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchEvent {
    /// A trade.
    Fill(Fill),
    /// The policy removed a maker without trading against it.
    MakerCancelled {
        /// The order as it was when removed.
        order: RestingOrder,
    },
}

/// Why [`Book::match_incoming`] stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StopReason {
    /// The taker has no lots left.
    Filled,
    /// No more liquidity at or better than the taker's limit.
    LimitReached,
    /// `max_fills` makers were examined and crossing liquidity remains.
    MaxFills,
    /// The policy returned [`MakerDecision::StopTaker`].
    PolicyStopped,
}

/// Result of [`Book::match_incoming`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatchOutcome {
    /// Lots the taker filled.
    pub filled_lots: u64,
    /// Lots the taker did not fill (`filled_lots + remaining_lots == taker.lots`).
    pub remaining_lots: u64,
    /// Why matching stopped.
    pub stop: StopReason,
}

/// Every way a book call can refuse caller input. The book is unchanged when
/// an error is returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BookError {
    /// An order with this id already rests in the book.
    #[error("order {0} is already in the book")]
    DuplicateId(OrderId),
    /// A resting order must have at least one lot.
    #[error("an order must have at least one lot")]
    ZeroLots,
    /// Resting prices must be in `1..=u64::MAX - 1` (0 and `u64::MAX` mean "market").
    #[error("price {0} ticks is not a valid resting price")]
    InvalidPrice(u64),
    /// Resting the order would cross the book; match it first.
    #[error("{side:?} at {price_ticks} ticks would cross the opposite best at {opposite_best_ticks}")]
    WouldCross {
        /// Side of the rejected order.
        side: Side,
        /// Its price.
        price_ticks: u64,
        /// Best price on the opposite side.
        opposite_best_ticks: u64,
    },
    /// Time priority must increase within a level.
    #[error("sequence {sequence} is not after the level's last sequence {level_last_sequence}")]
    SequenceNotIncreasing {
        /// Sequence of the rejected order.
        sequence: u64,
        /// Sequence of the last order at that level.
        level_last_sequence: u64,
    },
    /// The total lots at the level would not fit in a `u64`.
    #[error("total lots at the level would overflow")]
    LevelTotalOverflow,
    /// The book holds its maximum number of orders.
    #[error("the book is full ({max_orders} orders)")]
    BookFull {
        /// Configured maximum.
        max_orders: usize,
    },
    /// No resting order has this id.
    #[error("order {0} is not in the book")]
    UnknownOrder(OrderId),
    /// A reduction must leave between 1 and `current_lots - 1` lots.
    #[error("cannot reduce an order of {current_lots} lots to {requested_lots}")]
    InvalidReduce {
        /// Lots currently open.
        current_lots: u64,
        /// Requested remaining lots.
        requested_lots: u64,
    },
}
