//! The liquidation engine: `vanna-liquidation-rules-rules` executed on state,
//! inside `apply_block`, one module per step (`keepers`, `book`, `fund`,
//! `deleverage`, `penalty`), with `pass` choosing the accounts and `account`
//! liquidating one.
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

mod account;
mod book;
mod deleverage;
mod fund;
mod keepers;
mod pass;
mod penalty;

use rust_decimal::Decimal;

use crate::money::Price;

/// Rounds of end-of-block re-checks: liquidating one account can move others
/// (keepers, deleveraged counterparties), which are checked again.
pub(super) const MAX_RECHECK_ROUNDS: usize = 4;

/// Who took what from a liquidated account: underlying notional (contracts ×
/// index) per keeper (`None`: no keeper, the automatic pass), which splits
/// the keeper share of the penalty.
pub(super) type Credit = Vec<(Option<u64>, Decimal)>;

pub(super) fn credit_notional(credit: &mut Credit, keeper: Option<u64>, notional: Decimal) {
    match credit.iter_mut().find(|(k, _)| *k == keeper) {
        Some((_, total)) => *total += notional,
        None => credit.push((keeper, notional)),
    }
}

/// Which steps a position may go through.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Steps {
    /// Backstop offers and the book: a partial liquidation of a solvent account.
    Market,
    /// Then the insurance fund: raising cash for a settlement payment.
    MarketAndFund,
    /// Then auto-deleveraging: closing everything.
    All,
}

/// What the market steps of one close may still give away (a keeper's
/// discount, a book counterparty's edge, fees): the account's equity, a
/// lower bound from the float figures, less what it owes outside its
/// positions; worked out once, when first needed, and reduced by what each
/// step gave away, counted against the account (at mark rounded in its
/// disfavour). So giving away no more than it keeps the account's equity at
/// or above zero: nobody is paid out of money it does not have.
pub(super) struct Budget {
    owed: Decimal,
    left: Option<Decimal>,
}

impl Budget {
    pub(super) fn new(owed: Decimal) -> Budget {
        Budget { owed, left: None }
    }

    pub(super) fn left(&mut self, state: &crate::state::State, owner: u64) -> Decimal {
        // Unpriceable: nothing may be given away.
        *self.left.get_or_insert_with(|| state.equity_at_least(owner).unwrap_or(Decimal::ZERO) - self.owed)
    }

    pub(super) fn spend(&mut self, amount: Decimal) {
        if let Some(left) = &mut self.left {
            *left -= amount;
        }
    }
}

/// Whether an offer can still take at least one lot.
pub(super) fn capacities_left(offer: &crate::state::BackstopOffer, lot_notional: Decimal) -> bool {
    offer.remaining_notional.value() >= lot_notional
}

pub(super) fn floor_to_tick(value: Decimal, tick: Price) -> Decimal {
    ((value / tick.value()).floor() * tick.value()).normalize()
}

pub(super) fn ceil_to_tick(value: Decimal, tick: Price) -> Decimal {
    ((value / tick.value()).ceil() * tick.value()).normalize()
}

/// The largest `lots` in `0..=cap` for which `feasible` holds, given that the
/// feasible set is an interval starting at zero (margin is convex in size).
pub(super) fn largest_feasible(cap: u64, mut feasible: impl FnMut(u64) -> bool) -> u64 {
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
        let tick = Price::new(Decimal::new(5, 1), crate::error::Field::Price).unwrap();
        assert_eq!(floor_to_tick(Decimal::new(12349, 1), tick), Decimal::new(12345, 1));
        assert_eq!(ceil_to_tick(Decimal::new(12341, 1), tick), Decimal::new(12345, 1));
        assert_eq!(ceil_to_tick(Decimal::new(12340, 1), tick), Decimal::from(1234));
    }
}
