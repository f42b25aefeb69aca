//! Pro-rata allocation in whole units.

/// Splits `total` units in proportion to `weights`, never giving one more than
/// its weight: floor shares first, then the remaining units one each to the
/// largest remainders, earlier entries first on equal remainders. Returns
/// shares summing to `min(total, Σ weights)`.
pub fn pro_rata(total: u64, weights: &[u64]) -> Vec<u64> {
    let sum: u128 = weights.iter().map(|&w| u128::from(w)).sum();
    if sum == 0 {
        return vec![0; weights.len()];
    }
    let total = u128::from(total).min(sum);
    let mut shares: Vec<u64> = Vec::with_capacity(weights.len());
    let mut remainders: Vec<(u128, usize)> = Vec::with_capacity(weights.len());
    for (index, &weight) in weights.iter().enumerate() {
        let exact = total * u128::from(weight);
        shares.push((exact / sum) as u64);
        remainders.push((exact % sum, index));
    }
    let given: u128 = shares.iter().map(|&s| u128::from(s)).sum();
    let mut left = total - given;
    // Largest remainder first; the earlier entry wins a tie.
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for (_, index) in remainders {
        if left == 0 {
            break;
        }
        if shares[index] < weights[index] {
            shares[index] += 1;
            left -= 1;
        }
    }
    shares
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn splits_in_proportion_with_largest_remainders() {
        assert_eq!(pro_rata(10, &[1, 1, 1]), vec![1, 1, 1]);
        assert_eq!(pro_rata(2, &[1, 1, 1]), vec![1, 1, 0]);
        assert_eq!(pro_rata(5, &[10, 30]), vec![1, 4]);
        assert_eq!(pro_rata(7, &[0, 0]), vec![0, 0]);
        assert_eq!(pro_rata(0, &[4, 5]), vec![0, 0]);
    }

    proptest! {
        #[test]
        fn shares_sum_to_the_total_and_never_exceed_weights(
            total in 0u64..1_000_000,
            weights in proptest::collection::vec(0u64..100_000, 0..12),
        ) {
            let shares = pro_rata(total, &weights);
            let sum: u64 = weights.iter().sum();
            prop_assert_eq!(shares.iter().sum::<u64>(), total.min(sum));
            for (share, weight) in shares.iter().zip(&weights) {
                prop_assert!(share <= weight);
            }
        }
    }
}
