#!/usr/bin/env bash
# The fault drill of issue 6 (tests/src/bin/fault-drill.rs): two control-plane
# replicas on one config file, three test backends, lookaside-client under
# open-loop load; kill -9 a replica, restart it, drain a backend, add one,
# corrupt the config and fix it, kill -9 a backend. Builds the release
# binaries once, runs the drill (a few minutes with the defaults) and prints
# its figures as Markdown on stdout. The processes' own output goes to a log
# file named on stderr.
#
#   scripts/fault-drill.sh                    # defaults: 300 calls/s, 20 s per event
#   scripts/fault-drill.sh --settle-s 10 --rate 500 --timeline
#   scripts/fault-drill.sh --help             # every flag, each with a LOOKASIDE_DRILL_* variable
#
# Exit status: 0 when every target was met, 2 when a call failed where the
# target is 0 (or the load did not converge), anything else if the drill
# itself could not run. Not part of scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked \
  -p lookaside-control-plane --bin lookaside \
  -p lookaside-tests --bin test-backend --bin fault-drill
target="${CARGO_TARGET_DIR:-target}"
log="$(mktemp -t fault-drill.XXXXXX.log)"
echo "fault-drill: the processes' output goes to $log" >&2
status=0
"$target/release/fault-drill" "$@" 2>"$log" || status=$?
if [ "$status" -ne 0 ] && [ "$status" -ne 2 ]; then
  echo "fault-drill failed ($status); the end of $log:" >&2
  tail -n 60 "$log" >&2
fi
exit "$status"
