//! A lock-free, deterministic weighted picker.
//!
//! Endpoint `i` owns the slice `[C(i-1), C(i))` of `0..total`, where `C` is
//! the running sum of the weights. Pick number `k` lands on point
//! `k * step mod total`, with `step` the integer nearest to
//! `total / golden ratio` that is coprime with `total`. Because `step` and
//! `total` are coprime, any `total` consecutive picks visit every point
//! exactly once: over each such window every endpoint gets exactly its
//! weight's share, and inside it the golden-ratio stride spreads each
//! endpoint's picks evenly (no bursts). A pick is one atomic increment, a
//! multiply-modulo and a binary search: O(log n), no lock, no allocation.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why a picker cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PickerError {
    /// No endpoint to pick from.
    #[error("no endpoints")]
    Empty,
    /// A weight of zero: the endpoint could never be picked.
    #[error("endpoint {index} has weight 0; weights must be at least 1")]
    ZeroWeight {
        /// Position of the endpoint.
        index: usize,
    },
}

/// Picks endpoint indexes in proportion to fixed weights.
#[derive(Debug)]
pub struct Picker {
    /// Running sums of the weights: endpoint `i` owns
    /// `[cumulative[i] - weight[i], cumulative[i])`.
    cumulative: Vec<u64>,
    total: u64,
    step: u64,
    next: AtomicU64,
}

/// 1 / golden ratio.
const INVERSE_PHI: f64 = 0.618_033_988_749_894_9;

/// Greatest common divisor (also used to reduce assignment weights).
pub(crate) fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl Picker {
    /// A picker over endpoints with these weights (index = position).
    pub fn new(weights: impl IntoIterator<Item = u32>) -> Result<Self, PickerError> {
        let mut cumulative = Vec::new();
        let mut total: u64 = 0;
        for (index, weight) in weights.into_iter().enumerate() {
            if weight == 0 {
                return Err(PickerError::ZeroWeight { index });
            }
            total += u64::from(weight);
            cumulative.push(total);
        }
        if cumulative.is_empty() {
            return Err(PickerError::Empty);
        }
        let mut step = ((total as f64) * INVERSE_PHI).round().max(1.0) as u64;
        while gcd(u128::from(step), u128::from(total)) != 1 {
            step += 1;
        }
        Ok(Self {
            cumulative,
            total,
            step: step % total.max(1),
            next: AtomicU64::new(0),
        })
    }

    /// Number of endpoints.
    pub fn len(&self) -> usize {
        self.cumulative.len()
    }

    /// Always false: a picker has at least one endpoint.
    pub fn is_empty(&self) -> bool {
        self.cumulative.is_empty()
    }

    /// Sum of the weights: every window of this many picks is exact.
    pub fn total_weight(&self) -> u64 {
        self.total
    }

    /// The index of the endpoint for the next call.
    pub fn pick(&self) -> usize {
        if self.cumulative.len() == 1 {
            return 0;
        }
        let k = self.next.fetch_add(1, Ordering::Relaxed) % self.total;
        // k, step < total <= 2^46 (10,000 endpoints x weight 10,000 is 2^27),
        // so the product fits in u128 comfortably; u128 keeps any weights safe.
        let point = ((u128::from(k) * u128::from(self.step)) % u128::from(self.total)) as u64;
        self.cumulative.partition_point(|&end| end <= point)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn counts(picker: &Picker, picks: u64) -> Vec<u64> {
        let mut counts = vec![0; picker.len()];
        for _ in 0..picks {
            counts[picker.pick()] += 1;
        }
        counts
    }

    #[test]
    fn every_window_of_total_picks_is_exact() {
        let picker = Picker::new([1, 2, 7]).expect("picker");
        assert_eq!(counts(&picker, 10), vec![1, 2, 7]);
        assert_eq!(counts(&picker, 3000), vec![300, 600, 2100]);
    }

    #[test]
    fn picks_are_spread_not_bursty() {
        // With weights 1/1/8, endpoint 0 must not get two picks in a row.
        let picker = Picker::new([1, 1, 8]).expect("picker");
        let sequence: Vec<usize> = (0..100).map(|_| picker.pick()).collect();
        let longest_run_of_heavy = sequence
            .split(|&i| i != 2)
            .map(<[usize]>::len)
            .max()
            .unwrap_or(0);
        assert!(longest_run_of_heavy <= 8, "{sequence:?}");
        assert!(
            sequence.windows(2).all(|w| !(w[0] == 0 && w[1] == 0)),
            "{sequence:?}"
        );
    }

    #[test]
    fn rejects_empty_and_zero() {
        assert_eq!(Picker::new([]).err(), Some(PickerError::Empty));
        assert_eq!(
            Picker::new([3, 0]).err(),
            Some(PickerError::ZeroWeight { index: 1 })
        );
    }

    #[test]
    fn single_endpoint_always_wins() {
        let picker = Picker::new([42]).expect("picker");
        assert!((0..10).all(|_| picker.pick() == 0));
    }

    #[test]
    fn concurrent_picks_stay_exact() {
        let picker = std::sync::Arc::new(Picker::new([1, 2, 7]).expect("picker"));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let picker = picker.clone();
                std::thread::spawn(move || {
                    let mut counts = [0u64; 3];
                    for _ in 0..2500 {
                        counts[picker.pick()] += 1;
                    }
                    counts
                })
            })
            .collect();
        let mut total = [0u64; 3];
        for handle in handles {
            let counts = handle.join().expect("thread");
            for (t, c) in total.iter_mut().zip(counts) {
                *t += c;
            }
        }
        assert_eq!(total, [1000, 2000, 7000]);
    }

    proptest! {
        #[test]
        fn any_weights_are_exact_over_a_window(weights in proptest::collection::vec(1u32..=10_000, 1..50)) {
            let picker = Picker::new(weights.iter().copied()).expect("picker");
            let got = counts(&picker, picker.total_weight());
            let want: Vec<u64> = weights.iter().map(|&w| u64::from(w)).collect();
            prop_assert_eq!(got, want);
        }
    }
}
