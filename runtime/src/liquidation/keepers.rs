//! Keepers' backstop offers: standing offers to take over liquidated
//! positions in one underlying, registered and withdrawn by transaction; and
//! the first step of a liquidation, which fills them, smallest discount first
//! and pro rata among equals, each within its keeper's cash and margin and
//! what the liquidated account can pay the discount for.

use rust_decimal::Decimal;
use vanna_liquidation_rules::pro_rata;
use vanna_pricing::{to_decimal_down, to_decimal_up};
use vanna_proto::v1 as wire;

use super::{Budget, Credit, capacities_left, ceil_to_tick, credit_notional, floor_to_tick, largest_feasible};
use crate::error::{Field, TxError};
use crate::events::{ActionOutcome, Event, LiquidationStep};
use crate::ids::SeriesId;
use crate::money::{ASSET_SCALE, Amount};
use crate::risk::Level;
use crate::state::{BackstopOffer, State};

impl State {
    /// Keeper backstop offers of the series' underlying, smallest discount
    /// first, pro rata by remaining capacity among equal discounts; what an
    /// offer cannot take (its keeper's cash or margin) goes to the others of
    /// the same discount before any worse one. Returns the lots taken.
    pub(super) fn close_to_backstops(
        &mut self,
        owner: u64,
        series: SeriesId,
        wanted: u64,
        budget: &mut Budget,
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
                        self.take_by_backstop(owner, series, id, share, long, mark, budget, events)
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
    pub(super) fn take_by_backstop(
        &mut self,
        owner: u64,
        series: SeriesId,
        offer_id: u64,
        share: u64,
        long: bool,
        mark: f64,
        budget: &mut Budget,
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
        let (Ok(mark_down), Ok(mark_up)) = (to_decimal_down(mark, ASSET_SCALE), to_decimal_up(mark, ASSET_SCALE))
        else {
            return 0;
        };
        let price = if long {
            floor_to_tick(mark_down * (Decimal::ONE - discount), tick)
        } else {
            ceil_to_tick(mark_up * (Decimal::ONE + discount), tick)
        };
        let per_lot = price * lot.value();
        // What each lot gives away, counted against the account.
        let loss_per_lot = lot.value() * if long { mark_up - price } else { price - mark_down };
        let payer_cash =
            if long { self.free_usd(keeper).value() + collateral.value() } else { self.free_usd(owner).value() };
        let mut cap = share;
        if per_lot > Decimal::ZERO {
            cap = cap.min(u64::try_from((payer_cash / per_lot).floor()).unwrap_or(u64::MAX));
        }
        if loss_per_lot > Decimal::ZERO {
            let affordable = budget.left(self, owner).max(Decimal::ZERO) / loss_per_lot;
            cap = cap.min(u64::try_from(affordable.floor()).unwrap_or(u64::MAX));
        }
        let keeper_lots = |lots: u64| if long { lots as i64 } else { -(lots as i64) };
        let lots = largest_feasible(cap, |lots| {
            let cash = if long { -per_lot } else { per_lot } * Decimal::from(lots);
            self.meets(keeper, Some((series, keeper_lots(lots))), cash, Level::Initial).unwrap_or(false)
        });
        if lots == 0 {
            return 0;
        }
        budget.spend(loss_per_lot * Decimal::from(lots));
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

    /// Backstop offers of the underlying of `series` from keepers other than `owner`.
    pub(super) fn backstop_offers_for(
        &self,
        owner: u64,
        series: SeriesId,
    ) -> impl Iterator<Item = &crate::state::BackstopOffer> {
        let underlying = &self.market(series).spec.underlying;
        let address = self.accounts[owner as usize].address;
        self.backstops.values().filter(move |offer| offer.underlying == *underlying && offer.keeper != address)
    }
}

impl State {
    pub(crate) fn register_backstop(
        &mut self,
        owner: u64,
        register: &wire::RegisterBackstop,
        events: &mut Vec<Event>,
    ) -> Result<ActionOutcome, TxError> {
        if owner == self.insurance_fund {
            return Err(TxError::SystemAccount("register a backstop offer"));
        }
        if !self.underlyings.contains_key(&register.underlying) {
            return Err(TxError::UnknownUnderlying(register.underlying.clone()));
        }
        let max_notional = Amount::parse(&register.max_notional, Field::Amount)?;
        let collateral = Amount::parse(&register.collateral, Field::Amount)?;
        if max_notional.is_zero() || collateral.is_zero() {
            return Err(TxError::NotPositive { field: Field::Amount });
        }
        let discount = crate::money::parse_decimal(&register.discount, Field::Amount)?;
        if discount.normalize().scale() > crate::money::ASSET_SCALE {
            return Err(TxError::TooPrecise { field: Field::Amount, max_decimals: crate::money::ASSET_SCALE });
        }
        let max = self.liquidation.max_backstop_discount;
        if discount > max {
            return Err(TxError::BackstopDiscountTooHigh { discount, max });
        }
        let account = &self.accounts[owner as usize];
        let max_offers = self.liquidation.max_offers_per_keeper;
        if account.backstop_offers.len() >= max_offers as usize {
            return Err(TxError::TooManyBackstopOffers { max: max_offers });
        }
        let free = account.usd.minus(account.usd_locked).expect("locks never exceed cash");
        if collateral > free {
            return Err(TxError::InsufficientFunds {
                asset: "USD",
                needed: collateral.value(),
                available: free.value(),
            });
        }
        if !account.exposures.is_empty() {
            self.check_initial_margin(owner, None, collateral.value(), "backstop offer")?;
        }
        let id = self.next_backstop_id;
        self.next_backstop_id += 1;
        let keeper = self.accounts[owner as usize].address;
        self.backstops.insert(
            id,
            BackstopOffer {
                id,
                keeper,
                underlying: register.underlying.clone(),
                remaining_notional: max_notional,
                discount: discount.normalize(),
                collateral,
            },
        );
        let account = &mut self.accounts[owner as usize];
        account.backstop_offers.insert(id);
        account.usd_locked = account.usd_locked.plus(collateral);
        self.commitment.touch_account(owner);
        self.commitment.touch_global();
        events.push(Event::BackstopRegistered {
            offer: id,
            keeper,
            underlying: register.underlying.clone(),
            max_notional,
            discount: discount.normalize(),
            collateral,
        });
        Ok(ActionOutcome::BackstopRegistered { offer: id })
    }

    pub(crate) fn cancel_backstop(
        &mut self,
        owner: u64,
        cancel: &wire::CancelBackstop,
        events: &mut Vec<Event>,
    ) -> Result<ActionOutcome, TxError> {
        if !self.accounts[owner as usize].backstop_offers.contains(&cancel.offer_id) {
            return Err(TxError::UnknownBackstopOffer(cancel.offer_id));
        }
        self.withdraw_backstop(owner, cancel.offer_id, events);
        Ok(ActionOutcome::BackstopCancelled { offer: cancel.offer_id })
    }

    /// Removes an offer of `owner` and unlocks what is left of its collateral.
    pub(crate) fn withdraw_backstop(&mut self, owner: u64, id: u64, events: &mut Vec<Event>) {
        let offer = self.backstops.remove(&id).expect("the keeper lists its offer");
        let account = &mut self.accounts[owner as usize];
        account.backstop_offers.remove(&id);
        account.usd_locked =
            account.usd_locked.minus(offer.collateral).expect("collateral is part of the locked total");
        self.commitment.touch_account(owner);
        events.push(Event::BackstopCancelled {
            offer: id,
            keeper: offer.keeper,
            collateral_released: offer.collateral,
        });
    }
}
