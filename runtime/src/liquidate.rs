//! The liquidation engine: `vanna-liquidation`'s rules executed on state,
//! inside `apply_block`.
//!
//! When: `begin_block` runs [`State::liquidation_pass`] right after the oracle
//! update, settlement and the new margin tables, before any transaction, over
//! the accounts the at-risk index names (band crossed, watch list, entries due
//! for refresh, or every holder of an underlying whose volatility moved past
//! the rescan bound). `end_block` runs [`State::recheck_changed_accounts`]
//! over every account whose positions, orders or cash changed in the block.
//! Either way each candidate is evaluated exactly and those below maintenance
//! margin are liquidated, worst margin ratio first; so no block ends with an
//! account below maintenance margin that the engine could have acted on.
//!
//! How one account is liquidated ([`State::liquidate_account`]): its open
//! orders and backstop offers are cancelled; unless equity is below the
//! full-close fraction of maintenance margin, positions are closed one at a
//! time, the most maintenance margin freed per dollar of expected closing
//! loss first, until equity is back above initial margin. Each position goes,
//! in order, to keeper backstop offers (smallest discount first, pro rata on
//! ties, each within its keeper's margin), to the book as an
//! immediate-or-cancel order within `book_band` of mark, to the insurance
//! fund at mark (covering the shortfall when the account's cash cannot pay:
//! its bankruptcy price), and last to auto-deleveraging of opposite positions.
//! A penalty, `penalty_rate` × maintenance margin spread over the contracts
//! closed, is split between the keeper that took each part and the fund.
//!
//! Every price is rounded against the liquidated account: to the tick when it
//! trades with a keeper or the book, to the asset's 6 decimals in USD when it
//! trades with the fund or in auto-deleveraging. No balance ever goes negative.

use std::collections::BTreeSet;

use rust_decimal::Decimal;
use vanna_book::Side;
use vanna_liquidation::{adl_score, close_order, pro_rata};
use vanna_pricing::{decimal_to_f64, to_decimal_down, to_decimal_up};

use crate::error::{Field, RuntimeError};
use crate::events::{CancelReason, Event, LiquidationStep};
use crate::ids::{Address, OrderId, SeriesId};
use crate::limits::MAX_SERIES_PER_ACCOUNT;
use crate::money::{ASSET_SCALE, Amount, Price};
use crate::risk::MarginFigures;
use crate::state::State;
use crate::trading::{OrderRequest, TimeInForce};

/// Rounds of end-of-block re-checks: liquidating one account can move others
/// (keepers, deleveraged counterparties), which are checked again.
const MAX_RECHECK_ROUNDS: usize = 4;

/// One liquidation's penalty, charged as contracts close.
struct Penalty {
    total: Amount,
    total_lots: u64,
}

fn floor_to_tick(value: Decimal, tick: Price) -> Decimal {
    ((value / tick.value()).floor() * tick.value()).normalize()
}

fn ceil_to_tick(value: Decimal, tick: Price) -> Decimal {
    ((value / tick.value()).ceil() * tick.value()).normalize()
}

/// The largest `lots` in `0..=cap` for which `feasible` holds, given that the
/// feasible set is an interval starting at zero (margin is convex in size).
fn largest_feasible(cap: u64, mut feasible: impl FnMut(u64) -> bool) -> u64 {
    if cap == 0 || feasible(cap) {
        return cap;
    }
    if !feasible(1) {
        return 0;
    }
    let (mut good, mut bad) = (1u64, cap);
    while bad - good > 1 {
        let middle = good + (bad - good) / 2;
        if feasible(middle) { good = middle } else { bad = middle }
    }
    good
}

impl State {
    fn volatilities(&self, symbol: &str) -> Vec<(u64, f64)> {
        let Some(risk) = self.risk.get(symbol) else { return Vec::new() };
        risk.rows
            .iter()
            .map(|(series, row)| {
                let mark = risk.tables.series(*row).expect("every row of the tables has a series");
                (u64::from(series.0), mark.volatility)
            })
            .collect()
    }

    /// Records the current volatilities as those of a full scan of `symbol`.
    pub(crate) fn reset_volatility_reference(&mut self, symbol: &str) {
        let current = self.volatilities(symbol);
        self.at_risk.set_reference_volatility(symbol, &current);
    }

    /// A series just listed: nobody holds it, so its volatility joins the
    /// reference without a rescan.
    pub(crate) fn note_listed_series(&mut self, series: SeriesId) {
        let symbol = self.market(series).spec.underlying.clone();
        if let Some(&(_, volatility)) = self.volatilities(&symbol).iter().find(|(id, _)| *id == u64::from(series.0)) {
            self.at_risk.add_reference_volatility(&symbol, u64::from(series.0), volatility);
        }
    }

    /// The pass of `begin_block`: every account the new prices, time or
    /// volatilities may have put below maintenance margin is evaluated, and
    /// liquidated if it is.
    pub(crate) fn liquidation_pass(&mut self, events: &mut Vec<Event>) {
        self.liquidated_in_block.clear();
        let bound = decimal_to_f64(self.liquidation.volatility_rescan_bound);
        let mut candidates = BTreeSet::new();
        for symbol in self.underlyings.keys().cloned().collect::<Vec<_>>() {
            let Some(risk) = self.risk.get(&symbol) else {
                // Unpriceable for now: nothing can be decided. Forget the
                // reference so that the tables' return forces a full rescan.
                self.at_risk.set_reference_volatility(&symbol, &[]);
                continue;
            };
            let spot = risk.tables.spot();
            let current = self.volatilities(&symbol);
            if self.at_risk.volatility_moved(&symbol, &current, bound) {
                candidates.extend(self.at_risk.members(&symbol));
                self.at_risk.set_reference_volatility(&symbol, &current);
            } else {
                candidates.extend(self.at_risk.candidates(&symbol, spot));
            }
        }
        candidates.extend(self.at_risk.due(self.time_ms));
        self.liquidate_below_maintenance(candidates, events);
    }

    /// The re-check of `end_block`: accounts whose positions, orders or cash
    /// changed in the block are evaluated exactly, re-indexed, and liquidated
    /// if below maintenance margin.
    pub(crate) fn recheck_changed_accounts(&mut self, events: &mut Vec<Event>) {
        for _ in 0..MAX_RECHECK_ROUNDS {
            let changed = std::mem::take(&mut self.risk_dirty);
            if changed.is_empty() {
                return;
            }
            self.liquidate_below_maintenance(changed, events);
        }
    }

    fn liquidate_below_maintenance(&mut self, candidates: BTreeSet<u64>, events: &mut Vec<Event>) {
        let mut below: Vec<(Option<Decimal>, u64)> = Vec::new();
        for owner in candidates {
            if let Some(figures) = self.index_account(owner)
                && figures.below_maintenance()
            {
                below.push((figures.ratio(), owner));
            }
        }
        // Worst first: no positive equity, then the highest ratio; then by handle.
        below.sort_by(|(a_ratio, a), (b_ratio, b)| match (a_ratio, b_ratio) {
            (None, None) => a.cmp(b),
            (None, Some(_)) => std::cmp::Ordering::Less,
            (Some(_), None) => std::cmp::Ordering::Greater,
            (Some(x), Some(y)) => y.cmp(x).then(a.cmp(b)),
        });
        for (_, owner) in below {
            self.liquidate_account(owner, None, events);
            self.index_account(owner);
        }
    }

    /// The `Liquidate` transaction: a no-op for an account already liquidated
    /// in this block, refused for one not below maintenance margin.
    pub(crate) fn liquidate_by_keeper(
        &mut self,
        keeper: u64,
        target: &[u8],
        events: &mut Vec<Event>,
    ) -> Result<crate::events::ActionOutcome, RuntimeError> {
        use crate::events::ActionOutcome;
        let address = Address::from_slice(target)?;
        let owner = *self.account_index.get(&address).ok_or(RuntimeError::UnknownAccount(address))?;
        if owner == keeper {
            return Err(RuntimeError::SelfLiquidation);
        }
        if self.liquidated_in_block.contains(&owner) {
            return Ok(ActionOutcome::AlreadyLiquidated);
        }
        let figures = self.margin_figures(owner, &[], Decimal::ZERO)?;
        if !figures.below_maintenance() {
            return Err(RuntimeError::NotLiquidatable {
                account: address,
                equity: figures.equity,
                maintenance_margin: figures.maintenance,
            });
        }
        let closed = self.liquidate_account(owner, Some(keeper), events).unwrap_or(0);
        self.index_account(owner);
        Ok(ActionOutcome::Liquidated { positions_closed: closed })
    }

    /// Liquidates `owner` if it is below maintenance margin; returns how many
    /// positions it closed (some or all of). `keeper` is the sender of a
    /// `Liquidate` transaction, paid the keeper share for what it triggers.
    pub(crate) fn liquidate_account(
        &mut self,
        owner: u64,
        keeper: Option<u64>,
        events: &mut Vec<Event>,
    ) -> Option<u32> {
        let start = self.margin_figures(owner, &[], Decimal::ZERO).ok()?;
        if !start.below_maintenance() {
            return None;
        }
        self.liquidated_in_block.insert(owner);
        let address = self.accounts[owner as usize].address;
        let orders: Vec<OrderId> = self.accounts[owner as usize].open_orders.iter().copied().collect();
        for id in orders {
            self.remove_order(id, CancelReason::Liquidation, events);
        }
        let offers: Vec<u64> = self.accounts[owner as usize].backstop_offers.iter().copied().collect();
        for id in offers {
            self.withdraw_backstop(owner, id, events);
        }
        let full = start.equity < self.liquidation.full_close_fraction * start.maintenance;
        events.push(Event::LiquidationStarted {
            account: address,
            equity: start.equity,
            maintenance_margin: start.maintenance,
            initial_margin: start.initial,
            full,
            keeper: keeper.map(|k| self.accounts[k as usize].address),
        });
        let penalty = Penalty {
            total: if owner == self.insurance_fund {
                Amount::ZERO
            } else {
                Amount::round_up(self.liquidation.penalty_rate * start.maintenance)
            },
            total_lots: self.accounts[owner as usize].exposures.values().map(|e| e.position_lots.unsigned_abs()).sum(),
        };
        let order = self.close_order_of(owner);
        let mut closed = 0u32;
        let mut left = 0u32;
        for series in order {
            if !full
                && let Ok(now) = self.margin_figures(owner, &[], Decimal::ZERO)
                && now.equity >= now.initial
            {
                break;
            }
            closed += 1;
            if !self.close_position(owner, series, keeper, &penalty, events) {
                left += 1;
            }
        }
        let end = self.margin_figures(owner, &[], Decimal::ZERO).ok();
        events.push(Event::LiquidationFinished {
            account: address,
            equity: end.map_or(Decimal::ZERO, |f| f.equity),
            maintenance_margin: end.map_or(Decimal::ZERO, |f| f.maintenance),
            cash: self.accounts[owner as usize].usd,
            positions_left: left,
        });
        Some(closed)
    }

    /// The account's positions, the most maintenance margin freed per dollar
    /// of expected closing loss (mark × contracts × book band) first.
    fn close_order_of(&self, owner: u64) -> Vec<SeriesId> {
        let positions: Vec<(SeriesId, i64)> = self.accounts[owner as usize]
            .exposures
            .iter()
            .filter(|(_, e)| e.position_lots != 0)
            .map(|(s, e)| (*s, e.position_lots))
            .collect();
        let Ok(all) = self.margin_figures(owner, &[], Decimal::ZERO) else {
            return positions.into_iter().map(|(series, _)| series).collect();
        };
        let band = decimal_to_f64(self.liquidation.book_band);
        let items: Vec<(f64, f64)> = positions
            .iter()
            .map(|&(series, lots)| {
                let without = self.margin_figures(owner, &[(series, -lots)], Decimal::ZERO);
                let freed = without.map_or(0.0, |w| decimal_to_f64(all.maintenance - w.maintenance));
                let contracts = decimal_to_f64(self.market(series).signed_contracts(lots)).abs();
                (freed, contracts * self.mark(series).unwrap_or(0.0) * band)
            })
            .collect();
        close_order(&items).into_iter().map(|index| positions[index].0).collect()
    }

    /// Closes one position through the steps in order. Returns whether it is
    /// fully closed.
    fn close_position(
        &mut self,
        owner: u64,
        series: SeriesId,
        keeper: Option<u64>,
        penalty: &Penalty,
        events: &mut Vec<Event>,
    ) -> bool {
        let position = self.accounts[owner as usize].exposure(series).position_lots;
        if position == 0 {
            return true;
        }
        let mut remaining = position.unsigned_abs();
        let taken = self.close_to_backstops(owner, series, remaining, penalty, events);
        remaining -= taken;
        if remaining > 0 {
            let filled = self.close_in_book(owner, series, remaining, events);
            self.charge_penalty(owner, filled, keeper, penalty, events);
            remaining -= filled;
        }
        if remaining > 0 && owner != self.insurance_fund {
            let absorbed = self.close_to_insurance_fund(owner, series, remaining, events);
            self.charge_penalty(owner, absorbed, keeper, penalty, events);
            remaining -= absorbed;
        }
        if remaining > 0 {
            remaining -= self.deleverage(owner, series, remaining, events);
        }
        remaining == 0
    }

    /// Moves `lots` of `from`'s position in `series` to `to` (both move the
    /// same way: `from` towards zero) for `cash` USD from `to` to `from`
    /// (negative: from `from` to `to`). Balances must cover it.
    fn move_position(&mut self, from: u64, to: u64, series: SeriesId, lots: u64, cash: Decimal) {
        let from_position = self.accounts[from as usize].exposure(series).position_lots;
        let from_change = if from_position > 0 { -(lots as i64) } else { lots as i64 };
        let premium = cash.abs();
        self.update_exposure(from, series, |e| e.trade(from_change, premium));
        self.update_exposure(to, series, |e| e.trade(-from_change, premium));
        // Every caller pays whole micro-dollars capped by the payer's cash.
        let amount = Amount::round_down(premium);
        debug_assert_eq!(amount.value(), premium.normalize());
        let (payer, payee) = if cash >= Decimal::ZERO { (to, from) } else { (from, to) };
        let payer_account = &mut self.accounts[payer as usize];
        payer_account.usd = payer_account.usd.minus(amount).expect("a position transfer is paid from cash");
        assert!(payer_account.usd_locked <= payer_account.usd, "a position transfer never touches locked USD");
        let payee_account = &mut self.accounts[payee as usize];
        payee_account.usd = payee_account.usd.plus(amount);
    }

    /// Whether `owner` could hold one more series.
    fn has_room(&self, owner: u64, series: SeriesId) -> bool {
        let exposures = &self.accounts[owner as usize].exposures;
        exposures.contains_key(&series) || exposures.len() < MAX_SERIES_PER_ACCOUNT
    }

    /// Keeper backstop offers of the series' underlying, smallest discount
    /// first, pro rata by remaining capacity among equal discounts. Returns
    /// the lots taken.
    fn close_to_backstops(
        &mut self,
        owner: u64,
        series: SeriesId,
        wanted: u64,
        penalty: &Penalty,
        events: &mut Vec<Event>,
    ) -> u64 {
        let market = self.market(series);
        let underlying = market.spec.underlying.clone();
        let mut offers: Vec<(Decimal, u64)> = self
            .backstops
            .values()
            .filter(|offer| offer.underlying == underlying && self.account_index[&offer.keeper] != owner)
            .map(|offer| (offer.discount, offer.id))
            .collect();
        if offers.is_empty() {
            return 0;
        }
        offers.sort();
        let Some(mark) = self.mark(series) else { return 0 };
        let index = self.index_price(&underlying).value();
        let lot_notional = index * market.lot.value();
        let long = self.accounts[owner as usize].exposure(series).position_lots > 0;
        let mut taken = 0u64;
        let mut start = 0;
        while start < offers.len() && taken < wanted {
            let discount = offers[start].0;
            let end = start + offers[start..].iter().take_while(|(d, _)| *d == discount).count();
            let group: Vec<u64> = offers[start..end].iter().map(|(_, id)| *id).collect();
            start = end;
            let capacities: Vec<u64> = group
                .iter()
                .map(|id| {
                    let lots = self.backstops[id].remaining_notional.value() / lot_notional;
                    u64::try_from(lots.floor()).unwrap_or(u64::MAX)
                })
                .collect();
            let shares = pro_rata(wanted - taken, &capacities);
            for (id, share) in group.into_iter().zip(shares) {
                if share > 0 {
                    taken += self.take_by_backstop(owner, series, id, share, long, mark, penalty, events);
                }
            }
        }
        taken
    }

    /// One offer takes up to `share` lots, within both parties' cash and the
    /// keeper's initial margin. Returns the lots taken.
    fn take_by_backstop(
        &mut self,
        owner: u64,
        series: SeriesId,
        offer_id: u64,
        share: u64,
        long: bool,
        mark: f64,
        penalty: &Penalty,
        events: &mut Vec<Event>,
    ) -> u64 {
        let offer = self.backstops[&offer_id].clone();
        let keeper = self.account_index[&offer.keeper];
        if !self.has_room(keeper, series) {
            return 0;
        }
        let (tick, lot) = (self.market(series).tick, self.market(series).lot);
        // Against the liquidated account: it sells low and buys back high.
        let price = if long {
            let Ok(mark) = to_decimal_down(mark, ASSET_SCALE) else { return 0 };
            floor_to_tick(mark * (Decimal::ONE - offer.discount), tick)
        } else {
            let Ok(mark) = to_decimal_up(mark, ASSET_SCALE) else { return 0 };
            ceil_to_tick(mark * (Decimal::ONE + offer.discount), tick)
        };
        let per_lot = price * lot.value();
        let payer_cash =
            if long { self.free_usd(keeper).value() + offer.collateral.value() } else { self.free_usd(owner).value() };
        let mut cap = share;
        if per_lot > Decimal::ZERO {
            cap = cap.min(u64::try_from((payer_cash / per_lot).floor()).unwrap_or(u64::MAX));
        }
        let keeper_lots = |lots: u64| if long { lots as i64 } else { -(lots as i64) };
        let lots = largest_feasible(cap, |lots| {
            let cash = if long { -per_lot } else { per_lot } * Decimal::from(lots);
            self.margin_figures(keeper, &[(series, keeper_lots(lots))], cash).is_ok_and(|f| f.equity >= f.initial)
        });
        if lots == 0 {
            return 0;
        }
        let payment = per_lot * Decimal::from(lots);
        if long {
            // The keeper pays from its offer's collateral first.
            let used = Amount::round_down(payment).min(offer.collateral);
            let account = &mut self.accounts[keeper as usize];
            account.usd_locked = account.usd_locked.minus(used).expect("collateral is part of the locked total");
            let offer = self.backstops.get_mut(&offer_id).expect("offer exists");
            offer.collateral = offer.collateral.minus(used).expect("used at most the collateral");
        }
        let contracts = self.market(series).contracts(lots);
        let notional = Amount::round_up(self.index_price(&offer.underlying).value() * contracts);
        let stored = self.backstops.get_mut(&offer_id).expect("offer exists");
        stored.remaining_notional = stored.remaining_notional.minus(notional).unwrap_or(Amount::ZERO);
        self.commitment.touch_account(keeper);
        self.move_position(owner, keeper, series, lots, if long { payment } else { -payment });
        let market = self.market(series);
        events.push(Event::PositionLiquidated {
            account: self.accounts[owner as usize].address,
            series: market.spec.name.clone(),
            step: LiquidationStep::Backstop,
            contracts: if long { market.contracts(lots) } else { -market.contracts(lots) },
            counterparty: Some(offer.keeper),
            price: Some(price),
            cash: if long { payment } else { -payment }.normalize(),
        });
        self.charge_penalty(owner, lots, Some(keeper), penalty, events);
        lots
    }

    /// An immediate-or-cancel, reduce-only order within the band around mark;
    /// a buy no larger than the account's cash can pay. Returns lots filled.
    fn close_in_book(&mut self, owner: u64, series: SeriesId, wanted: u64, events: &mut Vec<Event>) -> u64 {
        let Some(mark) = self.mark(series) else { return 0 };
        let market = self.market(series);
        let position = self.accounts[owner as usize].exposure(series).position_lots;
        let band = self.liquidation.book_band;
        let (side, limit) = if position > 0 {
            let Ok(mark) = to_decimal_up(mark, ASSET_SCALE) else { return 0 };
            (Side::Sell, ceil_to_tick(mark * (Decimal::ONE - band), market.tick).max(market.tick.value()))
        } else {
            let Ok(mark) = to_decimal_down(mark, ASSET_SCALE) else { return 0 };
            (Side::Buy, floor_to_tick(mark * (Decimal::ONE + band), market.tick).max(market.tick.value()))
        };
        let Ok(limit) = Price::new(limit, Field::Price) else { return 0 };
        let Ok(limit_ticks) = market.ticks(limit) else { return 0 };
        let mut lots = wanted;
        if side == Side::Buy {
            let lock = self.buy_lock_per_lot(series, side, limit).value();
            lots = lots.min(u64::try_from((self.free_usd(owner).value() / lock).floor()).unwrap_or(0));
        }
        if lots == 0 {
            return 0;
        }
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
        };
        let cash_before = self.accounts[owner as usize].usd.value();
        if self.place_order(owner, &request, None, events).is_err() {
            return 0;
        }
        let after = self.accounts[owner as usize].exposure(series).position_lots;
        let filled = position.unsigned_abs() - after.unsigned_abs();
        if filled > 0 {
            let market = self.market(series);
            events.push(Event::PositionLiquidated {
                account: self.accounts[owner as usize].address,
                series: market.spec.name.clone(),
                step: LiquidationStep::Book,
                contracts: if position > 0 { market.contracts(filled) } else { -market.contracts(filled) },
                counterparty: None,
                price: None,
                cash: self.accounts[owner as usize].usd.value() - cash_before,
            });
        }
        filled
    }

    /// The insurance fund takes what is left at mark. When the account cannot
    /// pay to close a short at mark, it pays all its cash and the fund
    /// absorbs the rest: the bankruptcy price. The fund takes no more than
    /// its cash and maintenance margin allow. Returns lots absorbed.
    fn close_to_insurance_fund(&mut self, owner: u64, series: SeriesId, wanted: u64, events: &mut Vec<Event>) -> u64 {
        let fund = self.insurance_fund;
        let Some(mark) = self.mark(series) else { return 0 };
        if !self.has_room(fund, series) {
            return 0;
        }
        let market = self.market(series);
        let long = self.accounts[owner as usize].exposure(series).position_lots > 0;
        let lot = market.lot.value();
        let (Ok(mark_down), Ok(mark_up)) = (to_decimal_down(mark, ASSET_SCALE), to_decimal_up(mark, ASSET_SCALE))
        else {
            return 0;
        };
        let account_cash = self.free_usd(owner).value();
        // Cash from the fund to the account (negative: to the fund), and the shortfall the fund absorbs.
        let terms = |lots: u64| -> (Decimal, Decimal) {
            let contracts = lot * Decimal::from(lots);
            if long {
                (Amount::round_down(mark_down * contracts).value(), Decimal::ZERO)
            } else {
                let owed = Amount::round_up(mark_up * contracts).value();
                let paid = owed.min(account_cash);
                (-paid, owed - paid)
            }
        };
        let fund_cash = self.free_usd(fund).value();
        let fund_lots = |lots: u64| if long { lots as i64 } else { -(lots as i64) };
        let lots = largest_feasible(wanted, |lots| {
            let (cash, _) = terms(lots);
            cash <= fund_cash
                && self
                    .margin_figures(fund, &[(series, fund_lots(lots))], -cash)
                    .is_ok_and(|f| f.equity >= f.maintenance)
        });
        if lots == 0 {
            return 0;
        }
        let (cash, shortfall) = terms(lots);
        self.move_position(owner, fund, series, lots, cash);
        let market = self.market(series);
        let contracts = market.contracts(lots);
        let address = self.accounts[owner as usize].address;
        events.push(Event::PositionLiquidated {
            account: address,
            series: market.spec.name.clone(),
            step: LiquidationStep::InsuranceFund,
            contracts: if long { contracts } else { -contracts },
            counterparty: Some(Address::insurance_fund()),
            price: Some((cash.abs() / contracts).round_dp(ASSET_SCALE).normalize()),
            cash,
        });
        if shortfall > Decimal::ZERO {
            events.push(Event::InsuranceFundUsed {
                account: address,
                series: market.spec.name.clone(),
                amount: Amount::round_up(shortfall),
            });
        }
        lots
    }

    /// Auto-deleveraging: opposite positions, most profitable and leveraged
    /// first, take what is left at the bankruptcy price: a short is bought
    /// back at most at mark with whatever cash the account has left, a long
    /// is sold at mark. No counterparty is left with negative equity or cash.
    /// Returns lots closed.
    fn deleverage(&mut self, owner: u64, series: SeriesId, wanted: u64, events: &mut Vec<Event>) -> u64 {
        let Some(mark) = self.mark(series) else { return 0 };
        let (Ok(mark_down), Ok(mark_up)) = (to_decimal_down(mark, ASSET_SCALE), to_decimal_up(mark, ASSET_SCALE))
        else {
            return 0;
        };
        let market = self.market(series);
        let lot = market.lot.value();
        let long = self.accounts[owner as usize].exposure(series).position_lots > 0;
        let mut ranked: Vec<(Decimal, Address, u64, Decimal)> = Vec::new();
        for &other in &market.participants {
            let exposure = self.accounts[other as usize].exposure(series);
            let opposite = if long { exposure.position_lots < 0 } else { exposure.position_lots > 0 };
            if other == owner || !opposite {
                continue;
            }
            let Ok(figures) = self.margin_figures(other, &[], Decimal::ZERO) else { continue };
            let value = market.signed_contracts(exposure.position_lots) * mark_down;
            let score = adl_score(value - exposure.cost, exposure.cost, value, figures.equity);
            ranked.push((score, self.accounts[other as usize].address, other, figures.equity));
        }
        ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let address = self.accounts[owner as usize].address;
        let mut closed = 0u64;
        for (_, counterparty, other, equity) in ranked {
            if closed == wanted {
                break;
            }
            let held = self.accounts[other as usize].exposure(series).position_lots.unsigned_abs();
            let mut lots = held.min(wanted - closed);
            let price = if long {
                // The counterparty buys back its short at mark, paying from free cash.
                let per_lot = mark_down * lot;
                if per_lot > Decimal::ZERO {
                    lots = lots.min(u64::try_from((self.free_usd(other).value() / per_lot).floor()).unwrap_or(0));
                }
                mark_down
            } else {
                // The bankruptcy price: the account's remaining cash spread over what is left.
                let remaining_contracts = lot * Decimal::from(wanted - closed);
                let price = mark_up
                    .min(self.free_usd(owner).value() / remaining_contracts)
                    .round_dp_with_strategy(ASSET_SCALE, rust_decimal::RoundingStrategy::ToZero);
                let loss_per_lot = (mark_up - price) * lot;
                if loss_per_lot > Decimal::ZERO {
                    lots = lots.min(u64::try_from((equity.max(Decimal::ZERO) / loss_per_lot).floor()).unwrap_or(0));
                }
                price
            };
            if lots == 0 {
                continue;
            }
            let contracts = lot * Decimal::from(lots);
            let cash = if long {
                Amount::round_down(price * contracts).value()
            } else {
                -Amount::round_down(price * contracts).value()
            };
            self.move_position(owner, other, series, lots, cash);
            closed += lots;
            let market = self.market(series);
            events.push(Event::Deleveraged {
                liquidated: address,
                counterparty,
                series: market.spec.name.clone(),
                contracts: if long { contracts } else { -contracts },
                price,
            });
            events.push(Event::PositionLiquidated {
                account: address,
                series: market.spec.name.clone(),
                step: LiquidationStep::Deleverage,
                contracts: if long { contracts } else { -contracts },
                counterparty: Some(counterparty),
                price: Some(price),
                cash,
            });
        }
        closed
    }

    /// Charges the penalty share of `lots` closed contracts, capped at the
    /// account's free cash, and splits it between `keeper` and the fund.
    fn charge_penalty(
        &mut self,
        owner: u64,
        lots: u64,
        keeper: Option<u64>,
        penalty: &Penalty,
        events: &mut Vec<Event>,
    ) {
        if lots == 0 || penalty.total.is_zero() || penalty.total_lots == 0 {
            return;
        }
        let share = Amount::round_up(penalty.total.value() * Decimal::from(lots) / Decimal::from(penalty.total_lots));
        let free = Amount::round_down(self.free_usd(owner).value().max(Decimal::ZERO));
        let charged = share.min(free);
        if charged.is_zero() {
            return;
        }
        let keeper_amount = match keeper {
            Some(_) => Amount::round_down(charged.value() * self.liquidation.keeper_share),
            None => Amount::ZERO,
        };
        let fund_amount = charged.minus(keeper_amount).expect("the keeper share is at most the whole");
        let account = &mut self.accounts[owner as usize];
        account.usd = account.usd.minus(charged).expect("charged at most the free cash");
        if let Some(keeper) = keeper {
            let account = &mut self.accounts[keeper as usize];
            account.usd = account.usd.plus(keeper_amount);
            self.commitment.touch_account(keeper);
        }
        let fund = self.insurance_fund;
        let account = &mut self.accounts[fund as usize];
        account.usd = account.usd.plus(fund_amount);
        self.commitment.touch_account(fund);
        self.commitment.touch_account(owner);
        self.risk_dirty.insert(owner);
        events.push(Event::LiquidationPenalty {
            account: self.accounts[owner as usize].address,
            total: charged,
            keeper: keeper.map(|k| self.accounts[k as usize].address),
            keeper_amount,
            insurance_amount: fund_amount,
        });
    }

    /// Accounts with positions, most at risk first: (address, margin ratio,
    /// figures). Evaluates every indexed account; for queries, not blocks.
    pub fn at_risk_accounts(&self, limit: usize) -> Vec<(Address, Option<Decimal>, MarginFigures)> {
        let mut accounts: Vec<(Address, Option<Decimal>, MarginFigures)> = self
            .accounts
            .iter()
            .filter(|account| account.exposures.values().any(|e| e.position_lots != 0))
            .filter_map(|account| {
                let figures = self.margin_figures(account.owner, &[], Decimal::ZERO).ok()?;
                Some((account.address, figures.ratio(), figures))
            })
            .collect();
        accounts.sort_by(|a, b| match (a.1, b.1) {
            (None, None) => a.0.cmp(&b.0),
            (None, Some(_)) => std::cmp::Ordering::Less,
            (Some(_), None) => std::cmp::Ordering::Greater,
            (Some(x), Some(y)) => y.cmp(&x).then(a.0.cmp(&b.0)),
        });
        accounts.truncate(limit);
        accounts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_feasible_size_is_found_by_bisection() {
        assert_eq!(largest_feasible(100, |lots| lots <= 37), 37);
        assert_eq!(largest_feasible(100, |_| true), 100);
        assert_eq!(largest_feasible(100, |_| false), 0);
        assert_eq!(largest_feasible(0, |_| false), 0);
        assert_eq!(largest_feasible(1, |lots| lots == 0), 0);
    }

    #[test]
    fn tick_rounding_goes_the_asked_way() {
        let tick = Price::new(Decimal::new(5, 1), Field::Price).unwrap();
        assert_eq!(floor_to_tick(Decimal::new(12349, 1), tick), Decimal::new(12345, 1));
        assert_eq!(ceil_to_tick(Decimal::new(12341, 1), tick), Decimal::new(12345, 1));
        assert_eq!(ceil_to_tick(Decimal::new(12340, 1), tick), Decimal::from(1234));
    }
}
