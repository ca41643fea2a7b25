//! Parsing and validating the config file.

use std::collections::HashSet;
use std::path::Path;

use super::error::ConfigError;
use super::schema::ConfigFile;
use crate::registry::{Cluster, Endpoint, Locality, OrcaPort};

/// Reads and validates `path` as an edit of a serving file would be
/// (`lookaside validate` checks a file before it ships): one without a
/// `clusters` key is refused, as a running server refuses it.
pub fn parse_file(path: &Path) -> Result<Vec<Cluster>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_update(&text, path)
}

/// Validates `text`, the content of `path`, into clusters. A file without
/// a `clusters` key (empty, or comments only) has none.
pub fn parse(text: &str, path: &Path) -> Result<Vec<Cluster>, ConfigError> {
    parse_contents(text, path, false)
}

/// As `parse`, for an edit of a file already serving: one without a
/// `clusters` key (empty, comments only, a lone `---`) is how a file caught
/// while being written reads, and is refused.
pub fn parse_update(text: &str, path: &Path) -> Result<Vec<Cluster>, ConfigError> {
    parse_contents(text, path, true)
}

fn parse_contents(text: &str, path: &Path, require_key: bool) -> Result<Vec<Cluster>, ConfigError> {
    // Read past, once: every position below is then where an editor, which
    // does not show the mark, puts it.
    let text = text.strip_prefix(BOM).unwrap_or(text);
    let invalid = |line: u32, column: u32, reason: String| ConfigError::Invalid {
        path: path.to_path_buf(),
        line,
        column,
        reason,
    };
    let file: ConfigFile = if text.trim().is_empty() {
        ConfigFile { clusters: None }
    } else {
        serde_yaml_ng::from_str(text).map_err(|error| {
            let (line, column) = error
                .location()
                .map(|l| {
                    position(text, l.index()).unwrap_or((to_u32(l.line()), to_u32(l.column())))
                })
                .unwrap_or_else(|| unplaced(text));
            invalid(line, column, strip_position(&error.to_string()))
        })?
    };

    let source = super::source_id(path);
    let mut names = HashSet::new();
    // How often each address was seen so far across all clusters, to point at
    // the right occurrence in the text.
    let mut seen_anywhere: std::collections::HashMap<String, usize> = Default::default();
    let Some(entries) = file.clusters else {
        if require_key {
            return Err(invalid(
                1,
                1,
                "no `clusters:` key: the file is empty or holds only comments (caught while \
                 being written?); write `clusters: []` to serve no clusters"
                    .to_string(),
            ));
        }
        return Ok(Vec::new());
    };
    let mut clusters = Vec::with_capacity(entries.len());
    for entry in entries {
        let name = entry.name.0;
        if !names.insert(name.clone()) {
            let (line, column) = locate(text, &name, 2);
            return Err(invalid(
                line,
                column,
                format!("duplicate cluster name {name:?}"),
            ));
        }
        let mut addresses = HashSet::new();
        let mut endpoints = Vec::with_capacity(entry.endpoints.len());
        for endpoint in entry.endpoints {
            let address = endpoint.address.0;
            let written = address.to_string();
            let seen = seen_anywhere.entry(written.clone()).or_default();
            *seen += 1;
            if !addresses.insert(address) {
                let (line, column) = locate(text, &written, *seen);
                return Err(invalid(
                    line,
                    column,
                    format!("duplicate address {written} in cluster {name:?}"),
                ));
            }
            endpoints.push(Endpoint {
                address,
                weight: endpoint.weight.0,
                locality: Locality {
                    region: endpoint.region,
                    zone: endpoint.zone,
                },
                health: endpoint.health.into(),
            });
        }
        clusters.push(Cluster {
            name,
            endpoints,
            source: source.clone(),
            policy: entry.policy.0,
            orca_port: entry
                .orca_port
                .map_or(OrcaPort::Same, |port| OrcaPort::Port(port.0)),
        });
    }
    Ok(clusters)
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Line and column (both from 1) of byte `index`, counting lines as
/// `grep -n`, `sed` and `str::lines` do: only `\n` ends one. The YAML
/// parser also ends a line at a lone `\r`, so its own line number can
/// point past the end of the file as the operator's tools see it.
/// Columns count characters, as editors do.
fn position(text: &str, index: usize) -> Option<(u32, u32)> {
    let before = text.get(..index)?;
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Some((to_u32(line), to_u32(column)))
}

/// The UTF-8 byte-order mark some Windows editors start a file with.
const BOM: char = '\u{feff}';

/// serde_yaml appends " at line L column C"; we print the position first.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(index) => message[..index].to_string(),
        None => message.to_string(),
    }
}

/// Where an error the YAML parser gives no position for points: the
/// marker that starts a second document (the usual such error is "more
/// than one document"), else the first line.
fn unplaced(text: &str) -> (u32, u32) {
    let mut content = false;
    for (index, line) in text.lines().enumerate() {
        let marker = |m: &str| {
            line.strip_prefix(m)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
        };
        if marker("...") || (content && marker("---")) {
            return (to_u32(index + 1), 1);
        }
        let trimmed = line.trim_start();
        content |= !(trimmed.is_empty() || trimmed.starts_with(['#', '%']) || marker("---"));
    }
    (1, 1)
}

/// 1-based line and column of the `nth` (1-based) occurrence of `needle`;
/// of its last occurrence when written fewer times (escapes in quoted
/// scalars spell a value differently), and line 1 when never.
fn locate(text: &str, needle: &str, nth: usize) -> (u32, u32) {
    let Some((offset, _)) = text.match_indices(needle).take(nth.max(1)).last() else {
        return (1, 1);
    };
    position(text, offset).unwrap_or((1, 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{Health, Policy};

    fn err(text: &str) -> (u32, u32, String) {
        match parse(text, Path::new("lookaside.yaml")) {
            Ok(clusters) => panic!("accepted invalid config: {clusters:?}"),
            Err(ConfigError::Invalid {
                line,
                column,
                reason,
                ..
            }) => (line, column, reason),
            Err(other) => panic!("unexpected error {other}"),
        }
    }

    /// Some Windows editors start a file with a byte-order mark; it is
    /// read past, and the position of an error is where an editor shows it.
    #[test]
    fn a_byte_order_mark_moves_no_position() {
        for text in [
            "bogus: 1\n",
            "clusters:\n  - name: g\n    bogus: 1\n",
            "clusters: [\n",
            "clusters:\n  - name: g\n  - name: g\n",
            "clusters: []\n---\nclusters: []\n",
        ] {
            let marked = format!("{BOM}{text}");
            assert_eq!(err(&marked), err(text), "{text:?}");
        }
        let marked = format!("{BOM}clusters:\n  - name: g\n");
        assert_eq!(
            parse(&marked, Path::new("l.yaml")).map(|c| c.len()).ok(),
            Some(1)
        );
        assert_eq!(
            parse(&BOM.to_string(), Path::new("l.yaml"))
                .map(|c| c.len())
                .ok(),
            Some(0)
        );
    }

    #[test]
    fn accepts_the_minimal_form() {
        let text = "clusters:\n  - name: greeter\n    endpoints:\n      - { address: 127.0.0.1:50051, weight: 1, zone: z1 }\n      - { address: 127.0.0.1:50052, weight: 2 }\n";
        let clusters = parse(text, Path::new("/etc/l.yaml")).unwrap_or_default();
        assert_eq!(clusters.len(), 1);
        let greeter = &clusters[0];
        assert_eq!(greeter.name, "greeter");
        assert_eq!(greeter.source, "file:/etc/l.yaml");
        assert_eq!(greeter.endpoints.len(), 2);
        assert_eq!(greeter.endpoints[0].weight, 1);
        assert_eq!(greeter.endpoints[0].locality.zone, "z1");
        assert_eq!(greeter.endpoints[1].weight, 2);
        assert_eq!(greeter.endpoints[1].health, Health::Healthy);
    }

    #[test]
    fn accepts_extensions_and_defaults() {
        let text = "clusters:\n  - name: a\n    endpoints:\n      - address: \"[::1]:9000\"\n        region: r\n        health: draining\n  - name: b\n";
        let clusters = parse(text, Path::new("x.yaml")).unwrap_or_default();
        assert_eq!(clusters.len(), 2);
        assert_eq!(clusters[0].endpoints[0].weight, 1);
        assert_eq!(clusters[0].endpoints[0].health, Health::Draining);
        assert_eq!(clusters[0].endpoints[0].locality.region, "r");
        assert!(clusters[1].endpoints.is_empty());
    }

    #[test]
    fn addresses_no_call_can_reach_name_their_line() {
        for (address, why) in [
            ("10.0.0.1:0", "port 0"),
            ("0.0.0.0:50051", "unspecified"),
            ("224.0.0.1:50051", "multicast"),
        ] {
            let text = format!(
                "clusters:\n  - name: g\n    endpoints:\n      - {{ address: \"{address}\" }}\n"
            );
            let (line, _, reason) = err(&text);
            assert_eq!(line, 4, "{address}");
            assert!(reason.contains(why), "{address}: {reason}");
        }
    }

    #[test]
    fn empty_file_is_no_clusters() {
        assert_eq!(parse("", Path::new("x")).map(|c| c.len()).ok(), Some(0));
        assert_eq!(
            parse("clusters: []\n", Path::new("x"))
                .map(|c| c.len())
                .ok(),
            Some(0)
        );
    }

    #[test]
    fn weight_zero_names_its_line() {
        let (line, column, reason) = err(
            "clusters:\n  - name: g\n    endpoints:\n      - { address: 127.0.0.1:1, weight: 0 }\n",
        );
        assert_eq!(line, 4);
        assert!(column > 0);
        assert!(reason.contains("weight 0 is out of range"), "{reason}");
    }

    #[test]
    fn negative_and_huge_and_fractional_weights_are_rejected() {
        for (weight, expect) in [
            ("-3", "weight -3"),
            ("10001", "weight 10001"),
            ("1.5", "not an integer"),
        ] {
            let text = format!(
                "clusters:\n  - name: g\n    endpoints:\n      - {{ address: 127.0.0.1:1, weight: {weight} }}\n"
            );
            let (line, _, reason) = err(&text);
            assert_eq!(line, 4, "{weight}");
            assert!(reason.contains(expect), "{weight}: {reason}");
        }
    }

    #[test]
    fn unknown_field_is_rejected_with_its_line() {
        let (line, _, reason) = err(
            "clusters:\n  - name: g\n    endpoints:\n      - { address: 127.0.0.1:1, wieght: 3 }\n",
        );
        assert_eq!(line, 4);
        assert!(reason.contains("unknown field `wieght`"), "{reason}");
        let (line, _, reason) = err("clusters:\n  - name: g\n    lb: x\n");
        assert_eq!(line, 3);
        assert!(reason.contains("unknown field `lb`"), "{reason}");
    }

    #[test]
    fn duplicate_address_points_at_the_second_one() {
        let text = "clusters:\n  - name: a\n    endpoints:\n      - { address: 127.0.0.1:1 }\n  - name: g\n    endpoints:\n      - { address: 127.0.0.1:1 }\n      - { address: 127.0.0.1:2 }\n      - { address: 127.0.0.1:1 }\n";
        let (line, column, reason) = err(text);
        assert_eq!((line, column), (9, 20));
        assert!(
            reason.contains("duplicate address 127.0.0.1:1 in cluster \"g\""),
            "{reason}"
        );
    }

    #[test]
    fn duplicate_cluster_is_rejected() {
        let (line, _, reason) = err("clusters:\n  - name: g\n  - name: g\n");
        assert_eq!(line, 3);
        assert!(reason.contains("duplicate cluster name"), "{reason}");
    }

    #[test]
    fn bad_yaml_and_bad_address_are_rejected() {
        let (line, _, reason) = err("clusters:\n  - name: g\n    endpoints: [\n");
        assert!(line >= 3, "{line} {reason}");
        let (line, _, reason) =
            err("clusters:\n  - name: g\n    endpoints:\n      - { address: greeter:50051 }\n");
        assert_eq!(line, 4);
        assert!(reason.contains("expected IP:port"), "{reason}");
        let (_, _, reason) = err("clusters:\n  - name: \"bad name\"\n");
        assert!(reason.contains("contains ' '"), "{reason}");
    }

    #[test]
    fn policy_and_orca_port_are_read_and_checked() {
        let text = "clusters:\n  - name: a\n  - name: b\n    policy: static\n  - name: c\n    policy: wrr\n    orca_port: 9001\n";
        let clusters = parse(text, Path::new("x")).unwrap_or_default();
        let options: Vec<(Policy, OrcaPort)> =
            clusters.iter().map(|c| (c.policy, c.orca_port)).collect();
        assert_eq!(
            options,
            vec![
                (Policy::Utilization, OrcaPort::Same),
                (Policy::Static, OrcaPort::Same),
                (Policy::Wrr, OrcaPort::Port(9001)),
            ]
        );
        let (line, _, reason) = err("clusters:\n  - name: g\n    policy: fastest\n");
        assert_eq!(line, 3);
        assert!(reason.contains("unknown policy \"fastest\""), "{reason}");
        let (line, _, reason) = err("clusters:\n  - name: g\n    orca_port: 0\n");
        assert_eq!(line, 3);
        assert!(reason.contains("orca_port 0"), "{reason}");
    }

    #[test]
    fn an_edit_without_a_clusters_key_is_refused() {
        for text in ["", "  \n", "# generated by gen.py\n", "---\n", "\u{feff}"] {
            assert_eq!(
                parse(text, Path::new("l.yaml")).map(|c| c.len()).ok(),
                Some(0)
            );
            let Err(ConfigError::Invalid { line, reason, .. }) =
                parse_update(text, Path::new("l.yaml"))
            else {
                panic!("{text:?} accepted as an edit");
            };
            assert_eq!(line, 1);
            assert!(reason.contains("no `clusters:` key"), "{reason}");
        }
        assert!(parse_update("clusters: []\n", Path::new("l.yaml")).is_ok());
    }

    #[test]
    fn a_key_with_nothing_after_it_is_not_an_empty_list() {
        // How a file caught half-written by `cmd > file` reads.
        let (line, _, reason) = err("clusters:\n");
        assert_eq!(line, 1);
        assert!(
            reason.contains("expected a list, found nothing"),
            "{reason}"
        );
        // The YAML parser places it at the cluster's line.
        let (line, _, reason) = err("clusters:\n  - name: g\n    endpoints:\n");
        assert_eq!(line, 2, "{reason}");
        assert!(reason.contains("endpoints: expected a list"), "{reason}");
        for text in [
            "clusters: []\n",
            "clusters:\n  - name: g\n    endpoints: []\n",
        ] {
            assert!(parse(text, Path::new("l.yaml")).is_ok(), "{text:?}");
        }
    }

    #[test]
    fn a_second_document_is_rejected_at_its_marker() {
        // Found by the config_parser fuzz target: the YAML parser gives no
        // position for "more than one document", and the error said line 0.
        let (line, column, reason) = err("clusters: []\n... name: g\n");
        assert_eq!((line, column), (2, 1), "{reason}");
        assert!(reason.contains("more than one document"), "{reason}");
        let (line, _, _) = err("---\nclusters: []\n---\nclusters: []\n");
        assert_eq!(line, 3);
    }

    #[test]
    fn a_duplicate_spelled_with_escapes_still_names_a_line() {
        // Found while checking the config_parser fuzz target: the position
        // of a duplicate is found by searching the text for its value,
        // which an escape spells differently, and the error said line 0.
        let (line, _, reason) = err("clusters:\n  - name: \"g\"\n  - name: \"\\x67\"\n");
        assert_eq!(line, 2, "{reason}");
        assert!(reason.contains("duplicate cluster name"), "{reason}");
        let (line, _, reason) = err(
            "clusters:\n  - name: g\n    endpoints:\n      - { address: 127.0.0.1:1 }\n      - { address: \"127.0.0.1:\\x31\" }\n",
        );
        assert_eq!(line, 4, "{reason}");
        assert!(reason.contains("duplicate address"), "{reason}");
        // Never written as it reads: the first line.
        let (line, _, _) = err("clusters:\n  - name: \"\\x67\"\n  - name: \"\\x67\"\n");
        assert_eq!(line, 1);
    }

    #[test]
    fn a_lone_carriage_return_does_not_move_the_line_past_the_file() {
        // Found by the mutation property below: the parser counted the
        // `\r` as a line break and reported line 9 of this 7-line file.
        let mut text = String::from(properties::VALID);
        text.insert(166, '\r');
        let Err(ConfigError::Invalid { line, column, .. }) = parse(&text, Path::new("f.yaml"))
        else {
            panic!("accepted: {text:?}");
        };
        assert_eq!((line, column), (7, 16), "at the `\\r` after `health:`");
    }

    #[test]
    fn error_display_leads_with_file_line_column() {
        let error = parse(
            "clusters:\n  - name: g\n    endpoints:\n      - { address: 127.0.0.1:1, weight: 0 }\n",
            Path::new("conf/l.yaml"),
        );
        let text = error.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(text.starts_with("conf/l.yaml:4:"), "{text}");
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        /// A valid file to mutate.
        pub(super) const VALID: &str = "clusters:\n  - name: greeter\n    policy: wrr\n    endpoints:\n      - { address: 10.0.0.1:50051, weight: 3, zone: z1 }\n      - address: \"[fd00::1]:50051\"\n        health: draining\n";

        fn check(text: &str) -> Result<(), TestCaseError> {
            match parse(text, Path::new("f.yaml")) {
                Ok(clusters) => {
                    for cluster in clusters {
                        for endpoint in &cluster.endpoints {
                            prop_assert!((1..=10_000).contains(&endpoint.weight));
                            prop_assert!(endpoint.address.port() != 0);
                        }
                    }
                }
                Err(ConfigError::Invalid { line, reason, .. }) => {
                    // A line the file has (0 only when the parser knows none).
                    let lines = u32::try_from(text.lines().count()).unwrap_or(u32::MAX);
                    prop_assert!(
                        line <= lines.saturating_add(1),
                        "line {line} of {lines}: {reason}"
                    );
                    prop_assert!(!reason.is_empty());
                }
                Err(other) => prop_assert!(false, "unexpected error {other}"),
            }
            Ok(())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            /// Arbitrary text never panics the parser, and what it accepts
            /// is in range.
            #[test]
            fn arbitrary_text_is_accepted_sanely_or_rejected_with_a_line(text in "\\PC{0,200}") {
                check(&text)?;
            }

            /// A valid file with one byte replaced, inserted or removed.
            #[test]
            fn a_mutated_valid_file_is_accepted_sanely_or_rejected_with_a_line(
                at in 0..VALID.len(),
                byte in any::<u8>(),
                how in 0..3u8,
            ) {
                let mut bytes = VALID.as_bytes().to_vec();
                match how {
                    0 => bytes[at] = byte,
                    1 => bytes.insert(at, byte),
                    _ => {
                        bytes.remove(at);
                    }
                }
                if let Ok(text) = String::from_utf8(bytes) {
                    check(&text)?;
                }
            }
        }
    }
}
