//! Agreement with QuantLib 1.44 (AnalyticEuropeanEngine, flat curves) on every
//! row of `tests/vectors/black_scholes_quantlib.csv`: each of price, delta,
//! gamma, vega per vol point and theta per day within 1e-6 relative or 1e-8
//! absolute, whichever is looser.

use vanna_pricing::{OptionInputs, OptionKind, greeks, years_from_days};

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/vectors/black_scholes_quantlib.csv");
const HEADER: &str = "kind,spot,strike,vol,rate,days,price,delta,gamma,vega_per_vol_point,theta_per_day";
const RELATIVE_TOLERANCE: f64 = 1e-6;
const ABSOLUTE_TOLERANCE: f64 = 1e-8;

fn agrees(ours: f64, reference: f64) -> bool {
    let tolerance = (RELATIVE_TOLERANCE * reference.abs()).max(ABSOLUTE_TOLERANCE);
    (ours - reference).abs() <= tolerance
}

#[test]
fn agrees_with_quantlib_on_every_row() {
    let text = std::fs::read_to_string(VECTORS).expect("reference vectors are in the repository");
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some(HEADER), "unexpected CSV header");
    let mut rows = 0;
    let mut failures = Vec::new();
    for line in lines.filter(|line| !line.trim().is_empty()) {
        let fields: Vec<&str> = line.split(',').collect();
        assert_eq!(fields.len(), 11, "malformed row {line}");
        let number = |index: usize| -> f64 { fields[index].parse().unwrap_or_else(|_| panic!("bad number in {line}")) };
        let kind = match fields[0] {
            "call" => OptionKind::Call,
            "put" => OptionKind::Put,
            other => panic!("unknown kind {other}"),
        };
        let inputs = OptionInputs {
            kind,
            spot: number(1),
            strike: number(2),
            volatility: number(3),
            rate: number(4),
            years_to_expiry: years_from_days(number(5)),
        };
        let ours = greeks(&inputs).expect("reference inputs are valid");
        let pairs = [
            ("price", ours.price, number(6)),
            ("delta", ours.delta, number(7)),
            ("gamma", ours.gamma, number(8)),
            ("vega_per_vol_point", ours.vega_per_vol_point, number(9)),
            ("theta_per_day", ours.theta_per_day, number(10)),
        ];
        for (name, value, reference) in pairs {
            if !agrees(value, reference) {
                failures.push(format!("{line}: {name} {value} vs QuantLib {reference}"));
            }
        }
        rows += 1;
    }
    assert_eq!(rows, 202, "the file has 202 options");
    assert!(failures.is_empty(), "{} disagreements:\n{}", failures.len(), failures.join("\n"));
}
