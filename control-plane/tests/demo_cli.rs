//! `lookaside demo` through the binary, shortened: the screens a newcomer
//! sees (introduction, a table every second, the slowdown banner, the
//! summary) come in order, and no call fails.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn a_short_demo_shows_every_screen_and_fails_no_call() {
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_lookaside"))
        .args(["demo", "--duration-s", "6", "--capacities", "50,50,100"])
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let position = |needle: &str| {
        stdout
            .find(needle)
            .unwrap_or_else(|| panic!("no {needle:?} in:\n{stdout}"))
    };
    let order = [
        position("Lookaside demo: a control plane, 3 backends and a client"),
        position("backend a"),
        position(" time  backend  capacity  weight"),
        position("   1s  a "),
        position(">>> 3 s: backend a is now 2x slower"),
        position("   6s  a "),
        position("Summary, policy `utilization`:"),
        position("before the slowdown"),
        position("end of the run"),
    ];
    assert!(order.is_sorted(), "out of order ({order:?}):\n{stdout}");
    let tables = stdout
        .lines()
        .filter(|l| l.contains("(1.00 = even)"))
        .count();
    assert_eq!(tables, 6, "{stdout}");
    for line in stdout
        .lines()
        .filter(|l| l.contains("| utilization policy |"))
    {
        assert!(line.contains("failed 0 "), "{line}\n{stdout}");
    }
    assert!(started.elapsed() < Duration::from_secs(30));
}
