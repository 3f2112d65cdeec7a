"""HTTP "Hello, World!" server on Python's asyncio (or uvloop), the Python
peer of examples/http_hello_server.cpp in benchmarks/net (run.py's http
workload):

    http_server.py PORT [--loop asyncio|uvloop] [--api protocol]

An asyncio.Protocol, the usual way to write a fast asyncio server, and line
for line the Python that http_hello_server.cpp's header comment gives:
keep-alive, pipelined requests answered in one write, "Connection: close",
HEAD, and 405 for other methods. --api takes only "protocol"; it exists so
that run.py starts every Python peer alike. Prints "Serving on
127.0.0.1:PORT" once listening, exits 0 on SIGINT or SIGTERM, as the other
servers do.
"""

import argparse
import asyncio
import signal
import sys

from harness import new_loop

BODY = b"Hello, World!"
KEEP_ALIVE = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\n"
CLOSE = (
    b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n"
    b"Connection: close\r\n\r\n"
)
NOT_ALLOWED = b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class HelloProtocol(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        self.buffer = b""

    def data_received(self, data):
        self.buffer += data
        out, keep_alive = [], True
        while keep_alive and (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            request, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
            keep_alive = respond(request, out)
        if out:
            self.transport.write(b"".join(out))
        if not keep_alive:
            self.transport.close()


def respond(request, out):
    line, *headers = request.split(b"\r\n")
    method, _, version = line.split(b" ")
    if method not in (b"GET", b"HEAD"):
        out.append(NOT_ALLOWED)
        return False
    connection = b""
    for header in headers:
        name, _, value = header.partition(b":")
        if name.lower() == b"connection":
            connection = value.strip().lower()
    if version == b"HTTP/1.1":
        keep_alive = connection != b"close"
    else:
        keep_alive = connection == b"keep-alive"
    out.append(KEEP_ALIVE if keep_alive else CLOSE)
    if method == b"GET":
        out.append(BODY)
    return keep_alive


async def serve(args):
    loop = asyncio.get_running_loop()
    server = await loop.create_server(HelloProtocol, "127.0.0.1", args.port)
    host, port = server.sockets[0].getsockname()[:2]
    print(f"Serving on {host}:{port}", flush=True)  # run.py waits for this line
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    await stop
    server.close()
    await server.wait_closed()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("port", type=int)
    p.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    p.add_argument("--api", choices=("protocol",), default="protocol")
    args = p.parse_args(argv)
    loop = new_loop(args.loop)
    try:
        loop.run_until_complete(serve(args))
    finally:
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
