use proptest::prelude::*;
use rust_decimal::Decimal;

use super::*;
use crate::types::Vol;

const BTC: &str = "BTC";

fn btc() -> Underlying {
    Underlying::new(BTC).unwrap()
}

fn reporter(i: u8) -> ReporterId {
    ReporterId([i; 20])
}

fn price(text: &str) -> IndexPrice {
    IndexPrice::parse(text).unwrap()
}

fn report(i: u8, spot: IndexPrice, observed_at_ms: u64, surface: Option<VolSurface>) -> VerifiedReport {
    VerifiedReport {
        reporter: reporter(i),
        prices: vec![PriceReport { underlying: btc(), spot, observed_at_ms, surface }],
    }
}

fn equal_stakes(count: u8) -> StakeTable {
    let stakes: Vec<_> = (1..=count).map(|i| (reporter(i), 100)).collect();
    StakeTable::new(&stakes).unwrap()
}

fn oracle(initial: Option<&str>) -> Oracle {
    let mut oracle = Oracle::new(OracleParams::default()).unwrap();
    oracle.list_underlying(btc(), initial.map(price), 0).unwrap();
    oracle
}

fn updated_index(events: &[OracleEvent]) -> Option<IndexPrice> {
    events.iter().find_map(|event| match event {
        OracleEvent::IndexUpdated { index, .. } => Some(*index),
        _ => None,
    })
}

#[test]
fn first_quorum_sets_the_index_and_freshens() {
    let mut oracle = oracle(None);
    assert_eq!(oracle.status(&btc()), Some(Status::Stale));
    let reports: Vec<_> =
        [("100", 1), ("103", 2), ("101", 3)].into_iter().map(|(spot, i)| report(i, price(spot), 1_000, None)).collect();
    let events = oracle.apply(1_000, &reports, &equal_stakes(3));
    assert!(events.contains(&OracleEvent::BecameFresh { underlying: btc() }));
    assert_eq!(updated_index(&events), Some(price("101")));
    assert_eq!(oracle.index(&btc()), Some(price("101")));
    assert_eq!(oracle.status(&btc()), Some(Status::Fresh));
}

#[test]
fn exactly_two_thirds_is_not_a_quorum() {
    let mut oracle = oracle(Some("100"));
    let reports = vec![report(1, price("90"), 1_000, None), report(2, price("90"), 1_000, None)];
    let events = oracle.apply(1_000, &reports, &equal_stakes(3));
    assert_eq!(events, vec![OracleEvent::QuorumMissed { underlying: btc(), covered_stake: 200, total_stake: 300 }]);
    assert_eq!(oracle.index(&btc()), Some(price("100")));
}

#[test]
fn a_large_move_is_followed_in_bounded_steps() {
    let mut oracle = oracle(Some("100"));
    let stakes = equal_stakes(3);
    let reports: Vec<_> = (1..=3).map(|i| report(i, price("105"), 1_000, None)).collect();
    let events = oracle.apply(1_000, &reports, &stakes);
    assert!(events.contains(&OracleEvent::IndexUpdated {
        underlying: btc(),
        index: price("102"),
        aggregate: price("105"),
        clamped: true,
        covered_stake: 300,
        total_stake: 300
    }));
    // No new reports: the fresh ones keep counting and the index keeps stepping.
    oracle.apply(2_000, &[], &stakes);
    assert_eq!(oracle.index(&btc()), Some(price("104.04")));
    oracle.apply(3_000, &[], &stakes);
    assert_eq!(oracle.index(&btc()), Some(price("105")));
    assert_eq!(oracle.state(&btc()).unwrap().aggregate, Some(price("105")));
}

#[test]
fn quiet_underlyings_turn_stale_and_reanchor_unguarded() {
    let mut oracle = oracle(Some("100"));
    let stakes = equal_stakes(3);
    let stale_after = oracle.params().stale_after_ms;
    assert!(oracle.apply(stale_after - 1, &[], &stakes).is_empty());
    assert_eq!(oracle.apply(stale_after, &[], &stakes), vec![OracleEvent::BecameStale { underlying: btc() }]);
    assert!(oracle.apply(stale_after + 1, &[], &stakes).is_empty(), "reported once");
    let now = stale_after + 5_000;
    let reports: Vec<_> = (1..=3).map(|i| report(i, price("200"), now, None)).collect();
    let events = oracle.apply(now, &reports, &stakes);
    assert!(events.contains(&OracleEvent::BecameFresh { underlying: btc() }));
    assert_eq!(oracle.index(&btc()), Some(price("200")));
}

#[test]
fn reports_are_ignored_with_a_reason() {
    let mut oracle = oracle(Some("100"));
    let stakes = equal_stakes(3);
    let now = 100_000;
    let params = oracle.params().clone();
    let eth = Underlying::new("ETH").unwrap();
    let mut unlisted = report(1, price("1"), now, None);
    unlisted.prices[0].underlying = eth.clone();
    let reports = vec![
        unlisted,
        report(9, price("1"), now, None),
        report(2, price("1"), now - params.max_report_age_ms - 1, None),
        report(3, price("1"), now + params.max_future_skew_ms + 1, None),
        report(1, price("100"), now, None),
        report(1, price("100"), now, None),
    ];
    let events = oracle.apply(now, &reports, &stakes);
    let reasons: Vec<_> = events
        .iter()
        .filter_map(|event| match event {
            OracleEvent::ReportIgnored { reason, .. } => Some(*reason),
            _ => None,
        })
        .collect();
    assert_eq!(
        reasons,
        vec![
            IgnoreReason::UnlistedUnderlying,
            IgnoreReason::NoStake,
            IgnoreReason::TooOld,
            IgnoreReason::FromTheFuture,
            IgnoreReason::NotNewer,
        ]
    );
}

#[test]
fn reports_expire_and_unstaked_reporters_stop_counting() {
    let mut oracle = oracle(Some("100"));
    let reports: Vec<_> = (1..=3).map(|i| report(i, price("100.5"), 1_000, None)).collect();
    oracle.apply(1_000, &reports, &equal_stakes(3));
    // Reporter 3 leaves the active set: 2 of 2 remaining still form a quorum.
    let two = equal_stakes(2);
    assert!(updated_index(&oracle.apply(2_000, &[], &two)).is_some());
    // A new validator joins without reporting: 200 of 300 is no quorum.
    let joined = StakeTable::new(&[(reporter(1), 100), (reporter(2), 100), (reporter(3), 100)]).unwrap();
    assert!(updated_index(&oracle.apply(3_000, &[], &joined)).is_none());
    // Past the maximum age nothing counts.
    let late = 1_000 + oracle.params().max_report_age_ms + 1;
    assert!(oracle.apply(late, &[], &two).is_empty());
}

fn smile(expiry_ms: u64, atm: &str, points: &[(&str, &str)]) -> ExpirySmile {
    let points = points
        .iter()
        .map(|(k, v)| SmilePoint { log_moneyness: LogMoneyness::parse(k).unwrap(), vol: Vol::parse(v).unwrap() })
        .collect();
    ExpirySmile::new(expiry_ms, Vol::parse(atm).unwrap(), points, 16).unwrap()
}

#[test]
fn surfaces_aggregate_node_by_node() {
    let mut oracle = oracle(Some("100"));
    let day = 86_400_000;
    let now = 1_000;
    let near = |atm: &str, wing: &str| smile(day, atm, &[("-1", wing), ("1", wing)]);
    let surfaces = [
        VolSurface::new(vec![near("0.5", "0.9"), smile(2 * day, "0.4", &[])], 16).unwrap(),
        VolSurface::new(vec![near("0.6", "0.7")], 16).unwrap(),
        VolSurface::new(vec![near("0.7", "0.8")], 16).unwrap(),
    ];
    let reports: Vec<_> =
        surfaces.into_iter().enumerate().map(|(i, s)| report(i as u8 + 1, price("100"), now, Some(s))).collect();
    let events = oracle.apply(now, &reports, &equal_stakes(3));
    assert!(events.contains(&OracleEvent::SurfaceUpdated { underlying: btc(), expiries: 1 }));
    let surface = oracle.surface(&btc()).unwrap();
    let expiry = &surface.expiries()[0];
    assert_eq!(expiry.expiry_ms(), day, "the 2-day expiry had a third of the stake");
    assert_eq!(expiry.atm_vol(), Vol::parse("0.6").unwrap());
    let vol_at = |k: &str| expiry.vol_at(k.parse().unwrap());
    // At k = -1: medians of 0.9, 0.7, 0.8.
    assert_eq!(vol_at("-1"), Vol::parse("0.8").unwrap());
    // At k = -0.5: reporters give 0.7, 0.65, 0.75.
    assert_eq!(vol_at("-0.5"), Vol::parse("0.7").unwrap());
    assert_eq!(expiry.smile().len(), oracle.params().smile_grid.len());
    // Once the expiry passes it is no longer aggregated.
    let later: Vec<_> = (1..=3)
        .map(|i| report(i, price("100"), day, Some(VolSurface::new(vec![near("0.5", "0.5")], 16).unwrap())))
        .collect();
    let events = oracle.apply(day, &later, &equal_stakes(3));
    assert!(!events.iter().any(|e| matches!(e, OracleEvent::SurfaceUpdated { .. })));
}

#[test]
fn settlement_uses_the_twap_window_before_expiry() {
    let mut oracle = oracle(Some("100"));
    let stakes = equal_stakes(3);
    let window = oracle.params().twap_window_ms;
    let expiry = 2 * window;
    // Validators report every 10 s: 100 until the window's midpoint, then 101.
    let mid = expiry - window / 2;
    let mut halted = oracle.clone();
    for at in (10_000..=expiry).step_by(10_000) {
        let value = if at < mid { price("100") } else { price("101") };
        let reports: Vec<_> = (1..=3).map(|i| report(i, value, at, None)).collect();
        oracle.apply(at, &reports, &stakes);
    }
    assert_eq!(oracle.settlement_price(&btc(), expiry), Some("100.5".parse().unwrap()));
    assert_eq!(oracle.twap(&btc(), 0, 10), Some(Decimal::from(100)));
    // A chain that halted through the window has no settlement TWAP: the
    // held value is no price, and the runtime settles at the live index.
    let reports: Vec<_> = (1..=3).map(|i| report(i, price("101"), expiry, None)).collect();
    halted.apply(expiry, &reports, &stakes);
    assert_eq!(halted.settlement_price(&btc(), expiry), None);
}

#[test]
fn listing_is_bounded_and_unique() {
    let params = OracleParams { max_underlyings: 1, ..OracleParams::default() };
    let mut oracle = Oracle::new(params).unwrap();
    oracle.list_underlying(btc(), None, 0).unwrap();
    assert_eq!(oracle.list_underlying(btc(), None, 0), Err(OracleError::AlreadyListed(BTC.into())));
    assert!(matches!(
        oracle.list_underlying(Underlying::new("ETH").unwrap(), None, 0),
        Err(OracleError::TooMany { .. })
    ));
}

/// Millionths of a dollar to a price.
fn micros(value: u64) -> IndexPrice {
    IndexPrice::new(Decimal::new(value as i64, 6)).unwrap()
}

proptest! {
    #[test]
    fn a_third_of_stake_cannot_move_the_median_outside_honest_reports(
        honest in prop::collection::vec((1u64..1_000_000, 1_000_000_000u64..2_000_000_000), 1..8),
        liars in prop::collection::vec((1u64..100, 1u64..1_000_000_000_000_000), 0..6),
    ) {
        let honest_stake: u64 = honest.iter().map(|(stake, _)| stake).sum();
        // Liars together hold at most half the honest stake: a third of the total.
        let weights: u64 = liars.iter().map(|(w, _)| w).sum::<u64>().max(1);
        let mut stakes = Vec::new();
        let mut reports = Vec::new();
        for (i, (stake, spot)) in honest.iter().enumerate() {
            stakes.push((reporter(i as u8 + 1), *stake));
            reports.push(report(i as u8 + 1, micros(*spot), 1_000, None));
        }
        for (j, (weight, spot)) in liars.iter().enumerate() {
            let id = 100 + j as u8;
            stakes.push((reporter(id), weight * (honest_stake / 2) / weights));
            reports.push(report(id, micros(*spot), 1_000, None));
        }
        let table = StakeTable::new(&stakes).unwrap();
        prop_assert!(3 * (table.total() - u128::from(honest_stake)) <= table.total());
        let mut oracle = oracle(None);
        oracle.apply(1_000, &reports, &table);
        let index = oracle.index(&btc()).unwrap();
        let low = honest.iter().map(|(_, p)| *p).min().unwrap();
        let high = honest.iter().map(|(_, p)| *p).max().unwrap();
        prop_assert!(micros(low) <= index && index <= micros(high), "{} outside [{}, {}]", index, low, high);
    }

    #[test]
    fn without_more_than_two_thirds_nothing_moves(
        reporters in prop::collection::vec((1u64..1_000, any::<bool>(), 1u64..1_000_000_000), 1..10),
    ) {
        let stakes: Vec<_> = reporters.iter().enumerate().map(|(i, (s, _, _))| (reporter(i as u8 + 1), *s)).collect();
        let table = StakeTable::new(&stakes).unwrap();
        let reports: Vec<_> = reporters
            .iter()
            .enumerate()
            .filter(|(_, (_, reports, _))| *reports)
            .map(|(i, (_, _, spot))| report(i as u8 + 1, micros(*spot), 1_000, None))
            .collect();
        let covered: u128 = reporters.iter().filter(|r| r.1).map(|r| u128::from(r.0)).sum();
        let mut oracle = oracle(Some("50"));
        let events = oracle.apply(1_000, &reports, &table);
        if 3 * covered <= 2 * table.total() {
            prop_assert_eq!(oracle.index(&btc()), Some(price("50")));
            prop_assert!(updated_index(&events).is_none());
        } else {
            prop_assert!(updated_index(&events).is_some());
        }
    }

    #[test]
    fn the_deviation_guard_is_never_exceeded(
        start in 1u64..1_000_000_000_000,
        targets in prop::collection::vec(1u64..1_000_000_000_000_000, 1..30),
        bps in 1u32..10_000,
    ) {
        let params = OracleParams {
            max_move_per_update_bps: bps,
            ..OracleParams::default()
        };
        let mut oracle = Oracle::new(params).unwrap();
        oracle.list_underlying(btc(), Some(micros(start)), 0).unwrap();
        let stakes = equal_stakes(3);
        for (step, target) in targets.iter().enumerate() {
            let now = 1_000 * (step as u64 + 1);
            let before = oracle.index(&btc()).unwrap().value();
            let reports: Vec<_> = (1..=3).map(|i| report(i, micros(*target), now, None)).collect();
            oracle.apply(now, &reports, &stakes);
            let after = oracle.index(&btc()).unwrap().value();
            let bound = (before * Decimal::from(bps) / Decimal::from(10_000)).max(Decimal::new(1, 6));
            prop_assert!((after - before).abs() <= bound, "{} -> {} exceeds {}", before, after, bound);
            let target = micros(*target).value();
            if (target - before).abs() <= bound - Decimal::new(1, 6) {
                prop_assert_eq!(after, target);
            }
        }
    }
}
