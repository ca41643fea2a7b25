//! `lookaside validate`: exit status and message a platform engineer sees.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::process::Command;

fn validate(content: &str) -> (bool, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("lookaside.yaml");
    std::fs::write(&path, content).expect("write");
    let output = Command::new(env!("CARGO_BIN_EXE_lookaside"))
        .args(["validate", "--config"])
        .arg(&path)
        .output()
        .expect("runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).to_string(),
        String::from_utf8_lossy(&output.stderr).replace(&path.display().to_string(), "FILE"),
    )
}

#[test]
fn a_valid_file_passes_with_a_summary() {
    let (ok, stdout, _) = validate(
        "clusters:\n  - name: greeter\n    endpoints:\n      - { address: 127.0.0.1:50051, weight: 1, zone: z1 }\n      - { address: 127.0.0.1:50052, weight: 2 }\n",
    );
    assert!(ok);
    assert!(stdout.contains("ok (1 clusters, 2 endpoints)"), "{stdout}");
}

#[test]
fn each_bad_input_fails_naming_file_line_and_reason() {
    let cases = [
        (
            "clusters:\n  - name: g\n    endpoints: [\n",
            "FILE:",
            "did not find expected",
        ),
        (
            "clusters:\n  - name: g\n    endpoints:\n      - { address: 127.0.0.1:1 }\n      - { address: 127.0.0.1:1 }\n",
            "FILE:5:",
            "duplicate address 127.0.0.1:1",
        ),
        (
            "clusters:\n  - name: g\n    endpoints:\n      - { address: 127.0.0.1:1, weight: 0 }\n",
            "FILE:4:",
            "weight 0 is out of range",
        ),
        (
            "clusters:\n  - name: g\n    endpoints:\n      - { address: 127.0.0.1:1, weight: -2 }\n",
            "FILE:4:",
            "weight -2 is out of range",
        ),
        (
            "clusters:\n  - name: g\n    endpoints:\n      - { address: 127.0.0.1:1, weight: 10001 }\n",
            "FILE:4:",
            "weight 10001 is out of range",
        ),
        (
            "clusters:\n  - name: g\n    endpoints:\n      - { address: 127.0.0.1:1, colour: blue }\n",
            "FILE:4:",
            "unknown field `colour`",
        ),
    ];
    for (content, position, reason) in cases {
        let (ok, _, stderr) = validate(content);
        assert!(!ok, "accepted: {content}");
        assert!(stderr.starts_with(position), "{stderr}");
        assert!(stderr.contains(reason), "{stderr}");
    }
}

#[test]
fn a_missing_file_fails_clearly() {
    let output = Command::new(env!("CARGO_BIN_EXE_lookaside"))
        .args(["validate", "--config", "/nonexistent/lookaside.yaml"])
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("/nonexistent/lookaside.yaml: cannot read"),
        "{stderr}"
    );
}
