//! The last step: auto-deleveraging of opposite positions, highest score first.

use rust_decimal::Decimal;
use vanna_liquidation_rules::adl_score;
use vanna_pricing::{decimal_to_f64, to_decimal_down, to_decimal_up};

use super::largest_feasible;
use crate::events::{Event, LiquidationStep};
use crate::ids::{Address, SeriesId};
use crate::money::{ASSET_SCALE, Amount};
use crate::risk::Level;
use crate::state::State;

impl State {
    /// Auto-deleveraging: opposite positions, most profitable and leveraged
    /// first, take what is left at the bankruptcy price: a short is bought
    /// back at most at mark with whatever cash the account has left, a long
    /// is sold at mark. No counterparty is left with negative equity or cash.
    /// Returns lots closed.
    pub(super) fn deleverage(&mut self, owner: u64, series: SeriesId, wanted: u64, events: &mut Vec<Event>) -> u64 {
        let Some(mark) = self.mark(series) else { return 0 };
        let (Ok(mark_down), Ok(mark_up)) = (to_decimal_down(mark, ASSET_SCALE), to_decimal_up(mark, ASSET_SCALE))
        else {
            return 0;
        };
        let market = self.market(series);
        let lot = market.lot.value();
        let long = self.accounts[owner as usize].position(series) > 0;
        // A short that cannot pay for one lot at its bankruptcy price closes
        // nothing whoever is ranked first: skip ranking every opposite holder.
        if !long && self.short_terms(owner, mark_up, lot, wanted).1 == 0 {
            return 0;
        }
        // A short buying back pays at mark from its free cash: one that
        // cannot pay for a lot takes nothing whenever its turn comes.
        let buy_back_lot = mark_down * lot;
        let marks = self.marks_by_series();
        let mut ranked = Vec::with_capacity(market.participants.len());
        // Deleveraging is rare: the opposite side is found among the
        // participants rather than kept in sets that every closed position
        // would have to update.
        for &other in &market.participants {
            let lots = self.accounts[other as usize].position(series);
            let opposite = if long { lots < 0 } else { lots > 0 };
            if !opposite || other == owner || (long && self.free_usd(other).value() < buy_back_lot) {
                continue;
            }
            let exposure = self.accounts[other as usize].exposure(series);
            let Some(equity) = self.equity_at_marks(other, &marks) else { continue };
            let value = decimal_to_f64(market.signed_contracts(exposure.position_lots)) * mark;
            let cost = decimal_to_f64(exposure.cost);
            let score = adl_score(value - cost, cost, value, equity);
            ranked.push(Ranked { score, address: self.accounts[other as usize].address, owner: other });
        }
        // Only the first few are used: a heap orders them on demand instead
        // of sorting every opposite holder.
        let mut ranked = std::collections::BinaryHeap::from(ranked);
        let address = self.accounts[owner as usize].address;
        let mut closed = 0u64;
        while let Some(Ranked { address: counterparty, owner: other, .. }) = ranked.pop() {
            if closed == wanted {
                break;
            }
            let held = self.accounts[other as usize].position(series).unsigned_abs();
            let mut lots = held.min(wanted - closed);
            let price = if long {
                // The counterparty buys back its short at mark, paying from free cash.
                if buy_back_lot > Decimal::ZERO {
                    lots = lots.min(u64::try_from((self.free_usd(other).value() / buy_back_lot).floor()).unwrap_or(0));
                }
                mark_down
            } else {
                let (price, affordable) = self.short_terms(owner, mark_up, lot, wanted - closed);
                lots = lots.min(affordable);
                price
            };
            // The counterparty's cash for `k` lots, and its position change.
            let cash_for = |k: u64| {
                let paid = Amount::round_down(price * lot * Decimal::from(k)).value();
                if long { paid } else { -paid }
            };
            let change = |k: u64| if long { k as i64 } else { -(k as i64) };
            // A counterparty at or above maintenance margin stays there; any other stays solvent.
            let below_maintenance = !self.meets(other, None, Decimal::ZERO, Level::Maintenance).unwrap_or(false);
            let lots = largest_feasible(lots, |k| {
                let level = if below_maintenance { Level::Solvent } else { Level::Maintenance };
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

    /// What a short `owner` pays to have `remaining` lots bought back: the
    /// bankruptcy price (mark less the account's negative equity, not its
    /// cash, since its other positions may be worth something, spread over
    /// what is left, never above mark) and how many lots its cash pays for.
    fn short_terms(&self, owner: u64, mark_up: Decimal, lot: Decimal, remaining: u64) -> (Decimal, u64) {
        let remaining_contracts = lot * Decimal::from(remaining);
        let free = self.free_usd(owner).value();
        let floor = mark_up - self.uncovered(owner) / remaining_contracts;
        let price = mark_up
            .min(floor.max(free / remaining_contracts))
            .round_dp_with_strategy(ASSET_SCALE, rust_decimal::RoundingStrategy::ToZero);
        let per_lot = price * lot;
        let affordable =
            if per_lot > Decimal::ZERO { u64::try_from((free / per_lot).floor()).unwrap_or(0) } else { u64::MAX };
        (price, affordable)
    }
}

/// An opposite holder in deleveraging order: the highest score first, then
/// the lowest address.
struct Ranked {
    score: f64,
    address: Address,
    owner: u64,
}

impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.score.total_cmp(&other.score).then(other.address.cmp(&self.address))
    }
}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}

impl Eq for Ranked {}
