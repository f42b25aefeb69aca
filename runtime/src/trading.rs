//! Orders: placement (cash for what buyers pay, portfolio initial margin for
//! new risk), matching through the series' book, fills (premium, fees,
//! positions), cancels and replaces.
//!
//! Every action first checks everything that could refuse it, without changing
//! state; only then does it commit, and the commit cannot fail: a refused
//! action changes nothing.

use rust_decimal::Decimal;
use vanna_book::{MakerDecision, MatchEvent, MatchPolicy, RestingOrder, Side, StopReason, Taker};

use crate::error::{Field, TxError};
use crate::events::{CancelReason, Event, Fill, OrderOutcome};
use crate::ids::{OrderId, SeriesId};
use crate::limits::{
    MAX_FILLS_PER_ORDER, MAX_MARKET_SWEEP_LEVELS, MAX_OPEN_ORDERS_PER_ACCOUNT, MAX_OPEN_ORDERS_PER_SERIES,
    MAX_ORDER_CONTRACTS, MAX_PRICE_USD, MAX_SERIES_PER_ACCOUNT,
};
use crate::money::{Amount, Price, Quantity};
use crate::state::{Exposure, Market, OrderInfo, SelfTrade, State};
use vanna_pricing::to_decimal_up;

/// Book flag bits the runtime's match policy reads.
const FLAG_REDUCE_ONLY: u32 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeInForce {
    GoodTilCancelled,
    ImmediateOrCancel,
    FillOrKill,
    GoodTilTime,
}

impl TimeInForce {
    fn may_rest(self) -> bool {
        matches!(self, TimeInForce::GoodTilCancelled | TimeInForce::GoodTilTime)
    }
}

/// A validated order request, in the series' ticks and lots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderRequest {
    pub series: SeriesId,
    pub side: Side,
    /// None for a market order.
    pub price_ticks: Option<u64>,
    pub lots: u64,
    pub time_in_force: TimeInForce,
    pub expire_at_ms: u64,
    pub post_only: bool,
    pub reduce_only: bool,
    pub client_order_id: u64,
    pub self_trade: SelfTrade,
    /// Set only by the liquidation engine, whose orders close positions at
    /// prices within its band of mark: they skip the initial-margin rule.
    pub liquidation: bool,
}

/// Parses a limit price into ticks, within the price bound and on the tick grid.
pub fn parse_ticks(market: &Market, text: &str) -> Result<u64, TxError> {
    let price = Price::parse(text, Field::Price)?;
    if price.value() > Decimal::from(MAX_PRICE_USD) {
        return Err(TxError::PriceTooHigh { price: price.value(), max: Decimal::from(MAX_PRICE_USD) });
    }
    market.ticks(price)
}

/// Parses an order size into lots, within the size bound and on the lot grid.
pub fn parse_lots(market: &Market, text: &str) -> Result<u64, TxError> {
    let quantity = Quantity::parse(text, Field::Quantity)?;
    if quantity.value() > Decimal::from(MAX_ORDER_CONTRACTS) {
        return Err(TxError::QuantityTooLarge { quantity: quantity.value(), max: Decimal::from(MAX_ORDER_CONTRACTS) });
    }
    market.lots(quantity)
}

/// Parses and checks a `PlaceOrder` against the listing and the block time.
pub fn parse_order(state: &State, order: &vanna_proto::v1::PlaceOrder) -> Result<OrderRequest, TxError> {
    use vanna_proto::v1::{OrderType, SelfTradePrevention, Side as WireSide, TimeInForce as WireTif};
    let series =
        *state.series_by_name.get(&order.series).ok_or_else(|| TxError::UnknownSeries(order.series.clone()))?;
    let market = state.market(series);
    if state.time_ms >= market.spec.expiry_ms {
        return Err(TxError::SeriesExpired {
            name: market.spec.name.to_string(),
            expiry_ms: market.spec.expiry_ms,
            now_ms: state.time_ms,
        });
    }
    let side = match WireSide::try_from(order.side) {
        Ok(WireSide::Buy) => Side::Buy,
        Ok(WireSide::Sell) => Side::Sell,
        _ => return Err(TxError::MissingSide),
    };
    let lots = parse_lots(market, &order.quantity)?;
    let market_order = match OrderType::try_from(order.order_type) {
        Ok(OrderType::Limit) => false,
        Ok(OrderType::Market) => true,
        _ => return Err(TxError::MissingOrderType),
    };
    let price_ticks = if market_order {
        if !order.price.is_empty() {
            return Err(TxError::MarketOrderWithPrice);
        }
        None
    } else {
        if order.price.is_empty() {
            return Err(TxError::MissingPrice);
        }
        Some(parse_ticks(market, &order.price)?)
    };
    let time_in_force = match WireTif::try_from(order.time_in_force) {
        Ok(WireTif::Gtc) => TimeInForce::GoodTilCancelled,
        Ok(WireTif::Ioc) => TimeInForce::ImmediateOrCancel,
        Ok(WireTif::Fok) => TimeInForce::FillOrKill,
        Ok(WireTif::Gtt) => TimeInForce::GoodTilTime,
        _ if market_order => TimeInForce::ImmediateOrCancel,
        _ => TimeInForce::GoodTilCancelled,
    };
    if market_order && time_in_force.may_rest() {
        return Err(TxError::MarketOrderMustBeImmediate);
    }
    if order.post_only && !time_in_force.may_rest() {
        return Err(TxError::PostOnlyImmediate);
    }
    match time_in_force {
        TimeInForce::GoodTilTime if order.expire_at_ms <= state.time_ms => {
            return Err(TxError::BadExpiry { now_ms: state.time_ms });
        }
        TimeInForce::GoodTilTime => {}
        _ if order.expire_at_ms != 0 => return Err(TxError::ExpiryWithoutGtt),
        _ => {}
    }
    let self_trade = match SelfTradePrevention::try_from(order.self_trade_prevention) {
        Ok(SelfTradePrevention::CancelIncoming) => SelfTrade::CancelIncoming,
        Ok(SelfTradePrevention::CancelBoth) => SelfTrade::CancelBoth,
        _ => SelfTrade::CancelResting,
    };
    Ok(OrderRequest {
        series,
        side,
        price_ticks,
        lots,
        time_in_force,
        expire_at_ms: order.expire_at_ms,
        post_only: order.post_only,
        reduce_only: order.reduce_only,
        client_order_id: order.client_order_id,
        self_trade,
        liquidation: false,
    })
}

/// How the runtime decides, maker by maker, what a sweep may do: self-trade
/// prevention and reduce-only limits, with positions as they move during the sweep.
struct RuntimePolicy<'a> {
    state: &'a [crate::state::Account],
    series: SeriesId,
    taker_self_trade: SelfTrade,
    maker_side: Side,
    /// The underlying has no fresh price: no maker may take on new risk either.
    stale: bool,
    self_trade_hit: bool,
    stop_next: bool,
    /// Position changes of makers during this sweep: (owner, lots).
    deltas: Vec<(u64, i64)>,
}

impl<'a> RuntimePolicy<'a> {
    fn new(
        accounts: &'a [crate::state::Account],
        series: SeriesId,
        taker_side: Side,
        taker_self_trade: SelfTrade,
        stale: bool,
    ) -> Self {
        RuntimePolicy {
            state: accounts,
            series,
            taker_self_trade,
            maker_side: taker_side.opposite(),
            stale,
            self_trade_hit: false,
            stop_next: false,
            deltas: Vec::new(),
        }
    }

    fn position(&self, owner: u64) -> i64 {
        let base = self.state[owner as usize].exposure(self.series).position_lots;
        base + self.deltas.iter().filter(|(o, _)| *o == owner).map(|(_, d)| d).sum::<i64>()
    }
}

impl MatchPolicy for RuntimePolicy<'_> {
    fn on_maker(&mut self, maker: &RestingOrder, taker: &Taker, _taker_remaining_lots: u64) -> MakerDecision {
        if self.stop_next {
            return MakerDecision::StopTaker;
        }
        if maker.owner == taker.owner {
            self.self_trade_hit = true;
            return match self.taker_self_trade {
                SelfTrade::CancelResting => MakerDecision::CancelMaker,
                SelfTrade::CancelIncoming => MakerDecision::StopTaker,
                SelfTrade::CancelBoth => {
                    self.stop_next = true;
                    MakerDecision::CancelMaker
                }
            };
        }
        let reduce_only = maker.flags & FLAG_REDUCE_ONLY != 0;
        if reduce_only || self.stale {
            let position = self.position(maker.owner);
            let closable = match maker.side {
                Side::Sell => position.max(0),
                Side::Buy => (-position).max(0),
            } as u64;
            if closable == 0 {
                // A reduce-only maker has nothing left to reduce; any other
                // maker would open risk at a stale price, so the sweep stops.
                return if reduce_only { MakerDecision::CancelMaker } else { MakerDecision::StopTaker };
            }
            return MakerDecision::Fill { max_lots: closable };
        }
        MakerDecision::Fill { max_lots: u64::MAX }
    }

    fn on_fill(&mut self, fill: &vanna_book::Fill) {
        let lots = fill.lots as i64;
        self.deltas.push((fill.maker_owner, if self.maker_side == Side::Sell { -lots } else { lots }));
    }
}

impl State {
    /// Places an order for account `owner`. On error nothing has changed.
    pub(crate) fn place_order(
        &mut self,
        owner: u64,
        request: &OrderRequest,
        replacing: Option<OrderId>,
        events: &mut Vec<Event>,
    ) -> Result<OrderOutcome, TxError> {
        let (request, price_ticks) = self.check_order(owner, request, replacing)?;
        let order_id = match replacing {
            Some(id) => {
                self.remove_order(id, CancelReason::Replaced, events);
                id
            }
            None => {
                let id = OrderId(self.next_order_id);
                self.next_order_id += 1;
                self.commitment.touch_global();
                id
            }
        };
        Ok(self.execute_order(owner, order_id, &request, price_ticks, events))
    }

    /// Every check that could refuse the order, against the state as it is
    /// (minus the order being replaced). Returns the request as it will run,
    /// with a reduce-only size clipped to the position, and its limit in ticks.
    fn check_order(
        &self,
        owner: u64,
        request: &OrderRequest,
        replacing: Option<OrderId>,
    ) -> Result<(OrderRequest, u64), TxError> {
        let account = &self.accounts[owner as usize];
        let market = self.market(request.series);
        if self.time_ms >= market.spec.expiry_ms {
            return Err(TxError::SeriesExpired {
                name: market.spec.name.to_string(),
                expiry_ms: market.spec.expiry_ms,
                now_ms: self.time_ms,
            });
        }
        // Without fresh prices nobody can value new risk: only orders that
        // shrink a position (reduce-only) go through until the oracle recovers.
        if !request.reduce_only && self.is_stale(&market.spec.underlying) {
            let state = self.oracle.state(market.spec.underlying.as_str());
            return Err(TxError::UnderlyingStale {
                underlying: market.spec.underlying.clone(),
                last_update_ms: state.and_then(|s| s.last_update_ms).unwrap_or(0),
                now_ms: self.time_ms,
            });
        }
        let mut request = request.clone();
        let replaced = replacing
            .map(|id| (self.orders[&id].clone(), market.book.get(id.0).expect("open orders rest").remaining_lots));
        let in_series = account.open_orders.iter().filter(|id| self.orders[id].series == request.series).count();
        let (open_total, open_in_series) = match &replaced {
            Some(_) => (account.open_orders.len() - 1, in_series - 1),
            None => (account.open_orders.len(), in_series),
        };
        if request.client_order_id != 0
            && replacing.is_none()
            && account.client_orders.contains_key(&request.client_order_id)
        {
            return Err(TxError::DuplicateClientOrderId(request.client_order_id));
        }
        if request.time_in_force.may_rest() {
            if open_total >= MAX_OPEN_ORDERS_PER_ACCOUNT {
                return Err(TxError::TooManyOpenOrders { max: MAX_OPEN_ORDERS_PER_ACCOUNT });
            }
            if open_in_series >= MAX_OPEN_ORDERS_PER_SERIES {
                return Err(TxError::TooManyOpenOrdersInSeries { max: MAX_OPEN_ORDERS_PER_SERIES });
            }
        }
        if !account.exposures.contains_key(&request.series) && account.exposures.len() >= MAX_SERIES_PER_ACCOUNT {
            return Err(TxError::TooManyPositions { max: MAX_SERIES_PER_ACCOUNT });
        }
        // The exposure without the order being replaced.
        let mut exposure = account.exposure(request.series);
        if let Some((info, remaining)) = &replaced {
            remove_from_exposure(&mut exposure, info, *remaining);
        }
        let position = exposure.position_lots;
        if request.reduce_only {
            let closable = match request.side {
                Side::Sell => position.max(0),
                Side::Buy => (-position).max(0),
            } as u64;
            let already = self.reduce_only_lots(owner, request.series, request.side, replacing);
            let room = closable.saturating_sub(already);
            if room == 0 {
                return Err(TxError::ReduceOnlyWouldIncrease { position: market.signed_contracts(position) });
            }
            request.lots = request.lots.min(room);
        }
        let book = &market.book;
        let price_ticks = match request.price_ticks {
            Some(ticks) => ticks,
            None => {
                let levels = book.depth(request.side.opposite(), MAX_MARKET_SWEEP_LEVELS);
                let mut wanted = request.lots;
                let mut worst = None;
                for (ticks, lots) in levels {
                    worst = Some(ticks);
                    if lots >= wanted {
                        break;
                    }
                    wanted -= lots;
                }
                worst.ok_or(TxError::NoLiquidity)?
            }
        };
        if request.post_only {
            let crossing = match request.side {
                Side::Buy => book.best_ask().filter(|(ask, _)| *ask <= price_ticks).map(|(ask, _)| ("ask", ask)),
                Side::Sell => book.best_bid().filter(|(bid, _)| *bid >= price_ticks).map(|(bid, _)| ("bid", bid)),
            };
            if let Some((side, ticks)) = crossing {
                return Err(TxError::PostOnlyWouldCross { side, best: market.price_of(ticks).value() });
            }
        }
        if request.time_in_force == TimeInForce::FillOrKill {
            let available = self.fillable_lots(owner, &request, price_ticks);
            if available < request.lots {
                return Err(TxError::FillOrKillUnfilled {
                    wanted: market.contracts(request.lots),
                    available: market.contracts(available),
                });
            }
        }
        // Checked as if the whole order rested. Only shrinking the position,
        // even with every open order on its side filled: the fallback when
        // the underlying cannot be priced.
        let only_shrinks = match request.side {
            Side::Sell => exposure.open_sell_lots + request.lots <= position.max(0) as u64,
            Side::Buy => exposure.open_buy_lots + request.lots <= (-position).max(0) as u64,
        };
        let price = market.price_of(price_ticks);
        let lock_per_lot = self.buy_lock_per_lot(request.series, request.side, price);
        let reserve_per_lot = self.sell_reserve_per_lot(request.series, request.side, price);
        let before_lock = account.exposure(request.series).buy_lock;
        add_to_exposure(&mut exposure, request.side, request.lots, lock_per_lot, reserve_per_lot, request.reduce_only);
        // Buyers pay premium and fees in cash, whatever their margin.
        let locked = account.usd_locked.minus(before_lock).expect("a buy lock is part of the locked total");
        let required = locked.plus(exposure.buy_lock);
        if required > account.usd {
            return Err(TxError::InsufficientFunds {
                asset: "USD",
                needed: exposure.buy_lock.value() - before_lock.value(),
                available: account.usd.minus(account.usd_locked).expect("locks never exceed cash").value(),
            });
        }
        if !request.liquidation {
            self.check_order_margin(owner, request.series, exposure, only_shrinks)?;
        }
        Ok((request, price_ticks))
    }

    /// An order must leave equity at or above initial margin over every way
    /// the open orders could fill, or at least not widen the account's
    /// shortfall below it: orders that reduce risk are always accepted, and
    /// no order can move value out of an account that margin still needs (a
    /// hedge sold far below its mark widens the shortfall and is refused).
    fn check_order_margin(
        &self,
        owner: u64,
        series: SeriesId,
        exposure: Exposure,
        only_shrinks: bool,
    ) -> Result<(), TxError> {
        let (equity, initial_margin) = match self.margin_with_orders(owner, Some((series, exposure)), Decimal::ZERO) {
            Err(TxError::MarginUnavailable { .. }) if only_shrinks => return Ok(()),
            result => result?,
        };
        if equity >= initial_margin {
            return Ok(());
        }
        let (equity_now, initial_now) = self.margin_with_orders(owner, None, Decimal::ZERO)?;
        if initial_margin - equity <= (initial_now - equity_now).max(Decimal::ZERO) {
            return Ok(());
        }
        Err(TxError::InsufficientMargin { action: "order", equity, initial_margin })
    }

    /// Equity a sell order sets aside per lot: how far the mark is above its
    /// limit (what an immediate fill at the limit gives away), plus the
    /// largest fee; rounded up. Buy orders lock cash instead.
    fn sell_reserve_per_lot(&self, series: SeriesId, side: Side, price: Price) -> Amount {
        match side {
            Side::Buy => Amount::ZERO,
            Side::Sell => {
                let market = self.market(series);
                let fee = self.params.fees.max_fee_per_lot(price, market.lot);
                let mark = self.mark(series).and_then(|mark| to_decimal_up(mark, crate::money::ASSET_SCALE).ok());
                let giveaway = mark.map_or(Decimal::ZERO, |mark| (mark - price.value()).max(Decimal::ZERO));
                fee.plus(Amount::round_up(giveaway * market.lot.value()))
            }
        }
    }

    pub(crate) fn buy_lock_per_lot(&self, series: SeriesId, side: Side, price: Price) -> Amount {
        match side {
            Side::Sell => Amount::ZERO,
            Side::Buy => {
                let market = self.market(series);
                let premium = Amount::new(price.value() * market.lot.value(), Field::Amount)
                    .expect("tick and lot decimals fit the asset's precision");
                premium.plus(self.params.fees.max_fee_per_lot(price, market.lot))
            }
        }
    }

    /// Lots of open reduce-only orders of `owner` on `side` in `series`.
    fn reduce_only_lots(&self, owner: u64, series: SeriesId, side: Side, except: Option<OrderId>) -> u64 {
        let account = &self.accounts[owner as usize];
        if account.exposure(series).reduce_only_orders == 0 {
            return 0;
        }
        let book = &self.market(series).book;
        account
            .open_orders
            .iter()
            .filter(|id| Some(**id) != except)
            .filter(|id| {
                let info = &self.orders[id];
                info.series == series && info.side == side && info.reduce_only
            })
            .map(|id| book.get(id.0).expect("open orders rest").remaining_lots)
            .sum()
    }

    /// What a fill-or-kill order could fill now, walking the book with the same
    /// policy the match will apply (self-trade prevention, reduce-only makers).
    fn fillable_lots(&self, owner: u64, request: &OrderRequest, limit_ticks: u64) -> u64 {
        let book = &self.market(request.series).book;
        let stale = self.is_stale(&self.market(request.series).spec.underlying);
        let mut policy = RuntimePolicy::new(&self.accounts, request.series, request.side, request.self_trade, stale);
        let taker = self.taker(owner, OrderId(u64::MAX), request, limit_ticks);
        let mut filled = 0u64;
        let mut fills = 0u32;
        for (ticks, _) in book.depth(request.side.opposite(), MAX_FILLS_PER_ORDER as usize) {
            let crosses = match request.side {
                Side::Buy => ticks <= limit_ticks,
                Side::Sell => ticks >= limit_ticks,
            };
            if !crosses {
                break;
            }
            for maker in book.level_orders(request.side.opposite(), ticks) {
                if filled >= request.lots || fills >= MAX_FILLS_PER_ORDER {
                    return filled;
                }
                match policy.on_maker(maker, &taker, request.lots - filled) {
                    MakerDecision::StopTaker => return filled,
                    // The book counts a cancelled maker against the bound too.
                    MakerDecision::CancelMaker => fills += 1,
                    MakerDecision::Fill { max_lots } => {
                        let lots = max_lots.min(maker.remaining_lots).min(request.lots - filled);
                        filled += lots;
                        fills += 1;
                        policy.on_fill(&vanna_book::Fill {
                            maker_id: maker.id,
                            maker_owner: maker.owner,
                            taker_id: taker.id,
                            taker_owner: taker.owner,
                            price_ticks: ticks,
                            lots,
                            maker_remaining_lots: maker.remaining_lots - lots,
                        });
                    }
                }
            }
        }
        filled
    }

    fn taker(&self, owner: u64, id: OrderId, request: &OrderRequest, limit_ticks: u64) -> Taker {
        Taker {
            id: id.0,
            owner,
            side: request.side,
            limit_price_ticks: limit_ticks,
            lots: request.lots,
            max_fills: MAX_FILLS_PER_ORDER,
            flags: if request.reduce_only { FLAG_REDUCE_ONLY } else { 0 },
        }
    }

    /// Commits a checked order: records it, matches it, settles the fills and
    /// rests or cancels what is left. Cannot fail.
    fn execute_order(
        &mut self,
        owner: u64,
        order_id: OrderId,
        request: &OrderRequest,
        price_ticks: u64,
        events: &mut Vec<Event>,
    ) -> OrderOutcome {
        let series = request.series;
        let market = self.market(series);
        let price = market.price_of(price_ticks);
        let address = self.accounts[owner as usize].address;
        let info = OrderInfo {
            owner: address,
            account: owner,
            series,
            side: request.side,
            price,
            original_lots: request.lots,
            client_order_id: request.client_order_id,
            expire_at_ms: request.expire_at_ms,
            post_only: request.post_only,
            reduce_only: request.reduce_only,
            self_trade: request.self_trade,
            buy_lock_per_lot: self.buy_lock_per_lot(series, request.side, price),
            sell_reserve_per_lot: self.sell_reserve_per_lot(series, request.side, price),
        };
        events.push(Event::OrderAccepted {
            order: order_id,
            owner: address,
            series: market.spec.name.clone(),
            side: order_side(request.side),
            price,
            contracts: market.contracts(request.lots),
        });
        // Until it rests or leaves, the order counts as open in full.
        self.update_exposure(owner, series, |exposure| {
            add_to_exposure(
                exposure,
                info.side,
                request.lots,
                info.buy_lock_per_lot,
                info.sell_reserve_per_lot,
                info.reduce_only,
            )
        });
        let account = &mut self.accounts[owner as usize];
        account.open_orders.insert(order_id);
        if info.client_order_id != 0 {
            account.client_orders.insert(info.client_order_id, order_id);
        }
        self.orders.insert(order_id, info);

        let taker = self.taker(owner, order_id, request, price_ticks);
        let mut match_events = Vec::new();
        let stale = self.is_stale(&self.market(series).spec.underlying);
        let (outcome, self_trade_hit) = {
            let market = &mut self.markets[series.0 as usize];
            let mut policy = RuntimePolicy::new(&self.accounts, series, request.side, request.self_trade, stale);
            let outcome = market.book.match_incoming(&taker, &mut policy, &mut match_events);
            (outcome, policy.self_trade_hit)
        };
        let mut touched = vec![owner];
        for event in match_events {
            match event {
                MatchEvent::Fill(fill) => {
                    touched.push(fill.maker_owner);
                    self.settle_fill(series, &fill, request.side, events);
                }
                MatchEvent::MakerCancelled { order } => {
                    let reason = if order.owner == owner { CancelReason::SelfTrade } else { CancelReason::ReduceOnly };
                    self.release_order(OrderId(order.id), order.remaining_lots, reason, events);
                }
            }
        }
        let remaining = outcome.remaining_lots;
        let cancel_incoming = self_trade_hit && request.self_trade != SelfTrade::CancelResting;
        let cancelled = if remaining == 0 {
            None
        } else if outcome.stop == StopReason::LimitReached && request.time_in_force.may_rest() && !cancel_incoming {
            let resting = RestingOrder {
                id: order_id.0,
                owner,
                side: request.side,
                price_ticks,
                remaining_lots: remaining,
                sequence: self.next_sequence,
                flags: taker.flags,
            };
            self.next_sequence += 1;
            self.markets[series.0 as usize].book.insert(resting).expect("a checked order rests without crossing");
            if request.time_in_force == TimeInForce::GoodTilTime {
                self.gtt_expiries.insert((request.expire_at_ms, order_id));
            }
            let market = self.market(series);
            events.push(Event::OrderRested {
                order: order_id,
                owner: self.accounts[owner as usize].address,
                series: market.spec.name.clone(),
                contracts: market.contracts(remaining),
            });
            None
        } else {
            let reason = if cancel_incoming {
                CancelReason::SelfTrade
            } else if outcome.stop == StopReason::MaxFills {
                CancelReason::MaxFills
            } else {
                CancelReason::Unfilled
            };
            self.release_order(order_id, remaining, reason, events);
            Some(reason)
        };
        if remaining == 0 {
            if request.reduce_only {
                self.update_exposure(owner, series, |exposure| exposure.reduce_only_orders -= 1);
            }
            self.forget_order(order_id);
        }
        touched.sort_unstable();
        touched.dedup();
        for account in touched {
            self.trim_reduce_only(account, series, events);
        }
        let market = self.market(series);
        let resting_lots = if cancelled.is_none() { remaining } else { 0 };
        OrderOutcome {
            order: order_id,
            filled_contracts: market.contracts(outcome.filled_lots),
            resting_contracts: market.contracts(resting_lots),
            cancelled,
        }
    }

    /// Moves premium and fees for one fill and updates both positions.
    fn settle_fill(&mut self, series: SeriesId, fill: &vanna_book::Fill, taker_side: Side, events: &mut Vec<Event>) {
        assert_ne!(fill.maker_owner, fill.taker_owner, "self-trade prevention never lets an account trade with itself");
        let market = self.market(series);
        let price = market.price_of(fill.price_ticks);
        let contracts = market.contracts(fill.lots);
        let premium = Amount::new(price.value() * contracts, Field::Amount)
            .expect("tick and lot decimals fit the asset's precision");
        let index = self.index_price(&market.spec.underlying);
        let fees = &self.params.fees;
        let maker_fee = fees.fee(fees.maker_rate, index, contracts, premium);
        let taker_fee = fees.fee(fees.taker_rate, index, contracts, premium);
        let (buyer, buyer_fee, seller, seller_fee) = match taker_side {
            Side::Buy => (fill.taker_owner, taker_fee, fill.maker_owner, maker_fee),
            Side::Sell => (fill.maker_owner, maker_fee, fill.taker_owner, taker_fee),
        };
        let (buyer_order, seller_order) = match taker_side {
            Side::Buy => (OrderId(fill.taker_id), OrderId(fill.maker_id)),
            Side::Sell => (OrderId(fill.maker_id), OrderId(fill.taker_id)),
        };
        let buyer_lock = self.orders[&buyer_order].buy_lock_per_lot.times(fill.lots);
        let seller_reserve = self.orders[&seller_order].sell_reserve_per_lot.times(fill.lots);
        let buyer_reduce_only = self.orders[&buyer_order].reduce_only;
        let seller_reduce_only = self.orders[&seller_order].reduce_only;
        let buyer_done = remaining_after(fill, buyer_order) == 0;
        let seller_done = remaining_after(fill, seller_order) == 0;

        self.update_exposure(buyer, series, |exposure| {
            exposure.trade(fill.lots as i64, premium.value());
            exposure.open_buy_lots -= fill.lots;
            exposure.buy_lock = exposure.buy_lock.minus(buyer_lock).expect("fills release what the order locked");
            if buyer_done && buyer_reduce_only {
                exposure.reduce_only_orders -= 1;
            }
        });
        self.update_exposure(seller, series, |exposure| {
            exposure.trade(-(fill.lots as i64), premium.value());
            exposure.open_sell_lots -= fill.lots;
            exposure.sell_reserve =
                exposure.sell_reserve.minus(seller_reserve).expect("fills release what the order reserved");
            if seller_done && seller_reduce_only {
                exposure.reduce_only_orders -= 1;
            }
        });
        let buyer_account = &mut self.accounts[buyer as usize];
        buyer_account.usd =
            buyer_account.usd.minus(premium.plus(buyer_fee)).expect("the buy order's lock covered premium and fee");
        assert!(buyer_account.usd_locked <= buyer_account.usd, "buyer's locks stay covered");
        let seller_account = &mut self.accounts[seller as usize];
        seller_account.usd =
            seller_account.usd.plus(premium).minus(seller_fee).expect("a fee is capped below the premium received");
        assert!(seller_account.usd_locked <= seller_account.usd, "seller's locks stay covered");
        self.fee_pool = self.fee_pool.plus(buyer_fee).plus(seller_fee);
        self.commitment.touch_global();
        if fill.maker_remaining_lots == 0 {
            self.forget_order(OrderId(fill.maker_id));
        }
        let market = self.market(series);
        events.push(Event::Filled(Fill {
            series: market.spec.name.clone(),
            price,
            contracts,
            premium,
            taker_side: order_side(taker_side),
            maker: self.accounts[fill.maker_owner as usize].address,
            maker_order: OrderId(fill.maker_id),
            maker_fee,
            taker: self.accounts[fill.taker_owner as usize].address,
            taker_order: OrderId(fill.taker_id),
            taker_fee,
        }));
    }

    /// Applies `change` to an account's exposure in `series`, keeping the
    /// locked total equal to the buy locks and dropping empty exposures.
    pub(crate) fn update_exposure(&mut self, owner: u64, series: SeriesId, change: impl FnOnce(&mut Exposure)) {
        let market = &mut self.markets[series.0 as usize];
        let account = &mut self.accounts[owner as usize];
        // Only a new exposure can add a participant (see `Market::participants`).
        let exposure = match account.exposures.entry(series) {
            std::collections::btree_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::btree_map::Entry::Vacant(entry) => {
                market.participants.insert(owner);
                entry.insert(Exposure::default())
            }
        };
        let (before, lots_before) = (exposure.buy_lock, exposure.position_lots);
        change(exposure);
        let (after, lots_after) = (exposure.buy_lock, exposure.position_lots);
        if exposure.is_empty() {
            account.exposures.remove(&series);
        }
        if lots_after != lots_before {
            account.set_position(series, lots_after);
        }
        account.usd_locked =
            account.usd_locked.minus(before).expect("a buy lock is part of the locked total").plus(after);
        self.commitment.touch_account(owner);
        self.risk_dirty.insert(owner);
    }

    /// Removes an open order's remaining lots from its owner's exposure and the
    /// book, and forgets it. `remaining` is what was left when it stopped.
    fn release_order(&mut self, id: OrderId, remaining: u64, reason: CancelReason, events: &mut Vec<Event>) {
        let info = self.orders[&id].clone();
        let owner = info.account;
        self.markets[info.series.0 as usize].book.cancel(id.0);
        self.update_exposure(owner, info.series, |exposure| remove_from_exposure(exposure, &info, remaining));
        self.forget_order(id);
        let market = self.market(info.series);
        events.push(Event::OrderCancelled {
            order: id,
            owner: info.owner,
            series: market.spec.name.clone(),
            remaining: market.contracts(remaining),
            reason,
        });
    }

    /// Drops the runtime's record of an order that has left the book.
    fn forget_order(&mut self, id: OrderId) {
        if let Some(info) = self.orders.remove(&id) {
            let owner = info.account;
            let account = &mut self.accounts[owner as usize];
            account.open_orders.remove(&id);
            if info.client_order_id != 0 {
                account.client_orders.remove(&info.client_order_id);
            }
            if info.expire_at_ms != 0 {
                self.gtt_expiries.remove(&(info.expire_at_ms, id));
            }
            self.commitment.touch_account(owner);
        }
    }

    /// Cancels an open order by its owner's request, or by expiry.
    pub(crate) fn remove_order(&mut self, id: OrderId, reason: CancelReason, events: &mut Vec<Event>) {
        let info = &self.orders[&id];
        let remaining = self.market(info.series).book.get(id.0).expect("open orders rest").remaining_lots;
        self.release_order(id, remaining, reason, events);
    }

    /// Shrinks an open order in place, keeping its time priority.
    pub(crate) fn reduce_order(&mut self, id: OrderId, new_lots: u64, reason: CancelReason, events: &mut Vec<Event>) {
        let info = self.orders[&id].clone();
        let owner = info.account;
        let market = &mut self.markets[info.series.0 as usize];
        let before = market.book.get(id.0).expect("open orders rest").remaining_lots;
        assert!(new_lots > 0 && new_lots < before, "reduce shrinks an order");
        market.book.reduce(id.0, new_lots).expect("a smaller size is a valid reduction");
        let released = before - new_lots;
        self.update_exposure(owner, info.series, |exposure| release_lots(exposure, &info, released));
        let market = self.market(info.series);
        events.push(Event::OrderReduced {
            order: id,
            owner: info.owner,
            remaining: market.contracts(new_lots),
            reason,
        });
    }

    /// Keeps reduce-only orders no larger than the position they reduce: the
    /// oldest keep their size, newer ones shrink or go.
    fn trim_reduce_only(&mut self, owner: u64, series: SeriesId, events: &mut Vec<Event>) {
        let exposure = self.accounts[owner as usize].exposure(series);
        if exposure.reduce_only_orders == 0 {
            return;
        }
        let position = exposure.position_lots;
        let book = &self.market(series).book;
        let mut ids: Vec<OrderId> = self.accounts[owner as usize]
            .open_orders
            .iter()
            .copied()
            .filter(|id| self.orders[id].series == series && self.orders[id].reduce_only)
            .collect();
        // Oldest in time priority first: a replaced order keeps its id but not its place.
        ids.sort_by_key(|id| book.get(id.0).expect("open orders rest").sequence);
        let mut room_sell = position.max(0) as u64;
        let mut room_buy = (-position).max(0) as u64;
        for id in ids {
            let side = self.orders[&id].side;
            let remaining = self.market(series).book.get(id.0).expect("open orders rest").remaining_lots;
            let room = match side {
                Side::Sell => &mut room_sell,
                Side::Buy => &mut room_buy,
            };
            if *room == 0 {
                self.release_order(id, remaining, CancelReason::ReduceOnly, events);
            } else if remaining > *room {
                let keep = *room;
                self.reduce_order(id, keep, CancelReason::ReduceOnly, events);
                *room = 0;
            } else {
                *room -= remaining;
            }
        }
    }
}

fn remaining_after(fill: &vanna_book::Fill, order: OrderId) -> u64 {
    if order.0 == fill.maker_id { fill.maker_remaining_lots } else { u64::MAX }
}

fn add_to_exposure(
    exposure: &mut Exposure,
    side: Side,
    lots: u64,
    lock_per_lot: Amount,
    reserve_per_lot: Amount,
    reduce_only: bool,
) {
    match side {
        Side::Buy => {
            exposure.open_buy_lots += lots;
            exposure.buy_lock = exposure.buy_lock.plus(lock_per_lot.times(lots));
        }
        Side::Sell => {
            exposure.open_sell_lots += lots;
            exposure.sell_reserve = exposure.sell_reserve.plus(reserve_per_lot.times(lots));
        }
    }
    if reduce_only {
        exposure.reduce_only_orders += 1;
    }
}

/// Takes `lots` of an open order out of its exposure, with their lock or reserve.
fn release_lots(exposure: &mut Exposure, info: &OrderInfo, lots: u64) {
    match info.side {
        Side::Buy => {
            exposure.open_buy_lots -= lots;
            exposure.buy_lock = exposure
                .buy_lock
                .minus(info.buy_lock_per_lot.times(lots))
                .expect("an order's lock is part of its exposure");
        }
        Side::Sell => {
            exposure.open_sell_lots -= lots;
            exposure.sell_reserve = exposure
                .sell_reserve
                .minus(info.sell_reserve_per_lot.times(lots))
                .expect("an order's reserve is part of its exposure");
        }
    }
}

fn remove_from_exposure(exposure: &mut Exposure, info: &OrderInfo, remaining: u64) {
    release_lots(exposure, info, remaining);
    if info.reduce_only {
        exposure.reduce_only_orders -= 1;
    }
}

/// The book's side as events name it.
pub(crate) fn order_side(side: Side) -> crate::events::OrderSide {
    match side {
        Side::Buy => crate::events::OrderSide::Buy,
        Side::Sell => crate::events::OrderSide::Sell,
    }
}
