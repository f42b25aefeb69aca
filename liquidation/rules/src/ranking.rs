//! Orders of play: which position a liquidation closes first, and which
//! opposite positions auto-deleveraging reduces first.

use rust_decimal::Decimal;

/// Positions in the order a partial liquidation closes them: the most
/// maintenance margin freed per dollar of expected closing loss first. Each
/// item is (margin freed by closing it alone, its expected closing loss);
/// returns item indices, ties in item order.
pub fn close_order(items: &[(f64, f64)]) -> Vec<usize> {
    let score = |(freed, loss): (f64, f64)| freed / loss.max(1e-9);
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by(|&a, &b| score(items[b]).total_cmp(&score(items[a])).then(a.cmp(&b)));
    order
}

/// Auto-deleveraging priority of an opposite position: its profit ratio
/// (unrealised profit over what it cost) times its account's leverage (the
/// position's value over the account's equity). Higher goes first; the
/// caller breaks ties by address. Saturates instead of overflowing.
pub fn adl_score(profit: Decimal, cost: Decimal, value: Decimal, equity: Decimal) -> Decimal {
    let tiny = Decimal::new(1, 6);
    let ratio = profit.checked_div(cost.abs().max(tiny)).unwrap_or(Decimal::MAX);
    let leverage = value.abs().checked_div(equity.max(tiny)).unwrap_or(Decimal::MAX);
    ratio.checked_mul(leverage).unwrap_or(if ratio.is_sign_negative() { Decimal::MIN } else { Decimal::MAX })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn most_margin_per_loss_goes_first() {
        assert_eq!(close_order(&[(10.0, 10.0), (30.0, 10.0), (5.0, 1.0), (30.0, 10.0)]), vec![2, 1, 3, 0]);
        assert_eq!(close_order(&[(1.0, 0.0), (1.0, 1.0)]), vec![0, 1]);
        assert!(close_order(&[]).is_empty());
    }

    #[test]
    fn profitable_leveraged_positions_rank_first() {
        let d = |s: &str| s.parse::<Decimal>().unwrap();
        let rich = adl_score(d("500"), d("1000"), d("1500"), d("3000"));
        let poor = adl_score(d("-100"), d("1000"), d("900"), d("3000"));
        let leveraged = adl_score(d("500"), d("1000"), d("1500"), d("1500"));
        assert_eq!(rich, d("0.25"));
        assert!(leveraged > rich && rich > poor);
        assert_eq!(adl_score(d("1e15"), d("0"), d("1e15"), d("0")), Decimal::MAX);
    }
}
