//! Property tests: random operation sequences on a small price range run
//! against both [`Book`] and a naive reference model (a `Vec` scanned for the
//! best maker at each step). Events, outcomes, errors and book contents must
//! agree, and the book's invariants, FIFO and conservation of lots must hold.

use proptest::prelude::*;

use crate::{
    Book, BookError, Fill, MakerDecision, MatchEvent, MatchOutcome, MatchPolicy, NoPolicy, OrderId, OwnerId,
    RestingOrder, Side, StopReason, Taker,
};

/// The obviously-correct book: every order in one `Vec`, best maker found by a scan.
#[derive(Default)]
struct Model {
    orders: Vec<RestingOrder>,
}

/// Sort key for price-time priority within one side: better price first, then older.
fn priority(order: &RestingOrder) -> (u64, u64) {
    let price_rank = match order.side {
        Side::Buy => u64::MAX - order.price_ticks,
        Side::Sell => order.price_ticks,
    };
    (price_rank, order.sequence)
}

impl Model {
    fn best(&self, side: Side) -> Option<u64> {
        let prices = self.orders.iter().filter(|o| o.side == side).map(|o| o.price_ticks);
        match side {
            Side::Buy => prices.max(),
            Side::Sell => prices.min(),
        }
    }

    fn level_total(&self, side: Side, price_ticks: u64) -> u64 {
        self.orders.iter().filter(|o| o.side == side && o.price_ticks == price_ticks).map(|o| o.remaining_lots).sum()
    }

    fn sorted(&self) -> Vec<RestingOrder> {
        let mut sorted = self.orders.clone();
        sorted.sort_by_key(|o| (o.side, priority(o)));
        sorted
    }

    fn insert(&mut self, order: RestingOrder) -> Result<(), BookError> {
        if order.remaining_lots == 0 {
            return Err(BookError::ZeroLots);
        }
        if order.price_ticks == 0 || order.price_ticks == u64::MAX {
            return Err(BookError::InvalidPrice(order.price_ticks));
        }
        if let Some(opposite_best_ticks) = self.best(order.side.opposite()) {
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
        if self.orders.iter().any(|o| o.id == order.id) {
            return Err(BookError::DuplicateId(order.id));
        }
        let level_last = self
            .orders
            .iter()
            .filter(|o| o.side == order.side && o.price_ticks == order.price_ticks)
            .map(|o| o.sequence)
            .max();
        if let Some(level_last_sequence) = level_last
            && order.sequence <= level_last_sequence
        {
            return Err(BookError::SequenceNotIncreasing { sequence: order.sequence, level_last_sequence });
        }
        self.orders.push(order);
        Ok(())
    }

    fn cancel(&mut self, id: OrderId) -> Option<RestingOrder> {
        let position = self.orders.iter().position(|o| o.id == id)?;
        Some(self.orders.remove(position))
    }

    fn reduce(&mut self, id: OrderId, new_remaining_lots: u64) -> Result<(), BookError> {
        let order = self.orders.iter_mut().find(|o| o.id == id).ok_or(BookError::UnknownOrder(id))?;
        if new_remaining_lots == 0 || new_remaining_lots >= order.remaining_lots {
            return Err(BookError::InvalidReduce {
                current_lots: order.remaining_lots,
                requested_lots: new_remaining_lots,
            });
        }
        order.remaining_lots = new_remaining_lots;
        Ok(())
    }

    fn crosses(taker: &Taker, maker: &RestingOrder) -> bool {
        maker.side == taker.side.opposite()
            && match taker.side {
                Side::Buy => maker.price_ticks <= taker.limit_price_ticks,
                Side::Sell => maker.price_ticks >= taker.limit_price_ticks,
            }
    }

    fn match_incoming<P: MatchPolicy>(
        &mut self,
        taker: &Taker,
        policy: &mut P,
        events: &mut Vec<MatchEvent>,
    ) -> MatchOutcome {
        let mut remaining = taker.lots;
        let mut steps = 0u32;
        let stop = loop {
            if remaining == 0 {
                break StopReason::Filled;
            }
            let Some(position) = (0..self.orders.len())
                .filter(|&i| Model::crosses(taker, &self.orders[i]))
                .min_by_key(|&i| priority(&self.orders[i]))
            else {
                break StopReason::LimitReached;
            };
            if steps == taker.max_fills {
                break StopReason::MaxFills;
            }
            steps += 1;
            let maker = self.orders[position];
            match policy.on_maker(&maker, taker, remaining) {
                MakerDecision::StopTaker => break StopReason::PolicyStopped,
                MakerDecision::CancelMaker | MakerDecision::Fill { max_lots: 0 } => {
                    self.orders.remove(position);
                    events.push(MatchEvent::MakerCancelled { order: maker });
                }
                MakerDecision::Fill { max_lots } => {
                    let lots = max_lots.min(maker.remaining_lots).min(remaining);
                    remaining -= lots;
                    let maker_remaining_lots = maker.remaining_lots - lots;
                    if maker_remaining_lots == 0 {
                        self.orders.remove(position);
                    } else {
                        self.orders[position].remaining_lots = maker_remaining_lots;
                    }
                    let fill = Fill {
                        maker_id: maker.id,
                        maker_owner: maker.owner,
                        taker_id: taker.id,
                        taker_owner: taker.owner,
                        price_ticks: maker.price_ticks,
                        lots,
                        maker_remaining_lots,
                    };
                    events.push(MatchEvent::Fill(fill));
                    policy.on_fill(&fill);
                }
            }
        };
        MatchOutcome { filled_lots: taker.lots - remaining, remaining_lots: remaining, stop }
    }

    fn available_lots(&self, taker: &Taker, skip_owner: Option<OwnerId>, cap: u64) -> u64 {
        let total: u64 = self
            .orders
            .iter()
            .filter(|o| Model::crosses(taker, o) && Some(o.owner) != skip_owner)
            .map(|o| o.remaining_lots)
            .sum();
        total.min(cap)
    }
}

/// A pure policy: self-trades cancel the resting order; otherwise the answer
/// is a hash of the inputs, so both implementations get the same decisions as
/// long as they present the same makers in the same order.
struct HashPolicy {
    fills_seen: u64,
}

impl MatchPolicy for HashPolicy {
    fn on_maker(&mut self, maker: &RestingOrder, taker: &Taker, taker_remaining_lots: u64) -> MakerDecision {
        if maker.owner == taker.owner {
            return MakerDecision::CancelMaker;
        }
        let hash = (maker.id ^ maker.remaining_lots.rotate_left(20) ^ taker_remaining_lots.rotate_left(40))
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            >> 58;
        match hash % 12 {
            0 => MakerDecision::CancelMaker,
            1 => MakerDecision::StopTaker,
            2..=4 => MakerDecision::Fill { max_lots: hash % 3 },
            _ => MakerDecision::Fill { max_lots: u64::MAX },
        }
    }

    fn on_fill(&mut self, fill: &Fill) {
        self.fills_seen += fill.lots;
    }
}

#[derive(Clone, Debug)]
enum Op {
    /// Match an incoming order, then rest its remainder if `rest`.
    Place { side: Side, price_ticks: u64, lots: u64, owner: OwnerId, max_fills: u32, use_policy: bool, rest: bool },
    /// Rest directly (may be rejected); `reuse_id` picks a live id to provoke DuplicateId,
    /// `stale` uses sequence 0 to provoke SequenceNotIncreasing.
    Insert { side: Side, price_ticks: u64, lots: u64, owner: OwnerId, reuse_id: Option<usize>, stale: bool },
    /// Cancel a live order (picked by index) or, when `None`, an unknown id.
    Cancel { pick: Option<usize> },
    /// Reduce a live order (picked by index) to `new_lots`.
    Reduce { pick: usize, new_lots: u64 },
    /// Compare the read-only queries.
    Query { side: Side, price_ticks: u64, skip_owner: Option<OwnerId>, cap: u64 },
}

fn side() -> impl Strategy<Value = Side> {
    prop_oneof![Just(Side::Buy), Just(Side::Sell)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (side(), 1u64..=12, 1u64..=12, 0u64..4, prop_oneof![Just(u32::MAX), 0u32..6], any::<bool>(), any::<bool>())
            .prop_map(|(side, price_ticks, lots, owner, max_fills, use_policy, rest)| Op::Place {
                side, price_ticks, lots, owner, max_fills, use_policy, rest
            }),
        4 => (side(), 0u64..=13, 0u64..=6, 0u64..4, proptest::option::weighted(0.1, any::<usize>()), proptest::bool::weighted(0.1))
            .prop_map(|(side, price_ticks, lots, owner, reuse_id, stale)| Op::Insert {
                side, price_ticks, lots, owner, reuse_id, stale
            }),
        2 => proptest::option::weighted(0.9, any::<usize>()).prop_map(|pick| Op::Cancel { pick }),
        1 => (any::<usize>(), 0u64..=6).prop_map(|(pick, new_lots)| Op::Reduce { pick, new_lots }),
        1 => (side(), 0u64..=13, proptest::option::of(0u64..4), 0u64..30)
            .prop_map(|(side, price_ticks, skip_owner, cap)| Op::Query { side, price_ticks, skip_owner, cap }),
    ]
}

/// Runs one match on both implementations and checks every property of it.
fn check_match(book: &mut Book, model: &mut Model, taker: &Taker, use_policy: bool) -> MatchOutcome {
    let before: Vec<RestingOrder> = book.orders().copied().collect();
    let mut events = Vec::new();
    let mut model_events = Vec::new();
    let (outcome, model_outcome) = if use_policy {
        let mut policy = HashPolicy { fills_seen: 0 };
        let mut model_policy = HashPolicy { fills_seen: 0 };
        let outcome = book.match_incoming(taker, &mut policy, &mut events);
        let model_outcome = model.match_incoming(taker, &mut model_policy, &mut model_events);
        assert_eq!(policy.fills_seen, outcome.filled_lots, "on_fill saw every fill");
        (outcome, model_outcome)
    } else {
        (
            book.match_incoming(taker, &mut NoPolicy, &mut events),
            model.match_incoming(taker, &mut NoPolicy, &mut model_events),
        )
    };
    assert_eq!(outcome, model_outcome);
    assert_eq!(events, model_events);

    // Conservation: taker side.
    let fill_lots: u64 = events
        .iter()
        .map(|event| match event {
            MatchEvent::Fill(fill) => fill.lots,
            MatchEvent::MakerCancelled { .. } => 0,
        })
        .sum();
    assert_eq!(fill_lots, outcome.filled_lots);
    assert_eq!(outcome.filled_lots + outcome.remaining_lots, taker.lots);
    assert!(events.len() <= taker.max_fills as usize);

    // Conservation: maker side, and FIFO within a level.
    for maker in &before {
        let mut remaining = maker.remaining_lots;
        let mut touched = false;
        for event in &events {
            match event {
                MatchEvent::Fill(fill) if fill.maker_id == maker.id => {
                    assert!(fill.lots > 0);
                    remaining -= fill.lots;
                    assert_eq!(fill.maker_remaining_lots, remaining);
                    assert_eq!(fill.price_ticks, maker.price_ticks);
                    touched = true;
                }
                MatchEvent::MakerCancelled { order } if order.id == maker.id => {
                    assert_eq!(order.remaining_lots, remaining);
                    remaining = 0;
                    touched = true;
                }
                _ => {}
            }
        }
        assert_eq!(book.get(maker.id).map_or(0, |o| o.remaining_lots), remaining);
        if touched {
            let earlier_survivor =
                book.level_orders(maker.side, maker.price_ticks).find(|o| o.sequence < maker.sequence);
            assert_eq!(earlier_survivor, None, "order {} filled before an older one at its level", maker.id);
        }
    }
    outcome
}

fn compare(book: &Book, model: &Model) {
    book.check_invariants();
    assert_eq!(book.orders().copied().collect::<Vec<_>>(), model.sorted());
    assert_eq!(book.len(), model.orders.len());
    assert_eq!(book.is_empty(), model.orders.is_empty());
    for side in [Side::Buy, Side::Sell] {
        let best = model.best(side).map(|price| (price, model.level_total(side, price)));
        assert_eq!(book.best(side), best);
    }
}

fn live_id(model: &Model, pick: usize) -> Option<OrderId> {
    (!model.orders.is_empty()).then(|| model.orders[pick % model.orders.len()].id)
}

fn run(ops: &[Op]) {
    let mut book = Book::new();
    let mut model = Model::default();
    // Ids double as sequences: fresh, increasing, never 0 or 1 (0 is the unknown id).
    for (id, op) in (2..).zip(ops) {
        match *op {
            Op::Place { side, price_ticks, lots, owner, max_fills, use_policy, rest } => {
                let limit_price_ticks = match (price_ticks, side) {
                    (12, Side::Buy) => u64::MAX,
                    (12, Side::Sell) => 0,
                    _ => price_ticks,
                };
                let taker = Taker { id, owner, side, limit_price_ticks, lots, max_fills, flags: 0 };
                let outcome = check_match(&mut book, &mut model, &taker, use_policy);
                if rest && outcome.remaining_lots > 0 && outcome.stop == StopReason::LimitReached {
                    let order = RestingOrder {
                        id,
                        owner,
                        side,
                        price_ticks: limit_price_ticks,
                        remaining_lots: outcome.remaining_lots,
                        sequence: id,
                        flags: 0,
                    };
                    let result = book.insert(order);
                    assert_eq!(result, model.insert(order));
                    if (1..u64::MAX).contains(&limit_price_ticks) {
                        assert_eq!(result, Ok(()), "a remainder at its limit never crosses");
                    }
                }
            }
            Op::Insert { side, price_ticks, lots, owner, reuse_id, stale } => {
                let sequence = if stale { 0 } else { id };
                let order = RestingOrder {
                    id: reuse_id.and_then(|pick| live_id(&model, pick)).unwrap_or(id),
                    owner,
                    side,
                    price_ticks,
                    remaining_lots: lots,
                    sequence,
                    flags: 7,
                };
                assert_eq!(book.insert(order), model.insert(order));
            }
            Op::Cancel { pick } => {
                let id = pick.and_then(|pick| live_id(&model, pick)).unwrap_or(0);
                assert_eq!(book.cancel(id), model.cancel(id));
            }
            Op::Reduce { pick, new_lots } => {
                let id = live_id(&model, pick).unwrap_or(0);
                assert_eq!(book.reduce(id, new_lots), model.reduce(id, new_lots));
            }
            Op::Query { side, price_ticks, skip_owner, cap } => {
                let taker =
                    Taker { id, owner: 0, side, limit_price_ticks: price_ticks, lots: 0, max_fills: 0, flags: 0 };
                assert_eq!(
                    book.available_lots(side, price_ticks, skip_owner, cap),
                    model.available_lots(&taker, skip_owner, cap)
                );
                let levels = (cap % 5) as usize;
                let model_depth: Vec<(u64, u64)> = {
                    let mut prices: Vec<u64> =
                        model.orders.iter().filter(|o| o.side == side).map(|o| o.price_ticks).collect();
                    prices.sort_unstable();
                    prices.dedup();
                    if side == Side::Buy {
                        prices.reverse();
                    }
                    prices.into_iter().take(levels).map(|price| (price, model.level_total(side, price))).collect()
                };
                assert_eq!(book.depth(side, levels), model_depth);
                let level: Vec<RestingOrder> = book.level_orders(side, price_ticks).copied().collect();
                let mut model_level: Vec<RestingOrder> =
                    model.orders.iter().filter(|o| o.side == side && o.price_ticks == price_ticks).copied().collect();
                model_level.sort_by_key(|o| o.sequence);
                assert_eq!(level, model_level);
            }
        }
        compare(&book, &model);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn book_matches_reference_model(ops in proptest::collection::vec(op(), 1..150)) {
        run(&ops);
    }
}

#[test]
fn long_deterministic_run_matches_reference_model() {
    // A fixed, long sequence exercising deep levels and slot reuse.
    let mut ops = Vec::new();
    for step in 0u64..3_000 {
        let side = if step % 2 == 0 { Side::Buy } else { Side::Sell };
        let price_ticks = 1 + (step * 7919) % 12;
        ops.push(match step % 5 {
            0 | 1 => {
                Op::Insert { side, price_ticks, lots: 1 + step % 6, owner: step % 4, reuse_id: None, stale: false }
            }
            2 => Op::Place {
                side,
                price_ticks,
                lots: 1 + step % 11,
                owner: step % 4,
                max_fills: u32::MAX,
                use_policy: step % 3 == 0,
                rest: true,
            },
            3 => Op::Cancel { pick: Some((step * 31) as usize) },
            _ => Op::Reduce { pick: step as usize, new_lots: 1 + step % 3 },
        });
    }
    run(&ops);
}
