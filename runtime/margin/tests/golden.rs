//! Golden bits of whole margin computations: a small BTC listing after one
//! oracle update and three accounts. Complements `vanna-pricing`'s golden test
//! by pinning the table construction (scenario grid, shocked inputs, sums in
//! position order) too; a single differing bit fails here.

use rust_decimal::Decimal;
use vanna_margin::{MarginParams, OptionKind, Position, SeriesIndex, SeriesKey, build_tables};

const NOW_MS: u64 = 1_790_000_000_000;
const DAY_MS: u64 = 86_400_000;
const SPOT: f64 = 97_250.5;

fn position(series: u32, contracts: f64) -> Position {
    Position { series: SeriesIndex(series), contracts }
}

#[test]
fn accounts_are_bit_identical_to_the_golden_values() {
    let key = |days: u64, strike: i64, kind| SeriesKey {
        expiry_ms: NOW_MS + days * DAY_MS,
        strike: Decimal::from(strike),
        kind,
    };
    let series = [
        key(7, 90_000, OptionKind::Put),
        key(7, 100_000, OptionKind::Call),
        key(30, 80_000, OptionKind::Put),
        key(30, 100_000, OptionKind::Put),
        key(30, 120_000, OptionKind::Call),
        key(91, 97_000, OptionKind::Call),
    ];
    // A smile: higher volatility away from the money, lower for longer expiries.
    let volatility = |key: &SeriesKey| {
        let moneyness = vanna_pricing::decimal_to_f64(key.strike) / SPOT - 1.0;
        let days = (key.expiry_ms - NOW_MS) / DAY_MS;
        0.5 + 0.8 * moneyness * moneyness + if days < 30 { 0.05 } else { 0.0 }
    };
    let tables = build_tables(&MarginParams::default(), SPOT, NOW_MS, &series, volatility).unwrap();
    let accounts: [&[Position]; 3] = [
        &[position(1, -1.0)],
        &[position(0, -2.5), position(2, 2.5), position(4, -1.0), position(5, 0.75)],
        &[
            position(0, 3.0),
            position(1, -0.5),
            position(2, -4.0),
            position(3, 1.25),
            position(4, 2.0),
            position(5, -1.5),
        ],
    ];
    let got: Vec<[u64; 3]> = accounts
        .iter()
        .map(|positions| {
            let margin = tables.account(positions).unwrap();
            [margin.position_value.to_bits(), margin.maintenance.to_bits(), margin.initial.to_bits()]
        })
        .collect();
    assert_eq!(got, EXPECTED_BITS);
}

/// Position value, maintenance, initial, per account (about: -1823.02, 11666.61, 16776.98; 6689.78, 21949.11, 32461.00; -5955.61, 26432.61, 36279.39).
#[rustfmt::skip]
const EXPECTED_BITS: [[u64; 3]; 3] = [
    [0xc09c7c0fb4325c20, 0x40c6c94e9a13b279, 0x40d0623e7a5090f4],
    [0x40ba21c671531288, 0x40d56f46d57db1c4, 0x40dfb33fdfab2557],
    [0xc0b7439d6c418c60, 0x40d9d026f5ec1035, 0x40e1b6ec6513b4b7],
];
