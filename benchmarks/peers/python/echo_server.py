"""Echo server on Python's asyncio (or uvloop), the Python peer of the
library's echo servers in benchmarks/net (run.py's tls workload):

    echo_server.py PORT [--tls CERTFILE KEYFILE] [--loop asyncio|uvloop]
                   [--api streams|protocol]

--api streams is echo_streams.cpp line for line (start_server, then per
connection read(65536), write, drain); --api protocol is echo_protocol.cpp
(data_received writes the bytes back). --tls serves TLS with ssl= and
ssl.create_default_context(Purpose.CLIENT_AUTH) + load_cert_chain, as the
library's servers do. Prints "Serving on 127.0.0.1:PORT" once listening,
exits 0 on SIGINT or SIGTERM, as they do.
"""

import argparse
import asyncio
import signal
import ssl
import sys

from harness import new_loop


class EchoProtocol(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


async def handle_echo(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:  # EOF: the client is done
                break
            writer.write(data)
            await writer.drain()
    except (OSError, ssl.SSLError):
        pass  # a client that stops ends its connection only
    writer.close()
    try:
        await writer.wait_closed()
    except (OSError, ssl.SSLError):
        pass


async def serve(args):
    context = None
    if args.tls:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.tls[0], args.tls[1])
    loop = asyncio.get_running_loop()
    if args.api == "streams":
        server = await asyncio.start_server(handle_echo, "127.0.0.1", args.port, ssl=context)
    else:
        server = await loop.create_server(EchoProtocol, "127.0.0.1", args.port, ssl=context)
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
    p.add_argument("--tls", nargs=2, metavar=("CERTFILE", "KEYFILE"))
    p.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    p.add_argument("--api", choices=("streams", "protocol"), default="streams")
    args = p.parse_args(argv)
    loop = new_loop(args.loop)
    try:
        loop.run_until_complete(serve(args))
    finally:
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
