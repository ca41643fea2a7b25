//! CPU utilization of this process, as a fraction of the CPU it may use.

use std::fmt::Debug;
use std::time::Instant;

/// Where CPU utilization comes from. Implement it to report your own.
pub trait CpuSource: Debug + Send + Sync + 'static {
    /// CPU seconds this process has used so far.
    fn cpu_seconds(&self) -> Option<f64>;
    /// CPUs available to the process (cgroup quota or cores).
    fn cpus(&self) -> f64;
}

/// Reads `/proc/self/stat`, against the CPUs the process may use: the
/// cgroup v2 CPU limit, else the cores it may run on, unless given
/// (`ProcessCpu::with_cpus`).
#[derive(Debug, Clone, Default)]
pub struct ProcessCpu {
    cpus: Option<f64>,
}

impl ProcessCpu {
    /// Measures against `cpus` CPUs, whatever the cgroup limit. Meant for a
    /// pod without a CPU limit: its limit is then the whole node, so the
    /// same load reads lower on a bigger node, and a load-driven policy
    /// would send those pods more. Pass the pod's CPU request instead, e.g.
    /// from the downward API (an env var with
    /// `valueFrom.resourceFieldRef.resource: requests.cpu`, `divisor: 1m`,
    /// divided by 1000). A pod allowed to burst above it then reads above
    /// 1 (and saturated from 0.95). A value that is not a positive finite
    /// number is ignored.
    pub fn with_cpus(cpus: f64) -> Self {
        Self {
            cpus: (cpus.is_finite() && cpus > 0.0).then_some(cpus),
        }
    }
}

/// Clock ticks per second of `/proc` times (USER_HZ, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

impl CpuSource for ProcessCpu {
    fn cpu_seconds(&self) -> Option<f64> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command name (which may contain spaces).
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let user: f64 = fields.get(11)?.parse().ok()?;
        let system: f64 = fields.get(12)?.parse().ok()?;
        Some((user + system) / TICKS_PER_SECOND)
    }

    fn cpus(&self) -> f64 {
        if let Some(cpus) = self.cpus {
            return cpus;
        }
        cgroup_cpus().unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get() as f64)
                .unwrap_or(1.0)
        })
    }
}

/// `cpu.max` of cgroup v2: "QUOTA PERIOD" or "max PERIOD".
fn cgroup_cpus() -> Option<f64> {
    let text = std::fs::read_to_string("/sys/fs/cgroup/cpu.max").ok()?;
    let mut parts = text.split_whitespace();
    let quota: f64 = parts.next()?.parse().ok()?;
    let period: f64 = parts.next()?.parse().ok()?;
    (period > 0.0 && quota > 0.0).then(|| quota / period)
}

/// Utilization between two readings.
#[derive(Debug)]
pub(crate) struct CpuWindow {
    last: Option<(Instant, f64)>,
}

impl CpuWindow {
    pub(crate) fn new(source: &dyn CpuSource) -> Self {
        Self {
            last: source.cpu_seconds().map(|s| (Instant::now(), s)),
        }
    }

    /// Fraction of available CPU used since the previous call.
    pub(crate) fn utilization(&mut self, source: &dyn CpuSource) -> Option<f64> {
        let now = Instant::now();
        let seconds = source.cpu_seconds()?;
        let previous = self.last.replace((now, seconds));
        let (then, before) = previous?;
        let wall = now.duration_since(then).as_secs_f64();
        let cpus = source.cpus();
        if wall <= 0.0 || cpus <= 0.0 {
            return None;
        }
        Some(((seconds - before) / wall / cpus).max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_cpu_is_readable_and_grows_with_work() {
        let source = ProcessCpu::default();
        let before = source.cpu_seconds().expect("readable on Linux");
        let started = Instant::now();
        let mut x = 0u64;
        while started.elapsed().as_millis() < 50 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let after = source.cpu_seconds().expect("readable");
        assert!(after >= before);
        assert!(source.cpus() > 0.0);
    }

    #[test]
    fn given_cpus_replace_the_limit_and_nonsense_is_ignored() {
        assert_eq!(ProcessCpu::with_cpus(0.25).cpus(), 0.25);
        let measured = ProcessCpu::default().cpus();
        for nonsense in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert_eq!(ProcessCpu::with_cpus(nonsense).cpus(), measured);
        }
    }
}
