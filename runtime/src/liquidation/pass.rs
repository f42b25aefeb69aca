//! The pass of `begin_block`, the re-check of `end_block`, the keeper's `Liquidate`
//! transaction and the at-risk query: which accounts are evaluated, and in
//! what order the ones below maintenance margin are liquidated.

use rust_decimal::Decimal;
use vanna_pricing::decimal_to_f64;

use super::MAX_RECHECK_ROUNDS;
use crate::error::TxError;
use crate::events::Event;
use crate::ids::{Address, SeriesId};
use crate::risk::MarginFigures;
use crate::state::State;

impl State {
    pub(super) fn volatilities(&self, symbol: &str) -> Vec<(u64, f64)> {
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
    pub(super) fn liquidate_below_maintenance(
        &mut self,
        candidates: impl IntoIterator<Item = u64>,
        events: &mut Vec<Event>,
    ) {
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
