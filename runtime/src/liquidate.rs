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
//! orders and backstop offers are cancelled. Unless equity is below the
//! full-close fraction of maintenance margin, positions are first reduced
//! through the market only (keeper backstop offers, then the book), the most
//! maintenance margin freed per dollar of expected closing loss first, each
//! by the fewest lots that restore initial margin. If that is not possible,
//! or not enough to get back above maintenance margin, every position is
//! closed, longs first, each going in order to keeper backstop offers
//! (smallest discount first, pro rata on ties, each within its keeper's
//! margin), to the book as an immediate-or-cancel order within `book_band` of
//! mark, to the insurance fund at mark (covering the shortfall when the
//! account's cash cannot pay: its bankruptcy price), and last to
//! auto-deleveraging of opposite positions. One penalty, `penalty_rate` × the
//! maintenance margin freed, is split between the keepers that took the
//! positions and the fund. The details are in `liquidation/README.md`.
//!
//! Prices with keepers are rounded to the tick against the liquidated
//! account; the book step's limit is rounded in its favour (a limit only
//! protects it); prices with the fund and in auto-deleveraging are rounded to
//! the asset's 6 decimals against it. No balance ever goes negative: every
//! payer pays from cash it holds.

use std::collections::BTreeSet;

use rust_decimal::Decimal;
use vanna_book::Side;
use vanna_liquidation::{adl_score, close_order, pro_rata};
use vanna_pricing::{decimal_to_f64, to_decimal_down, to_decimal_up};

use crate::error::{Field, TxError};
use crate::events::{CancelReason, Event, LiquidationStep};
use crate::ids::{Address, SeriesId};
use crate::limits::MAX_SERIES_PER_ACCOUNT;
use crate::money::{ASSET_SCALE, Amount, Price};
use crate::risk::{Level, MarginFigures};
use crate::state::State;
use crate::trading::{OrderRequest, TimeInForce};

/// Rounds of end-of-block re-checks: liquidating one account can move others
/// (keepers, deleveraged counterparties), which are checked again.
const MAX_RECHECK_ROUNDS: usize = 4;

/// Who took what from a liquidated account: underlying notional (contracts ×
/// index) per keeper (`None`: no keeper, the automatic pass), which splits
/// the keeper share of the penalty.
type Credit = Vec<(Option<u64>, Decimal)>;

fn credit_notional(credit: &mut Credit, keeper: Option<u64>, notional: Decimal) {
    match credit.iter_mut().find(|(k, _)| *k == keeper) {
        Some((_, total)) => *total += notional,
        None => credit.push((keeper, notional)),
    }
}

/// Which steps a position may go through.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Steps {
    /// Backstop offers and the book: a partial liquidation of a solvent account.
    Market,
    /// Then the insurance fund: raising cash for a settlement payment.
    MarketAndFund,
    /// Then auto-deleveraging: closing everything.
    All,
}

/// Whether an offer can still take at least one lot.
fn capacities_left(offer: &crate::state::BackstopOffer, lot_notional: Decimal) -> bool {
    offer.remaining_notional.value() >= lot_notional
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

    /// Rebuilds the at-risk index from state alone, by evaluating every
    /// account that holds positions: what a node restored from a snapshot
    /// does. Because the index is sound, the liquidations that follow are the
    /// same as with the index built block by block (a test checks it).
    pub fn rebuild_at_risk_index(&mut self) {
        self.at_risk = Default::default();
        for symbol in self.underlyings.keys().cloned().collect::<Vec<_>>() {
            self.reset_volatility_reference(&symbol);
        }
        for owner in 0..self.accounts.len() as u64 {
            self.index_account(owner);
        }
    }

    /// The pass of `begin_block`: every account the new prices, time or
    /// volatilities may have put below maintenance margin is evaluated, and
    /// liquidated if it is.
    pub(crate) fn liquidation_pass(&mut self, events: &mut Vec<Event>) {
        self.liquidated_in_block.clear();
        let bound = decimal_to_f64(self.liquidation.volatility_rescan_bound);
        // Each source is in ascending order; merged below (a crash names
        // most holders, so a vector beats a set).
        let mut candidates: Vec<u64> = Vec::new();
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
        // Accounts changed since the last check: by settlement just now, or
        // left over when the last block's re-checks hit their bound.
        candidates.extend(self.risk_dirty.iter().copied());
        // A stable sort merges the ascending runs in linear time.
        candidates.sort();
        candidates.dedup();
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

    /// Evaluates `candidates` (ascending, distinct) and liquidates those below
    /// maintenance margin, worst first.
    fn liquidate_below_maintenance(&mut self, candidates: impl IntoIterator<Item = u64>, events: &mut Vec<Event>) {
        let mut below: Vec<(Option<Decimal>, u64)> = Vec::new();
        // Candidates come in ascending handle order, so accounts are read in
        // memory order and the processor's prefetcher hides the misses.
        for owner in candidates {
            if let Some(figures) = self.index_account(owner) {
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
    ) -> Result<crate::events::ActionOutcome, TxError> {
        use crate::events::ActionOutcome;
        let address = Address::from_slice(target)?;
        let owner = *self.account_index.get(&address).ok_or(TxError::UnknownAccount(address))?;
        if owner == keeper {
            return Err(TxError::SelfLiquidation);
        }
        if self.liquidated_in_block.contains(&owner) {
            return Ok(ActionOutcome::AlreadyLiquidated);
        }
        let figures = self.margin_figures(owner, &[], Decimal::ZERO)?;
        if !figures.below_maintenance() {
            return Err(TxError::NotLiquidatable {
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
    fn close_everything(
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
    fn lots_restoring_initial(&self, owner: u64, series: SeriesId) -> u64 {
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
    fn close_order_of(&self, owner: u64) -> Vec<SeriesId> {
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
    fn close_through(
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
        remaining -= self.close_to_backstops(owner, series, remaining, owed, credit, events);
        let mut by_keeper = 0;
        if remaining > 0 {
            let filled = self.close_in_book(owner, series, remaining, owed, events);
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
    fn move_position(&mut self, from: u64, to: u64, series: SeriesId, lots: u64, cash: Decimal) {
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
    fn uncovered(&self, owner: u64) -> Decimal {
        if matches!(self.meets(owner, None, Decimal::ZERO, Level::Solvent), Ok(true)) {
            // Solvent: the common case, told without the exact figures.
            return Decimal::ZERO;
        }
        self.margin_figures(owner, &[], Decimal::ZERO).map_or(Decimal::ZERO, |f| (-f.equity).max(Decimal::ZERO))
    }

    /// Whether `owner` could hold one more series.
    fn has_room(&self, owner: u64, series: SeriesId) -> bool {
        let exposures = &self.accounts[owner as usize].exposures;
        exposures.contains_key(&series) || exposures.len() < MAX_SERIES_PER_ACCOUNT
    }

    /// Keeper backstop offers of the series' underlying, smallest discount
    /// first, pro rata by remaining capacity among equal discounts; what an
    /// offer cannot take (its keeper's cash or margin) goes to the others of
    /// the same discount before any worse one. Returns the lots taken.
    fn close_to_backstops(
        &mut self,
        owner: u64,
        series: SeriesId,
        wanted: u64,
        owed: Decimal,
        credit: &mut Credit,
        events: &mut Vec<Event>,
    ) -> u64 {
        let market = self.market(series);
        let mut offers: Vec<(Decimal, u64)> =
            self.backstop_offers_for(owner, series).map(|offer| (offer.discount, offer.id)).collect();
        if offers.is_empty() {
            return 0;
        }
        offers.sort();
        let Some(mark) = self.mark(series) else { return 0 };
        let lot_notional = self.index_price(&market.spec.underlying).value() * market.lot.value();
        let long = self.accounts[owner as usize].position(series) > 0;
        let mut taken = 0u64;
        let mut start = 0;
        while start < offers.len() && taken < wanted {
            let discount = offers[start].0;
            let end = start + offers[start..].iter().take_while(|(d, _)| *d == discount).count();
            let mut group: Vec<u64> = offers[start..end].iter().map(|(_, id)| *id).collect();
            start = end;
            while taken < wanted && !group.is_empty() {
                let capacities: Vec<u64> = group
                    .iter()
                    .map(|id| {
                        let lots = self.backstops[id].remaining_notional.value() / lot_notional;
                        u64::try_from(lots.floor()).unwrap_or(u64::MAX)
                    })
                    .collect();
                let shares = pro_rata(wanted - taken, &capacities);
                let mut progress = false;
                let mut can_take_more = Vec::new();
                for (id, share) in group.into_iter().zip(shares) {
                    let keeper = self.account_index[&self.backstops[&id].keeper];
                    let got = if share > 0 {
                        self.take_by_backstop(owner, series, id, share, long, mark, owed, events)
                    } else {
                        0
                    };
                    if got > 0 {
                        credit_notional(credit, Some(keeper), lot_notional * Decimal::from(got));
                        progress = true;
                    }
                    taken += got;
                    // An offer that took its whole share may take more (unless used up and
                    // withdrawn); one held back by its keeper's cash or margin may not.
                    if got == share && self.backstops.get(&id).is_some_and(|offer| capacities_left(offer, lot_notional))
                    {
                        can_take_more.push(id);
                    }
                }
                group = if progress { can_take_more } else { Vec::new() };
            }
        }
        taken
    }

    /// One offer takes up to `share` lots, within both parties' cash, the
    /// keeper's initial margin and what the account can afford to give away:
    /// its discount comes out of the account's equity (less `owed`), never
    /// below zero, so an account that cannot pay a discount skips the
    /// keeper. Returns the lots taken.
    fn take_by_backstop(
        &mut self,
        owner: u64,
        series: SeriesId,
        offer_id: u64,
        share: u64,
        long: bool,
        mark: f64,
        owed: Decimal,
        events: &mut Vec<Event>,
    ) -> u64 {
        let offer = &self.backstops[&offer_id];
        let (keeper_address, discount, collateral) = (offer.keeper, offer.discount, offer.collateral);
        let keeper = self.account_index[&keeper_address];
        if !self.has_room(keeper, series) {
            return 0;
        }
        let (tick, lot) = (self.market(series).tick, self.market(series).lot);
        // Against the liquidated account: it sells low and buys back high.
        let price = if long {
            let Ok(mark) = to_decimal_down(mark, ASSET_SCALE) else { return 0 };
            floor_to_tick(mark * (Decimal::ONE - discount), tick)
        } else {
            let Ok(mark) = to_decimal_up(mark, ASSET_SCALE) else { return 0 };
            ceil_to_tick(mark * (Decimal::ONE + discount), tick)
        };
        let per_lot = price * lot.value();
        let payer_cash =
            if long { self.free_usd(keeper).value() + collateral.value() } else { self.free_usd(owner).value() };
        let mut cap = share;
        if per_lot > Decimal::ZERO {
            cap = cap.min(u64::try_from((payer_cash / per_lot).floor()).unwrap_or(u64::MAX));
        }
        let keeper_lots = |lots: u64| if long { lots as i64 } else { -(lots as i64) };
        // Both feasible sets are intervals from zero (the account's equity
        // falls linearly in lots, the keeper's margin is convex), and so is
        // their intersection.
        let lots = largest_feasible(cap, |lots| {
            let cash = if long { -per_lot } else { per_lot } * Decimal::from(lots);
            self.meets(owner, Some((series, -keeper_lots(lots))), -cash - owed, Level::Solvent).unwrap_or(false)
                && self.meets(keeper, Some((series, keeper_lots(lots))), cash, Level::Initial).unwrap_or(false)
        });
        if lots == 0 {
            return 0;
        }
        let payment = per_lot * Decimal::from(lots);
        if long {
            // The keeper pays from its offer's collateral first.
            let used = Amount::round_down(payment).min(collateral);
            let account = &mut self.accounts[keeper as usize];
            account.usd_locked = account.usd_locked.minus(used).expect("collateral is part of the locked total");
            let offer = self.backstops.get_mut(&offer_id).expect("offer exists");
            offer.collateral = offer.collateral.minus(used).expect("used at most the collateral");
        }
        let index = self.index_price(&self.market(series).spec.underlying).value();
        let notional = Amount::round_up(index * self.market(series).contracts(lots));
        let lot_notional = index * lot.value();
        let stored = self.backstops.get_mut(&offer_id).expect("offer exists");
        stored.remaining_notional = stored.remaining_notional.minus(notional).unwrap_or(Amount::ZERO);
        let exhausted = !capacities_left(stored, lot_notional);
        self.commitment.touch_account(keeper);
        self.move_position(owner, keeper, series, lots, if long { payment } else { -payment });
        let market = self.market(series);
        events.push(Event::PositionLiquidated {
            account: self.accounts[owner as usize].address,
            series: market.spec.name.clone(),
            step: LiquidationStep::Backstop,
            contracts: if long { market.contracts(lots) } else { -market.contracts(lots) },
            counterparty: Some(keeper_address),
            price: Some(price),
            cash: if long { payment } else { -payment }.normalize(),
        });
        if exhausted {
            // Used up: its collateral goes back to its keeper.
            self.withdraw_backstop(keeper, offer_id, events);
        }
        lots
    }

    /// The side, limit price and its ticks of a book order closing
    /// `position`: within `book_band` of mark, rounded to the tick in the
    /// account's favour.
    fn book_close(&self, series: SeriesId, position: i64) -> Option<(Side, Price, u64)> {
        let mark = self.mark(series)?;
        let tick = self.market(series).tick;
        let band = self.liquidation.book_band;
        let (side, limit) = if position > 0 {
            let mark = to_decimal_up(mark, ASSET_SCALE).ok()?;
            (Side::Sell, ceil_to_tick(mark * (Decimal::ONE - band), tick).max(tick.value()))
        } else {
            let mark = to_decimal_down(mark, ASSET_SCALE).ok()?;
            (Side::Buy, floor_to_tick(mark * (Decimal::ONE + band), tick).max(tick.value()))
        };
        let limit = Price::new(limit, Field::Price).ok()?;
        Some((side, limit, self.market(series).ticks(limit).ok()?))
    }

    /// The limit of a book order closing `lots` of `position` that gives away
    /// no more than the account's equity less `owed` if it all fills at the
    /// limit, taker fees included: `band_limit` when that is affordable,
    /// otherwise mark less (a sale) or plus (a buy-back) that surplus per
    /// contract, rounded to the tick in the account's favour (beyond mark in
    /// its favour when the surplus is negative).
    fn affordable_book_limit(
        &self,
        owner: u64,
        series: SeriesId,
        position: i64,
        lots: u64,
        band_limit: Price,
        owed: Decimal,
    ) -> Option<(Price, u64)> {
        let market = self.market(series);
        let contracts = market.lot.value() * Decimal::from(lots);
        let change = if position > 0 { -(lots as i64) } else { lots as i64 };
        // The fee by notional bounds every fill's (each is also capped by its premium).
        let index = self.index_price(&market.spec.underlying).value();
        let fees = Amount::round_up(self.params.fees.taker_rate * index * contracts).value();
        let cash_at_band = if position > 0 { contracts } else { -contracts } * band_limit.value();
        if self.meets(owner, Some((series, change)), cash_at_band - fees - owed, Level::Solvent).ok()? {
            return Some((band_limit, market.ticks(band_limit).ok()?));
        }
        let equity = self.margin_figures(owner, &[], Decimal::ZERO).ok()?.equity;
        // Negative when the account cannot even pay the fees: then only a
        // price better than mark by them is affordable.
        let per_contract = (equity - owed - fees) / contracts;
        let mark = self.mark(series)?;
        let limit = if position > 0 {
            ceil_to_tick(to_decimal_up(mark, ASSET_SCALE).ok()? - per_contract, market.tick)
        } else {
            floor_to_tick(to_decimal_down(mark, ASSET_SCALE).ok()? + per_contract, market.tick)
        };
        // Never past the band's edge, whatever the rounding of mark.
        let limit = if position > 0 { limit.max(band_limit.value()) } else { limit.min(band_limit.value()) };
        let limit = Price::new(limit.max(market.tick.value()), Field::Price).ok()?;
        Some((limit, market.ticks(limit).ok()?))
    }

    /// Whether the book holds an order that an order of `side` limited at
    /// `limit_ticks` would trade with.
    fn book_crosses(&self, series: SeriesId, side: Side, limit_ticks: u64) -> bool {
        let market = self.market(series);
        match side {
            Side::Sell => market.book.best_bid().is_some_and(|(best, _)| best >= limit_ticks),
            Side::Buy => market.book.best_ask().is_some_and(|(best, _)| best <= limit_ticks),
        }
    }

    /// Whether a keeper's backstop offer or the book could take some of
    /// `owner`'s position in `series` now (before the finer checks of
    /// each: cash, margin, room).
    fn market_can_take(&self, owner: u64, series: SeriesId) -> bool {
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

    /// Backstop offers of the underlying of `series` from keepers other than `owner`.
    fn backstop_offers_for(&self, owner: u64, series: SeriesId) -> impl Iterator<Item = &crate::state::BackstopOffer> {
        let underlying = &self.market(series).spec.underlying;
        let address = self.accounts[owner as usize].address;
        self.backstops.values().filter(move |offer| offer.underlying == *underlying && offer.keeper != address)
    }

    /// An immediate-or-cancel, reduce-only order within the band around mark;
    /// a buy no larger than the account's cash can pay. Returns lots filled.
    fn close_in_book(
        &mut self,
        owner: u64,
        series: SeriesId,
        wanted: u64,
        owed: Decimal,
        events: &mut Vec<Event>,
    ) -> u64 {
        let position = self.accounts[owner as usize].position(series);
        // An order that cannot cross would only be accepted and cancelled:
        // after a crash most attempts find no bid in the band.
        let Some((side, band_limit, _)) =
            self.book_close(series, position).filter(|(side, _, ticks)| self.book_crosses(series, *side, *ticks))
        else {
            return 0;
        };
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
        let Some((_, limit_ticks)) = self
            .affordable_book_limit(owner, series, position, lots, band_limit, owed)
            .filter(|&(_, ticks)| self.book_crosses(series, side, ticks))
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
        let long = self.accounts[owner as usize].position(series) > 0;
        let lot = market.lot.value();
        let (Ok(mark_down), Ok(mark_up)) = (to_decimal_down(mark, ASSET_SCALE), to_decimal_up(mark, ASSET_SCALE))
        else {
            return 0;
        };
        let account_cash = self.free_usd(owner).value();
        let uncovered = self.uncovered(owner);
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
            let (cash, shortfall) = terms(lots);
            shortfall <= uncovered
                && cash <= fund_cash
                && self.meets(fund, Some((series, fund_lots(lots))), -cash, Level::Maintenance).unwrap_or(false)
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
            counterparty: Some(self.accounts[fund as usize].address),
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
        let long = self.accounts[owner as usize].position(series) > 0;
        let mut ranked: Vec<(Decimal, Address, u64, MarginFigures)> = Vec::new();
        for &other in &market.participants {
            let exposure = self.accounts[other as usize].exposure(series);
            let opposite = if long { exposure.position_lots < 0 } else { exposure.position_lots > 0 };
            if other == owner || !opposite {
                continue;
            }
            let Ok(figures) = self.margin_figures(other, &[], Decimal::ZERO) else { continue };
            let value = market.signed_contracts(exposure.position_lots) * mark_down;
            let score = adl_score(value - exposure.cost, exposure.cost, value, figures.equity);
            ranked.push((score, self.accounts[other as usize].address, other, figures));
        }
        ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let address = self.accounts[owner as usize].address;
        let mut closed = 0u64;
        for (_, counterparty, other, before) in ranked {
            if closed == wanted {
                break;
            }
            let held = self.accounts[other as usize].position(series).unsigned_abs();
            let mut lots = held.min(wanted - closed);
            let price = if long {
                // The counterparty buys back its short at mark, paying from free cash.
                let per_lot = mark_down * lot;
                if per_lot > Decimal::ZERO {
                    lots = lots.min(u64::try_from((self.free_usd(other).value() / per_lot).floor()).unwrap_or(0));
                }
                mark_down
            } else {
                // The bankruptcy price: mark less the account's negative
                // equity (not its cash: its other positions may be worth
                // something) spread over what is left; and no more lots than
                // its cash pays for at that price.
                let remaining_contracts = lot * Decimal::from(wanted - closed);
                let free = self.free_usd(owner).value();
                let floor = mark_up - self.uncovered(owner) / remaining_contracts;
                let price = mark_up
                    .min(floor.max(free / remaining_contracts))
                    .round_dp_with_strategy(ASSET_SCALE, rust_decimal::RoundingStrategy::ToZero);
                let per_lot = price * lot;
                if per_lot > Decimal::ZERO {
                    lots = lots.min(u64::try_from((free / per_lot).floor()).unwrap_or(0));
                }
                price
            };
            // The counterparty's cash for `k` lots, and its position change.
            let cash_for = |k: u64| {
                let paid = Amount::round_down(price * lot * Decimal::from(k)).value();
                if long { paid } else { -paid }
            };
            let change = |k: u64| if long { k as i64 } else { -(k as i64) };
            // A counterparty at or above maintenance margin stays there; any other stays solvent.
            let lots = largest_feasible(lots, |k| {
                let level = if before.below_maintenance() { Level::Solvent } else { Level::Maintenance };
                self.meets(other, Some((series, change(k))), -cash_for(k), level).unwrap_or(false)
            });
            if lots == 0 {
                continue;
            }
            let contracts = self.market(series).contracts(lots);
            let cash = cash_for(lots);
            self.move_position(owner, other, series, lots, cash);
            closed += lots;
            let insurance_paid =
                if long { Amount::ZERO } else { self.top_up_to_mark(owner, other, mark_down * contracts, -cash) };
            let market = self.market(series);
            if !insurance_paid.is_zero() {
                events.push(Event::InsuranceFundUsed {
                    account: address,
                    series: market.spec.name.clone(),
                    amount: insurance_paid,
                });
            }
            events.push(Event::Deleveraged {
                liquidated: address,
                counterparty,
                series: market.spec.name.clone(),
                contracts: if long { contracts } else { -contracts },
                price,
                insurance_paid,
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

    /// The insurance fund pays a deleveraged long what the bankrupt `owner`
    /// could not (`value_at_mark` less `paid`), as far as the fund's free
    /// cash goes and without making its equity negative: while the fund can
    /// pay, auto-deleveraging closes an honest position at mark and costs it
    /// nothing. Returns what the fund paid.
    fn top_up_to_mark(&mut self, owner: u64, counterparty: u64, value_at_mark: Decimal, paid: Decimal) -> Amount {
        let fund = self.insurance_fund;
        if owner == fund || counterparty == fund {
            return Amount::ZERO;
        }
        let missing = Amount::round_down((value_at_mark - paid).max(Decimal::ZERO));
        if missing.is_zero() {
            return missing;
        }
        let equity = self.margin_figures(fund, &[], Decimal::ZERO).map_or(Decimal::ZERO, |f| f.equity);
        let amount = missing.min(self.free_usd(fund)).min(Amount::round_down(equity.max(Decimal::ZERO)));
        if amount.is_zero() {
            return amount;
        }
        let fund_account = &mut self.accounts[fund as usize];
        fund_account.usd = fund_account.usd.minus(amount).expect("pays at most its free cash");
        let account = &mut self.accounts[counterparty as usize];
        account.usd = account.usd.plus(amount);
        self.commitment.touch_account(fund);
        self.commitment.touch_account(counterparty);
        self.risk_dirty.insert(fund);
        amount
    }

    /// The penalty: `penalty_rate` × the maintenance margin the liquidation
    /// freed, rounded up; capped at the account's free cash and, while it
    /// still holds positions, at its surplus over maintenance margin, so a
    /// penalty never puts it back below. `keeper_share` of it goes to the
    /// keepers in proportion to the notional each took (rounded down), the
    /// rest to the insurance fund. Returns what it charged.
    fn charge_penalty(
        &mut self,
        owner: u64,
        start: &MarginFigures,
        end: &MarginFigures,
        credit: &Credit,
        events: &mut Vec<Event>,
    ) -> Amount {
        let freed = (start.maintenance - end.maintenance).max(Decimal::ZERO);
        let nominal = Amount::round_up(self.liquidation.penalty_rate * freed);
        let mut cap = self.free_usd(owner).value();
        if !self.accounts[owner as usize].positions.is_empty() {
            cap = cap.min((end.equity - end.maintenance).max(Decimal::ZERO));
        }
        let charged = nominal.min(Amount::round_down(cap));
        if charged.is_zero() {
            return charged;
        }
        let pool = charged.value() * self.liquidation.keeper_share;
        let total: Decimal = credit.iter().map(|(_, notional)| *notional).sum();
        let mut keepers = Vec::new();
        if total > Decimal::ZERO {
            for (keeper, notional) in credit {
                let Some(keeper) = keeper else { continue };
                let amount = Amount::round_down(pool * notional / total);
                if !amount.is_zero() {
                    keepers.push((*keeper, amount));
                }
            }
        }
        let to_keepers = keepers.iter().fold(Amount::ZERO, |sum, (_, amount)| sum.plus(*amount));
        let insurance_amount = charged.minus(to_keepers).expect("keepers get at most the keeper share");
        let account = &mut self.accounts[owner as usize];
        account.usd = account.usd.minus(charged).expect("charged at most the free cash");
        for &(keeper, amount) in &keepers {
            let account = &mut self.accounts[keeper as usize];
            account.usd = account.usd.plus(amount);
            self.commitment.touch_account(keeper);
        }
        let fund = self.insurance_fund;
        let account = &mut self.accounts[fund as usize];
        account.usd = account.usd.plus(insurance_amount);
        self.commitment.touch_account(fund);
        self.commitment.touch_account(owner);
        self.risk_dirty.insert(owner);
        events.push(Event::LiquidationPenalty {
            account: self.accounts[owner as usize].address,
            total: charged,
            keepers: keepers
                .iter()
                .map(|(keeper, amount)| (self.accounts[*keeper as usize].address, *amount))
                .collect(),
            insurance_amount,
        });
        charged
    }

    /// Accounts with positions, most at risk first: (address, margin ratio,
    /// figures). Evaluates every indexed account; for queries, not blocks.
    pub fn at_risk_accounts(&self, limit: usize) -> Vec<(Address, Option<Decimal>, MarginFigures)> {
        let mut accounts: Vec<(Address, Option<Decimal>, MarginFigures)> = self
            .accounts
            .iter()
            .filter(|account| !account.positions.is_empty())
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
