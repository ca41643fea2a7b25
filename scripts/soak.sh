#!/usr/bin/env bash
# Soak run (issue 6): builds the release `lookaside` and `soak` binaries once,
# then runs the soak driver against a real `lookaside serve` and prints its
# figures: a line per sample (control-plane RSS and CPU, driver CPU, streams,
# pushes), then a table per minute, the RSS slope over the second half and
# push latency percentiles, and every error.
#
# Defaults are the issue's figures: 10,000 ADS streams over 100 HTTP/2
# connections, 10 % of them replaced every second, every cluster's weights
# changed every second, for 10 minutes. Any `soak` flag passes through, e.g.
#   scripts/soak.sh --duration-s 60 --streams 2000
# (`target/release/soak --help` lists them; each has a LOOKASIDE_SOAK_* env).
# Set LOOKASIDE_SOAK_OUT=FILE to also keep the output in FILE.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p lookaside-control-plane --bin lookaside -p lookaside-tests --bin soak
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
case "$target_dir" in
  /*) ;;
  *) target_dir="$PWD/$target_dir" ;;
esac
soak="$target_dir/release/soak"
if [[ -n "${LOOKASIDE_SOAK_OUT:-}" ]]; then
  "$soak" "$@" 2>&1 | tee "$LOOKASIDE_SOAK_OUT"
  exit "${PIPESTATUS[0]}"
fi
exec "$soak" "$@"
