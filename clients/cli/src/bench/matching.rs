//! `vanna bench matching`: order operations per second through the order book
//! alone (`vanna_book::Book`), on one core, with no runtime, accounts or IO.
//!
//! The stream is synthetic but deterministic (`ChaCha8` seeded by `--seed`) and
//! fully generated before the clock starts. Generation drives a shadow book
//! so that every cancel names an order that is live at that point and every
//! crossing order is priced through the touch the book will really have. The
//! timed replay on a fresh book then performs exactly the same work, and is
//! checked against the shadow run afterwards.
//!
//! Shape of the stream: a book pre-seeded with [`RESTING_TARGET`] orders
//! within [`BAND_TICKS`] ticks of a mid that drifts slowly; then about half
//! crossing limit orders (priced 0 to 2 ticks through the opposite touch,
//! sized to take one or several orders, some partially, half of them resting
//! their remainder), the rest split between passive limit orders that rest and
//! cancels of random live orders, with the split steered towards
//! [`RESTING_TARGET`] so that depth stays stable.

use std::collections::HashMap;
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use vanna_book::{Book, MatchEvent, NoPolicy, OrderId, OwnerId, RestingOrder, Side, Taker};

use crate::CliResult;

/// Resting orders the stream keeps the book close to.
pub const RESTING_TARGET: usize = 1_000;
/// Passive orders rest within this many ticks of the mid.
pub const BAND_TICKS: u64 = 40;
/// Largest `--orders` accepted: the pre-generated stream must fit in memory.
pub const ORDERS_MAX: u64 = 50_000_000;
/// Bound on makers one incoming order may touch.
const MAX_FILLS_PER_ORDER: u32 = 64;
/// Starting mid price in ticks.
const MID_START_TICKS: u64 = 100_000;
/// Accounts placing orders (owners only label orders: `NoPolicy` ignores them).
const OWNERS: u64 = 64;

/// `vanna bench matching` options.
#[derive(clap::Args)]
pub struct Args {
    /// Order operations to time (limit orders and cancels).
    #[arg(long, default_value_t = 1_000_000, value_parser = crate::args::whole::<u64>(1, ORDERS_MAX))]
    pub orders: u64,
    /// Seed of the synthetic order stream.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Print one JSON object instead of the human summary.
    #[arg(long)]
    pub json: bool,
}

/// What the benchmark measured.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Timed operations (limit orders and cancels).
    pub orders: u64,
    /// Wall time of the timed loop.
    pub seconds: f64,
    /// `orders / seconds`.
    pub orders_per_sec: f64,
    /// Share of operations that traded at least one lot.
    pub crossing_share: f64,
    /// Fills produced.
    pub fills: u64,
    /// Orders cancelled.
    pub cancels: u64,
    /// Resting orders after each operation, averaged.
    pub avg_resting_orders: f64,
    /// Seed of the stream.
    pub seed: u64,
}

/// One timed operation.
#[derive(Clone, Copy, Debug)]
pub enum Operation {
    /// Match `taker`; if `rest`, rest what is left at its limit price.
    Limit {
        /// The incoming order; its id doubles as its time-priority sequence.
        taker: Taker,
        /// Rest the remainder (a limit order) or drop it (immediate-or-cancel).
        rest: bool,
    },
    /// Cancel a live order.
    Cancel(OrderId),
}

/// A pre-generated stream and what the shadow run observed.
#[derive(Clone, Debug)]
pub struct Stream {
    /// Orders resting before the clock starts.
    pub seed_orders: Vec<RestingOrder>,
    /// The timed operations.
    pub operations: Vec<Operation>,
    /// Fills the shadow run produced (the replay must match).
    pub expected_fills: u64,
    /// Seed used.
    pub seed: u64,
}

/// Generates the stream, times it, and prints the report.
pub fn run(args: &Args) -> CliResult {
    let stream = generate(args.orders, args.seed)?;
    let report = measure(&stream)?;
    crate::output::emit(args.json, &report, |report| {
        outln!("matching: {} orders in {:.3} s = {:.0} orders/s", report.orders, report.seconds, report.orders_per_sec);
        outln!(
            "  crossing {:.1}%, {} fills, {} cancels, {:.0} resting orders on average (seed {})",
            report.crossing_share * 100.0,
            report.fills,
            report.cancels,
            report.avg_resting_orders,
            report.seed
        );
    })
}

/// Live order ids, for picking a random one to cancel in O(1).
#[derive(Default)]
struct LiveOrders {
    ids: Vec<OrderId>,
    /// id -> position in `ids`; lookups only, never iterated.
    positions: HashMap<OrderId, usize>,
}

impl LiveOrders {
    fn add(&mut self, id: OrderId) {
        self.positions.insert(id, self.ids.len());
        self.ids.push(id);
    }

    fn remove(&mut self, id: OrderId) {
        let position = self.positions.remove(&id).expect("removed order is live");
        self.ids.swap_remove(position);
        if let Some(&moved) = self.ids.get(position) {
            self.positions.insert(moved, position);
        }
    }
}

/// Builds the stream of `orders` operations for `seed` (see the module docs).
pub fn generate(orders: u64, seed: u64) -> Result<Stream, Box<dyn std::error::Error>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut book = Book::new();
    let mut live = LiveOrders::default();
    let mut events = Vec::new();
    let mut next_id: OrderId = 1;
    let mut mid_ticks = MID_START_TICKS;

    let mut seed_orders = Vec::with_capacity(RESTING_TARGET);
    while book.len() < RESTING_TARGET {
        let side = if rng.random_bool(0.5) { Side::Buy } else { Side::Sell };
        let order = passive_order(&mut rng, &book, next_id, side, mid_ticks);
        next_id += 1;
        book.insert(order)?;
        live.add(order.id);
        seed_orders.push(order);
    }

    let mut operations = Vec::with_capacity(orders as usize);
    let mut expected_fills = 0u64;
    for _ in 0..orders {
        if rng.random_bool(0.002) {
            mid_ticks = if rng.random_bool(0.5) { mid_ticks + 1 } else { mid_ticks - 1 };
        }
        let side = if rng.random_bool(0.5) { Side::Buy } else { Side::Sell };
        let opposite_best = book.best(side.opposite()).map(|(price_ticks, _)| price_ticks);
        let roll: f64 = rng.random();
        let (below_target_rest, above_target_rest) = (0.45, 0.25);
        let rest_share = if book.len() < RESTING_TARGET { below_target_rest } else { above_target_rest };
        let operation = match opposite_best {
            Some(touch_ticks) if roll < 0.5 => {
                let through_ticks = rng.random_range(0..=2);
                let limit_price_ticks = match side {
                    Side::Buy => touch_ticks + through_ticks,
                    Side::Sell => touch_ticks - through_ticks,
                };
                // Mostly small takers, some sweeping several orders.
                let lots = if rng.random_bool(0.8) { rng.random_range(1..=8) } else { rng.random_range(10..=40) };
                let taker = taker(&mut rng, next_id, side, limit_price_ticks, lots);
                Operation::Limit { taker, rest: rng.random_bool(0.5) }
            }
            _ if roll < 0.5 + rest_share || live.ids.is_empty() => {
                let order = passive_order(&mut rng, &book, next_id, side, mid_ticks);
                let taker = taker(&mut rng, next_id, side, order.price_ticks, order.remaining_lots);
                Operation::Limit { taker, rest: true }
            }
            _ => Operation::Cancel(live.ids[rng.random_range(0..live.ids.len())]),
        };
        next_id += 1;

        match operation {
            Operation::Limit { taker, rest } => {
                events.clear();
                let outcome = book.match_incoming(&taker, &mut NoPolicy, &mut events);
                for event in &events {
                    if let MatchEvent::Fill(fill) = event {
                        expected_fills += 1;
                        if fill.maker_remaining_lots == 0 {
                            live.remove(fill.maker_id);
                        }
                    }
                }
                if rest && outcome.remaining_lots > 0 {
                    book.insert(remainder(&taker, outcome.remaining_lots))?;
                    live.add(taker.id);
                }
            }
            Operation::Cancel(id) => {
                book.cancel(id).ok_or("generated cancel of an unknown order")?;
                live.remove(id);
            }
        }
        operations.push(operation);
    }
    Ok(Stream { seed_orders, operations, expected_fills, seed })
}

/// A resting order 1 to [`BAND_TICKS`] ticks from the mid on its side (mostly
/// close to it), kept
/// strictly behind the opposite touch so that it never crosses.
fn passive_order(rng: &mut ChaCha8Rng, book: &Book, id: OrderId, side: Side, mid_ticks: u64) -> RestingOrder {
    // Skewed towards the mid, as quotes cluster near the touch: min of three uniforms.
    let distance_ticks = (0..3).map(|_| rng.random_range(1..=BAND_TICKS)).min().unwrap_or(1);
    let opposite_best = book.best(side.opposite()).map(|(price_ticks, _)| price_ticks);
    let price_ticks = match side {
        Side::Buy => opposite_best.map_or(mid_ticks - distance_ticks, |ask| (mid_ticks - distance_ticks).min(ask - 1)),
        Side::Sell => opposite_best.map_or(mid_ticks + distance_ticks, |bid| (mid_ticks + distance_ticks).max(bid + 1)),
    };
    RestingOrder {
        id,
        owner: rng.random_range(0..OWNERS),
        side,
        price_ticks,
        remaining_lots: rng.random_range(1..=20),
        sequence: id,
        flags: 0,
    }
}

fn taker(rng: &mut ChaCha8Rng, id: OrderId, side: Side, limit_price_ticks: u64, lots: u64) -> Taker {
    let owner: OwnerId = rng.random_range(0..OWNERS);
    Taker { id, owner, side, limit_price_ticks, lots, max_fills: MAX_FILLS_PER_ORDER, flags: 0 }
}

/// The resting remainder of `taker`: same id, its id as sequence, at its limit.
fn remainder(taker: &Taker, remaining_lots: u64) -> RestingOrder {
    RestingOrder {
        id: taker.id,
        owner: taker.owner,
        side: taker.side,
        price_ticks: taker.limit_price_ticks,
        remaining_lots,
        sequence: taker.id,
        flags: taker.flags,
    }
}

/// Replays `stream` on a fresh book, timing only the book operations, and
/// checks the replay did what the shadow run did.
pub fn measure(stream: &Stream) -> Result<Report, Box<dyn std::error::Error>> {
    let mut book = Book::new();
    book.reserve(RESTING_TARGET * 4);
    for order in &stream.seed_orders {
        book.insert(*order)?;
    }
    let mut events: Vec<MatchEvent> = Vec::with_capacity(MAX_FILLS_PER_ORDER as usize);
    let (mut fills, mut cancels, mut crossing, mut rejected, mut resting_sum) = (0u64, 0u64, 0u64, 0u64, 0u64);

    let start = Instant::now();
    for operation in &stream.operations {
        match operation {
            Operation::Limit { taker, rest } => {
                events.clear();
                let outcome = book.match_incoming(taker, &mut NoPolicy, &mut events);
                fills += events.len() as u64;
                crossing += u64::from(outcome.filled_lots > 0);
                if *rest && outcome.remaining_lots > 0 {
                    rejected += u64::from(book.insert(remainder(taker, outcome.remaining_lots)).is_err());
                }
            }
            Operation::Cancel(id) => cancels += u64::from(book.cancel(*id).is_some()),
        }
        resting_sum += book.len() as u64;
    }
    let seconds = start.elapsed().as_secs_f64();

    let orders = stream.operations.len() as u64;
    if rejected > 0
        || fills != stream.expected_fills
        || cancels != stream.operations.iter().filter(|op| matches!(op, Operation::Cancel(_))).count() as u64
    {
        return Err(format!(
            "replay diverged from the generated stream: {rejected} rejected inserts, {fills} fills (expected {})",
            stream.expected_fills
        )
        .into());
    }
    book.check_invariants();
    Ok(Report {
        orders,
        seconds,
        orders_per_sec: orders as f64 / seconds,
        crossing_share: crossing as f64 / orders as f64,
        fills,
        cancels,
        avg_resting_orders: resting_sum as f64 / orders as f64,
        seed: stream.seed,
    })
}
