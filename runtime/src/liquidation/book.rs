//! The second step: an immediate-or-cancel, reduce-only order in the book
//! within the band around mark, its limit no worse than the account can pay.

use rust_decimal::Decimal;
use vanna_book::Side;
use vanna_pricing::{to_decimal_down, to_decimal_up};

use super::{Budget, ceil_to_tick, floor_to_tick};
use crate::error::Field;
use crate::events::{Event, LiquidationStep};
use crate::ids::SeriesId;
use crate::money::{ASSET_SCALE, Amount, Price};
use crate::state::State;
use crate::trading::{OrderRequest, TimeInForce};

/// A book order closing a position, priced at this block's mark.
pub(super) struct BookClose {
    side: Side,
    band_limit: Price,
    band_ticks: u64,
    /// Mark rounded down and up to the asset's scale.
    mark_down: Decimal,
    mark_up: Decimal,
}

impl State {
    /// A book order closing `position`: its side, its limit within
    /// `book_band` of mark (rounded to the tick in the account's favour) and
    /// the limit's ticks.
    pub(super) fn book_close(&self, series: SeriesId, position: i64) -> Option<(Side, Price, u64)> {
        self.book_close_at(series, position).map(|close| (close.side, close.band_limit, close.band_ticks))
    }

    fn book_close_at(&self, series: SeriesId, position: i64) -> Option<BookClose> {
        let mark = self.mark(series)?;
        let (mark_down, mark_up) = (to_decimal_down(mark, ASSET_SCALE).ok()?, to_decimal_up(mark, ASSET_SCALE).ok()?);
        let tick = self.market(series).tick;
        let band = self.liquidation.book_band;
        let (side, limit) = if position > 0 {
            (Side::Sell, ceil_to_tick(mark_up * (Decimal::ONE - band), tick).max(tick.value()))
        } else {
            (Side::Buy, floor_to_tick(mark_down * (Decimal::ONE + band), tick).max(tick.value()))
        };
        let band_limit = Price::new(limit, Field::Price).ok()?;
        let band_ticks = self.market(series).ticks(band_limit).ok()?;
        Some(BookClose { side, band_limit, band_ticks, mark_down, mark_up })
    }

    /// The limit of a book order closing `lots` of `position` that gives away
    /// no more than `budget` if it all fills at the limit, taker fees
    /// included: `band_limit` when that is affordable, otherwise mark less (a
    /// sale) or plus (a buy-back) what is left per contract, rounded to the
    /// tick in the account's favour (beyond mark in its favour when not even
    /// the fees are affordable).
    pub(super) fn affordable_book_limit(
        &self,
        owner: u64,
        series: SeriesId,
        position: i64,
        lots: u64,
        close: &BookClose,
        budget: &mut Budget,
    ) -> Option<u64> {
        let market = self.market(series);
        let contracts = market.lot.value() * Decimal::from(lots);
        // The fee by notional bounds every fill's (each is also capped by its premium).
        let index = self.index_price(&market.spec.underlying).value();
        let fees = Amount::round_up(self.params.fees.taker_rate * index * contracts).value();
        let (band_limit, mark_down, mark_up) = (close.band_limit.value(), close.mark_down, close.mark_up);
        let loss_at_band = contracts * if position > 0 { mark_up - band_limit } else { band_limit - mark_down };
        let left = budget.left(self, owner);
        if loss_at_band + fees <= left {
            return Some(close.band_ticks);
        }
        let per_contract = (left - fees) / contracts;
        let limit = if position > 0 {
            ceil_to_tick(mark_up - per_contract, market.tick)
        } else {
            floor_to_tick(mark_down + per_contract, market.tick)
        };
        // Never past the band's edge, whatever the rounding of mark.
        let limit = if position > 0 { limit.max(band_limit) } else { limit.min(band_limit) };
        let limit = Price::new(limit.max(market.tick.value()), Field::Price).ok()?;
        market.ticks(limit).ok()
    }

    /// Whether the book holds an order that an order of `side` limited at
    /// `limit_ticks` would trade with.
    pub(super) fn book_crosses(&self, series: SeriesId, side: Side, limit_ticks: u64) -> bool {
        let market = self.market(series);
        match side {
            Side::Sell => market.book.best_bid().is_some_and(|(best, _)| best >= limit_ticks),
            Side::Buy => market.book.best_ask().is_some_and(|(best, _)| best <= limit_ticks),
        }
    }

    /// An immediate-or-cancel, reduce-only order within the band around mark;
    /// a buy no larger than the account's cash can pay. Returns lots filled.
    pub(super) fn close_in_book(
        &mut self,
        owner: u64,
        series: SeriesId,
        wanted: u64,
        budget: &mut Budget,
        events: &mut Vec<Event>,
    ) -> u64 {
        let position = self.accounts[owner as usize].position(series);
        // An order that cannot cross would only be accepted and cancelled:
        // after a crash most attempts find no bid in the band.
        let Some(close) = self
            .book_close_at(series, position)
            .filter(|close| self.book_crosses(series, close.side, close.band_ticks))
        else {
            return 0;
        };
        let (side, band_limit) = (close.side, close.band_limit);
        let mut lots = wanted;
        if side == Side::Buy {
            let lock = self.buy_lock_per_lot(series, side, band_limit).value();
            lots = lots.min(u64::try_from((self.free_usd(owner).value() / lock).floor()).unwrap_or(0));
        }
        if lots == 0 {
            return 0;
        }
        // A limit closer to mark than the band's (never a higher buy, so the
        // cash sizing above still holds) when the account cannot afford to
        // fill all of it at the band's edge.
        let Some(limit_ticks) = self
            .affordable_book_limit(owner, series, position, lots, &close, budget)
            .filter(|&ticks| self.book_crosses(series, side, ticks))
        else {
            return 0;
        };
        let request = OrderRequest {
            series,
            side,
            price_ticks: Some(limit_ticks),
            lots,
            time_in_force: TimeInForce::ImmediateOrCancel,
            expire_at_ms: 0,
            post_only: false,
            reduce_only: true,
            client_order_id: 0,
            self_trade: crate::state::SelfTrade::CancelResting,
            liquidation: true,
        };
        let cash_before = self.accounts[owner as usize].usd.value();
        if self.place_order(owner, &request, None, events).is_err() {
            return 0;
        }
        let after = self.accounts[owner as usize].position(series);
        let filled = position.unsigned_abs() - after.unsigned_abs();
        if filled > 0 {
            let cash = self.accounts[owner as usize].usd.value() - cash_before;
            // The account's loss on the fills, counted against it.
            let contracts = self.market(series).contracts(filled);
            let removed = if position > 0 { close.mark_up * contracts } else { -close.mark_down * contracts };
            budget.spend(removed - cash);
            let market = self.market(series);
            events.push(Event::PositionLiquidated {
                account: self.accounts[owner as usize].address,
                series: market.spec.name.clone(),
                step: LiquidationStep::Book,
                contracts: if position > 0 { market.contracts(filled) } else { -market.contracts(filled) },
                counterparty: None,
                price: None,
                cash,
            });
        }
        filled
    }
}
