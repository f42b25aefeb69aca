//! The at-risk index: which accounts a price update could have pushed below
//! maintenance margin, so that the engine evaluates those and no others.
//!
//! After every exact evaluation, an account's margin surplus (equity minus
//! maintenance margin) becomes a spot band per underlying it holds. Inside all
//! of its bands the account provably stays at or above maintenance margin, so
//! a price update only visits the accounts whose band edge it crossed, plus a
//! watch list of accounts with no surplus to spare. Bounds used:
//!
//! * Spot: one contract's value moves at most one dollar per dollar of spot
//!   (|delta| ≤ 1), and each scenario of the maintenance grid prices at
//!   spot × (1 + move), so equity minus maintenance margin moves at most
//!   (3 + largest move) per contract, plus the short charge's own slope, per
//!   dollar of spot. The surplus is split between underlyings in proportion to
//!   that slope times spot, so every band allows the same relative move.
//! * Time: an entry is re-evaluated at least every `refresh_ms`; an option's
//!   value falls with time by at most φ(0)·S·σ·(√T − √(T − Δt)) (its theta
//!   integrated over Δt), taken at twice spot, the grid's largest spot and
//!   volatility moves, for equity and both margin terms.
//! * Volatility: a series volatility that moves more than the rescan bound
//!   since the last full scan triggers a full rescan of the underlying (the
//!   runtime does it); within it, each entry reserves vega at its bound,
//!   φ(0)·S·√T, times twice the bound, for equity and both margin terms.
//!
//! Positions and cash only change through the runtime, which re-evaluates the
//! account at the end of the block. So the index never hides an account below
//! maintenance margin, and which accounts are liquidated does not depend on
//! its history, only on state: a node that rebuilds it by a full scan agrees.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use vanna_margin::{MarginTables, SeriesIndex};
use vanna_pricing::years_between_ms;

/// 1/√(2π) rounded up: the normal density's peak, which bounds vega and theta.
const NORMAL_DENSITY_MAX: f64 = 0.398_942_280_401_433;
/// Bands stop at twice spot: past it an account is evaluated again.
const SPOT_CEILING_FACTOR: f64 = 2.0;
/// Surplus kept back from the band for the f64 arithmetic of the bounds.
const BUDGET_SLACK: f64 = 1e-9;

/// Per contract of one series: how fast surplus can fall per dollar of spot,
/// and how much of it time decay and volatility drift may use up.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SeriesSensitivity {
    pub spot_slope: f64,
    /// Extra slope per short contract: the short charge grows with spot.
    pub short_slope: f64,
    pub allowance: f64,
}

/// The bounds of one series in `tables`; `None` for a row the tables lack.
pub fn series_sensitivity(
    tables: &MarginTables,
    series: SeriesIndex,
    volatility_bound: f64,
    refresh_ms: u64,
) -> Option<SeriesSensitivity> {
    let mark = tables.series(series)?;
    let spot = tables.spot();
    let spot_move = tables.maintenance_spot_move_max();
    let volatility_factor = tables.volatility_factor_max();
    let spot_high = SPOT_CEILING_FACTOR * spot * (1.0 + spot_move);
    let years = years_between_ms(tables.now_ms(), mark.key.expiry_ms).max(0.0);
    let later = years_between_ms(tables.now_ms().saturating_add(refresh_ms), mark.key.expiry_ms).max(0.0);
    let volatility_high = mark.volatility * volatility_factor + 2.0 * volatility_bound;
    let decay = NORMAL_DENSITY_MAX * spot_high * volatility_high * (years.sqrt() - later.sqrt()) * 3.0;
    let vega = NORMAL_DENSITY_MAX * spot_high * years.sqrt() * 2.0 * volatility_bound * (2.0 + volatility_factor);
    Some(SeriesSensitivity {
        spot_slope: 3.0 + spot_move,
        short_slope: tables.maintenance_short_charge() / spot,
        allowance: decay + vega,
    })
}

/// An account's holdings in one underlying, summed over its positions:
/// Σ |contracts| × slope (plus the short slope for shorts) and Σ |contracts| × allowance.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UnderlyingExposure {
    pub spot: f64,
    pub spot_slope: f64,
    pub allowance: f64,
}

/// Where an account stays above maintenance margin in one underlying.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Band {
    /// No surplus to spare: evaluated after every update of the underlying.
    Watch,
    /// Safe while `low < spot < high`.
    Between { low: f64, high: f64 },
}

/// The bands of an account with margin `surplus` (equity − maintenance, USD),
/// one per exposure, in the same order.
pub fn bands(surplus: f64, exposures: &[UnderlyingExposure]) -> Vec<Band> {
    let allowance: f64 = exposures.iter().map(|e| e.allowance).sum();
    let weight: f64 = exposures.iter().map(|e| e.spot_slope * e.spot).sum();
    let budget = (surplus - allowance) * (1.0 - BUDGET_SLACK);
    if !(budget > 0.0 && weight > 0.0) {
        return vec![Band::Watch; exposures.len()];
    }
    let relative = budget / weight;
    exposures
        .iter()
        .map(|e| Band::Between {
            low: (e.spot * (1.0 - relative)).max(0.0),
            high: e.spot * (1.0 + relative).min(SPOT_CEILING_FACTOR),
        })
        .collect()
}

#[derive(Clone, Debug)]
struct Entry {
    due_ms: u64,
    bands: Vec<(String, Band)>,
}

#[derive(Clone, Debug, Default)]
struct UnderlyingIndex {
    /// (low edge bits, owner): a candidate once spot is at or below the edge.
    below: BTreeSet<(u64, u64)>,
    /// (high edge bits, owner): a candidate once spot is at or above the edge.
    above: BTreeSet<(u64, u64)>,
    watch: BTreeSet<u64>,
    members: BTreeSet<u64>,
    /// Series id → volatility at the last full scan.
    reference_volatility: BTreeMap<u64, f64>,
}

/// Accounts with positions, by the spot bands they are safe in. Not
/// committed: it is derived from state (see the module docs).
#[derive(Clone, Debug, Default)]
pub struct AtRiskIndex {
    entries: BTreeMap<u64, Entry>,
    underlyings: BTreeMap<String, UnderlyingIndex>,
    /// (re-evaluation due, owner).
    due: BTreeSet<(u64, u64)>,
}

/// Non-negative floats order like their bits.
fn key(spot: f64) -> u64 {
    debug_assert!(spot >= 0.0);
    spot.to_bits()
}

impl AtRiskIndex {
    /// Records an account's bands after an exact evaluation, replacing any
    /// earlier entry; it is due again at `due_ms`.
    pub fn insert(&mut self, owner: u64, due_ms: u64, bands: Vec<(String, Band)>) {
        self.remove(owner);
        for (underlying, band) in &bands {
            let index = self.underlyings.entry(underlying.clone()).or_default();
            index.members.insert(owner);
            match *band {
                Band::Watch => {
                    index.watch.insert(owner);
                }
                Band::Between { low, high } => {
                    index.below.insert((key(low), owner));
                    index.above.insert((key(high), owner));
                }
            }
        }
        self.due.insert((due_ms, owner));
        self.entries.insert(owner, Entry { due_ms, bands });
    }

    /// Forgets an account (it no longer holds positions).
    pub fn remove(&mut self, owner: u64) {
        let Some(entry) = self.entries.remove(&owner) else { return };
        self.due.remove(&(entry.due_ms, owner));
        for (underlying, band) in entry.bands {
            let index = self.underlyings.get_mut(&underlying).expect("an entry's underlying is indexed");
            index.members.remove(&owner);
            match band {
                Band::Watch => {
                    index.watch.remove(&owner);
                }
                Band::Between { low, high } => {
                    index.below.remove(&(key(low), owner));
                    index.above.remove(&(key(high), owner));
                }
            }
        }
    }

    /// Accounts an update of `underlying` to `spot` may have put below
    /// maintenance margin, in ascending owner order.
    pub fn candidates(&self, underlying: &str, spot: f64) -> Vec<u64> {
        let Some(index) = self.underlyings.get(underlying) else { return Vec::new() };
        let spot = key(spot.max(0.0));
        let mut owners: Vec<u64> = index.watch.iter().copied().collect();
        owners.extend(index.below.range((spot, 0)..).map(|&(_, owner)| owner));
        owners.extend(index.above.range(..=(spot, u64::MAX)).map(|&(_, owner)| owner));
        owners.sort_unstable();
        owners.dedup();
        owners
    }

    /// Accounts whose entry is due for re-evaluation at `now_ms`.
    pub fn due(&self, now_ms: u64) -> Vec<u64> {
        self.due.range(..=(now_ms, u64::MAX)).map(|&(_, owner)| owner).collect()
    }

    /// Every account with positions in `underlying`.
    pub fn members(&self, underlying: &str) -> Vec<u64> {
        self.underlyings.get(underlying).map(|index| index.members.iter().copied().collect()).unwrap_or_default()
    }

    pub fn contains(&self, owner: u64) -> bool {
        self.entries.contains_key(&owner)
    }

    /// Accounts in the index.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Accounts on the watch list of `underlying`.
    pub fn watched(&self, underlying: &str) -> usize {
        self.underlyings.get(underlying).map_or(0, |index| index.watch.len())
    }

    /// Whether any series of `underlying` moved its volatility by more than
    /// `bound` since the last full scan, or is not known to the index yet.
    pub fn volatility_moved(&self, underlying: &str, current: &[(u64, f64)], bound: f64) -> bool {
        let reference = self.underlyings.get(underlying).map(|index| &index.reference_volatility);
        current.iter().any(|(series, volatility)| match reference.and_then(|r| r.get(series)) {
            // A NaN difference counts as moved.
            Some(known) => {
                !matches!((volatility - known).abs().partial_cmp(&bound), Some(Ordering::Less | Ordering::Equal))
            }
            None => true,
        })
    }

    /// Sets the volatilities a full scan of `underlying` was made at.
    pub fn set_reference_volatility(&mut self, underlying: &str, current: &[(u64, f64)]) {
        let index = self.underlyings.entry(underlying.to_string()).or_default();
        index.reference_volatility = current.iter().copied().collect();
    }

    /// Adds a newly listed series' volatility: nobody holds it yet, so no
    /// entry was made at another volatility.
    pub fn add_reference_volatility(&mut self, underlying: &str, series: u64, volatility: f64) {
        let index = self.underlyings.entry(underlying.to_string()).or_default();
        index.reference_volatility.insert(series, volatility);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rust_decimal::Decimal;
    use vanna_margin::{MarginParams, OptionKind, Position, SeriesKey, build_tables};

    const NOW_MS: u64 = 1_790_000_000_000;
    const DAY_MS: u64 = 86_400_000;

    fn listing() -> Vec<SeriesKey> {
        let key = |days: u64, strike: i64, kind| SeriesKey {
            expiry_ms: NOW_MS + days * DAY_MS,
            strike: Decimal::from(strike),
            kind,
        };
        vec![
            key(7, 100_000, OptionKind::Call),
            key(7, 90_000, OptionKind::Put),
            key(30, 110_000, OptionKind::Call),
            key(30, 80_000, OptionKind::Put),
        ]
    }

    fn tables_at(spot: f64, now_ms: u64, volatility: f64) -> MarginTables {
        build_tables(&MarginParams::default(), spot, now_ms, &listing(), |_| volatility).unwrap()
    }

    /// Equity − maintenance of `cash` and `positions` at these tables.
    fn surplus(tables: &MarginTables, cash: f64, positions: &[Position]) -> f64 {
        let margin = tables.account(positions).unwrap();
        cash + margin.position_value - margin.maintenance
    }

    fn exposure(tables: &MarginTables, positions: &[Position]) -> UnderlyingExposure {
        let mut exposure = UnderlyingExposure { spot: tables.spot(), spot_slope: 0.0, allowance: 0.0 };
        for position in positions {
            let s = series_sensitivity(tables, position.series, 0.02, 300_000).unwrap();
            let size = position.contracts.abs();
            exposure.spot_slope +=
                size * s.spot_slope + if position.contracts < 0.0 { size * s.short_slope } else { 0.0 };
            exposure.allowance += size * s.allowance;
        }
        exposure
    }

    #[test]
    fn candidates_are_the_accounts_whose_band_the_spot_crossed() {
        let mut index = AtRiskIndex::default();
        index.insert(1, 10, vec![("BTC".into(), Band::Between { low: 90.0, high: 110.0 })]);
        index.insert(2, 20, vec![("BTC".into(), Band::Between { low: 95.0, high: 105.0 })]);
        index.insert(3, 30, vec![("BTC".into(), Band::Watch), ("ETH".into(), Band::Between { low: 1.0, high: 9.0 })]);
        assert_eq!(index.candidates("BTC", 100.0), vec![3]);
        assert_eq!(index.candidates("BTC", 95.0), vec![2, 3]);
        assert_eq!(index.candidates("BTC", 89.0), vec![1, 2, 3]);
        assert_eq!(index.candidates("BTC", 106.0), vec![2, 3]);
        assert_eq!(index.candidates("ETH", 5.0), Vec::<u64>::new());
        assert_eq!(index.candidates("SOL", 5.0), Vec::<u64>::new());
        assert_eq!(index.due(20), vec![1, 2]);
        assert_eq!(index.members("BTC"), vec![1, 2, 3]);
        index.insert(2, 40, vec![("BTC".into(), Band::Between { low: 50.0, high: 150.0 })]);
        assert_eq!(index.candidates("BTC", 95.0), vec![3]);
        index.remove(3);
        assert_eq!(index.candidates("BTC", 95.0), Vec::<u64>::new());
        assert_eq!((index.len(), index.members("ETH")), (2, vec![]));
    }

    #[test]
    fn a_new_or_moved_volatility_calls_for_a_rescan() {
        let mut index = AtRiskIndex::default();
        assert!(index.volatility_moved("BTC", &[(1, 0.6)], 0.02));
        index.set_reference_volatility("BTC", &[(1, 0.6)]);
        assert!(!index.volatility_moved("BTC", &[(1, 0.615)], 0.02));
        assert!(index.volatility_moved("BTC", &[(1, 0.63)], 0.02));
        assert!(index.volatility_moved("BTC", &[(1, 0.6), (2, 0.7)], 0.02));
        index.add_reference_volatility("BTC", 2, 0.7);
        assert!(!index.volatility_moved("BTC", &[(1, 0.6), (2, 0.7)], 0.02));
        assert!(index.volatility_moved("BTC", &[(1, f64::NAN)], 0.02));
    }

    #[test]
    fn no_surplus_means_watch() {
        let exposure = UnderlyingExposure { spot: 100.0, spot_slope: 1.0, allowance: 5.0 };
        assert_eq!(bands(4.0, &[exposure]), vec![Band::Watch]);
        assert_eq!(bands(-1.0, &[exposure, exposure]), vec![Band::Watch, Band::Watch]);
        match bands(25.0, &[exposure])[0] {
            Band::Between { low, high } => assert!(low > 80.0 && low < 80.1 && high > 119.9 && high < 120.0),
            Band::Watch => panic!("surplus above the allowance gives a band"),
        }
    }

    proptest! {
        // The promise of the index: anywhere inside its band, later in time
        // (up to the refresh interval) and with volatility moved within the
        // rescan bound, the account is still at or above maintenance margin.
        #[test]
        fn inside_the_band_the_account_stays_above_maintenance(
            sizes in proptest::collection::vec(-5i32..=5, 4),
            cash in 0.0f64..200_000.0,
            spot_fraction in 0.0f64..=1.0,
            upwards in any::<bool>(),
            elapsed_ms in 0u64..=300_000,
            volatility_move in -0.04f64..=0.04,
        ) {
            let tables = tables_at(100_000.0, NOW_MS, 0.6);
            let positions: Vec<Position> = sizes
                .iter()
                .enumerate()
                .filter(|(_, size)| **size != 0)
                .map(|(series, size)| Position { series: SeriesIndex(series as u32), contracts: f64::from(*size) })
                .collect();
            prop_assume!(!positions.is_empty());
            let now = surplus(&tables, cash, &positions);
            prop_assume!(now >= 0.0);
            let Band::Between { low, high } = bands(now, &[exposure(&tables, &positions)])[0] else {
                return Ok(());
            };
            let edge = if upwards { high } else { low };
            let spot = 100_000.0 + (edge - 100_000.0) * spot_fraction * 0.999_999;
            let later = tables_at(spot, NOW_MS + elapsed_ms, 0.6 + volatility_move);
            let after = surplus(&later, cash, &positions);
            prop_assert!(after >= -1e-6, "surplus {now} became {after} at spot {spot} inside [{low}, {high}]");
        }
    }
}
