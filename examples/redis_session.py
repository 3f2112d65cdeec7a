#!/usr/bin/env python3
"""Raw exchanges with a Redis server, for redis_session.sh: what redis-cli
cannot send (inline commands, several commands in one packet, broken
protocol). Each exchange runs on a new connection: send the bytes, shut
down the sending side, read until the server closes; print what came back.

    redis_session.py tcp HOST PORT
    redis_session.py unix PATH
"""

import socket
import sys

EXCHANGES = [
    # Inline commands, as telnet (and redis-benchmark's PING_INLINE) sends them.
    b"PING\r\nping\nPING hello\r\n\r\n  \r\nECHO 'x y'\r\nECHO 'b\\'c'\r\n",
    b'ECHO "a\\x41\\n\\t\\"q\\"\\\\z"\r\nECHO "a\\x4"\r\nECHO a"b"\r\nECHO "x" y\r\n',
    b"ECHO \"a\"b\r\n",
    b"SET k \"two words\"\r\nGET k\r\nSTRLEN k\r\nDEL k\r\n",
    b"CONFIG GET save\r\nCONFIG GET appendonly\r\n",
    # Multibulk, pipelined as redis-benchmark -P sends them; empty commands.
    b"*1\r\n$4\r\nPING\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nxxx\r\n"
    b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*0\r\n*-1\r\n*2\r\n$3\r\nDEL\r\n$1\r\nk\r\n",
    # Redis skips the two bytes after a bulk string, whatever they are.
    b"*1\r\n$4\r\nPINGxx*2\r\n$4\r\nECHO\r\n$0\r\n\r\n",
    # Unknown commands: up to 128 bytes of arguments, CR and LF as spaces.
    b"foo " + b"a" * 100 + b" " + b"b" * 100 + b" c\r\n",
    b"foo a\\r\\nb \"c\\r\\nd\"\r\n",
    # QUIT: +OK, then the connection closes; the PING is not answered.
    b"QUIT\r\nPING\r\n",
    # Protocol errors: the reply, then the connection closes.
    b"PING\r\nECHO \"abc\"d\r\nPING\r\n",
    b"ECHO 'abc\r\n",
    b"*a\r\n",
    b"*-0\r\n",
    b"*1\r\n$x\r\n",
    b"*1\r\n-4\r\n",
    b"*2\r\n$4\r\nECHO\r\n$-1\r\n",
    b"*2\r\n$4\r\nECHO\r\n$536870913\r\n",
    b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\nxyz\r\n",
    b"x" * 70000,
]


def connect(argv):
    if argv[0] == "unix":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(argv[1])
        return s
    return socket.create_connection((argv[1], int(argv[2])))


def exchange(argv, data):
    with connect(argv) as s:
        s.settimeout(10)
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        reply = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            reply += chunk
        return reply


def main(argv):
    for data in EXCHANGES:
        shown = data if len(data) <= 80 else data[:60] + b"... (%d bytes)" % len(data)
        print(f"> {shown!r}")
        print(f"< {exchange(argv, data)!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
