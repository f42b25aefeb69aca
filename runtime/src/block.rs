//! `apply_block`: the one entry point the node calls for each finalized block.
//! Transactions are applied in order; each gets a receipt; the block ends with
//! the new state root.

use serde::Serialize;
use vanna_merkle::Hash;
use vanna_proto::v1 as wire;
use vanna_proto::v1::action::Kind;

use vanna_crypto::PublicKey;
use vanna_types::envelope::Decoded;

use crate::error::{Field, TxError};
use crate::events::{ActionOutcome, ActionResult, Asset, CancelReason, Event, Receipt, TxStatus};
use crate::ids::{Address, OrderId, SeriesId};
use crate::limits::MAX_TRANSACTIONS_PER_BLOCK;
use crate::money::Amount;
use crate::staking::{EvidenceRecord, StakingAction};
use crate::state::State;
use crate::trading::{OrderRequest, TimeInForce, parse_lots, parse_order, parse_ticks};
use crate::tx::transaction_hash;

/// What consensus tells the runtime about a block.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BlockContext {
    pub height: u64,
    /// Block time in milliseconds since the Unix epoch; never decreases.
    pub time_ms: u64,
    /// Consensus keys of the validators whose signatures finalized the
    /// previous block, for downtime accounting; `None` skips it (tools only).
    #[serde(skip)]
    pub signers: Option<Vec<[u8; 48]>>,
    /// Evidence of equivocation, verified by consensus, to slash and jail.
    pub evidence: Vec<EvidenceRecord>,
    /// Encoded `SignedOracleReport`s the proposer chose, verified and applied
    /// before the block's transactions.
    #[serde(serialize_with = "hex_reports")]
    pub oracle_reports: Vec<Vec<u8>>,
}

fn hex_reports<S: serde::Serializer>(reports: &[Vec<u8>], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(reports.iter().map(hex::encode))
}

impl BlockContext {
    /// The next block after `state`, `step_ms` later, with no signing record or evidence.
    pub fn after(state: &State, step_ms: u64) -> Self {
        BlockContext { height: state.height + 1, time_ms: state.time_ms + step_ms, ..BlockContext::default() }
    }
}

#[derive(Debug, Serialize)]
pub struct BlockOutput {
    pub receipts: Vec<Receipt>,
    pub events: Vec<Event>,
    #[serde(serialize_with = "hex_hash")]
    pub state_root: Hash,
}

fn hex_hash<S: serde::Serializer>(hash: &Hash, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&hex::encode(hash))
}

/// A block the runtime refuses as a whole, before anything changes: consensus
/// must never produce one, so a node that meets it halts rather than guess.
/// (A transaction's refusal is a [`TxError`] in its receipt instead.)
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    #[error(
        "block context height {height} time {time_ms} ms does not follow height {last_height} time {last_time_ms} ms"
    )]
    OutOfOrder { height: u64, time_ms: u64, last_height: u64, last_time_ms: u64 },
    #[error("block carries {count} transactions, more than the limit of {max}")]
    TooManyTransactions { count: usize, max: usize },
    #[error("block carries {count} oracle reports, more than the limit of {max}")]
    TooManyOracleReports { count: usize, max: usize },
}

/// Applies one block: expires good-til-time orders, applies each transaction,
/// and commits. A context that does not follow the previous block (height not
/// +1, time going backwards) or too many transactions is refused before
/// anything changes: consensus must never produce one.
pub fn apply_block(
    state: &mut State,
    context: &BlockContext,
    transactions: &[Vec<u8>],
) -> Result<BlockOutput, BlockError> {
    apply_block_with(state, context, transactions, &|_| false)
}

/// [`apply_block`] for a node that has already verified some transactions'
/// signatures (at mempool admission): `verified(hash)` says whether the
/// signature of the transaction with that hash was checked, and is then not
/// checked again, so each validator verifies each signature once. Every other
/// envelope check still runs. The outcome is the one [`apply_block`] gives,
/// provided `verified` only names transactions whose signature does verify.
pub fn apply_block_with(
    state: &mut State,
    context: &BlockContext,
    transactions: &[Vec<u8>],
    verified: &dyn Fn(&[u8; 32]) -> bool,
) -> Result<BlockOutput, BlockError> {
    if transactions.len() > MAX_TRANSACTIONS_PER_BLOCK {
        return Err(BlockError::TooManyTransactions { count: transactions.len(), max: MAX_TRANSACTIONS_PER_BLOCK });
    }
    let mut events = state.begin_block(context)?;
    let receipts = transactions
        .iter()
        .map(|bytes| {
            let hash = transaction_hash(bytes);
            state.apply_transaction_with(bytes, hash, verified(&hash), &mut events)
        })
        .collect();
    state.end_block(context, &mut events);
    let state_root = state.state_root();
    Ok(BlockOutput { receipts, events, state_root })
}

/// An envelope that passed every check: signature, chain id, nonce.
struct Admitted {
    owner: u64,
    public_key: Option<PublicKey>,
    actions: Vec<wire::Action>,
}

impl State {
    /// The first step of `apply_block`: moves to the block's height and time,
    /// applies evidence and the oracle reports, and removes good-til-time
    /// orders that expired. Exposed on its own, with
    /// `apply_transaction` and `state_root`, for benchmarks that time each step.
    pub fn begin_block(&mut self, context: &BlockContext) -> Result<Vec<Event>, BlockError> {
        if context.height != self.height + 1 || context.time_ms < self.time_ms {
            return Err(BlockError::OutOfOrder {
                height: context.height,
                time_ms: context.time_ms,
                last_height: self.height,
                last_time_ms: self.time_ms,
            });
        }
        crate::oracle::check_report_count(&context.oracle_reports)?;
        self.height = context.height;
        self.time_ms = context.time_ms;
        self.commitment.touch_global();
        let mut events = Vec::new();
        for evidence in &context.evidence {
            self.apply_evidence(evidence, &mut events);
        }
        // Prices move before any transaction so that everything after them in
        // the block (settlement, orders, later liquidation) sees one index.
        self.apply_oracle_reports(&context.oracle_reports, &mut events);
        // Marks at this block's index, time and surface before anything is
        // priced: settlement may sell a defaulting short's other positions.
        self.rebuild_margin_tables();
        for symbol in self.settle_expired(&mut events) {
            // The retired series leave their tables.
            self.rebuild_margin_tables_of(&symbol);
        }
        // Expired orders are gone before the pass can trade with them.
        self.expire_orders(&mut events);
        // Same block as the price: before any order can trade against stale risk.
        self.liquidation_pass(&mut events);
        Ok(events)
    }

    /// The last step before the root: downtime accounting, fee rewards to the
    /// active set, and at an epoch boundary the next active set.
    pub fn end_block(&mut self, context: &BlockContext, events: &mut Vec<Event>) {
        self.recheck_changed_accounts(events);
        self.end_staking_block(context.signers.as_deref(), events);
    }

    fn expire_orders(&mut self, events: &mut Vec<Event>) {
        while let Some(&(expiry, id)) = self.gtt_expiries.first() {
            if expiry > self.time_ms {
                break;
            }
            self.remove_order(id, CancelReason::Expired, events);
        }
    }

    /// Applies one signed transaction and returns its receipt.
    pub fn apply_transaction(&mut self, bytes: &[u8], events: &mut Vec<Event>) -> Receipt {
        self.apply_transaction_with(bytes, transaction_hash(bytes), false, events)
    }

    /// Applies one signed transaction whose hash is `tx_hash`, skipping the
    /// signature check when `signature_verified` (see [`apply_block_with`]).
    fn apply_transaction_with(
        &mut self,
        bytes: &[u8],
        tx_hash: [u8; 32],
        signature_verified: bool,
        events: &mut Vec<Event>,
    ) -> Receipt {
        let mut receipt =
            Receipt { tx_hash, sender: None, nonce: None, status: TxStatus::Included { actions: Vec::new() } };
        let admitted = match self.admit(bytes, signature_verified, &mut receipt) {
            Ok(admitted) => admitted,
            Err(error) => {
                receipt.status = TxStatus::Rejected { error };
                return receipt;
            }
        };
        let account = &mut self.accounts[admitted.owner as usize];
        account.nonce += 1;
        if let Some(key) = admitted.public_key {
            account.public_key = Some(key);
        }
        self.commitment.touch_account(admitted.owner);
        let results = admitted
            .actions
            .iter()
            .map(|action| match self.apply_action(admitted.owner, action, events) {
                Ok(outcome) => ActionResult::Ok(outcome),
                Err(error) => ActionResult::Failed { error },
            })
            .collect();
        receipt.status = TxStatus::Included { actions: results };
        receipt
    }

    /// The envelope checks, cheapest first: the stateless steps of
    /// [`Decoded`] (shared with the node's `open_envelope`) with the account's
    /// existence, its cached key and its nonce between them. Changes nothing.
    fn admit(&self, bytes: &[u8], signature_verified: bool, receipt: &mut Receipt) -> Result<Admitted, TxError> {
        let decoded = Decoded::decode(bytes)?;
        let sender = decoded.sender();
        receipt.sender = Some(sender);
        receipt.nonce = Some(decoded.nonce());
        decoded.check_chain_id(&self.params.chain_id)?;
        let owner = *self.account_index.get(&sender).ok_or(TxError::UnknownAccount(sender))?;
        let account = &self.accounts[owner as usize];
        // Reuse the parsed key when the account has signed before.
        let (key, new_key) = match &account.public_key {
            Some(known) if known.compressed().as_slice() == decoded.public_key_bytes() => (known.clone(), false),
            _ => (decoded.public_key()?, true),
        };
        if !signature_verified {
            decoded.verify_signature(&key)?;
        }
        let nonce = decoded.nonce();
        if nonce < account.nonce {
            return Err(TxError::StaleNonce { account: sender, expected: account.nonce, got: nonce });
        }
        if nonce > account.nonce {
            return Err(TxError::FutureNonce { account: sender, expected: account.nonce, got: nonce });
        }
        decoded.check_action_count()?;
        Ok(Admitted { owner, public_key: new_key.then_some(key), actions: decoded.into_actions() })
    }

    fn apply_action(
        &mut self,
        owner: u64,
        action: &wire::Action,
        events: &mut Vec<Event>,
    ) -> Result<ActionOutcome, TxError> {
        let kind = action.kind.as_ref().ok_or_else(|| TxError::Malformed("action has no kind".into()))?;
        match kind {
            Kind::Transfer(transfer) => self.transfer(owner, transfer, events),
            Kind::PlaceOrder(order) => {
                let request = parse_order(self, order)?;
                self.place_order(owner, &request, None, events).map(ActionOutcome::Order)
            }
            Kind::CancelOrder(cancel) => {
                let id = self.resolve_order(owner, cancel.order.as_ref())?;
                self.remove_order(id, CancelReason::User, events);
                Ok(ActionOutcome::Cancelled { orders: 1 })
            }
            Kind::CancelAll(cancel) => self.cancel_all(owner, cancel, events),
            Kind::ReplaceOrder(replace) => self.replace_order(owner, replace, events),
            Kind::ListSeries(list) => {
                self.require_authority(owner, "list series")?;
                let id = self.list_series(&list.series)?;
                // The new series needs its row in the margin tables now, not next block.
                let underlying = self.market(id).spec.underlying.clone();
                self.rebuild_margin_tables_of(&underlying);
                self.note_listed_series(id);
                let spec = &self.market(id).spec;
                events.push(Event::SeriesListed { series: spec.name.clone(), expiry_ms: spec.expiry_ms });
                Ok(ActionOutcome::SeriesListed)
            }
            Kind::RegisterValidator(register) => self.staking_action(owner, StakingAction::Register(register), events),
            Kind::EditValidator(edit) => self.staking_action(owner, StakingAction::Edit(edit), events),
            Kind::Delegate(delegate) => self.staking_action(owner, StakingAction::Delegate(delegate), events),
            Kind::Undelegate(undelegate) => self.staking_action(owner, StakingAction::Undelegate(undelegate), events),
            Kind::Redelegate(redelegate) => self.staking_action(owner, StakingAction::Redelegate(redelegate), events),
            Kind::WithdrawUnbonded(_) => self.staking_action(owner, StakingAction::WithdrawUnbonded, events),
            Kind::ClaimRewards(claim) => self.staking_action(owner, StakingAction::ClaimRewards(claim), events),
            Kind::Unjail(_) => self.staking_action(owner, StakingAction::Unjail, events),
            Kind::RegisterBackstop(register) => self.register_backstop(owner, register, events),
            Kind::CancelBackstop(cancel) => self.cancel_backstop(owner, cancel, events),
            Kind::Liquidate(liquidate) => self.liquidate_by_keeper(owner, &liquidate.account, events),
        }
    }

    fn require_authority(&self, owner: u64, what: &'static str) -> Result<(), TxError> {
        if self.accounts[owner as usize].address != self.params.listing_authority {
            return Err(TxError::NotAuthorized(what));
        }
        Ok(())
    }

    fn transfer(
        &mut self,
        owner: u64,
        transfer: &wire::Transfer,
        events: &mut Vec<Event>,
    ) -> Result<ActionOutcome, TxError> {
        let to = Address::from_slice(&transfer.to)?;
        let from = self.accounts[owner as usize].address;
        if to == from {
            return Err(TxError::SelfTransfer);
        }
        let asset = match wire::Asset::try_from(transfer.asset) {
            Ok(wire::Asset::Usd) => Asset::Usd,
            Ok(wire::Asset::Vanna) => Asset::Vanna,
            _ => return Err(TxError::UnknownAsset),
        };
        let amount = Amount::parse(&transfer.amount, Field::Amount)?;
        if amount.is_zero() {
            return Err(TxError::NotPositive { field: Field::Amount });
        }
        let sender = &self.accounts[owner as usize];
        let available = match asset {
            Asset::Usd => sender.usd_free(),
            Asset::Vanna => sender.vanna,
        };
        if amount > available {
            return Err(TxError::InsufficientFunds {
                asset: asset.symbol(),
                needed: amount.value(),
                available: available.value(),
            });
        }
        // USD backs positions and orders: what leaves must leave initial margin covered.
        if asset == Asset::Usd && !sender.exposures.is_empty() {
            self.check_initial_margin(owner, None, amount.value(), "transfer")?;
        }
        let receiver = self.account_or_create(to);
        let debit = |balance: Amount| balance.minus(amount).expect("checked above");
        let sender = &mut self.accounts[owner as usize];
        match asset {
            Asset::Usd => sender.usd = debit(sender.usd),
            Asset::Vanna => sender.vanna = debit(sender.vanna),
        }
        let receiver_account = &mut self.accounts[receiver as usize];
        match asset {
            Asset::Usd => receiver_account.usd = receiver_account.usd.plus(amount),
            Asset::Vanna => receiver_account.vanna = receiver_account.vanna.plus(amount),
        }
        self.commitment.touch_account(owner);
        self.commitment.touch_account(receiver);
        self.risk_dirty.insert(owner);
        events.push(Event::Transferred { from, to, asset, amount });
        Ok(ActionOutcome::Transferred)
    }

    /// Finds an open order of `owner` by order id or client order id.
    fn resolve_order(&self, owner: u64, order: Option<&wire::OrderRef>) -> Result<OrderId, TxError> {
        use wire::order_ref::Id;
        let account = &self.accounts[owner as usize];
        match order.and_then(|order| order.id.as_ref()) {
            Some(Id::OrderId(id)) => {
                let id = OrderId(*id);
                if account.open_orders.contains(&id) { Ok(id) } else { Err(TxError::UnknownOrder(id)) }
            }
            Some(Id::ClientOrderId(client)) => {
                account.client_orders.get(client).copied().ok_or(TxError::UnknownClientOrderId(*client))
            }
            None => Err(TxError::MissingOrderRef),
        }
    }

    fn cancel_all(
        &mut self,
        owner: u64,
        cancel: &wire::CancelAll,
        events: &mut Vec<Event>,
    ) -> Result<ActionOutcome, TxError> {
        use wire::cancel_all::Scope;
        let scope = cancel.scope.as_ref().ok_or(TxError::MissingScope)?;
        // The series the cancel covers; None means every series.
        let series: Option<Vec<SeriesId>> = match scope {
            Scope::Series(name) => {
                let series = *self.series_by_name.get(name).ok_or_else(|| TxError::UnknownSeries(name.clone()))?;
                Some(vec![series])
            }
            Scope::Underlying(symbol) => {
                if !self.underlyings.contains_key(symbol) {
                    return Err(TxError::UnknownUnderlying(symbol.clone()));
                }
                Some(self.markets.iter().filter(|m| &m.spec.underlying == symbol).map(|m| m.id).collect())
            }
            Scope::Everything(true) => None,
            Scope::Everything(false) => return Err(TxError::MissingScope),
        };
        let ids: Vec<OrderId> = self.accounts[owner as usize]
            .open_orders
            .iter()
            .copied()
            .filter(|id| series.as_ref().is_none_or(|series| series.contains(&self.orders[id].series)))
            .collect();
        for id in &ids {
            self.remove_order(*id, CancelReason::User, events);
        }
        Ok(ActionOutcome::Cancelled { orders: ids.len() as u32 })
    }

    /// Amends price and/or size. A pure size decrease keeps time priority;
    /// anything else re-enters the book with the same id behind the queue.
    fn replace_order(
        &mut self,
        owner: u64,
        replace: &wire::ReplaceOrder,
        events: &mut Vec<Event>,
    ) -> Result<ActionOutcome, TxError> {
        let id = self.resolve_order(owner, replace.order.as_ref())?;
        let info = self.orders[&id].clone();
        let market = self.market(info.series);
        let remaining = market.book.get(id.0).expect("open orders rest").remaining_lots;
        let price_ticks = match replace.price.as_str() {
            "" => market.ticks(info.price)?,
            text => parse_ticks(market, text)?,
        };
        let lots = match replace.quantity.as_str() {
            "" => remaining,
            text => parse_lots(market, text)?,
        };
        let same_price = price_ticks == market.ticks(info.price)?;
        if same_price && lots == remaining {
            return Err(TxError::EmptyReplace);
        }
        if same_price && lots < remaining {
            self.reduce_order(id, lots, CancelReason::User, events);
            return Ok(ActionOutcome::Reduced { order: id, remaining: self.market(info.series).contracts(lots) });
        }
        let request = OrderRequest {
            series: info.series,
            side: info.side,
            price_ticks: Some(price_ticks),
            lots,
            time_in_force: if info.expire_at_ms != 0 {
                TimeInForce::GoodTilTime
            } else {
                TimeInForce::GoodTilCancelled
            },
            expire_at_ms: info.expire_at_ms,
            post_only: info.post_only,
            reduce_only: info.reduce_only,
            client_order_id: info.client_order_id,
            self_trade: info.self_trade,
            liquidation: false,
        };
        self.place_order(owner, &request, Some(id), events).map(ActionOutcome::Replaced)
    }
}
