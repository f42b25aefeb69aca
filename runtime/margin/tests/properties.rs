//! Properties of the margin model over random listings and portfolios:
//! margin covers every grid scenario's loss (recomputed independently through
//! `vanna_pricing::price`), hedges need less margin than the leg they hedge,
//! margin is subadditive and positively homogeneous, initial ≥ maintenance,
//! and everything is a pure function of its inputs' bits.

use proptest::prelude::*;
use rust_decimal::Decimal;
use vanna_margin::{MarginParams, MarginTables, OptionKind, Position, SeriesIndex, SeriesKey, build_tables};
use vanna_pricing::{OptionInputs, price, years_between_ms};

const NOW_MS: u64 = 1_790_000_000_000;
const DAY_MS: u64 = 86_400_000;

/// One listed series with its oracle volatility.
#[derive(Clone, Debug)]
struct Listed {
    key: SeriesKey,
    volatility: f64,
}

fn kind() -> impl Strategy<Value = OptionKind> {
    prop_oneof![Just(OptionKind::Call), Just(OptionKind::Put)]
}

/// A strike in cents, so that it is an exact listed Decimal.
fn strike(spot: f64, moneyness: f64) -> Decimal {
    Decimal::new((spot * moneyness * 100.0).round().max(1.0) as i64, 2)
}

/// Spot, and 1 to 12 series: expiries from already expired to two years,
/// strikes from 0.4 to 2.5 × spot, volatilities from 5 % to 250 %.
fn listing() -> impl Strategy<Value = (f64, Vec<Listed>)> {
    (1.0f64..200_000.0).prop_flat_map(|spot| {
        let series =
            (0u64..730, 0.4f64..2.5, kind(), 0.05f64..2.5).prop_map(move |(days, moneyness, kind, volatility)| {
                Listed {
                    key: SeriesKey { expiry_ms: NOW_MS + days * DAY_MS, strike: strike(spot, moneyness), kind },
                    volatility,
                }
            });
        (Just(spot), prop::collection::vec(series, 1..12))
    })
}

fn build(spot: f64, listed: &[Listed]) -> MarginTables {
    let keys: Vec<SeriesKey> = listed.iter().map(|listed| listed.key).collect();
    build_tables(&MarginParams::default(), spot, NOW_MS, &keys, |key| {
        listed.iter().find(|listed| listed.key == *key).map_or(0.0, |listed| listed.volatility)
    })
    .unwrap()
}

/// Sorted positions, one per series, in a random subset of the listing.
fn portfolio(series_count: usize) -> impl Strategy<Value = Vec<Position>> {
    prop::collection::vec(prop::option::of(-50.0f64..50.0), series_count).prop_map(|sizes| {
        sizes
            .into_iter()
            .enumerate()
            .filter_map(|(index, size)| size.map(|contracts| Position { series: SeriesIndex(index as u32), contracts }))
            .collect()
    })
}

fn listing_and_portfolio() -> impl Strategy<Value = (f64, Vec<Listed>, Vec<Position>)> {
    listing().prop_flat_map(|(spot, listed)| {
        let count = listed.len();
        (Just(spot), Just(listed), portfolio(count))
    })
}

/// Adds two sorted portfolios series by series.
fn combine(a: &[Position], b: &[Position], series_count: usize) -> Vec<Position> {
    (0..series_count as u32)
        .filter_map(|index| {
            let size = |positions: &[Position]| positions.iter().find(|p| p.series.0 == index).map(|p| p.contracts);
            match (size(a), size(b)) {
                (None, None) => None,
                (x, y) => Some(Position { series: SeriesIndex(index), contracts: x.unwrap_or(0.0) + y.unwrap_or(0.0) }),
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// The tables hold exactly `price(shocked) − price(mark)`, and both margins
    /// are at least the loss of every scenario of their grids, recomputed here
    /// from the public pricing function.
    #[test]
    fn margin_covers_every_grid_scenario((spot, listed, positions) in listing_and_portfolio()) {
        let tables = build(spot, &listed);
        let margin = tables.account(&positions).unwrap();
        let base = |listed: &Listed| OptionInputs {
            kind: listed.key.kind,
            spot,
            strike: vanna_pricing::decimal_to_f64(listed.key.strike),
            volatility: listed.volatility,
            rate: 0.0,
            years_to_expiry: years_between_ms(NOW_MS, listed.key.expiry_ms),
        };
        for (index, scenario) in tables.scenarios().iter().enumerate() {
            let mut pnl = 0.0;
            for position in &positions {
                let inputs = base(&listed[position.series.0 as usize]);
                let shocked = OptionInputs {
                    spot: spot * (1.0 + scenario.spot_move),
                    volatility: inputs.volatility * scenario.volatility_factor,
                    ..inputs
                };
                let pnl_per_contract = price(&shocked).unwrap() - price(&inputs).unwrap();
                let table = tables.pnl_per_contract(position.series).unwrap()[index];
                prop_assert_eq!(table.to_bits(), pnl_per_contract.to_bits());
                pnl += position.contracts * pnl_per_contract;
            }
            let loss = -pnl;
            prop_assert!(margin.initial >= loss, "initial {} < loss {loss} in {scenario:?}", margin.initial);
            if index < tables.maintenance_scenario_count() {
                prop_assert!(margin.maintenance >= loss, "maintenance {} < loss {loss} in {scenario:?}", margin.maintenance);
            }
        }
        prop_assert!(margin.initial >= margin.maintenance && margin.maintenance >= 0.0);
    }

    /// Diversification never costs: margin(A + B) ≤ margin(A) + margin(B),
    /// up to the rounding of summing in a different grouping.
    #[test]
    fn margin_is_subadditive((spot, listed, a) in listing_and_portfolio(), seed in any::<u64>()) {
        let tables = build(spot, &listed);
        // A second portfolio over the same listing, derived from the first.
        let b: Vec<Position> = a
            .iter()
            .enumerate()
            .filter(|(index, _)| (seed >> (index % 64)) & 1 == 1)
            .map(|(index, p)| Position { series: p.series, contracts: -p.contracts * (index as f64 + 0.5) / 3.0 })
            .collect();
        let together = tables.account(&combine(&a, &b, listed.len())).unwrap();
        let (margin_a, margin_b) = (tables.account(&a).unwrap(), tables.account(&b).unwrap());
        let slack = 1e-9 * (1.0 + margin_a.initial + margin_b.initial);
        prop_assert!(together.maintenance <= margin_a.maintenance + margin_b.maintenance + slack);
        prop_assert!(together.initial <= margin_a.initial + margin_b.initial + slack);
    }

    /// Scaling every position down never needs more margin: reducing a
    /// portfolio evenly is always a risk-reducing change.
    #[test]
    fn scaling_down_reduces_risk((spot, listed, positions) in listing_and_portfolio(), keep in 0.0f64..=1.0) {
        let tables = build(spot, &listed);
        let scaled: Vec<Position> = positions
            .iter()
            .map(|p| Position { series: p.series, contracts: p.contracts * keep })
            .collect();
        prop_assert!(tables.margin_change(&positions, &scaled).unwrap().reduces_risk());
    }

    /// Same inputs, same bits: tables built twice agree everywhere, and so do
    /// the accounts evaluated on them.
    #[test]
    fn deterministic((spot, listed, positions) in listing_and_portfolio()) {
        let (first, second) = (build(spot, &listed), build(spot, &listed));
        for index in 0..listed.len() as u32 {
            let bits = |tables: &MarginTables| -> Vec<u64> {
                let series = tables.series(SeriesIndex(index)).unwrap();
                let greeks = series.greeks;
                let mut bits = vec![greeks.price.to_bits(), greeks.delta.to_bits(), greeks.gamma.to_bits(),
                    greeks.vega_per_vol_point.to_bits(), greeks.theta_per_day.to_bits()];
                bits.extend(tables.pnl_per_contract(SeriesIndex(index)).unwrap().iter().map(|x| x.to_bits()));
                bits
            };
            prop_assert_eq!(bits(&first), bits(&second));
        }
        let (a, b) = (first.account(&positions).unwrap(), second.account(&positions).unwrap());
        prop_assert_eq!(a.maintenance.to_bits(), b.maintenance.to_bits());
        prop_assert_eq!(a.initial.to_bits(), b.initial.to_bits());
        prop_assert_eq!(a.position_value.to_bits(), b.position_value.to_bits());
        prop_assert_eq!(a.rounded(6).unwrap(), b.rounded(6).unwrap());
    }
}

proptest! {
    // Two series per case: cheap, so search harder.
    #![proptest_config(ProptestConfig::with_cases(3_000))]

    /// A short option hedged by a long option of the same kind and expiry
    /// further out of the money (a credit spread), in any proportion up to
    /// one for one, needs no more margin than the short leg alone. Not a
    /// theorem for every grid (the wing loses when volatility falls), so it is
    /// checked over a wide domain: 1 to 730 days, 5 % to 250 % volatility.
    #[test]
    fn a_hedged_short_needs_less_margin(
        spot in 1.0f64..200_000.0,
        days in 1u64..730,
        volatility in 0.05f64..2.5,
        kind in kind(),
        short_moneyness in 0.5f64..1.5,
        width in 0.005f64..0.5,
        contracts in 0.1f64..100.0,
        hedge_ratio in 0.01f64..=1.0,
    ) {
        let wing_moneyness = match kind {
            OptionKind::Call => short_moneyness + width,
            OptionKind::Put => short_moneyness - width,
        };
        let expiry_ms = NOW_MS + days * DAY_MS;
        let short_key = SeriesKey { expiry_ms, strike: strike(spot, short_moneyness), kind };
        let wing_key = SeriesKey { expiry_ms, strike: strike(spot, wing_moneyness), kind };
        prop_assume!(short_key.strike != wing_key.strike);
        let tables = build(spot, &[
            Listed { key: short_key, volatility },
            Listed { key: wing_key, volatility },
        ]);
        let naked = [Position { series: SeriesIndex(0), contracts: -contracts }];
        let hedged = [naked[0], Position { series: SeriesIndex(1), contracts: contracts * hedge_ratio }];
        let naked_margin = tables.account(&naked).unwrap();
        let hedged_margin = tables.account(&hedged).unwrap();
        prop_assert!(hedged_margin.maintenance <= naked_margin.maintenance, "{hedged_margin:?} vs {naked_margin:?}");
        prop_assert!(hedged_margin.initial <= naked_margin.initial, "{hedged_margin:?} vs {naked_margin:?}");
        prop_assert!(tables.margin_change(&naked, &hedged).unwrap().reduces_risk());
    }
}
