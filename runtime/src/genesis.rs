//! The genesis file: chain id, parameters, underlyings, listed series and
//! initial balances, as JSON. Later stages add sections with defaults so older
//! files keep loading.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::commit::Commitment;
use crate::error::{Field, TxError};
use crate::ids::{Address, SeriesId};
use crate::instrument::{SeriesSpec, UnderlyingSpec};
use crate::limits::{MAX_SERIES_PER_UNDERLYING, MAX_UNDERLYINGS};
use crate::money::Amount;
use crate::staking::{Staking, StakingParams};
use crate::state::{FeeSchedule, Market, Params, State};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisAccount {
    pub address: Address,
    #[serde(default)]
    pub usd: Amount,
    #[serde(default)]
    pub vanna: Amount,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    pub chain_id: String,
    /// Block time of genesis, in milliseconds since the Unix epoch.
    pub genesis_time_ms: u64,
    pub listing_authority: Address,
    pub fees: FeeSchedule,
    pub underlyings: Vec<UnderlyingSpec>,
    /// Series names listed at genesis, e.g. "BTC-27DEC26-100000-C".
    #[serde(default)]
    pub series: Vec<String>,
    pub accounts: Vec<GenesisAccount>,
    #[serde(default)]
    pub staking: GenesisStaking,
    /// Oracle parameters; every field has a default. Each underlying's
    /// `index_price` is its initial oracle index.
    #[serde(default)]
    pub oracle: vanna_oracle::OracleParams,
    /// Margin settings per underlying symbol; an underlying not named here
    /// uses the defaults.
    #[serde(default)]
    pub margin: BTreeMap<String, crate::margin_tables::UnderlyingMargin>,
    /// Liquidation parameters; every field has a default. The insurance fund
    /// is the account at `Address::insurance_fund()`, funded like any other.
    #[serde(default)]
    pub liquidation: vanna_liquidation_rules::LiquidationParams,
}

/// Staking at genesis: parameters and the first validators, whose self-stake
/// is bonded from their operators' VANNA.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GenesisStaking {
    pub params: StakingParams,
    pub validators: Vec<GenesisValidator>,
    /// Delegations bonded at genesis from the delegators' VANNA.
    pub delegations: Vec<GenesisDelegation>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisDelegation {
    pub delegator: Address,
    pub validator: Address,
    pub amount: Amount,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisValidator {
    pub operator: Address,
    /// Hex of the 48-byte compressed BLS12-381 G1 key.
    pub consensus_key: String,
    /// Hex of the key's 96-byte proof of possession.
    pub proof_of_possession: String,
    pub moniker: String,
    pub commission_rate: Decimal,
    pub max_commission_rate: Decimal,
    pub max_commission_change: Decimal,
    pub self_stake: Amount,
}

/// Longest chain id, in ASCII characters.
pub const CHAIN_ID_MAX_LEN: usize = 64;

/// Whether `chain_id` can name a chain: 1 to [`CHAIN_ID_MAX_LEN`] ASCII
/// characters. Genesis and the tools that sign for a chain apply this rule.
pub fn chain_id_is_valid(chain_id: &str) -> bool {
    !chain_id.is_empty() && chain_id.len() <= CHAIN_ID_MAX_LEN && chain_id.is_ascii()
}

fn invalid(why: String) -> TxError {
    TxError::Malformed(format!("invalid genesis: {why}"))
}

impl Genesis {
    pub fn from_json(text: &str) -> Result<Self, TxError> {
        serde_json::from_str(text).map_err(|error| invalid(error.to_string()))
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("genesis serialises")
    }

    /// Builds the state at height 0, checking every value.
    pub fn build(&self) -> Result<State, TxError> {
        if !chain_id_is_valid(&self.chain_id) {
            return Err(invalid(format!("chain_id must be 1 to {CHAIN_ID_MAX_LEN} ASCII characters")));
        }
        let rate_ok = |rate: Decimal| rate >= Decimal::ZERO && rate < Decimal::ONE;
        if !rate_ok(self.fees.maker_rate) || !rate_ok(self.fees.taker_rate) {
            return Err(invalid("fee rates must be at least 0 and below 1".into()));
        }
        if self.fees.premium_cap <= Decimal::ZERO || self.fees.premium_cap >= Decimal::ONE {
            return Err(invalid("premium_cap must be above 0 and below 1, so a fee never exceeds the premium".into()));
        }
        if self.underlyings.len() > MAX_UNDERLYINGS {
            return Err(invalid(format!("at most {MAX_UNDERLYINGS} underlyings")));
        }
        let mut underlyings = BTreeMap::new();
        for spec in &self.underlyings {
            spec.validate()?;
            if underlyings.insert(spec.symbol.clone(), spec.clone()).is_some() {
                return Err(invalid(format!("underlying {} listed twice", spec.symbol)));
            }
        }
        let mut oracle =
            vanna_oracle::Oracle::new(self.oracle.clone()).map_err(|error| invalid(format!("oracle: {error}")))?;
        for spec in underlyings.values() {
            let symbol = vanna_oracle::Underlying::new(&spec.symbol)
                .map_err(|error| invalid(format!("oracle underlying: {error}")))?;
            let index = vanna_oracle::IndexPrice::new(spec.index_price.value())
                .map_err(|error| invalid(format!("index price of {}: {error}", spec.symbol)))?;
            oracle
                .list_underlying(symbol, Some(index), self.genesis_time_ms)
                .map_err(|error| invalid(format!("oracle: {error}")))?;
        }
        let mut state = State {
            params: Params {
                chain_id: self.chain_id.clone(),
                listing_authority: self.listing_authority,
                fees: FeeSchedule {
                    maker_rate: self.fees.maker_rate.normalize(),
                    taker_rate: self.fees.taker_rate.normalize(),
                    premium_cap: self.fees.premium_cap.normalize(),
                },
            },
            height: 0,
            time_ms: self.genesis_time_ms,
            underlyings,
            markets: Vec::new(),
            series_by_name: BTreeMap::new(),
            accounts: Vec::new(),
            account_index: BTreeMap::new(),
            orders: BTreeMap::new(),
            gtt_expiries: Default::default(),
            fee_pool: Amount::ZERO,
            next_order_id: 1,
            next_sequence: 1,
            staking: Staking { params: self.staking.params.clone(), ..Staking::default() },
            unsettled: Default::default(),
            oracle,
            margin: self.margin.clone(),
            risk: Default::default(),
            liquidation: self.liquidation.clone(),
            insurance_fund: 0,
            backstops: BTreeMap::new(),
            next_backstop_id: 1,
            at_risk: Default::default(),
            liquidated_in_block: Default::default(),
            risk_dirty: Default::default(),
            commitment: Commitment::default(),
        };
        self.liquidation.validate().map_err(|error| invalid(format!("liquidation: {error}")))?;
        let params = &self.staking.params;
        let fraction_ok = |f: Decimal| f >= Decimal::ZERO && f <= Decimal::ONE;
        if params.epoch_blocks == 0
            || params.max_active_validators == 0
            || params.signed_blocks_window == 0
            || params.signed_blocks_window > crate::staking::MAX_SIGNED_BLOCKS_WINDOW
            || params.max_entries == 0
            || ![params.reporter_reward, params.max_missed_fraction].into_iter().all(fraction_ok)
            || ![params.double_sign_slash, params.downtime_slash]
                .into_iter()
                .all(|f| fraction_ok(f) && f < Decimal::ONE)
        {
            return Err(invalid(
                "staking params out of range (slash fractions in [0, 1), other fractions in [0, 1], counts positive, window at most 10000)".into(),
            ));
        }
        state.staking.touched.global = true;
        for symbol in state.underlyings.keys().cloned().collect::<Vec<_>>() {
            state.commitment.touch_underlying(&symbol);
            state.commitment.touch_oracle(&symbol);
        }
        state.commitment.touch_global();
        for name in &self.series {
            state.list_series(name)?;
        }
        for account in &self.accounts {
            if state.account_index.contains_key(&account.address) {
                return Err(invalid(format!("account {} appears twice", account.address)));
            }
            let owner = state.account_or_create(account.address);
            let created = &mut state.accounts[owner as usize];
            created.usd = account.usd;
            created.vanna = account.vanna;
        }
        state.insurance_fund = state.account_or_create(Address::insurance_fund());
        for validator in &self.staking.validators {
            let owner = *state
                .account_index
                .get(&validator.operator)
                .ok_or_else(|| invalid(format!("validator operator {} has no genesis account", validator.operator)))?;
            let register = vanna_proto::v1::RegisterValidator {
                consensus_key: hex::decode(&validator.consensus_key).map_err(|_| TxError::BadConsensusKey)?,
                proof_of_possession: hex::decode(&validator.proof_of_possession)
                    .map_err(|_| TxError::BadProofOfPossession)?,
                moniker: validator.moniker.clone(),
                commission_rate: validator.commission_rate.to_string(),
                max_commission_rate: validator.max_commission_rate.to_string(),
                max_commission_change: validator.max_commission_change.to_string(),
                self_stake: validator.self_stake.to_string(),
            };
            state.staking_action(owner, crate::staking::StakingAction::Register(&register), &mut Vec::new())?;
        }
        for delegation in &self.staking.delegations {
            let owner = *state
                .account_index
                .get(&delegation.delegator)
                .ok_or_else(|| invalid(format!("delegator {} has no genesis account", delegation.delegator)))?;
            let delegate = vanna_proto::v1::Delegate {
                validator: delegation.validator.as_bytes().to_vec(),
                amount: delegation.amount.to_string(),
            };
            state.staking_action(owner, crate::staking::StakingAction::Delegate(&delegate), &mut Vec::new())?;
        }
        state.staking.active = state.staking.next_validator_set();
        for (symbol, settings) in &self.margin {
            if !state.underlyings.contains_key(symbol) {
                return Err(invalid(format!("margin settings for unknown underlying {symbol}")));
            }
            settings.params.validate().map_err(|error| invalid(format!("margin of {symbol}: {error}")))?;
            let volatility_max = Decimal::try_from(vanna_pricing::VOLATILITY_MAX).expect("a small finite constant");
            if settings.default_volatility <= Decimal::ZERO || settings.default_volatility > volatility_max {
                return Err(invalid(format!(
                    "default_volatility of {symbol} must be above 0 and at most {volatility_max}, got {}",
                    settings.default_volatility
                )));
            }
        }
        state.rebuild_margin_tables();
        for symbol in state.underlyings.keys().cloned().collect::<Vec<_>>() {
            state.reset_volatility_reference(&symbol);
        }
        // A grid that shocks the default volatility out of the pricer's range
        // would leave an underlying without margin figures for good.
        for symbol in state.underlyings.keys() {
            if !state.risk.contains_key(symbol) {
                return Err(invalid(format!(
                    "margin tables of {symbol} cannot be built: its default_volatility shocked by the grid leaves the pricer's range"
                )));
            }
        }
        Ok(state)
    }
}

impl State {
    /// Lists a series (at genesis, or by the listing authority's transaction).
    pub(crate) fn list_series(&mut self, name: &str) -> Result<SeriesId, TxError> {
        let spec = SeriesSpec::parse(name)?;
        let underlying = self
            .underlyings
            .get(&spec.underlying)
            .ok_or_else(|| TxError::UnknownUnderlying(spec.underlying.clone()))?;
        if self.series_by_name.contains_key(&*spec.name) {
            return Err(TxError::SeriesExists(spec.name.to_string()));
        }
        if spec.expiry_ms <= self.time_ms {
            return Err(TxError::SeriesExpired {
                name: spec.name.to_string(),
                expiry_ms: spec.expiry_ms,
                now_ms: self.time_ms,
            });
        }
        // Settled series are retired: only live ones count against the bound.
        let listed = self
            .markets
            .iter()
            .filter(|market| market.spec.underlying == spec.underlying && market.settled_at.is_none())
            .count();
        if listed >= MAX_SERIES_PER_UNDERLYING {
            return Err(TxError::TooManySeries { underlying: spec.underlying, max: MAX_SERIES_PER_UNDERLYING });
        }
        if (spec.strike.value() * underlying.lot_size.value()).normalize().scale() > crate::money::ASSET_SCALE {
            return Err(TxError::TooPrecise { field: Field::Strike, max_decimals: crate::money::ASSET_SCALE });
        }
        let id = SeriesId(self.markets.len() as u32);
        self.series_by_name.insert(spec.name.to_string(), id);
        self.unsettled.insert((spec.expiry_ms, id));
        let risk_slot = self.risk.slot_for(&spec.underlying);
        self.markets.push(Market::new(id, spec, underlying, risk_slot));
        self.commitment.touch_series(id);
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::demo_genesis;

    fn demo() -> Genesis {
        demo_genesis(&[("alice", 1_000)]).0
    }

    fn refused(genesis: Genesis) -> String {
        match genesis.build() {
            Err(error) => error.to_string(),
            Ok(_) => panic!("genesis should be refused"),
        }
    }

    #[test]
    fn json_round_trips_and_builds() {
        let genesis = demo();
        let parsed = Genesis::from_json(&genesis.to_json()).unwrap();
        assert_eq!(parsed, genesis);
        let state = parsed.build().unwrap();
        assert_eq!(state.markets.len(), 12);
        let fund = crate::sandbox::DEMO_INSURANCE_FUND_USD;
        assert_eq!(state.total_usd().value(), Decimal::from(1_000 + fund));
        assert_eq!(state.accounts[state.insurance_fund as usize].usd.value(), Decimal::from(fund));
        assert!(Genesis::from_json(r#"{"chain_id": "x", "surprise": 1}"#).is_err());
    }

    #[test]
    fn refuses_inconsistent_genesis() {
        let mut twice = demo();
        twice.accounts.push(twice.accounts[1].clone());
        assert!(refused(twice).contains("appears twice"));
        let mut fees = demo();
        fees.fees.premium_cap = Decimal::ONE;
        assert!(refused(fees).contains("premium_cap"));
        let mut rate = demo();
        rate.fees.taker_rate = Decimal::NEGATIVE_ONE;
        assert!(refused(rate).contains("fee rates"));
        let mut underlying = demo();
        underlying.underlyings.push(underlying.underlyings[0].clone());
        assert!(refused(underlying).contains("listed twice"));
        let mut precise = demo();
        precise.underlyings[0].tick_size = crate::money::Price::new(Decimal::new(1, 5), Field::TickSize).unwrap();
        assert!(refused(precise).contains("decimal places"));
        let mut unknown = demo();
        unknown.series.push("SOL-25DEC26-100-C".into());
        assert!(refused(unknown).contains("unknown underlying"));
        let mut chain_id = demo();
        chain_id.chain_id = String::new();
        assert!(refused(chain_id).contains("chain_id"));
        let mut too_many = demo();
        too_many.underlyings = (0..=MAX_UNDERLYINGS)
            .map(|i| UnderlyingSpec {
                symbol: format!("U{}", char::from(b'A' + (i % 26) as u8)).repeat(1 + i / 26),
                ..too_many.underlyings[0].clone()
            })
            .collect();
        too_many.series.clear();
        assert!(refused(too_many).contains("at most"));
        let mut oracle = demo();
        oracle.oracle.twap_window_ms = 0;
        assert!(refused(oracle).contains("twap_window_ms"));
        let mut margin = demo();
        margin.margin.insert("SOL".into(), Default::default());
        assert!(refused(margin).contains("unknown underlying SOL"));
        let mut volatility = demo();
        volatility.margin.insert(
            "BTC".into(),
            crate::margin_tables::UnderlyingMargin { default_volatility: Decimal::ZERO, ..Default::default() },
        );
        assert!(refused(volatility).contains("default_volatility"));
        let mut grid = demo();
        let mut settings = crate::margin_tables::UnderlyingMargin::default();
        settings.params.maintenance.spot_points = 4;
        grid.margin.insert("ETH".into(), settings);
        assert!(refused(grid).contains("margin of ETH"));
    }

    #[test]
    fn series_per_underlying_is_bounded() {
        let mut genesis = demo();
        genesis.series = (1..=MAX_SERIES_PER_UNDERLYING).map(|strike| format!("BTC-25DEC26-{strike}-C")).collect();
        let mut state = genesis.build().unwrap();
        assert_eq!(
            state.list_series("BTC-25DEC26-999999-C"),
            Err(TxError::TooManySeries { underlying: "BTC".into(), max: MAX_SERIES_PER_UNDERLYING })
        );
        assert!(state.list_series("ETH-25DEC26-999999-C").is_ok());
    }
}
