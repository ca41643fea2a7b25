//! The soak's config file: `clusters` clusters of `endpoints` endpoints
//! each (`policy: static`, so the control plane serves the file's weights
//! as they are and opens no ORCA stream), rewritten once per *generation*.
//!
//! Each generation changes the weights of a chosen set of clusters (all of
//! them by default; see [`Plan::changes`]). A cluster's weights carry the
//! last generation that changed it: its marker endpoint (the first) has
//! weight [`MARKER_BASE`] + generation, and every other endpoint's weight
//! (1..=999) moves with the generation too. So a client can tell which
//! generation an assignment it received comes from by its largest weight
//! alone ([`generation_of`]), without decoding addresses.

use std::fmt::Write as _;

/// The marker endpoint's weight at generation 0. Other endpoints weigh less.
pub const MARKER_BASE: u32 = 1000;

/// The largest weight the control plane accepts.
const MAX_WEIGHT: u32 = 10_000;

/// The last generation a file can carry.
pub const MAX_GENERATION: u32 = MAX_WEIGHT - MARKER_BASE;

/// The port every endpoint listens on (nothing listens: `static` policy).
const PORT: u16 = 8080;

/// Which clusters each generation changes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    /// Clusters in the file.
    pub clusters: u32,
    /// Endpoints per cluster.
    pub endpoints: u32,
    /// Fraction of clusters each generation changes (1.0: all).
    pub change_fraction: f64,
}

impl Plan {
    /// Whether generation `generation` changes `cluster`'s weights.
    /// Generation 0 is the first file: it "changes" every cluster.
    pub fn changes(&self, cluster: u32, generation: u32) -> bool {
        if generation == 0 || self.change_fraction >= 1.0 {
            return true;
        }
        let draw = splitmix64((u64::from(cluster) << 32) | u64::from(generation));
        (draw >> 11) as f64 / (1u64 << 53) as f64 <= self.change_fraction
    }

    /// The last generation at or before `generation` that changed
    /// `cluster`: what a client of `cluster` must have once generation
    /// `generation` is served.
    pub fn last_change(&self, cluster: u32, generation: u32) -> u32 {
        (1..=generation)
            .rev()
            .find(|&g| self.changes(cluster, g))
            .unwrap_or(0)
    }

    /// The file where cluster `c` carries generation `current[c]`.
    pub fn yaml(&self, current: &[u32]) -> String {
        // About 45 bytes an endpoint line.
        let mut yaml = String::with_capacity(
            16 + self.clusters as usize * (60 + 45 * self.endpoints as usize),
        );
        yaml.push_str("clusters:\n");
        for cluster in 0..self.clusters {
            let generation = current.get(cluster as usize).copied().unwrap_or(0);
            let _ = write!(
                yaml,
                "  - name: {}\n    policy: static\n    endpoints:\n",
                cluster_name(cluster)
            );
            for endpoint in 0..self.endpoints {
                let n = cluster * self.endpoints + endpoint;
                let _ = writeln!(
                    yaml,
                    "      - {{ address: 10.{}.{}.{}:{PORT}, weight: {} }}",
                    (n >> 16) & 0xff,
                    (n >> 8) & 0xff,
                    n & 0xff,
                    weight(endpoint, generation)
                );
            }
        }
        yaml
    }
}

/// The name of cluster `cluster`.
pub fn cluster_name(cluster: u32) -> String {
    format!("soak-{cluster}")
}

/// Endpoint `endpoint`'s weight in a cluster at `generation`.
fn weight(endpoint: u32, generation: u32) -> u32 {
    if endpoint == 0 {
        MARKER_BASE + generation.min(MAX_GENERATION)
    } else {
        1 + (generation
            .wrapping_mul(7)
            .wrapping_add(endpoint.wrapping_mul(13)))
            % (MARKER_BASE - 1)
    }
}

/// The generation an assignment comes from, given its largest weight;
/// `None` if that is not a marker weight.
pub fn generation_of(max_weight: u32) -> Option<u32> {
    max_weight
        .checked_sub(MARKER_BASE)
        .filter(|g| *g <= MAX_GENERATION)
}

/// A well-mixed 64-bit hash (SplitMix64's finaliser).
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use lookaside_control_plane::sources::file::parse;

    use super::*;

    #[test]
    fn the_file_is_valid_and_carries_each_clusters_generation() {
        let plan = Plan {
            clusters: 300,
            endpoints: 10,
            change_fraction: 1.0,
        };
        let current: Vec<u32> = (0..300).map(|c| c * 30).collect();
        let clusters = parse(&plan.yaml(&current), Path::new("soak.yaml")).expect("valid file");
        assert_eq!(clusters.len(), 300);
        for (index, cluster) in clusters.iter().enumerate() {
            assert_eq!(cluster.name, cluster_name(index as u32));
            assert_eq!(cluster.endpoints.len(), 10);
            let max = cluster.endpoints.iter().map(|e| e.weight).max();
            assert_eq!(max.and_then(generation_of), Some(current[index]));
        }
        assert_eq!(generation_of(999), None);
        assert_eq!(generation_of(MARKER_BASE + MAX_GENERATION + 1), None);
    }

    #[test]
    fn a_fraction_of_clusters_changes_each_generation() {
        let plan = Plan {
            clusters: 1000,
            endpoints: 1,
            change_fraction: 0.25,
        };
        let changed = (0..1000).filter(|&c| plan.changes(c, 7)).count();
        assert!((200..300).contains(&changed), "{changed} of 1000 changed");
        assert!((0..1000).all(|c| plan.changes(c, 0)));
        for cluster in 0..50 {
            let last = plan.last_change(cluster, 40);
            assert!(last == 0 || plan.changes(cluster, last));
            assert!((last + 1..=40).all(|g| !plan.changes(cluster, g)));
        }
        let every = Plan {
            change_fraction: 1.0,
            ..plan
        };
        assert_eq!(every.last_change(3, 40), 40);
    }
}
