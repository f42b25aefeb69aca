//! Account risk from the margin tables: marks at the oracle spot, equity,
//! margins and greeks, rebuilt as the oracle moves.

mod common;

use common::*;
use rust_decimal::Decimal;
use vanna_proto::v1::Side;
use vanna_runtime::tx::{limit_order, place};

const VALIDATORS: [&str; 2] = ["val-a", "val-b"];

#[test]
fn marks_equity_and_margins_follow_the_oracle() {
    let mut chain = staked_sandbox();
    let idle = chain.state.account_margin(&chain.address("carol")).unwrap();
    assert_eq!(idle.equity, dec("1000000"));
    assert!(idle.initial.is_zero() && idle.maintenance.is_zero() && idle.positions.is_empty());
    assert_eq!(idle.margin_ratio, Some(Decimal::ZERO));

    run(&mut chain, "bob", vec![place(limit_order(PUT, Side::Sell, "4000", "2"))]);
    run(&mut chain, "alice", vec![place(limit_order(PUT, Side::Buy, "4000", "2"))]);

    // The mark is Black-Scholes at the oracle spot (97,000), the default 60 %
    // volatility (no surface reported) and the time left to expiry.
    let market = chain.state.series(PUT).unwrap();
    let expected = vanna_pricing::greeks(&vanna_pricing::OptionInputs {
        kind: vanna_pricing::OptionKind::Put,
        spot: 97_000.0,
        strike: 100_000.0,
        volatility: 0.6,
        rate: 0.0,
        years_to_expiry: vanna_pricing::years_between_ms(chain.state.time_ms, market.spec.expiry_ms),
    })
    .unwrap();
    let long = chain.state.account_margin(&chain.address("alice")).unwrap();
    let short = chain.state.account_margin(&chain.address("bob")).unwrap();
    assert_eq!(long.positions.len(), 1);
    let position = &long.positions[0];
    assert_eq!(position.contracts, dec("2"));
    assert!((position.mark - Decimal::try_from(expected.price).unwrap()).abs() < dec("0.000001"));
    assert!((position.delta - Decimal::try_from(2.0 * expected.delta).unwrap()).abs() < dec("0.000001"));
    assert!(position.delta < Decimal::ZERO && position.gamma > Decimal::ZERO);
    assert_eq!(short.positions[0].contracts, dec("-2"));
    assert!(short.positions[0].delta > Decimal::ZERO);

    // Equity: cash plus mark value, the short side rounded against the account.
    let (alice_cash, _) = usd(&chain, "alice");
    let (bob_cash, _) = usd(&chain, "bob");
    let value = dec("2") * position.mark;
    assert!((long.equity - (alice_cash + value)).abs() <= dec("0.000002"), "{} vs {}", long.equity, alice_cash + value);
    assert!((short.equity - (bob_cash - value)).abs() <= dec("0.000002"), "{} vs {}", short.equity, bob_cash - value);
    assert!(short.initial >= short.maintenance && short.maintenance.value() > Decimal::ZERO);
    let ratio = short.margin_ratio.unwrap();
    assert!(ratio >= short.maintenance.value() / short.equity);
    assert!(ratio - short.maintenance.value() / short.equity < dec("0.000001"));

    // A 2 % fall of the index raises the put's mark and the short's margin.
    chain.report_prices(&VALIDATORS, &[("BTC", "95060")]);
    run(&mut chain, "carol", vec![place(limit_order(PUT, Side::Buy, "1", "1"))]);
    assert_eq!(chain.state.index_price("BTC").value(), dec("95060"));
    let short_after = chain.state.account_margin(&chain.address("bob")).unwrap();
    assert!(short_after.positions[0].mark > position.mark);
    assert!(short_after.maintenance > short.maintenance);
    assert!(short_after.equity < short.equity);
}
