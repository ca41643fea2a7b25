"""A proxyless gRPC xDS client (grpcio) for Lookaside's end-to-end tests.

Usage: GRPC_XDS_BOOTSTRAP=bootstrap.json python3 xds_client.py xds:///greeter

Keeps one channel to the target for its whole life, so the tests see how a
running client follows weight changes. Reads commands from stdin, one per
line: a number N makes N unary calls to /lookaside.test.v1.Echo/Who and
prints one line

    RESULT {"counts": {"backend": calls, ...}, "errors": {"CODE: details": calls}, "seconds": s}

Exits at end of input. No generated stubs: requests and replies are raw
bytes, and the reply's field 1 (the backend's name) is decoded by hand
(`wire.py`).
"""

import json
import sys
import time

import grpc

from wire import text_of

METHOD = "/lookaside.test.v1.Echo/Who"
CALL_TIMEOUT_SECONDS = 10
IN_FLIGHT = 32


def call_batch(who, calls):
    """Makes `calls` calls, IN_FLIGHT at a time; returns (counts, errors)."""
    counts = {}
    errors = {}
    pending = []

    def settle(future):
        try:
            name = text_of(future.result())
            counts[name] = counts.get(name, 0) + 1
        except grpc.RpcError as error:
            key = f"{error.code().name}: {error.details()}"
            errors[key] = errors.get(key, 0) + 1

    for _ in range(calls):
        pending.append(who.future(b"", timeout=CALL_TIMEOUT_SECONDS, wait_for_ready=True))
        if len(pending) >= IN_FLIGHT:
            settle(pending.pop(0))
    for future in pending:
        settle(future)
    return counts, errors


def main():
    target = sys.argv[1]
    with grpc.insecure_channel(target) as channel:
        # No serializers: requests and replies stay bytes.
        who = channel.unary_unary(METHOD, request_serializer=None, response_deserializer=None)
        for line in sys.stdin:
            line = line.strip()
            if not line:
                continue
            started = time.monotonic()
            counts, errors = call_batch(who, int(line))
            result = {"counts": counts, "errors": errors, "seconds": time.monotonic() - started}
            print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
