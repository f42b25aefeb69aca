//! `vanna-pricing`: Black-Scholes prices and greeks of European options,
//! bit-identical on every supported platform, and the directed roundings that
//! turn them into `Decimal`.
//!
//! What it owns: the Black-Scholes formulas (no dividends, continuously
//! compounded rate, ACT/365 year fractions), their edge cases (expired, zero
//! volatility, deep in or out of the money), and the exact conversions between
//! `f64` and `Decimal`.
//!
//! What it must never do: IO, read a clock, use randomness, call the platform's
//! maths library, or let a float reach state. A result enters state, a receipt
//! or a hash only through [`to_decimal_up`] / [`to_decimal_down`], rounded in
//! the direction that goes against the account.
//!
//! # Design: f64 restricted to operations with one correct answer
//!
//! Decimal transcendental maths costs about 15 µs per Black-Scholes here, far
//! too slow for portfolio margin (tens of thousands of prices per oracle
//! update). Fixed-point maths would need our own exp/ln/erfc with proofs of
//! their error. Instead this crate uses `f64` with three rules that make every
//! result a pure function of its inputs' bits:
//!
//! 1. Only IEEE-754 basic operations: `+ - * /` and `sqrt` are correctly rounded
//!    (round to nearest, ties to even), so every conforming platform gives the
//!    same bits. Comparisons, `abs`, `max`/`min` and integer conversions are
//!    exact.
//! 2. Transcendentals (`exp`, `ln`, `erfc`) come from the pure-Rust [`libm`]
//!    crate, a port of musl: the same Rust source, so the same sequence of basic
//!    operations everywhere. Never `f64::exp`, `f64::ln` or `f64::powi`, which
//!    call the platform's libm or an LLVM intrinsic whose expansion can differ.
//!    `libm` uses hardware only for `sqrt` and `fma`, both correctly rounded.
//! 3. No fused multiply-add and no order-varying reductions. Rust never
//!    contracts `a * b + c` into an FMA (LLVM's `contract` flag is off by
//!    default and rustc does not set it), and this crate never calls
//!    `mul_add`; every sum is written out in one fixed order.
//!
//! Supported targets are those whose `f64` is IEEE binary64 without excess
//! precision: x86-64, aarch64, riscv64, wasm32. 32-bit x86 without SSE2 is
//! excluded (its x87 unit computes in 80 bits, and `libm` itself switches to
//! x87 code there). The golden test in `tests/golden.rs` pins the exact bits of
//! a fixed set of results, so a platform that computes differently fails CI.
//!
//! # Conventions
//!
//! * `volatility` and `rate` are annual fractions: 0.6 is 60 %, 0.05 is 5 %.
//! * Time is in years, ACT/365: [`years_from_days`] and [`years_between_ms`].
//! * `vega_per_vol_point` is the change for +0.01 of volatility (one point);
//!   `theta_per_day` is the change per calendar day (annual theta / 365), as
//!   QuantLib's `thetaPerDay`.
//!
//! ```
//! use vanna_pricing::{OptionInputs, OptionKind, greeks, to_decimal_up, years_from_days};
//!
//! let call = OptionInputs {
//!     kind: OptionKind::Call,
//!     spot: 42.0,
//!     strike: 40.0,
//!     volatility: 0.2,
//!     rate: 0.1,
//!     years_to_expiry: years_from_days(182.0),
//! };
//! let result = greeks(&call).unwrap();
//! assert!((result.price - 4.7531749689).abs() < 1e-9);
//! // What an account must pay is rounded up, never to nearest.
//! assert_eq!(to_decimal_up(result.price, 6).unwrap().to_string(), "4.753175");
//! ```

mod black_scholes;
mod convert;

pub use black_scholes::{
    DAYS_PER_YEAR, Greeks, MS_PER_YEAR, OptionInputs, OptionKind, RATE_ABS_MAX, SPOT_STRIKE_MAX, SeriesPricer,
    SpotPricer, VOLATILITY_MAX, YEARS_MAX, greeks, normal_cdf, normal_pdf, price, years_between_ms, years_from_days,
};
pub use convert::{DECIMAL_PLACES_MAX, decimal_to_f64, to_decimal_down, to_decimal_up};

use thiserror::Error;

/// Why an input was refused. Messages name the input as the `vanna price`
/// flags do, so the CLI can print them as they are.
#[derive(Clone, Debug, PartialEq, Error)]
pub enum PricingError {
    #[error("spot must be a positive finite number no larger than {max:e}, got {value}")]
    Spot { value: f64, max: f64 },
    #[error("strike must be a positive finite number no larger than {max:e}, got {value}")]
    Strike { value: f64, max: f64 },
    #[error("volatility must be a finite number between 0 and {max}, got {value}")]
    Volatility { value: f64, max: f64 },
    #[error("rate must be a finite number between -{max} and {max}, got {value}")]
    Rate { value: f64, max: f64 },
    #[error("time to expiry must be a finite number of years no larger than {max}, got {value}")]
    YearsToExpiry { value: f64, max: f64 },
    #[error("cannot convert {value} to a decimal: not a finite number")]
    NotFinite { value: f64 },
    #[error("{value:e} does not fit a decimal with {decimal_places} decimal places")]
    OutOfDecimalRange { value: f64, decimal_places: u32 },
    #[error("at most {max} decimal places are supported, asked for {decimal_places}")]
    TooManyDecimalPlaces { decimal_places: u32, max: u32 },
}
