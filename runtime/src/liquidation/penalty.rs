//! The penalty of one liquidation, split between keepers and the fund.

use rust_decimal::Decimal;

use super::Credit;
use crate::events::Event;
use crate::money::Amount;
use crate::risk::MarginFigures;
use crate::state::State;

impl State {
    /// The penalty: `penalty_rate` × the maintenance margin the liquidation
    /// freed, rounded up; capped at the account's free cash and, while it
    /// still holds positions, at its surplus over maintenance margin, so a
    /// penalty never puts it back below. `keeper_share` of it goes to the
    /// keepers in proportion to the notional each took (rounded down), the
    /// rest to the insurance fund. Returns what it charged.
    pub(super) fn charge_penalty(
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
}
