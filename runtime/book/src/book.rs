//! The book itself: arena of order nodes, per-side level maps, id index, and
//! the matching loop.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::collections::hash_map::Entry as HashEntry;

use rustc_hash::FxHashMap;

use crate::{
    BookError, Fill, MakerDecision, MatchEvent, MatchOutcome, MatchPolicy, OrderId, OwnerId, RestingOrder, Side,
    StopReason, Taker,
};

/// Hard upper bound on resting orders in one book: arena slots are `u32`
/// indices and `u32::MAX` is reserved as the null link.
pub const MAX_ORDERS: usize = u32::MAX as usize;

/// Null link in the arena.
const NIL: u32 = u32::MAX;

/// An arena slot. A slot is free exactly when `order.remaining_lots == 0`;
/// free slots are chained through `next`.
#[derive(Clone, Copy, Debug)]
struct Node {
    order: RestingOrder,
    prev: u32,
    next: u32,
}

/// One price level: a FIFO list through the arena, oldest at `head`.
#[derive(Clone, Copy, Debug)]
struct Level {
    head: u32,
    tail: u32,
    total_lots: u64,
    order_count: u32,
}

/// Level-map key: both sides are stored so that the best price is the first
/// (smallest) key. Asks are keyed by price, bids by the bitwise complement.
const fn level_key(side: Side, price_ticks: u64) -> u64 {
    match side {
        Side::Buy => !price_ticks,
        Side::Sell => price_ticks,
    }
}

/// Inverse of [`level_key`].
const fn key_price(side: Side, key: u64) -> u64 {
    level_key(side, key)
}

const fn side_index(side: Side) -> usize {
    match side {
        Side::Buy => 0,
        Side::Sell => 1,
    }
}

/// Order storage with a free list; indices are stable while an order rests.
#[derive(Clone, Debug, Default)]
struct Arena {
    nodes: Vec<Node>,
    free_head: u32,
}

impl Arena {
    fn new() -> Self {
        Arena { nodes: Vec::new(), free_head: NIL }
    }

    /// Stores `order` unlinked and returns its slot. The caller guarantees
    /// fewer than [`MAX_ORDERS`] orders are live.
    fn allocate(&mut self, order: RestingOrder) -> u32 {
        debug_assert!(order.remaining_lots > 0);
        let node = Node { order, prev: NIL, next: NIL };
        if self.free_head != NIL {
            let index = self.free_head;
            let slot = &mut self.nodes[index as usize];
            debug_assert_eq!(slot.order.remaining_lots, 0, "free slot in use");
            self.free_head = slot.next;
            *slot = node;
            index
        } else {
            assert!(self.nodes.len() < MAX_ORDERS, "arena exhausted");
            let index = self.nodes.len() as u32;
            self.nodes.push(node);
            index
        }
    }

    /// Returns an unlinked slot to the free list.
    fn release(&mut self, index: u32) {
        let slot = &mut self.nodes[index as usize];
        debug_assert!(slot.order.remaining_lots > 0, "double free");
        slot.order.remaining_lots = 0;
        slot.prev = NIL;
        slot.next = self.free_head;
        self.free_head = index;
    }

    /// Appends slot `index` at the tail of `level`.
    fn push_back(&mut self, level: &mut Level, index: u32) {
        let lots = self.nodes[index as usize].order.remaining_lots;
        let old_tail = level.tail;
        {
            let node = &mut self.nodes[index as usize];
            node.prev = old_tail;
            node.next = NIL;
        }
        if old_tail == NIL {
            level.head = index;
        } else {
            self.nodes[old_tail as usize].next = index;
        }
        level.tail = index;
        level.total_lots += lots;
        level.order_count += 1;
    }

    /// Removes slot `index` from `level`'s list and total; the slot stays allocated.
    fn unlink(&mut self, level: &mut Level, index: u32) {
        let Node { prev, next, order } = self.nodes[index as usize];
        if prev == NIL {
            level.head = next;
        } else {
            self.nodes[prev as usize].next = next;
        }
        if next == NIL {
            level.tail = prev;
        } else {
            self.nodes[next as usize].prev = prev;
        }
        level.total_lots -= order.remaining_lots;
        level.order_count -= 1;
    }
}

/// Central limit order book for one series. See the crate docs for layout and
/// invariants.
///
/// Serialized as its limit and its orders in [`Book::orders`] order (bids
/// best to worst, then asks, FIFO within a level); deserializing inserts them
/// again, so a crossed book, a duplicate id or a level out of time priority
/// is refused, and the arena and id index are rebuilt rather than trusted.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(try_from = "BookOrders")]
pub struct Book {
    arena: Arena,
    /// `[bids, asks]`, keyed by [`level_key`] so the best level is first.
    levels: [BTreeMap<u64, Level>; 2],
    /// Order id -> arena slot. Lookups only; never iterated.
    ids: FxHashMap<OrderId, u32>,
    max_orders: usize,
}

/// What a book is deserialized from.
#[derive(serde::Deserialize)]
struct BookOrders {
    max_orders: usize,
    orders: Vec<RestingOrder>,
}

/// The same, borrowed from a book to serialize it.
#[derive(serde::Serialize)]
struct BookOrdersRef<'a> {
    max_orders: usize,
    orders: Vec<&'a RestingOrder>,
}

impl serde::Serialize for Book {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        BookOrdersRef { max_orders: self.max_orders, orders: self.orders().collect() }.serialize(serializer)
    }
}

impl TryFrom<BookOrders> for Book {
    type Error = BookError;

    fn try_from(stored: BookOrders) -> Result<Self, Self::Error> {
        let mut book = Book::with_max_orders(stored.max_orders);
        book.reserve(stored.orders.len().min(book.max_orders));
        for order in stored.orders {
            book.insert(order)?;
        }
        Ok(book)
    }
}

impl Default for Book {
    fn default() -> Self {
        Book::new()
    }
}

impl Book {
    /// An empty book that accepts up to [`MAX_ORDERS`] resting orders.
    pub fn new() -> Self {
        Book::with_max_orders(MAX_ORDERS)
    }

    /// An empty book that rejects inserts beyond `max_orders` resting orders
    /// (clamped to [`MAX_ORDERS`]) with [`BookError::BookFull`].
    pub fn with_max_orders(max_orders: usize) -> Self {
        Book {
            arena: Arena::new(),
            levels: [BTreeMap::new(), BTreeMap::new()],
            ids: FxHashMap::default(),
            max_orders: max_orders.min(MAX_ORDERS),
        }
    }

    /// Pre-allocates room for `additional` more resting orders, so that
    /// inserts up to that many do not allocate in the arena or id index.
    pub fn reserve(&mut self, additional: usize) {
        self.arena.nodes.reserve(additional);
        self.ids.reserve(additional);
    }

    /// Number of resting orders.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when no order rests.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The configured maximum number of resting orders.
    pub fn max_orders(&self) -> usize {
        self.max_orders
    }

    /// The resting order with this id.
    pub fn get(&self, id: OrderId) -> Option<&RestingOrder> {
        self.ids.get(&id).map(|&index| &self.arena.nodes[index as usize].order)
    }

    /// Best (highest) bid: `(price_ticks, total lots at that price)`.
    pub fn best_bid(&self) -> Option<(u64, u64)> {
        self.best(Side::Buy)
    }

    /// Best (lowest) ask: `(price_ticks, total lots at that price)`.
    pub fn best_ask(&self) -> Option<(u64, u64)> {
        self.best(Side::Sell)
    }

    /// Best level of `side`: `(price_ticks, total lots)`.
    pub fn best(&self, side: Side) -> Option<(u64, u64)> {
        self.levels[side_index(side)].first_key_value().map(|(&key, level)| (key_price(side, key), level.total_lots))
    }

    /// Up to `levels` levels of `side`, best first, as `(price_ticks, total lots)`.
    pub fn depth(&self, side: Side, levels: usize) -> Vec<(u64, u64)> {
        self.levels[side_index(side)]
            .iter()
            .take(levels)
            .map(|(&key, level)| (key_price(side, key), level.total_lots))
            .collect()
    }

    /// Number of price levels on `side`.
    pub fn level_count(&self, side: Side) -> usize {
        self.levels[side_index(side)].len()
    }

    /// True when the best bid is at or above the best ask. Never true after a
    /// public call returns.
    pub fn is_crossed(&self) -> bool {
        match (self.best_bid(), self.best_ask()) {
            (Some((bid, _)), Some((ask, _))) => bid >= ask,
            _ => false,
        }
    }

    /// All resting orders: bids best to worst, then asks best to worst, FIFO
    /// within a level.
    pub fn orders(&self) -> impl Iterator<Item = &RestingOrder> + '_ {
        let nodes = self.arena.nodes.as_slice();
        self.levels[0]
            .values()
            .chain(self.levels[1].values())
            .flat_map(move |level| LevelOrders { nodes, next: level.head })
    }

    /// Orders resting at `price_ticks` on `side`, oldest first (empty if no
    /// such level).
    pub fn level_orders(&self, side: Side, price_ticks: u64) -> LevelOrders<'_> {
        let head = self.levels[side_index(side)].get(&level_key(side, price_ticks)).map_or(NIL, |level| level.head);
        LevelOrders { nodes: &self.arena.nodes, next: head }
    }

    /// Read-only: how many lots a taker on `taker_side` could fill at or better
    /// than `limit_price_ticks`, ignoring orders owned by `skip_owner`, capped at
    /// `cap` (the walk stops once `cap` is reached). Policies other than
    /// skipping one owner and the `max_fills` bound are not modelled. Used for
    /// fill-or-kill checks.
    pub fn available_lots(
        &self,
        taker_side: Side,
        limit_price_ticks: u64,
        skip_owner: Option<OwnerId>,
        cap: u64,
    ) -> u64 {
        let maker_side = taker_side.opposite();
        let limit_key = level_key(maker_side, limit_price_ticks);
        let mut total: u64 = 0;
        for level in self.levels[side_index(maker_side)].range(..=limit_key).map(|(_, level)| level) {
            if total >= cap {
                break;
            }
            match skip_owner {
                None => total = total.saturating_add(level.total_lots),
                Some(owner) => {
                    for order in (LevelOrders { nodes: &self.arena.nodes, next: level.head }) {
                        if order.owner != owner {
                            total = total.saturating_add(order.remaining_lots);
                            if total >= cap {
                                break;
                            }
                        }
                    }
                }
            }
        }
        total.min(cap)
    }

    /// Rests `order` at the back of its price level.
    ///
    /// Errors (the book is unchanged): [`BookError::ZeroLots`],
    /// [`BookError::InvalidPrice`], [`BookError::DuplicateId`],
    /// [`BookError::WouldCross`] (match first), [`BookError::BookFull`],
    /// [`BookError::SequenceNotIncreasing`] (sequence not greater than the
    /// level's last), [`BookError::LevelTotalOverflow`].
    pub fn insert(&mut self, order: RestingOrder) -> Result<(), BookError> {
        if order.remaining_lots == 0 {
            return Err(BookError::ZeroLots);
        }
        if order.price_ticks == 0 || order.price_ticks == u64::MAX {
            return Err(BookError::InvalidPrice(order.price_ticks));
        }
        let opposite = order.side.opposite();
        if let Some(&opposite_key) = self.levels[side_index(opposite)].first_key_value().map(|(key, _)| key) {
            let opposite_best_ticks = key_price(opposite, opposite_key);
            let crosses = match order.side {
                Side::Buy => order.price_ticks >= opposite_best_ticks,
                Side::Sell => order.price_ticks <= opposite_best_ticks,
            };
            if crosses {
                return Err(BookError::WouldCross {
                    side: order.side,
                    price_ticks: order.price_ticks,
                    opposite_best_ticks,
                });
            }
        }
        if self.ids.len() >= self.max_orders {
            return Err(BookError::BookFull { max_orders: self.max_orders });
        }
        let id_slot = match self.ids.entry(order.id) {
            HashEntry::Occupied(_) => return Err(BookError::DuplicateId(order.id)),
            HashEntry::Vacant(vacant) => vacant,
        };
        let index = match self.levels[side_index(order.side)].entry(level_key(order.side, order.price_ticks)) {
            Entry::Occupied(mut occupied) => {
                let level = occupied.get_mut();
                let level_last_sequence = self.arena.nodes[level.tail as usize].order.sequence;
                if order.sequence <= level_last_sequence {
                    return Err(BookError::SequenceNotIncreasing { sequence: order.sequence, level_last_sequence });
                }
                if level.total_lots.checked_add(order.remaining_lots).is_none() {
                    return Err(BookError::LevelTotalOverflow);
                }
                let index = self.arena.allocate(order);
                self.arena.push_back(level, index);
                index
            }
            Entry::Vacant(vacant) => {
                let level = vacant.insert(Level { head: NIL, tail: NIL, total_lots: 0, order_count: 0 });
                let index = self.arena.allocate(order);
                self.arena.push_back(level, index);
                index
            }
        };
        id_slot.insert(index);
        debug_assert!(!self.is_crossed());
        Ok(())
    }

    /// Removes the order with this id and returns it as it was.
    pub fn cancel(&mut self, id: OrderId) -> Option<RestingOrder> {
        let index = self.ids.remove(&id)?;
        let order = self.arena.nodes[index as usize].order;
        let side = side_index(order.side);
        let Entry::Occupied(mut level_entry) = self.levels[side].entry(level_key(order.side, order.price_ticks)) else {
            unreachable!("resting order {id} has no level");
        };
        self.arena.unlink(level_entry.get_mut(), index);
        if level_entry.get().order_count == 0 {
            level_entry.remove();
        }
        self.arena.release(index);
        Some(order)
    }

    /// Decreases an order's remaining lots in place, keeping its time priority.
    /// `new_remaining_lots` must be in `1..current`.
    pub fn reduce(&mut self, id: OrderId, new_remaining_lots: u64) -> Result<(), BookError> {
        let &index = self.ids.get(&id).ok_or(BookError::UnknownOrder(id))?;
        let order = &mut self.arena.nodes[index as usize].order;
        if new_remaining_lots == 0 || new_remaining_lots >= order.remaining_lots {
            return Err(BookError::InvalidReduce {
                current_lots: order.remaining_lots,
                requested_lots: new_remaining_lots,
            });
        }
        let decrease = order.remaining_lots - new_remaining_lots;
        order.remaining_lots = new_remaining_lots;
        let key = level_key(order.side, order.price_ticks);
        let level = self.levels[side_index(order.side)].get_mut(&key).expect("resting order has a level");
        level.total_lots -= decrease;
        Ok(())
    }

    /// Takes liquidity for `taker` at price-time priority, trading at each
    /// maker's price, asking `policy` about every maker before touching it.
    /// Events are appended to `events` (the caller clears and reuses it).
    ///
    /// Each step examines the oldest order at the best crossing level; a step
    /// counts against `taker.max_fills` whether it fills or cancels the maker.
    /// The loop stops with, checked in this order: [`StopReason::Filled`] when
    /// nothing is left to fill, [`StopReason::LimitReached`] when no maker
    /// crosses the limit, [`StopReason::MaxFills`] when `max_fills` steps were
    /// taken, [`StopReason::PolicyStopped`] on [`MakerDecision::StopTaker`].
    /// Fully filled makers leave the book (their last fill reports
    /// `maker_remaining_lots == 0`). The taker itself never rests: the caller
    /// inserts any remainder.
    pub fn match_incoming<P: MatchPolicy>(
        &mut self,
        taker: &Taker,
        policy: &mut P,
        events: &mut Vec<MatchEvent>,
    ) -> MatchOutcome {
        let maker_side = taker.side.opposite();
        let limit_key = level_key(maker_side, taker.limit_price_ticks);
        let Book { arena, levels, ids, .. } = self;
        let levels = &mut levels[side_index(maker_side)];
        let mut remaining = taker.lots;
        let mut steps: u32 = 0;

        let stop = loop {
            if remaining == 0 {
                break StopReason::Filled;
            }
            let Some(mut level_entry) = levels.first_entry() else {
                break StopReason::LimitReached;
            };
            if *level_entry.key() > limit_key {
                break StopReason::LimitReached;
            }
            let price_ticks = key_price(maker_side, *level_entry.key());
            let level = level_entry.get_mut();
            // Work through this level until it empties (`None`) or matching stops.
            let level_stop = loop {
                if remaining == 0 {
                    break Some(StopReason::Filled);
                }
                if steps == taker.max_fills {
                    break Some(StopReason::MaxFills);
                }
                steps += 1;
                let index = level.head;
                debug_assert_ne!(index, NIL, "empty level left in the map");
                let maker = arena.nodes[index as usize].order;
                debug_assert_eq!(maker.price_ticks, price_ticks);
                match policy.on_maker(&maker, taker, remaining) {
                    MakerDecision::StopTaker => break Some(StopReason::PolicyStopped),
                    MakerDecision::CancelMaker | MakerDecision::Fill { max_lots: 0 } => {
                        arena.unlink(level, index);
                        arena.release(index);
                        ids.remove(&maker.id);
                        events.push(MatchEvent::MakerCancelled { order: maker });
                    }
                    MakerDecision::Fill { max_lots } => {
                        let lots = max_lots.min(maker.remaining_lots).min(remaining);
                        let maker_remaining_lots = maker.remaining_lots - lots;
                        remaining -= lots;
                        if maker_remaining_lots == 0 {
                            arena.unlink(level, index);
                            arena.release(index);
                            ids.remove(&maker.id);
                        } else {
                            arena.nodes[index as usize].order.remaining_lots = maker_remaining_lots;
                            level.total_lots -= lots;
                        }
                        let fill = Fill {
                            maker_id: maker.id,
                            maker_owner: maker.owner,
                            taker_id: taker.id,
                            taker_owner: taker.owner,
                            price_ticks,
                            lots,
                            maker_remaining_lots,
                        };
                        events.push(MatchEvent::Fill(fill));
                        policy.on_fill(&fill);
                    }
                }
                if level.order_count == 0 {
                    break None;
                }
            };
            match level_stop {
                Some(stop) => break stop,
                None => {
                    level_entry.remove();
                }
            }
        };

        debug_assert!(!self.is_crossed());
        MatchOutcome { filled_lots: taker.lots - remaining, remaining_lots: remaining, stop }
    }

    /// Asserts every structural invariant; panics with a description on the
    /// first violation. O(n): for tests and audits, not the hot path.
    pub fn check_invariants(&self) {
        assert!(!self.is_crossed(), "book is crossed: bid {:?} ask {:?}", self.best_bid(), self.best_ask());
        let mut live = 0usize;
        for side in [Side::Buy, Side::Sell] {
            for (&key, level) in &self.levels[side_index(side)] {
                let price_ticks = key_price(side, key);
                assert!(level.order_count > 0 && level.head != NIL, "empty level {side:?} {price_ticks}");
                let mut total_lots: u64 = 0;
                let mut count = 0u32;
                let mut previous = NIL;
                let mut last_sequence: Option<u64> = None;
                let mut index = level.head;
                while index != NIL {
                    let node = &self.arena.nodes[index as usize];
                    let order = &node.order;
                    assert_eq!(node.prev, previous, "broken back link at order {}", order.id);
                    assert!(order.remaining_lots > 0, "zero-lot order {} rests", order.id);
                    assert_eq!(order.side, side, "order {} on the wrong side", order.id);
                    assert_eq!(order.price_ticks, price_ticks, "order {} at the wrong level", order.id);
                    if let Some(last) = last_sequence {
                        assert!(
                            order.sequence > last,
                            "FIFO broken at {side:?} {price_ticks}: {} after {last}",
                            order.sequence
                        );
                    }
                    last_sequence = Some(order.sequence);
                    assert_eq!(self.ids.get(&order.id), Some(&index), "id index disagrees for order {}", order.id);
                    total_lots += order.remaining_lots;
                    count += 1;
                    previous = index;
                    index = node.next;
                }
                assert_eq!(level.tail, previous, "tail mismatch at {side:?} {price_ticks}");
                assert_eq!(level.total_lots, total_lots, "level total mismatch at {side:?} {price_ticks}");
                assert_eq!(level.order_count, count, "level count mismatch at {side:?} {price_ticks}");
                live += count as usize;
            }
        }
        assert_eq!(self.ids.len(), live, "id index holds orders not in any level");
        let mut free = 0usize;
        let mut index = self.arena.free_head;
        while index != NIL {
            let node = &self.arena.nodes[index as usize];
            assert_eq!(node.order.remaining_lots, 0, "free slot {index} holds an order");
            free += 1;
            assert!(free <= self.arena.nodes.len(), "free list has a cycle");
            index = node.next;
        }
        assert_eq!(free + live, self.arena.nodes.len(), "arena slots leaked");
        assert!(live <= self.max_orders, "more orders than the limit");
    }
}

/// Iterator over one level's orders, oldest first.
#[derive(Clone, Debug)]
pub struct LevelOrders<'a> {
    nodes: &'a [Node],
    next: u32,
}

impl<'a> Iterator for LevelOrders<'a> {
    type Item = &'a RestingOrder;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next == NIL {
            return None;
        }
        let node = &self.nodes[self.next as usize];
        self.next = node.next;
        Some(&node.order)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NoPolicy;

    fn order(id: OrderId, side: Side, price_ticks: u64, lots: u64) -> RestingOrder {
        RestingOrder { id, owner: id % 3, side, price_ticks, remaining_lots: lots, sequence: id, flags: 0 }
    }

    fn taker(side: Side, limit_price_ticks: u64, lots: u64) -> Taker {
        Taker { id: 1_000, owner: 99, side, limit_price_ticks, lots, max_fills: u32::MAX, flags: 0 }
    }

    fn fills(events: &[MatchEvent]) -> Vec<(OrderId, u64, u64, u64)> {
        events
            .iter()
            .filter_map(|event| match event {
                MatchEvent::Fill(fill) => Some((fill.maker_id, fill.price_ticks, fill.lots, fill.maker_remaining_lots)),
                MatchEvent::MakerCancelled { .. } => None,
            })
            .collect()
    }

    fn ids(book: &Book) -> Vec<OrderId> {
        book.orders().map(|order| order.id).collect()
    }

    /// Asks 101 (ids 1, 2), 102 (3), 104 (4); bids 99 (5, 6), 98 (7).
    fn sample() -> Book {
        let mut book = Book::new();
        for resting in [
            order(1, Side::Sell, 101, 5),
            order(2, Side::Sell, 101, 3),
            order(3, Side::Sell, 102, 4),
            order(4, Side::Sell, 104, 10),
            order(5, Side::Buy, 99, 2),
            order(6, Side::Buy, 99, 6),
            order(7, Side::Buy, 98, 1),
        ] {
            book.insert(resting).unwrap();
        }
        book.check_invariants();
        book
    }

    /// Scripted policy: answers in turn, then fills fully; records on_fill calls.
    struct Script {
        answers: Vec<MakerDecision>,
        asked: Vec<(OrderId, u64)>,
        filled: Vec<Fill>,
    }

    impl Script {
        fn new(answers: &[MakerDecision]) -> Self {
            Script { answers: answers.iter().rev().copied().collect(), asked: Vec::new(), filled: Vec::new() }
        }
    }

    impl MatchPolicy for Script {
        fn on_maker(&mut self, maker: &RestingOrder, _: &Taker, taker_remaining_lots: u64) -> MakerDecision {
            self.asked.push((maker.id, taker_remaining_lots));
            self.answers.pop().unwrap_or(MakerDecision::Fill { max_lots: u64::MAX })
        }

        fn on_fill(&mut self, fill: &Fill) {
            self.filled.push(*fill);
        }
    }

    #[test]
    fn empty_book() {
        let mut book = Book::new();
        assert!(book.is_empty());
        assert_eq!(book.len(), 0);
        assert_eq!(book.best_bid(), None);
        assert_eq!(book.best_ask(), None);
        assert!(book.depth(Side::Buy, 5).is_empty());
        assert!(!book.is_crossed());
        assert_eq!(book.orders().count(), 0);
        assert_eq!(book.level_orders(Side::Sell, 100).count(), 0);
        assert_eq!(book.available_lots(Side::Buy, u64::MAX, None, u64::MAX), 0);
        assert_eq!(book.cancel(1), None);
        assert_eq!(book.get(1), None);
        assert_eq!(book.reduce(1, 1), Err(BookError::UnknownOrder(1)));
        let mut events = Vec::new();
        let outcome = book.match_incoming(&taker(Side::Buy, u64::MAX, 5), &mut NoPolicy, &mut events);
        assert_eq!(outcome, MatchOutcome { filled_lots: 0, remaining_lots: 5, stop: StopReason::LimitReached });
        assert!(events.is_empty());
        book.check_invariants();
    }

    #[test]
    fn side_opposite() {
        assert_eq!(Side::Buy.opposite(), Side::Sell);
        assert_eq!(Side::Sell.opposite(), Side::Buy);
    }

    #[test]
    fn queries_report_levels_best_first() {
        let book = sample();
        assert_eq!(book.len(), 7);
        assert_eq!(book.best_bid(), Some((99, 8)));
        assert_eq!(book.best_ask(), Some((101, 8)));
        assert_eq!(book.depth(Side::Sell, 2), vec![(101, 8), (102, 4)]);
        assert_eq!(book.depth(Side::Sell, 10), vec![(101, 8), (102, 4), (104, 10)]);
        assert_eq!(book.depth(Side::Buy, 10), vec![(99, 8), (98, 1)]);
        assert_eq!(book.depth(Side::Buy, 0), vec![]);
        assert_eq!(book.level_count(Side::Sell), 3);
        assert_eq!(ids(&book), vec![5, 6, 7, 1, 2, 3, 4]);
        assert_eq!(book.level_orders(Side::Sell, 101).map(|o| o.id).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(book.level_orders(Side::Buy, 101).count(), 0);
        assert_eq!(book.get(3), Some(&order(3, Side::Sell, 102, 4)));
    }

    #[test]
    fn available_lots_walks_levels_and_skips_owner() {
        let book = sample();
        assert_eq!(book.available_lots(Side::Buy, 100, None, u64::MAX), 0);
        assert_eq!(book.available_lots(Side::Buy, 101, None, u64::MAX), 8);
        assert_eq!(book.available_lots(Side::Buy, 103, None, u64::MAX), 12);
        assert_eq!(book.available_lots(Side::Buy, u64::MAX, None, u64::MAX), 22);
        assert_eq!(book.available_lots(Side::Buy, u64::MAX, None, 10), 10);
        assert_eq!(book.available_lots(Side::Buy, u64::MAX, None, 0), 0);
        // Owner of order 1 is 1 % 3 == 1, shared with order 4.
        assert_eq!(book.available_lots(Side::Buy, u64::MAX, Some(1), u64::MAX), 7);
        assert_eq!(book.available_lots(Side::Buy, 101, Some(1), u64::MAX), 3);
        assert_eq!(book.available_lots(Side::Sell, 0, None, u64::MAX), 9);
        assert_eq!(book.available_lots(Side::Sell, 99, None, u64::MAX), 8);
        assert_eq!(book.available_lots(Side::Sell, 99, Some(0), 5), 2);
        assert_eq!(book.available_lots(Side::Sell, 100, None, u64::MAX), 0);
    }

    #[test]
    fn insert_rejects_bad_orders_and_leaves_book_unchanged() {
        let mut book = sample();
        let before = ids(&book);
        assert_eq!(book.insert(order(1, Side::Sell, 110, 1)), Err(BookError::DuplicateId(1)));
        assert_eq!(book.insert(order(20, Side::Sell, 110, 0)), Err(BookError::ZeroLots));
        assert_eq!(book.insert(order(20, Side::Sell, 0, 1)), Err(BookError::InvalidPrice(0)));
        assert_eq!(book.insert(order(20, Side::Buy, u64::MAX, 1)), Err(BookError::InvalidPrice(u64::MAX)));
        assert_eq!(
            book.insert(order(20, Side::Buy, 101, 1)),
            Err(BookError::WouldCross { side: Side::Buy, price_ticks: 101, opposite_best_ticks: 101 })
        );
        assert_eq!(
            book.insert(order(20, Side::Sell, 95, 1)),
            Err(BookError::WouldCross { side: Side::Sell, price_ticks: 95, opposite_best_ticks: 99 })
        );
        let stale = RestingOrder { sequence: 2, ..order(20, Side::Sell, 101, 1) };
        assert_eq!(book.insert(stale), Err(BookError::SequenceNotIncreasing { sequence: 2, level_last_sequence: 2 }));
        assert_eq!(book.insert(order(20, Side::Sell, 110, u64::MAX)), Ok(()));
        assert_eq!(book.insert(order(21, Side::Sell, 110, 1)), Err(BookError::LevelTotalOverflow));
        assert_eq!(book.cancel(20).map(|o| o.id), Some(20));
        assert_eq!(ids(&book), before);
        // A lower sequence is fine at a fresh level: priority is per level.
        book.insert(RestingOrder { sequence: 0, ..order(20, Side::Sell, 105, 1) }).unwrap();
        book.check_invariants();
    }

    #[test]
    fn insert_respects_max_orders() {
        let mut book = Book::with_max_orders(2);
        assert_eq!(book.max_orders(), 2);
        book.insert(order(1, Side::Buy, 10, 1)).unwrap();
        book.insert(order(2, Side::Buy, 10, 1)).unwrap();
        assert_eq!(book.insert(order(3, Side::Buy, 10, 1)), Err(BookError::BookFull { max_orders: 2 }));
        book.cancel(1).unwrap();
        book.insert(order(3, Side::Buy, 10, 1)).unwrap();
        assert_eq!(ids(&book), vec![2, 3]);
        book.check_invariants();
        assert_eq!(Book::with_max_orders(usize::MAX).max_orders(), MAX_ORDERS);
    }

    #[test]
    fn cancel_head_middle_tail_and_last() {
        let mut book = Book::new();
        for id in 1..=4 {
            book.insert(order(id, Side::Buy, 50, id)).unwrap();
        }
        book.insert(order(9, Side::Buy, 49, 1)).unwrap();
        assert_eq!(book.cancel(2), Some(order(2, Side::Buy, 50, 2)));
        book.check_invariants();
        assert_eq!(book.cancel(1).map(|o| o.id), Some(1));
        book.check_invariants();
        assert_eq!(book.cancel(4).map(|o| o.id), Some(4));
        book.check_invariants();
        assert_eq!(book.best_bid(), Some((50, 3)));
        assert_eq!(book.cancel(4), None);
        assert_eq!(book.cancel(3).map(|o| o.id), Some(3));
        assert_eq!(book.best_bid(), Some((49, 1)));
        assert_eq!(book.level_count(Side::Buy), 1);
        // Slots are reused from the free list and new orders queue behind.
        book.insert(order(10, Side::Buy, 49, 2)).unwrap();
        book.insert(order(11, Side::Buy, 50, 2)).unwrap();
        assert_eq!(ids(&book), vec![11, 9, 10]);
        book.check_invariants();
    }

    #[test]
    fn reduce_keeps_priority() {
        let mut book = sample();
        assert_eq!(book.reduce(1, 5), Err(BookError::InvalidReduce { current_lots: 5, requested_lots: 5 }));
        assert_eq!(book.reduce(1, 6), Err(BookError::InvalidReduce { current_lots: 5, requested_lots: 6 }));
        assert_eq!(book.reduce(1, 0), Err(BookError::InvalidReduce { current_lots: 5, requested_lots: 0 }));
        book.reduce(1, 2).unwrap();
        assert_eq!(book.best_ask(), Some((101, 5)));
        assert_eq!(book.get(1).map(|o| o.remaining_lots), Some(2));
        book.check_invariants();
        let mut events = Vec::new();
        let outcome = book.match_incoming(&taker(Side::Buy, 101, 3), &mut NoPolicy, &mut events);
        assert_eq!(outcome.stop, StopReason::Filled);
        assert_eq!(fills(&events), vec![(1, 101, 2, 0), (2, 101, 1, 2)]);
    }

    #[test]
    fn partial_fill_of_one_maker() {
        let mut book = sample();
        let mut events = Vec::new();
        let outcome = book.match_incoming(&taker(Side::Buy, 101, 3), &mut NoPolicy, &mut events);
        assert_eq!(outcome, MatchOutcome { filled_lots: 3, remaining_lots: 0, stop: StopReason::Filled });
        assert_eq!(
            events,
            vec![MatchEvent::Fill(Fill {
                maker_id: 1,
                maker_owner: 1,
                taker_id: 1_000,
                taker_owner: 99,
                price_ticks: 101,
                lots: 3,
                maker_remaining_lots: 2,
            })]
        );
        assert_eq!(book.get(1).map(|o| o.remaining_lots), Some(2));
        assert_eq!(book.best_ask(), Some((101, 5)));
        book.check_invariants();
    }

    #[test]
    fn sweep_stops_at_limit_at_makers_prices() {
        let mut book = sample();
        let mut events = Vec::new();
        let outcome = book.match_incoming(&taker(Side::Buy, 103, 20), &mut NoPolicy, &mut events);
        assert_eq!(outcome, MatchOutcome { filled_lots: 12, remaining_lots: 8, stop: StopReason::LimitReached });
        assert_eq!(fills(&events), vec![(1, 101, 5, 0), (2, 101, 3, 0), (3, 102, 4, 0)]);
        assert_eq!(book.best_ask(), Some((104, 10)));
        assert_eq!(book.get(1), None);
        assert_eq!(book.len(), 4);
        book.check_invariants();
    }

    #[test]
    fn market_sell_sweeps_all_bids() {
        let mut book = sample();
        let mut events = Vec::new();
        let outcome = book.match_incoming(&taker(Side::Sell, 0, 8), &mut NoPolicy, &mut events);
        assert_eq!(outcome, MatchOutcome { filled_lots: 8, remaining_lots: 0, stop: StopReason::Filled });
        assert_eq!(fills(&events), vec![(5, 99, 2, 0), (6, 99, 6, 0)]);
        let mut events = Vec::new();
        let outcome = book.match_incoming(&taker(Side::Sell, 0, 8), &mut NoPolicy, &mut events);
        assert_eq!(outcome, MatchOutcome { filled_lots: 1, remaining_lots: 7, stop: StopReason::LimitReached });
        assert_eq!(book.best_bid(), None);
        book.check_invariants();
    }

    #[test]
    fn non_crossing_and_zero_lot_takers_do_nothing() {
        let mut book = sample();
        let mut events = Vec::new();
        let outcome = book.match_incoming(&taker(Side::Buy, 100, 5), &mut NoPolicy, &mut events);
        assert_eq!(outcome.stop, StopReason::LimitReached);
        let outcome = book.match_incoming(&taker(Side::Buy, 101, 0), &mut NoPolicy, &mut events);
        assert_eq!(outcome, MatchOutcome { filled_lots: 0, remaining_lots: 0, stop: StopReason::Filled });
        assert!(events.is_empty());
        assert_eq!(book.len(), 7);
    }

    #[test]
    fn max_fills_bounds_steps() {
        let mut book = sample();
        let mut events = Vec::new();
        let limited = Taker { max_fills: 2, ..taker(Side::Buy, u64::MAX, 20) };
        let outcome = book.match_incoming(&limited, &mut NoPolicy, &mut events);
        assert_eq!(outcome, MatchOutcome { filled_lots: 8, remaining_lots: 12, stop: StopReason::MaxFills });
        assert_eq!(events.len(), 2);
        // Exactly enough steps to fill: Filled wins.
        let exact = Taker { max_fills: 1, ..taker(Side::Buy, u64::MAX, 4) };
        events.clear();
        let outcome = book.match_incoming(&exact, &mut NoPolicy, &mut events);
        assert_eq!(outcome.stop, StopReason::Filled);
        // No steps allowed: MaxFills only if something crosses.
        let none = Taker { max_fills: 0, ..taker(Side::Buy, u64::MAX, 4) };
        assert_eq!(book.match_incoming(&none, &mut NoPolicy, &mut events).stop, StopReason::MaxFills);
        let none_below = Taker { max_fills: 0, ..taker(Side::Buy, 50, 4) };
        assert_eq!(book.match_incoming(&none_below, &mut NoPolicy, &mut events).stop, StopReason::LimitReached);
        // Policy cancellations count as steps too.
        let mut cancel_all = Script::new(&[MakerDecision::CancelMaker; 3]);
        let bounded = Taker { max_fills: 1, ..taker(Side::Sell, 0, 4) };
        events.clear();
        let outcome = book.match_incoming(&bounded, &mut cancel_all, &mut events);
        assert_eq!(outcome, MatchOutcome { filled_lots: 0, remaining_lots: 4, stop: StopReason::MaxFills });
        assert_eq!(events.len(), 1);
        book.check_invariants();
    }

    #[test]
    fn policy_cancel_maker_removes_and_continues() {
        let mut book = sample();
        let mut events = Vec::new();
        let mut policy = Script::new(&[MakerDecision::CancelMaker]);
        let outcome = book.match_incoming(&taker(Side::Buy, 101, 4), &mut policy, &mut events);
        assert_eq!(outcome, MatchOutcome { filled_lots: 3, remaining_lots: 1, stop: StopReason::LimitReached });
        assert_eq!(events[0], MatchEvent::MakerCancelled { order: order(1, Side::Sell, 101, 5) });
        assert_eq!(fills(&events), vec![(2, 101, 3, 0)]);
        assert_eq!(policy.asked, vec![(1, 4), (2, 4)]);
        assert_eq!(policy.filled.len(), 1);
        assert_eq!(book.get(1), None);
        assert_eq!(book.best_ask(), Some((102, 4)));
        book.check_invariants();
    }

    #[test]
    fn policy_fill_zero_is_cancel_maker() {
        let mut book = sample();
        let mut events = Vec::new();
        let mut policy = Script::new(&[MakerDecision::Fill { max_lots: 0 }, MakerDecision::Fill { max_lots: 0 }]);
        let outcome = book.match_incoming(&taker(Side::Buy, 101, 4), &mut policy, &mut events);
        assert_eq!(outcome, MatchOutcome { filled_lots: 0, remaining_lots: 4, stop: StopReason::LimitReached });
        assert_eq!(
            events,
            vec![
                MatchEvent::MakerCancelled { order: order(1, Side::Sell, 101, 5) },
                MatchEvent::MakerCancelled { order: order(2, Side::Sell, 101, 3) },
            ]
        );
        assert!(policy.filled.is_empty());
        assert_eq!(book.level_orders(Side::Sell, 101).count(), 0);
        assert_eq!(book.best_ask(), Some((102, 4)));
        book.check_invariants();
    }

    #[test]
    fn policy_stop_taker_leaves_maker_untouched() {
        let mut book = sample();
        let mut events = Vec::new();
        let mut policy = Script::new(&[MakerDecision::Fill { max_lots: u64::MAX }, MakerDecision::StopTaker]);
        let outcome = book.match_incoming(&taker(Side::Buy, 102, 20), &mut policy, &mut events);
        assert_eq!(outcome, MatchOutcome { filled_lots: 5, remaining_lots: 15, stop: StopReason::PolicyStopped });
        assert_eq!(fills(&events), vec![(1, 101, 5, 0)]);
        assert_eq!(book.get(2), Some(&order(2, Side::Sell, 101, 3)));
        book.check_invariants();
    }

    #[test]
    fn policy_partial_max_lots_asks_again_about_same_maker() {
        let mut book = sample();
        let mut events = Vec::new();
        // 2 lots of maker 1, then 1 more of maker 1, then cancel its rest; fill maker 2 fully.
        let mut policy = Script::new(&[
            MakerDecision::Fill { max_lots: 2 },
            MakerDecision::Fill { max_lots: 1 },
            MakerDecision::CancelMaker,
        ]);
        let outcome = book.match_incoming(&taker(Side::Buy, 101, 10), &mut policy, &mut events);
        assert_eq!(outcome, MatchOutcome { filled_lots: 6, remaining_lots: 4, stop: StopReason::LimitReached });
        assert_eq!(policy.asked, vec![(1, 10), (1, 8), (1, 7), (2, 7)]);
        assert_eq!(fills(&events), vec![(1, 101, 2, 3), (1, 101, 1, 2), (2, 101, 3, 0)]);
        assert_eq!(events[2], MatchEvent::MakerCancelled { order: order(1, Side::Sell, 101, 2) });
        assert_eq!(policy.filled.len(), 3);
        book.check_invariants();
        // max_lots above both remainders is clipped to the smaller one.
        let mut policy = Script::new(&[MakerDecision::Fill { max_lots: 100 }]);
        events.clear();
        let outcome = book.match_incoming(&taker(Side::Buy, 102, 1), &mut policy, &mut events);
        assert_eq!(outcome.stop, StopReason::Filled);
        assert_eq!(fills(&events), vec![(3, 102, 1, 3)]);
        book.check_invariants();
    }

    #[test]
    fn maker_fully_filled_by_partial_cap_leaves_book() {
        let mut book = sample();
        let mut events = Vec::new();
        let mut policy = Script::new(&[MakerDecision::Fill { max_lots: 5 }]);
        let outcome = book.match_incoming(&taker(Side::Buy, 101, 5), &mut policy, &mut events);
        assert_eq!(outcome.stop, StopReason::Filled);
        assert_eq!(fills(&events), vec![(1, 101, 5, 0)]);
        assert_eq!(book.get(1), None);
        book.check_invariants();
    }

    #[test]
    fn remainder_can_rest_after_match() {
        let mut book = sample();
        let mut events = Vec::new();
        let outcome = book.match_incoming(&taker(Side::Buy, 102, 15), &mut NoPolicy, &mut events);
        assert_eq!(outcome.remaining_lots, 3);
        book.insert(RestingOrder { remaining_lots: outcome.remaining_lots, ..order(50, Side::Buy, 102, 1) }).unwrap();
        assert_eq!(book.best_bid(), Some((102, 3)));
        assert_eq!(book.best_ask(), Some((104, 10)));
        book.check_invariants();
    }

    #[test]
    fn error_messages_are_descriptive() {
        let error = BookError::WouldCross { side: Side::Buy, price_ticks: 5, opposite_best_ticks: 4 };
        assert_eq!(error.to_string(), "Buy at 5 ticks would cross the opposite best at 4");
        assert_eq!(BookError::UnknownOrder(7).to_string(), "order 7 is not in the book");
    }

    #[test]
    fn a_serialized_book_comes_back_with_its_priorities_and_a_crossed_one_is_refused() {
        let mut book = sample();
        book.cancel(2);
        book.insert(order(8, Side::Sell, 101, 2)).unwrap();
        let bytes = rmp_serde::to_vec(&book).unwrap();
        let back: Book = rmp_serde::from_slice(&bytes).unwrap();
        back.check_invariants();
        assert_eq!(back.orders().copied().collect::<Vec<_>>(), book.orders().copied().collect::<Vec<_>>());
        assert_eq!(ids(&back), [5, 6, 7, 1, 8, 3, 4]);
        assert_eq!(back.max_orders(), book.max_orders());
        // Orders out of time priority at a level, or crossing, never make a book.
        let mut stored = BookOrders { max_orders: MAX_ORDERS, orders: book.orders().copied().collect() };
        stored.orders.swap(3, 4);
        assert!(matches!(Book::try_from(stored), Err(BookError::SequenceNotIncreasing { .. })));
        let crossed = BookOrders {
            max_orders: MAX_ORDERS,
            orders: vec![order(1, Side::Buy, 100, 1), order(2, Side::Sell, 100, 1)],
        };
        assert!(matches!(Book::try_from(crossed), Err(BookError::WouldCross { .. })));
    }
}
