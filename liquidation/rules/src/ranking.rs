//! Orders of play: which position a liquidation closes first, and which
//! opposite positions auto-deleveraging reduces first.

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
/// caller breaks ties by address (compare with `f64::total_cmp`). A
/// ranking, never a payment: IEEE basic operations only, so every machine
/// ranks alike; infinities for a zero equity or cost, never NaN.
pub fn adl_score(profit: f64, cost: f64, value: f64, equity: f64) -> f64 {
    const TINY: f64 = 1e-6;
    let ratio = profit / cost.abs().max(TINY);
    let leverage = value.abs() / equity.max(TINY);
    let score = ratio * leverage;
    if score.is_nan() { 0.0 } else { score }
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
        let rich = adl_score(500.0, 1000.0, 1500.0, 3000.0);
        let poor = adl_score(-100.0, 1000.0, 900.0, 3000.0);
        let leveraged = adl_score(500.0, 1000.0, 1500.0, 1500.0);
        assert_eq!(rich, 0.25);
        assert!(leveraged > rich && rich > poor);
        assert!(adl_score(1e300, 0.0, 1e300, 0.0).is_infinite());
        assert!(!adl_score(f64::INFINITY, 1.0, 0.0, 1.0).is_nan());
    }
}
