//! Liquidating one account: partial through the market first, then
//! everything through every step; and the moves every step shares.

use std::collections::BTreeSet;

use rust_decimal::Decimal;
use vanna_liquidation_rules::close_order;
use vanna_pricing::{decimal_to_f64, to_decimal_up};

use super::{Budget, Credit, Steps, capacities_left, credit_notional};
use crate::events::{CancelReason, Event};
use crate::ids::SeriesId;
use crate::limits::MAX_SERIES_PER_ACCOUNT;
use crate::money::{ASSET_SCALE, Amount};
use crate::risk::Level;
use crate::state::State;

impl State {
    /// Liquidates `owner` if it is below maintenance margin; returns how many
    /// positions it reduced or closed. `keeper` is the sender of a
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
        // A second liquidation in one block (after trades of its own) pays no second penalty.
        let repeat = !self.liquidated_in_block.insert(owner);
        let address = self.accounts[owner as usize].address;
        self.release_locks(owner, CancelReason::Liquidation, events);
        let full = start.equity < self.liquidation.full_close_fraction * start.maintenance;
        events.push(Event::LiquidationStarted {
            account: address,
            equity: start.equity,
            maintenance_margin: start.maintenance,
            initial_margin: start.initial,
            full,
            keeper: keeper.map(|k| self.accounts[k as usize].address),
        });
        let mut credit = Credit::new();
        let mut touched = BTreeSet::new();
        if !full {
            // Partial: the market takes just enough, most margin freed per loss first.
            'positions: for series in self.close_order_of(owner) {
                // Sizing a close costs a dozen margin evaluations: not for a
                // position nobody in the market would take.
                while self.market_can_take(owner, series) {
                    if !matches!(self.meets(owner, None, Decimal::ZERO, Level::Initial), Ok(false)) {
                        // Back at initial margin (or unpriceable: nothing to decide by).
                        break 'positions;
                    }
                    let lots = self.lots_restoring_initial(owner, series);
                    let taken = self.close_through(
                        owner,
                        series,
                        lots,
                        Steps::Market,
                        keeper,
                        Decimal::ZERO,
                        &mut credit,
                        events,
                    );
                    if taken == 0 {
                        break;
                    }
                    touched.insert(series);
                }
            }
        }
        let mut left = 0u32;
        if full || matches!(self.meets(owner, None, Decimal::ZERO, Level::Maintenance), Ok(false)) {
            left = self.close_everything(owner, keeper, Decimal::ZERO, &mut credit, &mut touched, events);
        }
        let end = self.margin_figures(owner, &[], Decimal::ZERO).ok();
        let penalty = match &end {
            Some(end) if !repeat && owner != self.insurance_fund => {
                self.charge_penalty(owner, &start, end, &credit, events)
            }
            _ => Amount::ZERO,
        };
        events.push(Event::LiquidationFinished {
            account: address,
            // The penalty moved cash only: equity falls by it, margins do not change.
            equity: end.map(|f| f.equity - penalty.value()),
            maintenance_margin: end.map(|f| f.maintenance),
            cash: self.accounts[owner as usize].usd,
            positions_left: left,
        });
        Some(touched.len() as u32)
    }

    /// Closes every position of `owner` through all the steps, longs first
    /// (their proceeds pay for closing the shorts). `owed` is cash the account
    /// owes outside its positions (see [`Self::close_through`]). Returns how
    /// many positions no step could take.
    pub(super) fn close_everything(
        &mut self,
        owner: u64,
        keeper: Option<u64>,
        owed: Decimal,
        credit: &mut Credit,
        touched: &mut BTreeSet<SeriesId>,
        events: &mut Vec<Event>,
    ) -> u32 {
        let mut positions: Vec<(bool, SeriesId)> =
            self.accounts[owner as usize].positions.iter().map(|&(series, lots)| (lots < 0, series)).collect();
        positions.sort();
        let mut left = 0;
        // Twice: what a counterparty could not pay for, or a short the
        // account's cash could not yet pay for, may go once the other
        // positions' proceeds have moved.
        for _ in 0..2 {
            left = 0;
            for &(_, series) in &positions {
                let lots = self.accounts[owner as usize].position(series).unsigned_abs();
                if lots == 0 {
                    continue;
                }
                self.close_through(owner, series, lots, Steps::All, keeper, owed, credit, events);
                touched.insert(series);
                if self.accounts[owner as usize].position(series) != 0 {
                    left += 1;
                }
            }
            if left == 0 {
                break;
            }
        }
        left
    }

    /// How many lots of `series` bring `owner` back to initial margin if
    /// closed at the edge of the book band (the worst price the market steps
    /// may take): the fewest that do (bisection: margin is convex in size),
    /// or the whole position when closing all of it does not.
    pub(super) fn lots_restoring_initial(&self, owner: u64, series: SeriesId) -> u64 {
        let position = self.accounts[owner as usize].position(series);
        let lots = position.unsigned_abs();
        let closing = |k: u64| if position > 0 { -(k as i64) } else { k as i64 };
        let mark = to_decimal_up(self.mark(series).unwrap_or(0.0), ASSET_SCALE).unwrap_or(Decimal::ZERO);
        let band = self.liquidation.book_band;
        // Cash per lot: a long sells at mark less the band, a short buys back at mark plus it.
        let cash_per_lot = self.market(series).lot.value()
            * if position > 0 { mark * (Decimal::ONE - band) } else { -mark * (Decimal::ONE + band) };
        let restores = |k: u64| {
            let cash = cash_per_lot * Decimal::from(k);
            self.meets(owner, Some((series, closing(k))), cash, Level::Initial).unwrap_or(false)
        };
        if !restores(lots) {
            return lots;
        }
        let (mut short, mut enough) = (0u64, lots);
        while enough - short > 1 {
            let middle = short + (enough - short) / 2;
            if restores(middle) { enough = middle } else { short = middle }
        }
        enough
    }

    /// The account's positions, the most maintenance margin freed per dollar
    /// of expected closing loss (mark × contracts × book band) first.
    pub(super) fn close_order_of(&self, owner: u64) -> Vec<SeriesId> {
        let positions = self.accounts[owner as usize].positions.clone();
        let Some(held_up) = self.maintenance_held_by_each(owner) else {
            return positions.into_iter().map(|(series, _)| series).collect();
        };
        let band = decimal_to_f64(self.liquidation.book_band);
        let items: Vec<(f64, f64)> = positions
            .iter()
            .zip(held_up)
            .map(|(&(series, lots), (_, freed))| {
                let contracts = decimal_to_f64(self.market(series).signed_contracts(lots)).abs();
                (freed, contracts * self.mark(series).unwrap_or(0.0) * band)
            })
            .collect();
        close_order(&items).into_iter().map(|index| positions[index].0).collect()
    }

    /// Closes up to `lots` of one position through `steps` in order. Returns
    /// the lots closed.
    ///
    /// `owed` is cash the account owes outside its positions (a settlement
    /// payment not made yet): the market steps give away no more than the
    /// account's equity less `owed`, so a keeper's discount or a book
    /// counterparty's edge is never paid out of money the account does not
    /// have (the fund would pay for it).
    pub(super) fn close_through(
        &mut self,
        owner: u64,
        series: SeriesId,
        lots: u64,
        steps: Steps,
        keeper: Option<u64>,
        owed: Decimal,
        credit: &mut Credit,
        events: &mut Vec<Event>,
    ) -> u64 {
        let position = self.accounts[owner as usize].position(series);
        let wanted = lots.min(position.unsigned_abs());
        let lot_notional =
            self.index_price(&self.market(series).spec.underlying).value() * self.market(series).lot.value();
        let mut remaining = wanted;
        let mut budget = Budget::new(owed);
        remaining -= self.close_to_backstops(owner, series, remaining, &mut budget, credit, events);
        let mut by_keeper = 0;
        if remaining > 0 {
            let filled = self.close_in_book(owner, series, remaining, &mut budget, events);
            by_keeper += filled;
            remaining -= filled;
        }
        if remaining > 0 && steps != Steps::Market && owner != self.insurance_fund {
            let absorbed = self.close_to_insurance_fund(owner, series, remaining, events);
            by_keeper += absorbed;
            remaining -= absorbed;
        }
        if remaining > 0 && steps == Steps::All {
            let deleveraged = self.deleverage(owner, series, remaining, events);
            by_keeper += deleveraged;
            remaining -= deleveraged;
        }
        credit_notional(credit, keeper, lot_notional * Decimal::from(by_keeper));
        wanted - remaining
    }

    /// Whether a keeper's backstop offer or the book could take some of
    /// `owner`'s position in `series` now (before the finer checks of
    /// each: cash, margin, room).
    pub(super) fn market_can_take(&self, owner: u64, series: SeriesId) -> bool {
        let position = self.accounts[owner as usize].position(series);
        if position == 0 {
            return false;
        }
        let market = self.market(series);
        let lot_notional = self.index_price(&market.spec.underlying).value() * market.lot.value();
        let offered = self.backstop_offers_for(owner, series).any(|offer| capacities_left(offer, lot_notional));
        offered
            || self.book_close(series, position).is_some_and(|(side, _, ticks)| self.book_crosses(series, side, ticks))
    }

    /// Raises cash for a settlement payment of `needed`: the account's long
    /// positions are sold through backstop offers, the book and the insurance
    /// fund, at this block's marks, until its free cash reaches `needed` or
    /// no long is left.
    pub(crate) fn raise_cash(&mut self, owner: u64, needed: Amount, events: &mut Vec<Event>) {
        let longs: Vec<SeriesId> =
            self.accounts[owner as usize].positions.iter().filter(|(_, lots)| *lots > 0).map(|(s, _)| *s).collect();
        let mut credit = Credit::new();
        for series in longs {
            if self.free_usd(owner) >= needed {
                return;
            }
            let lots = self.accounts[owner as usize].position(series).unsigned_abs();
            self.close_through(owner, series, lots, Steps::MarketAndFund, None, needed.value(), &mut credit, events);
        }
    }

    /// A short in default at settlement still owes `owed` after paying all
    /// its cash: every position it holds is handed on (market, fund,
    /// auto-deleveraging), so that nothing stays with it while the longs it
    /// owes are cut. Returns how many positions no step could take.
    pub(crate) fn hand_on_positions(&mut self, owner: u64, owed: Amount, events: &mut Vec<Event>) -> u32 {
        let mut credit = Credit::new();
        let mut touched = BTreeSet::new();
        self.close_everything(owner, None, owed.value(), &mut credit, &mut touched, events)
    }

    /// Moves `lots` of `from`'s position in `series` to `to` (both move the
    /// same way: `from` towards zero) for `cash` USD from `to` to `from`
    /// (negative: from `from` to `to`). Balances must cover it.
    pub(super) fn move_position(&mut self, from: u64, to: u64, series: SeriesId, lots: u64, cash: Decimal) {
        let from_position = self.accounts[from as usize].position(series);
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

    /// What `owner` could not pay even after selling everything it holds at
    /// mark: its negative equity, or zero. The most that the insurance fund
    /// and auto-deleveraging may absorb for it.
    pub(super) fn uncovered(&self, owner: u64) -> Decimal {
        if matches!(self.meets(owner, None, Decimal::ZERO, Level::Solvent), Ok(true)) {
            // Solvent: the common case, told without the exact figures.
            return Decimal::ZERO;
        }
        self.margin_figures(owner, &[], Decimal::ZERO).map_or(Decimal::ZERO, |f| (-f.equity).max(Decimal::ZERO))
    }

    /// Whether `owner` could hold one more series.
    pub(super) fn has_room(&self, owner: u64, series: SeriesId) -> bool {
        let exposures = &self.accounts[owner as usize].exposures;
        exposures.contains_key(&series) || exposures.len() < MAX_SERIES_PER_ACCOUNT
    }
}
