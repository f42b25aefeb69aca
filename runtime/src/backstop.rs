//! Keeper backstop offers: standing offers to take over liquidated positions
//! in one underlying, registered and withdrawn by transaction. The liquidation
//! engine (`liquidate`) fills them.

use vanna_proto::v1 as wire;

use crate::error::{Field, TxError};
use crate::events::{ActionOutcome, Event};
use crate::money::Amount;
use crate::state::{BackstopOffer, State};

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
