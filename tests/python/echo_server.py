"""A gRPC Python server (grpcio, C-core) for Lookaside's end-to-end tests.

Usage: python3 echo_server.py NAME

Listens on 127.0.0.1 (a port the OS picks), prints `listening on ADDRESS`,
and serves until its standard input closes. No generated stubs: every
message is one string in protobuf field 1 (the wire form of
`lookaside.test.v1.WhoReply`), encoded and decoded by hand.

  /lookaside.test.v1.Echo/Who            unary: the server's NAME
  /lookaside.test.v1.Interop/Echo        unary: the request, byte for byte
  /lookaside.test.v1.Interop/Fail        unary: NOT_FOUND "nothing here on NAME"
  /lookaside.test.v1.Interop/Deadline    unary: milliseconds left before the
                                         call's deadline, or "none"
  /lookaside.test.v1.Interop/Count       server streaming: "0", "1", ... up
                                         to the number in the request
  /lookaside.test.v1.Interop/Collect     client streaming: the requests'
                                         strings joined by ","
"""

import sys
import threading
from concurrent import futures

import grpc

from wire import message, text_of

MAX_MESSAGE = 16 * 1024 * 1024


def identity(data):
    return data


def handlers(name):
    def who(_request, _context):
        return message(name)

    def echo(request, _context):
        return request

    def fail(_request, context):
        context.abort(grpc.StatusCode.NOT_FOUND, f"nothing here on {name}")

    def deadline(_request, context):
        left = context.time_remaining()
        return message("none" if left is None else str(int(left * 1000)))

    def count(request, _context):
        for index in range(int(text_of(request) or "0")):
            yield message(str(index))

    def collect(requests, _context):
        return message(",".join(text_of(request) for request in requests))

    def unary(behaviour):
        return grpc.unary_unary_rpc_method_handler(
            behaviour, request_deserializer=identity, response_serializer=identity
        )

    echo_service = grpc.method_handlers_generic_handler(
        "lookaside.test.v1.Echo", {"Who": unary(who)}
    )
    interop = grpc.method_handlers_generic_handler(
        "lookaside.test.v1.Interop",
        {
            "Echo": unary(echo),
            "Fail": unary(fail),
            "Deadline": unary(deadline),
            "Count": grpc.unary_stream_rpc_method_handler(
                count, request_deserializer=identity, response_serializer=identity
            ),
            "Collect": grpc.stream_unary_rpc_method_handler(
                collect, request_deserializer=identity, response_serializer=identity
            ),
        },
    )
    return [echo_service, interop]


def main():
    name = sys.argv[1]
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=16),
        handlers=handlers(name),
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.max_send_message_length", MAX_MESSAGE),
        ],
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"listening on 127.0.0.1:{port}", flush=True)
    # Serve until the test that started us goes away.
    stdin_closed = threading.Event()

    def watch_stdin():
        while sys.stdin.buffer.read(256):
            pass
        stdin_closed.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    stdin_closed.wait()
    server.stop(grace=None)


if __name__ == "__main__":
    main()
