//! The runtime's state: accounts, markets (one order book per series), open
//! orders and chain-wide values. Maps are BTreeMaps or vectors indexed by
//! handles assigned in a deterministic order; nothing depends on hash order.

use std::collections::{BTreeMap, BTreeSet};

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;
use vanna_book::{Book, Side};

use crate::commit::Commitment;
use crate::error::{Field, TxError};
use crate::ids::{Address, OrderId, SeriesId};
use crate::instrument::{SeriesSpec, UnderlyingSpec};
use crate::money::{Amount, Price, Quantity};
use vanna_crypto::PublicKey;
use vanna_staking::Staking;

/// Fees as options venues charge them: a rate of the underlying's notional
/// (index price × contracts), capped at a fraction of the option's premium.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeeSchedule {
    pub maker_rate: Decimal,
    pub taker_rate: Decimal,
    pub premium_cap: Decimal,
}

impl FeeSchedule {
    /// The fee for one fill, rounded up (against the payer).
    pub fn fee(&self, rate: Decimal, index: Price, contracts: Decimal, premium: Amount) -> Amount {
        let by_notional = rate * index.value() * contracts;
        let cap = self.premium_cap * premium.value();
        Amount::round_up(by_notional.min(cap))
    }

    /// The most a buyer can pay in fees per lot at `price`: what a buy order
    /// locks on top of the premium. Summed per lot it bounds any fill's fee,
    /// because rounding up is subadditive.
    pub fn max_fee_per_lot(&self, price: Price, lot: Quantity) -> Amount {
        Amount::round_up(self.premium_cap * price.value() * lot.value())
    }
}

/// Chain-wide parameters fixed at genesis.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Params {
    pub chain_id: String,
    /// The account allowed to list series.
    pub listing_authority: Address,
    pub fees: FeeSchedule,
}

/// What an account has at stake in one series, in lots of its underlying.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exposure {
    /// Signed position: positive long, negative short.
    pub position_lots: i64,
    pub open_buy_lots: u64,
    pub open_sell_lots: u64,
    /// Premium plus maximum fees locked in cash by open buy orders: option
    /// buyers pay in full.
    pub buy_lock: Amount,
    /// Equity set aside by open sell orders (see `OrderInfo::sell_reserve_per_lot`).
    pub sell_reserve: Amount,
    /// Signed premium the position cost, at average cost: paid for a long
    /// (positive), received for a short (negative). Ranks auto-deleveraging.
    pub cost: Decimal,
    /// Open reduce-only orders, so fills know when trimming may be needed.
    pub reduce_only_orders: u32,
}

impl Exposure {
    pub fn is_empty(&self) -> bool {
        self.position_lots == 0
            && self.open_buy_lots == 0
            && self.open_sell_lots == 0
            && self.buy_lock.is_zero()
            && self.sell_reserve.is_zero()
            && self.reduce_only_orders == 0
    }

    /// Moves the position by `lots` for `premium` (paid when buying, received
    /// when selling) and keeps the average cost: adding to a position adds the
    /// premium; reducing keeps the cost per lot; flipping starts the new side
    /// at this trade's price.
    pub fn trade(&mut self, lots: i64, premium: Decimal) {
        let signed_premium = if lots > 0 { premium } else { -premium };
        let before = self.position_lots;
        let after = before + lots;
        self.cost = if before == 0 || before.signum() == lots.signum() {
            self.cost + signed_premium
        } else if after == 0 {
            Decimal::ZERO
        } else if after.signum() == before.signum() {
            average(self.cost * Decimal::from(after), Decimal::from(before))
        } else {
            average(signed_premium * Decimal::from(after), Decimal::from(lots))
        };
        self.position_lots = after;
    }
}

/// A cost share, rounded half to even to the asset's six places: it ranks
/// positions and never moves money.
fn average(numerator: Decimal, denominator: Decimal) -> Decimal {
    (numerator / denominator)
        .round_dp_with_strategy(crate::money::ASSET_SCALE, rust_decimal::RoundingStrategy::MidpointNearestEven)
}

/// A keeper's standing offer to take over liquidated positions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackstopOffer {
    pub id: u64,
    pub keeper: Address,
    pub underlying: String,
    /// Underlying notional (contracts × index) it may still take, USD.
    pub remaining_notional: Amount,
    /// Fraction of mark the keeper is paid for taking a position.
    pub discount: Decimal,
    /// USD still locked in the keeper's account for the offer.
    pub collateral: Amount,
}

/// One account. `usd` is the whole USD balance; `usd_locked` is the part held
/// by open buy orders and backstop offers, always at most `usd`.
///
/// Serialized (for state snapshots) without the fields that mirror others:
/// `positions` (the exposures'), `open_orders` and `client_orders` (the
/// orders'), `backstop_offers` (the offers'); `State::from_snapshot`
/// rebuilds them.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Account {
    pub address: Address,
    /// The handle the order books know this account by.
    pub owner: u64,
    pub nonce: u64,
    /// Stored as its 33 compressed bytes and parsed again when loaded.
    #[serde(with = "compressed_key")]
    pub public_key: Option<PublicKey>,
    pub usd: Amount,
    pub usd_locked: Amount,
    pub vanna: Amount,
    pub exposures: BTreeMap<SeriesId, Exposure>,
    /// The non-zero positions of `exposures`, in series order and inline:
    /// margin evaluation reads them without walking the map (the liquidation
    /// pass does so for every candidate). Kept by `State::update_exposure`.
    #[serde(skip)]
    pub positions: SmallVec<[(SeriesId, i64); 6]>,
    #[serde(skip)]
    pub open_orders: BTreeSet<OrderId>,
    #[serde(skip)]
    pub client_orders: BTreeMap<u64, OrderId>,
    #[serde(skip)]
    pub backstop_offers: BTreeSet<u64>,
}

/// serde for an account's public key: its compressed bytes.
mod compressed_key {
    use serde::{Deserialize, Deserializer, Serializer};
    use vanna_crypto::PublicKey;

    pub fn serialize<S: Serializer>(key: &Option<PublicKey>, serializer: S) -> Result<S::Ok, S::Error> {
        match key {
            Some(key) => serializer.serialize_some(key.compressed().as_slice()),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<PublicKey>, D::Error> {
        Option::<Vec<u8>>::deserialize(deserializer)?
            .map(|bytes| PublicKey::from_compressed(&bytes).map_err(serde::de::Error::custom))
            .transpose()
    }
}

impl Account {
    pub fn new(address: Address, owner: u64) -> Self {
        Account {
            address,
            owner,
            nonce: 0,
            public_key: None,
            usd: Amount::ZERO,
            usd_locked: Amount::ZERO,
            vanna: Amount::ZERO,
            exposures: BTreeMap::new(),
            positions: SmallVec::new(),
            open_orders: BTreeSet::new(),
            client_orders: BTreeMap::new(),
            backstop_offers: BTreeSet::new(),
        }
    }

    /// The signed position in `series`, in lots (from `positions`: no map walk).
    pub fn position(&self, series: SeriesId) -> i64 {
        self.positions.binary_search_by_key(&series, |(s, _)| *s).map_or(0, |at| self.positions[at].1)
    }

    /// Records a series' new position in `positions`.
    pub(crate) fn set_position(&mut self, series: SeriesId, lots: i64) {
        match (self.positions.binary_search_by_key(&series, |(s, _)| *s), lots) {
            (Ok(at), 0) => {
                self.positions.remove(at);
            }
            (Ok(at), lots) => self.positions[at].1 = lots,
            (Err(_), 0) => {}
            (Err(at), lots) => self.positions.insert(at, (series, lots)),
        }
    }

    /// USD not held as collateral: what transfers and new orders may use.
    pub fn usd_free(&self) -> Amount {
        self.usd.minus(self.usd_locked).expect("invariant: locked USD never exceeds the balance")
    }

    pub fn exposure(&self, series: SeriesId) -> Exposure {
        self.exposures.get(&series).copied().unwrap_or_default()
    }
}

/// The self-trade prevention mode of an order: what happens when it would
/// trade against an order of the same account.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SelfTrade {
    #[default]
    CancelResting,
    CancelIncoming,
    CancelBoth,
}

impl SelfTrade {
    pub fn code(self) -> u32 {
        match self {
            SelfTrade::CancelResting => 1,
            SelfTrade::CancelIncoming => 2,
            SelfTrade::CancelBoth => 3,
        }
    }
}

/// The runtime's record of an open order; the book holds its place and size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderInfo {
    pub owner: Address,
    /// The owner's account handle, so that releasing an order needs no
    /// address lookup.
    pub account: u64,
    pub series: SeriesId,
    pub side: Side,
    pub price: Price,
    pub original_lots: u64,
    pub client_order_id: u64,
    /// Zero unless good-til-time.
    pub expire_at_ms: u64,
    pub post_only: bool,
    pub reduce_only: bool,
    pub self_trade: SelfTrade,
    /// USD locked per remaining lot (buy orders only).
    pub buy_lock_per_lot: Amount,
    /// Sell orders: equity set aside per remaining lot at placement, the mark
    /// above the limit price plus the largest fee, so that a fill can cost the
    /// account no more equity than its margin check allowed for.
    pub sell_reserve_per_lot: Amount,
}

/// One listed series with its order book. Serialized without `lot_units`
/// and `risk_slot`, which `State::from_snapshot` derives again.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Market {
    pub id: SeriesId,
    pub spec: SeriesSpec,
    pub tick: Price,
    pub lot: Quantity,
    /// The lot as an integer mantissa and its power of ten, when both are
    /// exact in `f64`: margin evaluation turns lots into contracts with one
    /// multiply and one divide (see `risk::contracts_f64`).
    #[serde(skip)]
    pub lot_units: Option<(i64, f64)>,
    /// The slot of its underlying's margin tables (`State::risk`).
    #[serde(skip)]
    pub risk_slot: usize,
    pub book: Book,
    /// Every account with a non-empty exposure here (position or open
    /// orders), so that settlement and deleveraging visit only them; it may
    /// also name accounts whose exposure has since emptied (readers skip
    /// them): removing them as they go would cost a search of a set of every
    /// holder on each closed position, the liquidation pass's hot path.
    /// Cleared when the series settles.
    pub participants: BTreeSet<u64>,
    /// The settlement price once the series has been settled and retired.
    pub settled_at: Option<Price>,
}

impl Market {
    pub fn new(id: SeriesId, spec: SeriesSpec, underlying: &UnderlyingSpec, risk_slot: usize) -> Self {
        Market {
            id,
            spec,
            tick: underlying.tick_size,
            lot: underlying.lot_size,
            lot_units: crate::margin_tables::lot_units(underlying.lot_size),
            risk_slot,
            book: Book::new(),
            participants: BTreeSet::new(),
            settled_at: None,
        }
    }

    /// Converts a price to whole ticks, refusing prices off the tick grid.
    pub fn ticks(&self, price: Price) -> Result<u64, TxError> {
        let ticks = price.value() / self.tick.value();
        if !ticks.fract().is_zero() {
            return Err(TxError::OffTick { price: price.value(), tick: self.tick.value() });
        }
        Ok(u64::try_from(ticks).expect("prices are bounded by MAX_PRICE_USD"))
    }

    /// Converts a quantity to whole lots, refusing quantities off the lot grid.
    pub fn lots(&self, quantity: Quantity) -> Result<u64, TxError> {
        let lots = quantity.value() / self.lot.value();
        if !lots.fract().is_zero() {
            return Err(TxError::OffLot { quantity: quantity.value(), lot: self.lot.value() });
        }
        Ok(u64::try_from(lots).expect("quantities are bounded by MAX_ORDER_CONTRACTS"))
    }

    pub fn price_of(&self, ticks: u64) -> Price {
        Price::new(self.tick.value() * Decimal::from(ticks), Field::Price).expect("a tick count is a valid price")
    }

    pub fn contracts(&self, lots: u64) -> Decimal {
        (self.lot.value() * Decimal::from(lots)).normalize()
    }

    pub fn signed_contracts(&self, lots: i64) -> Decimal {
        (self.lot.value() * Decimal::from(lots)).normalize()
    }
}

/// The whole state of the chain as the runtime sees it. Cloned by a node to
/// execute a block it has not finalized yet (speculatively, to learn the root
/// a proposal must carry); execution that counts is on the finalized state.
///
/// Its serde form is the body of a state snapshot: the fields marked `skip`
/// are indices and derived data that only [`State::from_snapshot`] rebuilds,
/// so load a state through it, never by deserializing one directly.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct State {
    pub params: Params,
    pub height: u64,
    pub time_ms: u64,
    pub underlyings: BTreeMap<String, UnderlyingSpec>,
    pub markets: Vec<Market>,
    #[serde(skip)]
    pub series_by_name: BTreeMap<String, SeriesId>,
    pub accounts: Vec<Account>,
    #[serde(skip)]
    pub account_index: BTreeMap<Address, u64>,
    pub orders: BTreeMap<OrderId, OrderInfo>,
    /// Good-til-time orders by expiry, removed at the start of the first block at or after it.
    pub gtt_expiries: BTreeSet<(u64, OrderId)>,
    pub fee_pool: Amount,
    pub next_order_id: u64,
    /// Time priority: every order that rests takes the next sequence number.
    pub next_sequence: u64,
    pub staking: Staking,
    /// Listed series not yet settled, by expiry: settlement takes them in order.
    pub unsettled: BTreeSet<(u64, SeriesId)>,
    /// Index, volatility surface, status and index history per underlying.
    pub oracle: vanna_oracle::Oracle,
    /// Margin grids, charges and default volatility per underlying (genesis).
    pub margin: BTreeMap<String, crate::margin_tables::UnderlyingMargin>,
    /// Margin tables per underlying, rebuilt every block from the oracle.
    #[serde(skip)]
    pub risk: crate::margin_tables::RiskTables,
    /// Liquidation parameters (genesis).
    pub liquidation: vanna_liquidation_rules::LiquidationParams,
    /// The insurance fund's account handle.
    pub insurance_fund: u64,
    /// Standing keeper backstop offers by id.
    pub backstops: BTreeMap<u64, BackstopOffer>,
    pub next_backstop_id: u64,
    /// Accounts with positions by the spot bands they are safe in (derived,
    /// not committed: see `vanna_liquidation_rules::AtRiskIndex`).
    #[serde(skip)]
    pub at_risk: vanna_liquidation_rules::AtRiskIndex,
    /// Accounts liquidated in the current block (a `Liquidate` transaction
    /// for one of them is a no-op); cleared when the next block starts.
    #[serde(skip)]
    pub liquidated_in_block: BTreeSet<u64>,
    /// Accounts whose positions, orders or cash changed in this block: the
    /// end of the block evaluates them exactly and re-indexes them.
    pub(crate) risk_dirty: BTreeSet<u64>,
    #[serde(skip)]
    pub(crate) commitment: Commitment,
}

/// The handle of `address` among `accounts`, creating an empty account if needed.
pub(crate) fn account_or_create(
    accounts: &mut Vec<Account>,
    index: &mut BTreeMap<Address, u64>,
    commitment: &mut Commitment,
    address: Address,
) -> u64 {
    if let Some(&owner) = index.get(&address) {
        return owner;
    }
    let owner = accounts.len() as u64;
    accounts.push(Account::new(address, owner));
    index.insert(address, owner);
    commitment.touch_account(owner);
    owner
}

impl State {
    pub fn account(&self, address: &Address) -> Option<&Account> {
        self.account_index.get(address).map(|&owner| &self.accounts[owner as usize])
    }

    pub fn series(&self, name: &str) -> Option<&Market> {
        self.series_by_name.get(name).map(|id| &self.markets[id.0 as usize])
    }

    pub fn market(&self, id: SeriesId) -> &Market {
        &self.markets[id.0 as usize]
    }

    /// Returns the handle of `address`, creating an empty account if needed.
    pub(crate) fn account_or_create(&mut self, address: Address) -> u64 {
        account_or_create(&mut self.accounts, &mut self.account_index, &mut self.commitment, address)
    }

    /// Every USD balance, the fee pool and the staking ledger's unclaimed
    /// rewards and commissions: constant after genesis.
    pub fn total_usd(&self) -> Amount {
        let held = self.fee_pool.plus(Amount::from_micro(self.staking.usd_held()));
        self.accounts.iter().fold(held, |total, account| total.plus(account.usd))
    }

    /// Liquid, bonded, unbonding and burned VANNA: constant after genesis.
    pub fn total_vanna(&self) -> Amount {
        let held = Amount::from_micro(self.staking.vanna_held() + self.staking.burned);
        self.accounts.iter().fold(held, |total, account| total.plus(account.vanna))
    }

    /// Checks the invariants that tie accounts, orders and books together.
    /// Tests call it after every block; it is too slow for the hot path.
    pub fn check_invariants(&self) {
        let mut per_account: BTreeMap<(u64, SeriesId), Exposure> = BTreeMap::new();
        for (id, info) in &self.orders {
            let market = self.market(info.series);
            let resting = market.book.get(id.0).expect("every open order rests in its book");
            let owner = info.account;
            assert_eq!(self.account_index[&info.owner], owner);
            assert_eq!(resting.owner, owner);
            let exposure = per_account.entry((owner, info.series)).or_default();
            match info.side {
                Side::Buy => {
                    exposure.open_buy_lots += resting.remaining_lots;
                    exposure.buy_lock = exposure.buy_lock.plus(info.buy_lock_per_lot.times(resting.remaining_lots));
                }
                Side::Sell => {
                    exposure.open_sell_lots += resting.remaining_lots;
                    exposure.sell_reserve =
                        exposure.sell_reserve.plus(info.sell_reserve_per_lot.times(resting.remaining_lots));
                }
            }
            if info.reduce_only {
                exposure.reduce_only_orders += 1;
            }
        }
        let listed: usize = self.accounts.iter().map(|account| account.open_orders.len()).sum();
        assert_eq!(listed, self.orders.len(), "every open order is listed by its account");
        let book_orders: usize = self.markets.iter().map(|market| market.book.len()).sum();
        assert_eq!(book_orders, self.orders.len(), "books and the order index agree");
        let mut positions_net: BTreeMap<SeriesId, i64> = BTreeMap::new();
        for account in &self.accounts {
            let mut locked = Amount::ZERO;
            for (series, exposure) in &account.exposures {
                let from_orders = per_account.get(&(account.owner, *series)).copied().unwrap_or_default();
                assert_eq!(exposure.open_buy_lots, from_orders.open_buy_lots);
                assert_eq!(exposure.open_sell_lots, from_orders.open_sell_lots);
                assert_eq!(exposure.buy_lock, from_orders.buy_lock);
                assert_eq!(exposure.sell_reserve, from_orders.sell_reserve);
                assert_eq!(exposure.reduce_only_orders, from_orders.reduce_only_orders);
                assert!(!exposure.is_empty(), "empty exposures are removed");
                assert!(exposure.position_lots != 0 || exposure.cost.is_zero(), "a closed position costs nothing");
                let market = self.market(*series);
                assert!(market.participants.contains(&account.owner), "accounts with exposure are participants");
                assert!(market.settled_at.is_none(), "settled series hold no exposure");
                locked = locked.plus(exposure.buy_lock);
                *positions_net.entry(*series).or_default() += exposure.position_lots;
            }
            let positions: Vec<(SeriesId, i64)> = account
                .exposures
                .iter()
                .filter(|(_, e)| e.position_lots != 0)
                .map(|(s, e)| (*s, e.position_lots))
                .collect();
            assert_eq!(account.positions.as_slice(), positions.as_slice(), "inline positions mirror the exposures");
            for id in &account.backstop_offers {
                let offer = &self.backstops[id];
                assert_eq!(offer.keeper, account.address, "backstop offer {id} belongs to its keeper");
                locked = locked.plus(offer.collateral);
            }
            assert_eq!(
                account.usd_locked, locked,
                "locked USD is buy locks plus backstop collateral for {}",
                account.address
            );
            assert!(account.usd_locked <= account.usd, "locked USD never exceeds the balance");
            for id in &account.open_orders {
                assert_eq!(self.orders[id].owner, account.address, "open order {id} belongs to its account");
            }
            for (client_id, id) in &account.client_orders {
                assert_eq!(self.orders[id].client_order_id, *client_id);
            }
        }
        let offers: usize = self.accounts.iter().map(|account| account.backstop_offers.len()).sum();
        assert_eq!(offers, self.backstops.len(), "every backstop offer is listed by its keeper");
        for (series, net) in positions_net {
            assert_eq!(net, 0, "positions in {} sum to zero", self.market(series).spec.name);
        }
        for market in &self.markets {
            market.book.check_invariants();
            assert_eq!(
                market.settled_at.is_none(),
                self.unsettled.contains(&(market.spec.expiry_ms, market.id)),
                "a series awaits settlement exactly until it is settled"
            );
        }
        for validator in self.staking.validators.values() {
            let delegations: Vec<_> =
                self.staking.delegations.iter().filter(|((_, v), _)| *v == validator.operator).collect();
            let shares: u128 = delegations.iter().map(|(_, d)| d.shares).sum();
            assert_eq!(shares, validator.shares, "a validator's shares are its delegations' shares");
            let owed: u64 = delegations
                .iter()
                .map(|((delegator, _), _)| self.staking.pending_rewards(delegator, &validator.operator))
                .sum();
            assert!(owed <= validator.reward_pool, "a validator's pool covers what its delegators are owed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> Decimal {
        text.parse().unwrap()
    }

    #[test]
    fn average_cost_follows_adds_reductions_and_flips() {
        let mut exposure = Exposure::default();
        exposure.trade(10, d("1000"));
        exposure.trade(10, d("1400"));
        assert_eq!((exposure.position_lots, exposure.cost), (20, d("2400")));
        // Selling part keeps the cost per lot: 120 × 15.
        exposure.trade(-5, d("900"));
        assert_eq!((exposure.position_lots, exposure.cost), (15, d("1800")));
        // Selling through zero: the new short costs its share of this trade.
        exposure.trade(-20, d("4000"));
        assert_eq!((exposure.position_lots, exposure.cost), (-5, d("-1000")));
        exposure.trade(5, d("10"));
        assert_eq!((exposure.position_lots, exposure.cost), (0, Decimal::ZERO));
        // Thirds round half to even at six places.
        let mut thirds = Exposure::default();
        thirds.trade(3, d("1"));
        thirds.trade(-1, d("5"));
        assert_eq!(thirds.cost, d("0.666667"));
    }
}
