//! Fuzz target: the file source's YAML parser and validator
//! (`control-plane/src/sources/file`) fed arbitrary bytes, read as the
//! UTF-8 text of a config file.
//!
//! Checked, as in the proptest beside the parser:
//! - nothing panics;
//! - an accepted file has unique, non-empty cluster names, unique addresses
//!   within a cluster, ports other than 0 and weights in
//!   `[MIN_WEIGHT, MAX_WEIGHT]`;
//! - a rejected file says why, on a line the file has, and the message
//!   leads with `file:line:column`.

#![no_main]

use std::collections::HashSet;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use lookaside_control_plane::registry::{MAX_WEIGHT, MIN_WEIGHT};
use lookaside_control_plane::sources::file::{ConfigError, parse};

fuzz_target!(|data: &[u8]| {
    // Invalid UTF-8 never reaches the parser (reading the file fails
    // first); the lossy text still exercises it with the same shape.
    let text = String::from_utf8_lossy(data);
    let path = Path::new("fuzz.yaml");
    match parse(&text, path) {
        Ok(clusters) => {
            let mut names = HashSet::new();
            for cluster in &clusters {
                assert!(!cluster.name.is_empty());
                assert!(names.insert(&cluster.name), "duplicate {}", cluster.name);
                let mut addresses = HashSet::new();
                for endpoint in &cluster.endpoints {
                    assert!((MIN_WEIGHT..=MAX_WEIGHT).contains(&endpoint.weight));
                    assert_ne!(endpoint.address.port(), 0);
                    assert!(addresses.insert(endpoint.address), "duplicate address");
                }
            }
        }
        Err(error) => {
            let ConfigError::Invalid { line, reason, .. } = &error else {
                panic!("parse cannot fail to read: {error}");
            };
            let lines = u32::try_from(yaml_lines(&text)).unwrap_or(u32::MAX);
            assert!(*line >= 1, "no line for {reason:?}");
            assert!(
                *line <= lines.saturating_add(1),
                "line {line} of {lines}: {reason}"
            );
            assert!(!reason.is_empty());
            let (_, line, column) = error.position();
            let shown = error.to_string();
            assert!(
                shown.starts_with(&format!("fuzz.yaml:{line}:{column}: ")),
                "{shown}"
            );
        }
    }
});

/// Lines as YAML counts them: `\r\n`, `\r`, `\n`, NEL, LS and PS break.
fn yaml_lines(text: &str) -> usize {
    let mut chars = text.chars().peekable();
    let mut lines = 1;
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                chars.next_if_eq(&'\n');
                lines += 1;
            }
            '\n' | '\u{85}' | '\u{2028}' | '\u{2029}' => lines += 1,
            _ => {}
        }
    }
    lines
}
