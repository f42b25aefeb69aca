//! Golden bits: the exact `f64` results of a fixed set of options, as computed
//! on x86-64 when this file was written. Any platform, compiler or dependency
//! change that alters a single bit fails here, before two validators could
//! disagree on a margin figure. If this test fails after an upgrade, the
//! upgrade changed consensus-relevant arithmetic: do not update the constants
//! without a coordinated network upgrade.

use vanna_pricing::{OptionInputs, OptionKind, greeks, price, years_from_days};

/// kind, spot, strike, volatility, rate, days: at the money, in and out of the
/// money, tails, zero and vanishing volatility, expired, negative rate, BTC
/// and ETH magnitudes, and extreme scales.
const CASES: [(OptionKind, f64, f64, f64, f64, f64); 20] = [
    (OptionKind::Call, 42.0, 40.0, 0.2, 0.1, 182.0),
    (OptionKind::Put, 42.0, 40.0, 0.2, 0.1, 182.0),
    (OptionKind::Call, 97_250.5, 100_000.0, 0.55, 0.0, 30.0),
    (OptionKind::Put, 97_250.5, 100_000.0, 0.55, 0.0, 30.0),
    (OptionKind::Call, 97_250.5, 150_000.0, 0.8, 0.03, 7.0),
    (OptionKind::Put, 97_250.5, 60_000.0, 1.2, 0.03, 1.0),
    (OptionKind::Call, 3_512.25, 3_500.0, 0.7, 0.05, 0.25),
    (OptionKind::Put, 3_512.25, 3_500.0, 0.7, 0.05, 0.25),
    (OptionKind::Call, 100.0, 100.0, 0.3, 0.0, 365.0),
    (OptionKind::Put, 100.0, 100.0, 0.3, -0.01, 3650.0),
    (OptionKind::Call, 100.0, 300.0, 0.2, 0.05, 30.0),
    (OptionKind::Put, 100.0, 300.0, 0.2, 0.05, 30.0),
    (OptionKind::Call, 100.0, 20.0, 0.5, 0.05, 90.0),
    (OptionKind::Put, 100.0, 20.0, 0.5, 0.05, 90.0),
    (OptionKind::Call, 100.0, 95.0, 0.0, 0.05, 60.0),
    (OptionKind::Put, 100.0, 105.0, 1e-12, 0.05, 60.0),
    (OptionKind::Call, 100.0, 90.0, 0.5, 0.05, 0.0),
    (OptionKind::Put, 100.0, 100.0, 0.5, 0.05, -1.0),
    (OptionKind::Call, 1e-6, 1e-6, 3.0, 0.2, 1.0),
    (OptionKind::Put, 1e12, 1.5e12, 0.4, 0.02, 45.5),
];

/// Bits of price, delta, gamma, vega per vol point, theta per day, row by row.
#[rustfmt::skip]
const EXPECTED_BITS: [[u64; 5]; 20] = [
    [0x401303404c8e7240, 0x3fe8ee6185c7bcf6, 0x3fa99e3dc4ca37a6, 0x3fb688856f1d5125, 0xbf8999185f305480],
    [0x3fe9d7918d696800, 0xbfcc4679e8e10c2a, 0x3fa99e3dc4ca37a6, 0x3fb688856f1d5125, 0xbf60fbc4707be56b],
    [0x40b3374b8ba36cf8, 0x3fdd80a365129bd3, 0x3efb26314e643255, 0x405bac8a6c80802d, 0xc0595e298e20757f],
    [0x40bdf4cb8ba36cf0, 0xbfe13fae4d76b217, 0x3efb26314e643255, 0x405bac8a6c80802d, 0xc0595e298e20757f],
    [0x3fc26f3638a099c0, 0x3f0ed9d41a12baf4, 0x3e57f29b13ef20ac, 0x3fa091d227822b9a, 0xbfc7bac4c32e467a],
    [0x3d938409d276c900, 0xbcf9de57a59bebbc, 0x3c6103c1262978bb, 0x3d842e7d45d28571, 0xbde2e9f49d2d1f3a],
    [0x4040242ae4dfe020, 0x3fe28ee2d1cdd6cd, 0x3f78e25f33816107, 0x3fd6ff179b0ee7bc, 0xc0494a28166ca3eb],
    [0x4033e9a694830400, 0xbfdae23a5c645266, 0x3f78e25f33816107, 0x3fd6ff179b0ee7bc, 0xc0490cc9f0d12b16],
    [0x4027d8da08ed45a8, 0x3fe1e8635cdfc822, 0x3f8aee06a6b82385, 0x3fd93f263c4ca14d, 0xbf9099bdf68d90a3],
    [0x4045ec95b1250f3f, 0xbfd6ca29c3513796, 0x3f70176304c6770d, 0x3ff2db6809989384, 0xbf7cc15a1533c0a0],
    [0x2f18a27ec7bad600, 0x2f34a537d6caef69, 0x2f5134307e6cb2e8, 0x2f5c47c37122e6f8, 0xaf42fe99e1a94b20],
    [0x4068d8a0ff996e20, 0xbff0000000000000, 0x2f5134307e6cb2e8, 0x2f5c47c37122e6f8, 0x3fa4f46df952950b],
    [0x40540faf16c918b1, 0x3feffffffffe1155, 0x3d90ef875cf822b8, 0x3dca19772ed6126f, 0xbf662b386b1cce38],
    [0x3dcca95881622700, 0xbdaeeab1bcb39e4d, 0x3d90ef875cf822b8, 0x3dca19772ed6126f, 0xbdac8f68e145ba08],
    [0x40171c48e5e62a90, 0x3ff0000000000000, 0x0000000000000000, 0x0000000000000000, 0xbf8a6f13b7347369],
    [0x40108fe552be3cc0, 0xbff0000000000000, 0x0000000000000000, 0x0000000000000000, 0x3f8d3766a2118d08],
    [0x4024000000000000, 0x3ff0000000000000, 0x0000000000000000, 0x0000000000000000, 0x0000000000000000],
    [0x0000000000000000, 0xbfe0000000000000, 0x0000000000000000, 0x0000000000000000, 0x0000000000000000],
    [0x3e70de2b05611264, 0x3fe10bb274fe4e47, 0x414351710a5be781, 0x3dec9a6574c98cb4, 0xbe60e5d98c47b156],
    [0x425ce48e5e2fca3c, 0xbfefe9ebf6385977, 0x3d308dfed4fafb64, 0x417bf7c619461364, 0x419070a9452a463b],
];

#[test]
fn results_are_bit_identical_to_the_golden_values() {
    let mut mismatches = Vec::new();
    for (row, (&(kind, spot, strike, volatility, rate, days), expected)) in
        CASES.iter().zip(EXPECTED_BITS.iter()).enumerate()
    {
        let inputs = OptionInputs { kind, spot, strike, volatility, rate, years_to_expiry: years_from_days(days) };
        let result = greeks(&inputs).expect("golden inputs are valid");
        let got = [
            result.price.to_bits(),
            result.delta.to_bits(),
            result.gamma.to_bits(),
            result.vega_per_vol_point.to_bits(),
            result.theta_per_day.to_bits(),
        ];
        if got != *expected {
            mismatches.push(format!("row {row} {inputs:?}: got {got:x?}, expected {expected:x?}"));
        }
        // The price-only path must give the very same bits as the full one.
        assert_eq!(price(&inputs).unwrap().to_bits(), result.price.to_bits(), "row {row}");
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}
