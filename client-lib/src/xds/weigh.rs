//! From localities to one weight per endpoint.
//!
//! Owns the rules that turn a ClusterLoadAssignment's priorities, locality
//! weights and endpoint weights into the flat weights the picker uses:
//! - priorities become tiers in order (lowest number first), leaving out
//!   those without a serving endpoint: the balancer sends calls to the
//!   first tier with a usable endpoint, the rest are its failover;
//! - without locality weights, each endpoint's own weight counts (1 when
//!   unset), as Envoy does when locality-weighted balancing is off;
//! - with locality weights, a locality gets its weight's share of the calls
//!   and splits it among its endpoints by their weights, as gRPC's
//!   `weighted_target` over `round_robin` does. A locality without a weight
//!   counts as weight 1 (rather than being dropped).
//!
//! Limit: there is no overprovisioning factor. A priority keeps every call
//! while one of its endpoints is usable, where Envoy would spill some over
//! to the next priority.
//!
//! Must never: give an endpoint weight 0, or lose an endpoint to rounding.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use crate::balance::gcd;
use crate::cluster::Assignment;

/// The serving endpoints of one locality, as the resource lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Locality {
    /// 0 is the highest priority.
    pub(crate) priority: u32,
    /// The locality's `load_balancing_weight`, if set (never 0).
    pub(crate) weight: Option<u32>,
    /// Serving endpoints with their `load_balancing_weight`, if set (never 0).
    pub(crate) endpoints: Vec<(SocketAddr, Option<u32>)>,
}

/// When exact weights do not fit in a `u32`, each endpoint's share of the
/// calls is rounded to this many parts.
const PARTS: u128 = 1_000_000_000;

/// One locality of a tier with its weights filled in (1 where unset), and
/// the sum of its endpoint weights.
struct Weighed {
    weight: u128,
    endpoints: Vec<(SocketAddr, u128)>,
    sum: u128,
}

/// One tier per priority that has a serving endpoint, highest priority
/// first, each with one weight (>= 1) per serving endpoint.
pub(crate) fn weigh(localities: &[Locality]) -> Vec<Assignment> {
    let mut tiers: BTreeMap<u32, Vec<&Locality>> = BTreeMap::new();
    for locality in localities.iter().filter(|l| !l.endpoints.is_empty()) {
        tiers.entry(locality.priority).or_default().push(locality);
    }
    tiers.values().map(|tier| weigh_tier(tier)).collect()
}

/// Weights of the serving endpoints of one priority's localities.
fn weigh_tier(tier: &[&Locality]) -> Assignment {
    if tier.iter().all(|locality| locality.weight.is_none()) {
        return tier
            .iter()
            .flat_map(|locality| &locality.endpoints)
            .map(|(address, weight)| (*address, weight.unwrap_or(1)))
            .collect();
    }
    let tier: Vec<Weighed> = tier
        .iter()
        .map(|locality| {
            let endpoints: Vec<(SocketAddr, u128)> = locality
                .endpoints
                .iter()
                .map(|(address, weight)| (*address, u128::from(weight.unwrap_or(1))))
                .collect();
            Weighed {
                weight: u128::from(locality.weight.unwrap_or(1)),
                sum: endpoints.iter().map(|(_, weight)| weight).sum(),
                endpoints,
            }
        })
        .collect();
    if let Some(exact) = exact_weights(&tier) {
        return exact;
    }
    // Too fine to be exact: each endpoint's share lw(l) / sum(lw) * ew(e) /
    // S(l), rounded to billionths of the calls (never to zero).
    let locality_total: u128 = tier.iter().map(|locality| locality.weight).sum();
    let rounded: Vec<(SocketAddr, u128)> = tier
        .iter()
        .flat_map(|locality| {
            let denominator = (locality_total * locality.sum).max(1);
            locality.endpoints.iter().map(move |(address, weight)| {
                let share = locality.weight * weight * PARTS / denominator;
                (*address, share.max(1))
            })
        })
        .collect();
    reduce(&rounded).unwrap_or_else(|| rounded.iter().map(|(address, _)| (*address, 1)).collect())
}

/// Endpoint e of locality l gets lw(l) * ew(e) / S(l) of the calls, with
/// S(l) the sum of l's endpoint weights. Over the least common multiple L
/// of every S(l), that is the integer lw(l) * ew(e) * L / S(l). `None` when
/// those integers, reduced, do not fit a `u32`.
fn exact_weights(tier: &[Weighed]) -> Option<Assignment> {
    let mut multiple: u128 = 1;
    for locality in tier {
        multiple = multiple.checked_mul(locality.sum / gcd(multiple, locality.sum))?;
    }
    let mut exact = Vec::new();
    for locality in tier {
        for (address, weight) in &locality.endpoints {
            let share = locality
                .weight
                .checked_mul(*weight)?
                .checked_mul(multiple / locality.sum)?;
            exact.push((*address, share));
        }
    }
    reduce(&exact)
}

/// Divides every share by their greatest common divisor; `None` when the
/// result does not fit a `u32`.
fn reduce(shares: &[(SocketAddr, u128)]) -> Option<Assignment> {
    let divisor = shares
        .iter()
        .fold(0, |acc, (_, share)| gcd(acc, *share))
        .max(1);
    shares
        .iter()
        .map(|(address, share)| Some((*address, u32::try_from(share / divisor).ok()?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], port))
    }

    fn locality(priority: u32, weight: Option<u32>, endpoints: &[(u16, Option<u32>)]) -> Locality {
        Locality {
            priority,
            weight,
            endpoints: endpoints.iter().map(|(port, w)| (at(*port), *w)).collect(),
        }
    }

    /// The ports and weights of the only tier.
    fn ports(mut tiers: Vec<Assignment>) -> Vec<(u16, u32)> {
        assert_eq!(tiers.len(), 1, "{tiers:?}");
        let tier = tiers.pop().unwrap_or_default();
        tier.iter().map(|(a, w)| (a.port(), *w)).collect()
    }

    #[test]
    fn without_locality_weights_endpoint_weights_count() {
        let weights = weigh(&[
            locality(0, None, &[(1, Some(3)), (2, None)]),
            locality(0, None, &[(3, Some(5))]),
        ]);
        assert_eq!(ports(weights), vec![(1, 3), (2, 1), (3, 5)]);
    }

    #[test]
    fn one_endpoint_per_locality_takes_the_locality_weight() {
        // What Lookaside's own control plane sends.
        let weights = weigh(&[
            locality(0, Some(1), &[(1, Some(1))]),
            locality(0, Some(2), &[(2, Some(2))]),
            locality(0, Some(7), &[(3, Some(7))]),
        ]);
        assert_eq!(ports(weights), vec![(1, 1), (2, 2), (3, 7)]);
    }

    #[test]
    fn locality_weights_split_between_localities_then_within() {
        // Locality A (weight 1) has three equal endpoints, B (weight 1) one:
        // B's endpoint takes half the calls, not a quarter.
        let weights = weigh(&[
            locality(0, Some(1), &[(1, None), (2, None), (3, None)]),
            locality(0, Some(1), &[(4, None)]),
        ]);
        assert_eq!(ports(weights), vec![(1, 1), (2, 1), (3, 1), (4, 3)]);
        // Within a locality, endpoint weights split its share.
        let weights = weigh(&[
            locality(0, Some(3), &[(1, Some(1)), (2, Some(2))]),
            locality(0, Some(1), &[(3, Some(9))]),
        ]);
        assert_eq!(ports(weights), vec![(1, 1), (2, 2), (3, 1)]);
    }

    #[test]
    fn priorities_with_a_serving_endpoint_become_tiers_in_order() {
        let tiers: Vec<Vec<(u16, u32)>> = weigh(&[
            locality(1, Some(1), &[(1, None)]),
            locality(0, Some(1), &[]),
            locality(2, Some(1), &[(2, None)]),
            locality(1, Some(4), &[(3, None)]),
        ])
        .into_iter()
        .map(|tier| tier.iter().map(|(a, w)| (a.port(), *w)).collect())
        .collect();
        assert_eq!(tiers, vec![vec![(1, 1), (3, 4)], vec![(2, 1)]]);
        assert!(weigh(&[locality(0, None, &[])]).is_empty());
    }

    #[test]
    fn shares_too_fine_for_exact_weights_are_rounded_never_to_zero() {
        // Sums 2^32 - 5 (a prime) and 3: exact weights overflow a u32.
        let weights = weigh(&[
            locality(0, Some(1), &[(1, Some(u32::MAX - 5)), (2, Some(1))]),
            locality(0, Some(1), &[(3, Some(1)), (4, Some(2))]),
        ]);
        let weights: Vec<u32> = weights.iter().flatten().map(|(_, w)| *w).collect();
        assert_eq!(weights.len(), 4);
        assert!(weights.iter().all(|w| *w >= 1), "{weights:?}");
        let total: u64 = weights.iter().map(|w| u64::from(*w)).sum();
        let share = |w: u32| f64::from(w) / total as f64;
        assert!((share(weights[0]) - 0.5).abs() < 1e-6, "{weights:?}");
        assert!((share(weights[3]) - 1.0 / 3.0).abs() < 1e-6, "{weights:?}");
    }
}
