//! Expiry settlement. In the first block at or after a series' expiry, after
//! the oracle update and before any transaction, the series is cash-settled
//! and retired:
//!
//! 1. Settlement price: the oracle's TWAP of the index over the
//!    `twap_window_ms` before expiry; when the history does not cover that
//!    window (the chain was down, or the window reaches before genesis), the
//!    index at settlement time, and the event says so. It is then rounded to
//!    the underlying's tick (half to even, neutral between longs and shorts),
//!    so that intrinsic value × lot size is exact in the quote asset's six
//!    decimals: tick and lot decimals add up to at most six (genesis checks)
//!    and so do strike and lot decimals (listing checks).
//! 2. Open orders in the series are cancelled (`CancelReason::Settled`).
//! 3. Each position is paid intrinsic value per lot × lots: calls
//!    max(S − K, 0), puts max(K − S, 0); longs receive, shorts pay. Every lot
//!    pays the same exact amount and positions sum to zero, so the payouts sum
//!    to exactly zero and no rounding is needed. Shorts are margined, not
//!    cash-secured, so one may owe more than its free cash: its open orders
//!    and backstop offers are withdrawn to free their locks, its long
//!    positions are sold (backstop offers, the book, the insurance fund), it
//!    pays what it has, the insurance fund covers the shortfall as far as it
//!    can, and only
//!    what is still missing is cut from the longs' payouts, pro rata by
//!    contracts, rounded down (the dust goes to the insurance fund). Payouts
//!    still sum to zero and every balance stays non-negative.
//! 4. The series keeps its listing with its settlement price committed, and
//!    takes no orders (it has expired).

use std::collections::BTreeSet;
use std::sync::Arc;

use rust_decimal::{Decimal, RoundingStrategy};

use crate::error::Field;
use crate::events::{CancelReason, Event};
use crate::ids::{OrderId, SeriesId};
use crate::instrument::OptionKind;
use crate::money::{Amount, Price};
use crate::oracle::oracle_symbol;
use crate::state::State;

/// Intrinsic value of one contract at settlement price `spot`.
pub fn intrinsic_value(kind: OptionKind, strike: Decimal, spot: Decimal) -> Decimal {
    match kind {
        OptionKind::Call => (spot - strike).max(Decimal::ZERO),
        OptionKind::Put => (strike - spot).max(Decimal::ZERO),
    }
}

/// Rounds a settlement price to the tick, half to even; never below one tick,
/// since a price is positive (an index below half a tick settles at one tick).
pub fn round_to_tick(price: Decimal, tick: Price) -> Price {
    let ticks = (price / tick.value()).round_dp_with_strategy(0, RoundingStrategy::MidpointNearestEven);
    let rounded = (ticks.max(Decimal::ONE) * tick.value()).normalize();
    Price::new(rounded, Field::Price).expect("a whole number of ticks is a valid price")
}

impl State {
    /// Settles every unsettled series whose expiry is at or before block time,
    /// earliest expiry first; returns the underlyings of those it settled.
    pub(crate) fn settle_expired(&mut self, events: &mut Vec<Event>) -> BTreeSet<String> {
        let mut underlyings = BTreeSet::new();
        while let Some(&(expiry_ms, series)) = self.unsettled.first() {
            if expiry_ms > self.time_ms {
                break;
            }
            self.unsettled.pop_first();
            underlyings.insert(self.market(series).spec.underlying.clone());
            self.settle_series(series, events);
        }
        underlyings
    }

    fn settle_series(&mut self, series: SeriesId, events: &mut Vec<Event>) {
        let market = self.market(series);
        let spec = market.spec.clone();
        let (raw, from_twap) = match self.oracle.settlement_price(&oracle_symbol(&spec.underlying), spec.expiry_ms) {
            Some(twap) => (twap, true),
            None => (self.index_price(&spec.underlying).value(), false),
        };
        let price = round_to_tick(raw, market.tick);
        let per_lot = Amount::new(
            intrinsic_value(spec.kind, spec.strike.value(), price.value()) * market.lot.value(),
            Field::Amount,
        )
        .expect("tick, strike and lot decimals make intrinsic value per lot exact in six decimals");
        let participants: Vec<u64> = market.participants.iter().copied().collect();

        for &owner in &participants {
            let orders: Vec<OrderId> = self.accounts[owner as usize]
                .open_orders
                .iter()
                .copied()
                .filter(|id| self.orders[id].series == series)
                .collect();
            for id in orders {
                self.remove_order(id, CancelReason::Settled, events);
            }
        }

        // Shorts pay first, as far as their cash goes.
        let mut payouts = Vec::new();
        let mut collected = Amount::ZERO;
        let mut owed_to_longs = Amount::ZERO;
        let mut longs = Vec::new();
        for owner in participants {
            let lots = self.accounts[owner as usize].exposure(series).position_lots;
            if lots == 0 {
                continue;
            }
            self.update_exposure(owner, series, |exposure| exposure.trade(-lots, Decimal::ZERO));
            let amount = per_lot.times(lots.unsigned_abs());
            if lots > 0 {
                owed_to_longs = owed_to_longs.plus(amount);
                longs.push((owner, lots.unsigned_abs(), amount));
                continue;
            }
            let paid = self.collect_from_short(owner, &spec.name, amount, events);
            collected = collected.plus(paid);
            // Negated only when non-zero, so a worthless short shows 0, not -0.
            let address = self.accounts[owner as usize].address;
            payouts.push((address, if paid.is_zero() { Decimal::ZERO } else { -paid.value() }));
        }
        // The insurance fund tops up what the shorts could not pay, as far
        // as its cash goes and without making it insolvent.
        let shortfall = owed_to_longs.minus(collected).expect("shorts owe exactly what longs are owed");
        let fund = self.insurance_fund;
        let fund_equity = self.margin_figures(fund, &[], Decimal::ZERO).map_or(Decimal::ZERO, |f| f.equity);
        let insurance_paid = shortfall.min(self.free_usd(fund)).min(Amount::round_down(fund_equity.max(Decimal::ZERO)));
        let fund_account = &mut self.accounts[fund as usize];
        fund_account.usd = fund_account.usd.minus(insurance_paid).expect("pays at most its free cash");
        self.commitment.touch_account(fund);
        self.risk_dirty.insert(fund);
        let available = collected.plus(insurance_paid);
        let haircut = owed_to_longs.minus(available).expect("collected at most what was owed");
        // Longs: in full, or pro rata by contracts, rounded down, when something is missing.
        let total_long_lots: u64 = longs.iter().map(|(_, lots, _)| lots).sum();
        let mut distributed = Amount::ZERO;
        for (owner, lots, amount) in longs {
            let payout = if haircut.is_zero() {
                amount
            } else {
                Amount::round_down(available.value() * Decimal::from(lots) / Decimal::from(total_long_lots))
            };
            distributed = distributed.plus(payout);
            let account = &mut self.accounts[owner as usize];
            account.usd = account.usd.plus(payout);
            payouts.push((account.address, payout.value()));
        }
        let dust = available.minus(distributed).expect("pro rata shares round down");
        let fund_account = &mut self.accounts[fund as usize];
        fund_account.usd = fund_account.usd.plus(dust);
        if !shortfall.is_zero() {
            events.push(Event::SettlementShortfall { series: spec.name.clone(), shortfall, insurance_paid, haircut });
        }
        payouts.sort_unstable_by_key(|(address, _)| *address);
        let total: Decimal = payouts.iter().map(|(_, payout)| payout).sum();
        let fund_net = insurance_paid.value() - dust.value();
        assert_eq!(total, fund_net, "settlement payouts of {} sum to what the insurance fund added", spec.name);

        let market = &mut self.markets[series.0 as usize];
        market.settled_at = Some(price);
        market.participants.clear();
        self.commitment.touch_series(series);
        events.push(Event::SeriesSettled { series: spec.name, settlement_price: price, from_twap, payouts });
    }
}

impl State {
    /// Collects `owed` from a short of an expiring series (whose position
    /// is already closed) and returns what it paid. When its free cash does
    /// not cover it, its orders and offers are withdrawn and its longs sold
    /// at this block's marks; if it still cannot pay it is in default: it
    /// pays all it has, and every position it still holds is handed on
    /// (whatever that raises pays too), so the longs it owes are cut only
    /// once it has nothing left.
    fn collect_from_short(&mut self, owner: u64, series: &Arc<str>, owed: Amount, events: &mut Vec<Event>) -> Amount {
        let mut paid = Amount::ZERO;
        let pay = |state: &mut State, paid: &mut Amount| {
            let account = &mut state.accounts[owner as usize];
            let amount = owed.minus(*paid).expect("pays at most what it owes").min(account.usd);
            account.usd = account.usd.minus(amount).expect("pays at most its cash");
            *paid = paid.plus(amount);
        };
        if self.free_usd(owner) < owed {
            self.release_locks(owner, CancelReason::SettlementPayment, events);
        }
        if self.free_usd(owner) >= owed {
            pay(self, &mut paid);
            return paid;
        }
        let equity = self.margin_figures(owner, &[], Decimal::ZERO).ok().map(|f| f.equity - owed.value());
        // Its other positions are worth something: sell its longs before anyone else pays.
        self.raise_cash(owner, owed, events);
        pay(self, &mut paid);
        let mut positions_left = 0;
        // Twice: handing on a long raises cash that pays, then what is left goes.
        for _ in 0..2 {
            if paid == owed || self.accounts[owner as usize].positions.is_empty() {
                break;
            }
            let still_owed = owed.minus(paid).expect("paid at most what it owes");
            positions_left = self.hand_on_positions(owner, still_owed, events);
            pay(self, &mut paid);
        }
        let account = self.accounts[owner as usize].address;
        events.push(Event::SettlementSales { account, series: series.clone(), owed, paid, equity, positions_left });
        paid
    }

    /// USD not locked by orders or backstop offers.
    pub(crate) fn free_usd(&self, owner: u64) -> Amount {
        let account = &self.accounts[owner as usize];
        account.usd.minus(account.usd_locked).expect("locks never exceed cash")
    }

    /// Cancels every open order (for `reason`) and backstop offer of `owner`,
    /// unlocking their USD.
    pub(crate) fn release_locks(&mut self, owner: u64, reason: CancelReason, events: &mut Vec<Event>) {
        let orders: Vec<OrderId> = self.accounts[owner as usize].open_orders.iter().copied().collect();
        for id in orders {
            self.remove_order(id, reason, events);
        }
        let offers: Vec<u64> = self.accounts[owner as usize].backstop_offers.iter().copied().collect();
        for id in offers {
            self.withdraw_backstop(owner, id, events);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn price(text: &str) -> Price {
        Price::new(text.parse().unwrap(), Field::Price).unwrap()
    }

    #[test]
    fn intrinsic_value_is_never_negative() {
        let d = |text: &str| text.parse::<Decimal>().unwrap();
        assert_eq!(intrinsic_value(OptionKind::Call, d("100000"), d("101234.5")), d("1234.5"));
        assert_eq!(intrinsic_value(OptionKind::Call, d("100000"), d("99000")), Decimal::ZERO);
        assert_eq!(intrinsic_value(OptionKind::Put, d("100000"), d("99000")), d("1000"));
        assert_eq!(intrinsic_value(OptionKind::Put, d("100000"), d("100000.5")), Decimal::ZERO);
    }

    #[test]
    fn settlement_prices_round_to_the_tick_half_to_even() {
        let tick = price("0.5");
        assert_eq!(round_to_tick("97000.25".parse().unwrap(), tick), price("97000"));
        assert_eq!(round_to_tick("97000.75".parse().unwrap(), tick), price("97001"));
        assert_eq!(round_to_tick("97000.26".parse().unwrap(), tick), price("97000.5"));
        assert_eq!(round_to_tick("0.1".parse().unwrap(), tick), tick);
    }
}
