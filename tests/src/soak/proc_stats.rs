//! Reading a process's memory and CPU time, and the whole machine's CPU
//! time, from Linux's `/proc`. Reads only; a file that cannot be read gives
//! `None` (the process may have exited), never a panic.

/// Clock ticks per second of `/proc/PID/stat` and `/proc/stat` (`USER_HZ`,
/// 100 on every Linux architecture Lookaside runs on).
pub const TICKS_PER_SECOND: f64 = 100.0;

/// Which process to read: `self` or a pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Process {
    /// The calling process.
    Current,
    /// Another process, by id.
    Pid(u32),
}

impl Process {
    fn path(self, file: &str) -> String {
        match self {
            Process::Current => format!("/proc/self/{file}"),
            Process::Pid(pid) => format!("/proc/{pid}/{file}"),
        }
    }

    /// Resident set size (`VmRSS`), in KiB.
    pub fn rss_kib(self) -> Option<u64> {
        let text = std::fs::read_to_string(self.path("status")).ok()?;
        status_field(&text, "VmRSS:")
    }

    /// User plus system CPU time so far, in clock ticks.
    pub fn cpu_ticks(self) -> Option<u64> {
        let text = std::fs::read_to_string(self.path("stat")).ok()?;
        stat_cpu_ticks(&text)
    }
}

/// The machine's busy CPU time so far over all cores (everything but idle
/// and iowait), in clock ticks, from `/proc/stat`.
pub fn machine_busy_ticks() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    machine_busy(&text)
}

/// The value of `key` (e.g. `VmRSS:`) in a `/proc/PID/status` text.
fn status_field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find(|line| line.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// utime + stime of a `/proc/PID/stat` line. The command name (field 2)
/// may hold spaces and parentheses, so fields are counted after its last
/// `)`: utime and stime are fields 14 and 15 of the line, 12 and 13 after
/// the name.
fn stat_cpu_ticks(text: &str) -> Option<u64> {
    let after = text.rsplit_once(')')?.1;
    let mut fields = after.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Busy ticks of the `cpu` line of `/proc/stat`.
fn machine_busy(text: &str) -> Option<u64> {
    let line = text.lines().find(|line| line.starts_with("cpu "))?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice]:
    // guest time is already counted in user.
    let total: u64 = values.iter().take(8).sum();
    let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
    Some(total.saturating_sub(idle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_texts() {
        let status = "Name:\tlookaside\nVmPeak:\t  9000 kB\nVmRSS:\t   12345 kB\n";
        assert_eq!(status_field(status, "VmRSS:"), Some(12345));
        assert_eq!(status_field(status, "VmSwap:"), None);

        let stat = "4242 (look aside) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 8 0";
        assert_eq!(stat_cpu_ticks(stat), Some(325));
        assert_eq!(stat_cpu_ticks("garbage"), None);

        let proc_stat = "cpu  100 5 50 1000 20 1 2 3 0 0\ncpu0 1 1 1 1 1 1 1 1 0 0\n";
        assert_eq!(machine_busy(proc_stat), Some(161));
    }

    #[test]
    fn reads_this_process() {
        assert!(Process::Current.rss_kib().is_some_and(|kib| kib > 0));
        assert!(Process::Current.cpu_ticks().is_some());
        assert!(machine_busy_ticks().is_some());
        assert_eq!(Process::Pid(u32::MAX).rss_kib(), None);
    }
}
