//! The third step: the insurance fund takes what is left at mark, or at
//! the bankruptcy price, as far as its cash and margin allow; and it tops
//! deleveraged longs up to mark while it can pay.

use rust_decimal::Decimal;
use vanna_pricing::{to_decimal_down, to_decimal_up};

use super::largest_feasible;
use crate::events::{Event, LiquidationStep};
use crate::ids::SeriesId;
use crate::money::{ASSET_SCALE, Amount};
use crate::risk::Level;
use crate::state::State;

impl State {
    /// The insurance fund takes what is left at mark. When the account cannot
    /// pay to close a short at mark, it pays all its cash and the fund
    /// absorbs the rest: the bankruptcy price. The fund takes no more than
    /// its cash and maintenance margin allow. Returns lots absorbed.
    pub(super) fn close_to_insurance_fund(
        &mut self,
        owner: u64,
        series: SeriesId,
        wanted: u64,
        events: &mut Vec<Event>,
    ) -> u64 {
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

    /// The insurance fund pays a deleveraged long what the bankrupt `owner`
    /// could not (`value_at_mark` less `paid`), as far as the fund's free
    /// cash goes and without making its equity negative: while the fund can
    /// pay, auto-deleveraging closes an honest position at mark and costs it
    /// nothing. Returns what the fund paid.
    pub(super) fn top_up_to_mark(
        &mut self,
        owner: u64,
        counterparty: u64,
        value_at_mark: Decimal,
        paid: Decimal,
    ) -> Amount {
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
}
