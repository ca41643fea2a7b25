//! The last part every load-driven policy shares: from raw per-endpoint
//! weights to the integers clients get.
//!
//! 1. no fresh load anywhere in the cluster: the source's weights;
//! 2. stale endpoints take the mean of the fed ones, less the share of
//!    their calls clients saw fail (LRS);
//! 3. scale so the mean is `MEAN_WEIGHT` (resolution for integers);
//! 4. bound the spread: nothing below `max / max_ratio`;
//! 5. slow start: a new endpoint ramps from a fraction of the mean;
//! 6. round and clamp into `[MIN_WEIGHT, MAX_WEIGHT]`.

use super::{ControllerConfig, EndpointInput, WeightReason};
use crate::registry::{MAX_WEIGHT, MIN_WEIGHT};

/// The mean weight load-driven policies scale to.
pub const MEAN_WEIGHT: f64 = 1000.0;

/// The source's weights for `inputs`, clamped, all with `reason`.
pub(super) fn configured(
    inputs: &[EndpointInput],
    reason: WeightReason,
) -> Vec<(u32, WeightReason)> {
    inputs
        .iter()
        .map(|input| {
            (
                input.configured_weight.clamp(MIN_WEIGHT, MAX_WEIGHT),
                reason,
            )
        })
        .collect()
}

/// Scales `weights` so their mean is `MEAN_WEIGHT` (all of them
/// `MEAN_WEIGHT` when the mean is not a positive number), then raises any
/// below the largest over `max_ratio` to that floor. Returns which were
/// raised.
pub(super) fn scale_and_bound(weights: &mut [&mut f64], max_ratio: f64) -> Vec<bool> {
    let mean = weights.iter().map(|w| **w).sum::<f64>() / weights.len().max(1) as f64;
    for w in weights.iter_mut() {
        // Divided first: a weight near f64::MAX (a server reporting absurd
        // but finite requests per second) must not overflow to infinity.
        **w = if mean > 0.0 && mean.is_finite() {
            **w / mean * MEAN_WEIGHT
        } else {
            MEAN_WEIGHT
        };
    }
    let max = weights.iter().map(|w| **w).fold(0.0_f64, f64::max);
    let floor = max / max_ratio.max(1.0);
    weights
        .iter_mut()
        .map(|w| {
            let raise = **w < floor;
            if raise {
                **w = floor;
            }
            raise
        })
        .collect()
}

/// Final weights for `inputs`. `raw[i]` is the policy's weight for
/// endpoint `i` and why, or `None` when it has no fresh load; `ages[i]` is
/// how many steps endpoint `i` has been in the cluster.
pub(super) fn render(
    inputs: &[EndpointInput],
    raw: &[Option<(f64, WeightReason)>],
    ages: &[u32],
    config: &ControllerConfig,
) -> Vec<(u32, WeightReason)> {
    let fed: Vec<f64> = raw.iter().flatten().map(|(w, _)| *w).collect();
    if fed.is_empty() {
        return configured(inputs, WeightReason::NoReports);
    }
    let fed_mean = fed.iter().sum::<f64>() / fed.len() as f64;
    let mut weights: Vec<(f64, WeightReason)> = raw
        .iter()
        .zip(inputs)
        .map(|(entry, input)| {
            entry.unwrap_or_else(|| {
                // Without load of its own, an endpoint clients see failing
                // still pays for it: the mean, less the failed share (down
                // to the bound).
                // (Kept above 0: a weight of 0 reads as "no weight" below.)
                let share = (1.0 - input.client_error_ratio()).max(1.0 / config.max_ratio.max(1.0));
                (fed_mean * share, WeightReason::Stale)
            })
        })
        .map(|(w, reason)| {
            (
                if w.is_finite() && w > 0.0 {
                    w
                } else {
                    fed_mean
                },
                reason,
            )
        })
        .collect();
    let bounded = {
        let mut raw: Vec<&mut f64> = weights.iter_mut().map(|(w, _)| w).collect();
        scale_and_bound(&mut raw, config.max_ratio)
    };
    for ((_, reason), bounded) in weights.iter_mut().zip(bounded) {
        if bounded {
            *reason = WeightReason::Bounded;
        }
    }
    let max = weights.iter().map(|(w, _)| *w).fold(0.0_f64, f64::max);
    let floor = max / config.max_ratio.max(1.0);
    weights
        .into_iter()
        .zip(ages)
        .map(|((mut weight, mut reason), &age)| {
            if config.slow_start_steps > 0 && age < config.slow_start_steps {
                let progress = f64::from(age) / f64::from(config.slow_start_steps);
                let start = MEAN_WEIGHT * config.slow_start_floor;
                weight = start + (weight - start) * progress;
                reason = WeightReason::SlowStart;
            }
            // Rounding never takes a weight below the bound's floor, so it
            // never breaks the bound (a weight just above the floor, not
            // only a bounded one, could round below it).
            let rounded = if weight.round() < floor && reason != WeightReason::SlowStart {
                weight.ceil()
            } else {
                weight.round()
            };
            let integer = rounded.clamp(f64::from(MIN_WEIGHT), f64::from(MAX_WEIGHT));
            // In range by the clamp above.
            (integer as u32, reason)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    fn inputs(configured: &[u32]) -> Vec<EndpointInput> {
        configured
            .iter()
            .enumerate()
            .map(|(i, &w)| EndpointInput {
                address: SocketAddr::from(([10, 0, 0, 1], 8000 + i as u16)),
                configured_weight: w,
                client_errors: None,
                report: None,
            })
            .collect()
    }

    #[test]
    fn no_fresh_load_keeps_the_configured_weights() {
        let out = render(
            &inputs(&[1, 2, 7]),
            &[None, None, None],
            &[9, 9, 9],
            &ControllerConfig::default(),
        );
        assert_eq!(
            out,
            vec![
                (1, WeightReason::NoReports),
                (2, WeightReason::NoReports),
                (7, WeightReason::NoReports)
            ]
        );
    }

    #[test]
    fn stale_gets_the_mean_and_the_spread_is_bounded() {
        let f = WeightReason::Feedback;
        let out = render(
            &inputs(&[1, 1, 1, 1]),
            &[Some((100.0, f)), Some((300.0, f)), None, Some((1.0, f))],
            &[9, 9, 9, 9],
            &ControllerConfig::default(),
        );
        let weights: Vec<u32> = out.iter().map(|(w, _)| *w).collect();
        let reasons: Vec<WeightReason> = out.iter().map(|(_, r)| *r).collect();
        assert_eq!(
            reasons,
            vec![f, f, WeightReason::Stale, WeightReason::Bounded]
        );
        // Stale = mean of fed (133.7), bounded = max / 10.
        assert!(weights[3].abs_diff(weights[1] / 10) <= 1, "{weights:?}");
        assert!(weights[0] < weights[2] && weights[2] < weights[1]);
    }

    #[test]
    fn without_load_of_its_own_an_endpoint_still_pays_for_client_errors() {
        // Its ORCA stream is down (a hung server) while clients see most of
        // its calls fail: it must not get the mean.
        let f = WeightReason::Feedback;
        let mut endpoints = inputs(&[1, 1, 1, 1]);
        endpoints[2].client_errors = Some(0.5);
        endpoints[3].client_errors = Some(1.0);
        let out = render(
            &endpoints,
            &[Some((100.0, f)), Some((100.0, f)), None, None],
            &[9, 9, 9, 9],
            &ControllerConfig::default(),
        );
        let weights: Vec<u32> = out.iter().map(|(w, _)| *w).collect();
        assert_eq!(out[2].1, WeightReason::Stale);
        assert!(weights[2].abs_diff(weights[0] / 2) <= 1, "{weights:?}");
        // Every call failing: down to the bound, never to nothing.
        assert!(weights[3].abs_diff(weights[0] / 10) <= 1, "{weights:?}");
    }

    #[test]
    fn huge_finite_weights_stay_in_range() {
        // Found by the weight_policy fuzz target: `wrr` gives rps / load, and
        // a server may report 2e305 requests per second. Scaling overflowed
        // to infinity, slow start made it NaN, and NaN became weight 0.
        let w = WeightReason::Formula;
        for ages in [[0, 0], [9, 9]] {
            let out = render(
                &inputs(&[1, 1]),
                &[Some((2.07e305, w)), Some((1e300, w))],
                &ages,
                &ControllerConfig::default(),
            );
            for (weight, _) in &out {
                assert!((MIN_WEIGHT..=MAX_WEIGHT).contains(weight), "{out:?}");
            }
        }
        let out = render(
            &inputs(&[1]),
            &[Some((2.07e305, w))],
            &[0],
            &ControllerConfig::default(),
        );
        assert_eq!(out, vec![(250, WeightReason::SlowStart)]);
    }

    #[test]
    fn rounding_keeps_the_ratio_bound() {
        // Found by the weight_policy fuzz target: with a large max ratio the
        // floor is a few units, and a weight just above it (not raised, so
        // not rounded up) rounded below it: 1621/2 under a bound of 655.35.
        let config = ControllerConfig {
            max_ratio: 1000.0,
            ..ControllerConfig::default()
        };
        let f = WeightReason::Feedback;
        // Mean 1000 already: the floor is 3.4, and 3.45 rounded to 3.
        let out = render(
            &inputs(&[1, 1, 1, 1]),
            &[
                Some((3400.0, f)),
                Some((3.45, f)),
                Some((298.275, f)),
                Some((298.275, f)),
            ],
            &[9, 9, 9, 9],
            &config,
        );
        let weights: Vec<u32> = out.iter().map(|(w, _)| *w).collect();
        assert_eq!(weights, vec![3400, 4, 298, 298]);
        assert!(f64::from(weights[0]) <= f64::from(weights[1]) * config.max_ratio);
    }

    #[test]
    fn a_new_endpoint_ramps_up() {
        let f = WeightReason::Feedback;
        let config = ControllerConfig::default();
        let weight_at = |age: u32| {
            render(
                &inputs(&[1, 1]),
                &[Some((1000.0, f)), Some((1000.0, f))],
                &[9, age],
                &config,
            )[1]
        };
        assert_eq!(weight_at(0), (250, WeightReason::SlowStart));
        assert!(weight_at(2).0 > 250 && weight_at(2).0 < 1000);
        assert_eq!(weight_at(config.slow_start_steps), (1000, f));
    }
}
