#!/usr/bin/env python3
"""Run the network workloads against every server and compare their cost.

Workloads (--workload):
  echo  echo_client: 50 connections, each in a closed loop of 64-byte
        messages (send one, wait for its echo, send the next);
  http  wrk -t1 -c50 --latency against a "Hello, World!" HTTP/1.1 server
        (keep-alive, one request at a time per connection);
  tls   echo_client as for echo but with 1 KiB messages, against the
        library's echo servers plain and with TLS (--tls), and Python's
        asyncio (and uvloop's) TLS echo servers (benchmarks/peers/python/
        echo_server.py), all with the same client (echo_client --tls for
        the TLS ones), a certificate made with the openssl command in a
        temporary directory; tls_record_cost measures OpenSSL's own cost
        of a message on the server's side (memory BIOs, no sockets), once
        per round, pinned as the servers are;
  resp  redis-benchmark -t ping,set,get -P 16 -c 50 (--pipeline sets -P)
        against Debian's redis-server (--save '' --appendonly no) and the
        library's Redis server written with streams (examples/
        redis_server.cpp) and with the Protocol API (resp_protocol); the
        table adds each one's CPU per request over redis-server's and the
        streams server's over the Protocol API one's;
  sweep the echo workload at 1, 10, 100, 1,000 and 10,000 connections
        (--sweep-connections; --quick: 1, 10 and 100 in windows of 0.5 s
        after 0.25 s of warm-up, unless --duration or --warmup is given):
        how a message's cost grows with the connections. Within a round
        every server runs at one count before any runs at the next. The
        servers are echo's but raw_uring (left out, as from idle, to keep
        the run shorter); the Python peers stay in, since they serve 10,000
        connections without trouble (--python-loops '' leaves them out).
        echo_client opens connections in batches, each echoed once before
        the next connects, so no server's listen backlog overflows. Per
        server and count: CPU per message and its ratio to raw_epoll's at
        the same count (taken within each round), msgs/s, p50/p99 latency;
        sweep.png draws CPU per message against connections;
  tasks task_scaling (this library) and asio_task_scaling (its Boost.Asio
        peer, benchmarks/peers/asio/task_scaling.cpp): N tasks alive at once,
        each waiting on one event; no load generator;
  idle  run.py holds --idle-connections connections open to each echo
        server after one echo each: the memory one idle connection holds.

Servers: the raw C peers raw_epoll and raw_uring (benchmarks/net/*.c); the
library's servers (echo_protocol, echo_streams, http_hello_server) on each
backend of --backends, chosen with ASYNCIO_BACKEND; and the peers in
benchmarks/peers/: for echo and http, asio (Boost.Asio 1.81, C++20
coroutines) and libuv, and for every workload Python's (echo and tls:
protocol and streams; http: a protocol) on each loop of --python-loops. A
server that does not start (a backend this build or machine lacks, a peer
not built, uvloop not importable) is reported as skipped.

Method: every server of a workload is started once, pinned to one core
(taskset -c 0), and waits idle while the others are measured; then, for
each of --rounds rounds, every server in turn gets a warm-up and one
measured window of --duration seconds from the load generator, pinned to
the other core (taskset -c 1). Rounds are interleaved across servers so
that a burst of noise on the shared machine hits every server alike
instead of all the rounds of one. Around each measured window the server's
utime+stime is read from /proc/PID/stat: CPU time per message ranks servers
even when the load generator, not the server, limits the throughput (wrk
saturates its core on HTTP). Each figure is the median over rounds.

For tls, the table also has, from per-round figures (median over rounds):
TLS - plain, the extra CPU per message of a library server with TLS over
the same server and backend without; and Python / this, the CPU per message
of Python's server of the same API (streams or protocol) over this one's.
The goals of the TLS layer: TLS - plain <= the record cost, and
Python / this >= 3.

Writes a Markdown table per workload to OUT_DIR/table.md (and prints it),
and every number to OUT_DIR/results.json. Exits 1 if a server or a load
generator failed (crashed, echoed wrong bytes, exited non-zero on SIGTERM);
skipped servers do not fail the run. Standard library only; runs under any
python3 >= 3.8.

Examples:
    benchmarks/net/run.py --quick
    benchmarks/net/run.py --workload echo --servers 'raw_*,echo_protocol@epoll'
    benchmarks/net/run.py --workload tls --rounds 5
    benchmarks/net/run.py --workload resp --backends epoll,io_uring --pipeline 1
    benchmarks/net/run.py --workload sweep --servers 'raw_epoll,echo_*@epoll,asio'
"""

import argparse
import csv
import datetime
import fnmatch
import io
import itertools
import json
import os
import platform
import re
import resource
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BACKENDS = ("epoll", "io_uring", "poll")
PYTHON_LOOPS = ("asyncio", "uvloop")
PYTHON_ECHO = REPO / "benchmarks" / "peers" / "python" / "echo_server.py"
# The Python peer's script per workload (PYTHON_ECHO unless listed); each
# takes PORT [--tls CERT KEY] --loop LOOP --api API.
PYTHON_SCRIPTS = {"http": REPO / "benchmarks" / "peers" / "python" / "http_server.py"}
CLK_TCK = os.sysconf("SC_CLK_TCK")
# The tls workload's message size unless --size says otherwise.
TLS_SIZE = 1024

# (workload, server name) -> how to start it: the binary (or the Python
# API), its arguments before the port, the kind ("raw": one backend of its
# own; "library": each of --backends, by ASYNCIO_BACKEND; "python": each of
# --python-loops), and whether it serves TLS.
SERVERS = {
    "echo": [
        ("raw_epoll", "raw_epoll_server", ["echo"], "raw", False),
        ("raw_uring", "raw_uring_server", ["echo"], "raw", False),
        ("echo_protocol", "echo_protocol", [], "library", False),
        ("echo_streams", "echo_streams", [], "library", False),
        ("asio", "asio_server", ["echo"], "raw", False),
        ("libuv", "libuv_server", ["echo"], "raw", False),
        ("python_protocol", "protocol", [], "python", False),
        ("python_streams", "streams", [], "python", False),
    ],
    "http": [
        ("raw_epoll", "raw_epoll_server", ["http"], "raw", False),
        ("raw_uring", "raw_uring_server", ["http"], "raw", False),
        ("http_hello_server", "http_hello_server", [], "library", False),
        ("asio", "asio_server", ["http"], "raw", False),
        ("libuv", "libuv_server", ["http"], "raw", False),
        ("python_http", "protocol", [], "python", False),
    ],
    "tls": [
        ("raw_epoll", "raw_epoll_server", ["echo"], "raw", False),
        ("raw_epoll_tls", "raw_tls_server", [], "raw", True),
        ("echo_protocol", "echo_protocol", [], "library", False),
        ("echo_streams", "echo_streams", [], "library", False),
        ("echo_protocol_tls", "echo_protocol", [], "library", True),
        ("echo_streams_tls", "echo_streams", [], "library", True),
        ("python_protocol_tls", "protocol", [], "python", True),
        ("python_streams_tls", "streams", [], "python", True),
    ],
    # The idle workload holds connections open to the echo servers.
    "idle": [],
    # "redis": an installed program (Debian's redis-server), given a free
    # port (--port) and ready when it says so.
    "resp": [
        ("redis-server", "redis-server", ["--save", "", "--appendonly", "no"], "redis", False),
        ("redis_server", "redis_server", [], "library", False),
        ("resp_protocol", "resp_protocol", [], "library", False),
    ],
}
SERVERS["idle"] = [s for s in SERVERS["echo"] if s[0] != "raw_uring"]
# The sweep runs the echo workload at several connection counts.
SERVERS["sweep"] = SERVERS["idle"]
# The backend a raw peer uses, for the table's backend column (Asio 1.26
# and libuv 1.44 wait on epoll on Linux).
RAW_BACKEND = {
    "raw_epoll": "epoll",
    "raw_uring": "io_uring",
    "raw_epoll_tls": "epoll",
    "asio": "epoll",
    "libuv": "epoll",
    "redis-server": "epoll",  # its event loop (ae) is on epoll on Linux
}
# Why a peer's binary may be missing: the configure step skips it without
# its library.
NOT_BUILT = {
    "raw_uring": "liburing was not found at configure time",
    "asio": "Boost 1.81 was not found at configure time (Debian: libboost1.81-dev)",
    "libuv": "libuv was not found at configure time (Debian: libuv1-dev)",
}
# The tasks workload's Asio peer (TASK_PROGRAMS) comes with asio_server.
NOT_BUILT["asio_task_scaling"] = NOT_BUILT["asio"]
REFERENCES = ("raw_epoll", "raw_uring")
# wrk's connections (-c), fixed: --connections is the echo workload's.
HTTP_CONNECTIONS = 50
# redis-benchmark's clients (-c) and tests (-t) for the resp workload.
RESP_CLIENTS = 50
RESP_TESTS = "ping,set,get"
# Requests per test (-n) per second of --duration (--warmup), unless
# --resp-requests says: about what redis-server answers per second here
# with and without pipelining, so that a run lasts about --duration.
RESP_RATE = {"pipelined": 100_000, "single": 20_000}
# What redis-server prints once it listens.
REDIS_READY = r"Ready to accept connections"
# The sweep's connection counts, and --quick's.
SWEEP_COUNTS = (1, 10, 100, 1000, 10000)
SWEEP_COUNTS_QUICK = (1, 10, 100)
# --quick's sweep window (seconds measured, of warm-up) unless --duration or
# --warmup is given: three counts per server make it the longest part of the
# smoke run with --quick's window, and it only has to show that every server
# serves every count.
SWEEP_QUICK_WINDOW = (0.5, 0.25)


class BenchError(Exception):
    """A server or load generator failed: the run's result is not usable."""


def log(msg):
    print(f"run.py: {msg}", file=sys.stderr, flush=True)


def cpu_pin(cpu):
    """taskset prefix pinning to one CPU, or [] with the reason."""
    if cpu in ("", "none", "-1"):
        return [], "not pinned"
    if not shutil.which("taskset"):
        return [], "not pinned (taskset not found)"
    try:
        allowed = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        allowed = None
    if allowed is not None and int(cpu) not in allowed:
        return [], f"not pinned (CPU {cpu} not in this process's affinity {sorted(allowed)})"
    return ["taskset", "-c", cpu], f"CPU {cpu}"


def process_cpu_seconds(pid):
    """utime + stime of a process, in seconds (fields 14 and 15 of
    /proc/PID/stat, in clock ticks). The command name (field 2) may hold
    spaces or parentheses, so the fields are counted after its last ')'."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state): field N is fields[N - 3].
    return (int(fields[14 - 3]) + int(fields[15 - 3])) / CLK_TCK


def signal_name(returncode):
    if returncode is not None and returncode < 0:
        try:
            return signal.Signals(-returncode).name
        except ValueError:
            return f"signal {-returncode}"
    return f"status {returncode}"


class Server:
    """One server process, started pinned, on a free port."""

    def __init__(self, name, backend, cmd, env, tls=False):
        self.name, self.backend, self.cmd, self.env = name, backend, cmd, env
        self.tls = tls
        self.proc = None
        self.port = None
        # (port, regex) for a server that cannot print "Serving on HOST:PORT"
        # (redis-server): it is given the port and is ready once a line of
        # its output matches the regex.
        self.ready = None
        self.peak_rss = None  # KiB, read when it is stopped
        self.stderr = tempfile.TemporaryFile(mode="w+b")

    @property
    def label(self):
        return f"{self.name}@{self.backend}"

    def stderr_text(self):
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace").strip()

    def start(self, timeout):
        """Starts the server and waits for "Serving on HOST:PORT" (or the
        line of self.ready). Returns None, or why it did not start (it
        exited first)."""
        log(f"starting {self.label}: {' '.join(self.cmd)}")
        self.proc = subprocess.Popen(
            self.cmd, stdout=subprocess.PIPE, stderr=self.stderr, env=self.env
        )
        out = b""
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()

        def started():
            if self.ready is None:
                return b"\n" in out
            lines = out.decode(errors="replace").split("\n")[:-1]
            return any(re.search(self.ready[1], line) for line in lines)

        while not started():
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                what = "'Serving on'" if self.ready is None else repr(self.ready[1])
                raise BenchError(f"{self.label}: no {what} line within {timeout} s")
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:  # exited (or closed stdout) before listening
                self.proc.wait()
                text = self.stderr_text() or out.decode(errors="replace")  # redis logs to stdout
                lines = [line for line in text.splitlines() if line.strip()]
                reason = lines[-1].strip() if lines else "no message"
                # "what():  ..." (an uncaught exception) or "/path/prog: ...".
                reason = re.sub(r"^what\(\):\s*", "", reason)
                reason = re.sub(r"^/\S*: ", "", reason)
                return f"{reason} (exited with {signal_name(self.proc.returncode)})"
            out += chunk
        if self.ready is not None:
            self.port = self.ready[0]
            log(f"{self.label} is serving on port {self.port} (pid {self.proc.pid})")
            return None
        line = out.split(b"\n", 1)[0].decode(errors="replace")
        m = re.match(r"Serving on (\S+):(\d+)$", line.strip())
        if not m:
            self.kill()
            raise BenchError(f"{self.label}: unexpected first line {line!r}")
        self.port = int(m.group(2))
        log(f"{self.label} is serving on port {self.port} (pid {self.proc.pid})")
        return None

    def check_alive(self):
        if self.proc.poll() is not None:
            raise BenchError(
                f"{self.label} died ({signal_name(self.proc.returncode)}): "
                + (self.stderr_text()[-500:] or "no message")
            )

    def cpu_seconds(self):
        self.check_alive()
        return process_cpu_seconds(self.proc.pid)

    def peak_rss_kib(self):
        """VmHWM: the most resident memory the server had at once, in KiB."""
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1])
        except (OSError, ValueError):
            pass
        return None

    def stop(self):
        """SIGTERM, as a user's Ctrl-C; the server must exit 0."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.peak_rss = self.peak_rss_kib()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()
            raise BenchError(f"{self.label} did not exit within 10 s of SIGTERM")
        if self.proc.returncode != 0:
            raise BenchError(
                f"{self.label} exited with {signal_name(self.proc.returncode)} on SIGTERM: "
                + (self.stderr_text()[-500:] or "no message")
            )

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def run_echo(server, args, pin, connections=None):
    """One warm-up plus one measured window (args.window: the workload's
    seconds measured and of warm-up) of echo_client, on --connections
    connections unless `connections` says.

    The client runs its own warm-up (--warmup) on the same connections and
    prints MEASURE_START / MEASURE_STOP (--marks) at the edges of the
    measured window; the server's CPU time is read as each mark arrives. So
    neither the warm-up nor the connection set-up and teardown are charged
    to the measured messages, and the lag of reading a mark (well under a
    millisecond) is the same at both edges."""
    duration, warmup = args.window
    cmd = pin + [
        str(args.bin_dir / "echo_client"),
        "127.0.0.1",
        str(server.port),
        "--connections",
        str(connections or args.connections),
        "--size",
        str(args.workload_size),
        "--duration",
        str(duration),
        "--warmup",
        str(warmup),
        "--marks",
    ] + (["--tls"] if server.tls else [])
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    cpu_start = cpu_stop = None
    result = None
    try:
        for line in proc.stdout:
            line = line.strip()
            if line == "MEASURE_START":
                cpu_start = server.cpu_seconds()
            elif line == "MEASURE_STOP":
                cpu_stop = server.cpu_seconds()
            elif line.startswith("{"):
                result = json.loads(line)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = proc.stderr.read().strip()
    if proc.returncode != 0:
        server.check_alive()  # a dead server is the news, not the client's reset
        raise BenchError(f"echo_client against {server.label} failed: {err or 'no message'}")
    if result is None or cpu_start is None or cpu_stop is None:
        raise BenchError(f"echo_client against {server.label}: incomplete output")
    server.check_alive()
    return {
        "messages": result["messages"],
        "seconds": result["seconds"],
        "msgs_per_s": result["msgs_per_s"],
        "p50_us": result["p50_us"],
        "p99_us": result["p99_us"],
        "server_cpu_s": cpu_stop - cpu_start,
        "client": result,
    }


WRK_UNITS_US = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6}


def parse_wrk(text, where):
    """Requests/sec, the 99% latency (us) and the request count of wrk's
    report (wrk -t1 -c50 -d.. --latency)."""

    def grab(pattern):
        m = re.search(pattern, text, re.MULTILINE)
        if not m:
            raise BenchError(f"{where}: no match for {pattern!r} in wrk's output:\n{text}")
        return m

    rps = float(grab(r"^Requests/sec:\s*([\d.]+)").group(1))
    m = grab(r"^\s*99%\s+([\d.]+)(us|ms|s|m|h)\s*$")
    p99_us = float(m.group(1)) * WRK_UNITS_US[m.group(2)]
    m = grab(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h)")
    requests, seconds = int(m.group(1)), float(m.group(2)) * WRK_UNITS_US[m.group(3)] / 1e6
    m = re.search(r"^\s*50%\s+([\d.]+)(us|ms|s|m|h)\s*$", text, re.MULTILINE)
    p50_us = float(m.group(1)) * WRK_UNITS_US[m.group(2)] if m else None
    m = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", text)
    non_2xx = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    socket_errors = sum(int(g) for g in m.groups()) if m else 0
    return rps, p99_us, p50_us, requests, seconds, non_2xx, socket_errors


def wrk(server, seconds, pin):
    cmd = pin + [
        "wrk",
        "-t1",
        f"-c{HTTP_CONNECTIONS}",
        f"-d{seconds}s",
        "--latency",
        f"http://127.0.0.1:{server.port}/",
    ]
    try:
        proc = subprocess.run(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=seconds + 60
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"wrk against {server.label} did not finish")
    if proc.returncode != 0:
        server.check_alive()
        raise BenchError(f"wrk against {server.label} failed: {proc.stderr.strip()}")
    return proc.stdout


def run_http(server, args, pin):
    """A warm-up run of wrk, then a measured one.

    wrk cannot say when its measurement starts, so the warm-up is a separate
    run and the server's CPU time is read just before the measured wrk starts
    and just after it exits. That window also holds wrk's start-up (the
    server is idle then, so it costs nothing) and the 50 connects and closes
    (a few hundred microseconds of server CPU against seconds): negligible,
    and the same for every server."""
    if args.warmup_whole:
        wrk(server, args.warmup_whole, pin)
    cpu_start = server.cpu_seconds()
    out = wrk(server, args.duration_whole, pin)
    cpu_stop = server.cpu_seconds()
    rps, p99_us, p50_us, requests, seconds, non_2xx, socket_errors = parse_wrk(out, server.label)
    if non_2xx:
        raise BenchError(f"{server.label} answered {non_2xx} requests with a non-2xx status")
    if requests == 0:
        raise BenchError(f"wrk against {server.label} completed no request")
    return {
        "messages": requests,
        "seconds": seconds,
        "msgs_per_s": rps,
        "p50_us": p50_us,
        "p99_us": p99_us,
        "server_cpu_s": cpu_stop - cpu_start,
        "socket_errors": socket_errors,
        "wrk": out,
    }


def redis_benchmark(server, requests, args, pin):
    """One run of redis-benchmark -t ping,set,get --csv: its CSV rows (one
    per test: PING_INLINE, PING_MBULK, SET, GET), as dicts of floats."""
    cmd = pin + [
        "redis-benchmark",
        "-h",
        "127.0.0.1",
        "-p",
        str(server.port),
        "-t",
        RESP_TESTS,
        "-P",
        str(args.pipeline),
        "-c",
        str(RESP_CLIENTS),
        "-n",
        str(requests),
        "--csv",
    ]
    timeout = 120 + requests / 1000
    try:
        proc = subprocess.run(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"redis-benchmark against {server.label} did not end in {timeout:.0f} s")
    err = proc.stderr.strip()
    if proc.returncode != 0:
        server.check_alive()
        raise BenchError(f"redis-benchmark against {server.label} failed: {err or 'no message'}")
    # It goes on without the server's CONFIG, but a server that cannot
    # answer CONFIG GET does not speak Redis as it should.
    if err:
        raise BenchError(f"redis-benchmark against {server.label}: {err[-500:]}")
    tests = []
    for row in csv.DictReader(io.StringIO(proc.stdout)):
        tests.append({k: (v if k == "test" else float(v)) for k, v in row.items()})
    if not tests:
        raise BenchError(
            f"redis-benchmark against {server.label}: unexpected output {proc.stdout[-500:]!r}"
        )
    return tests


def run_resp(server, args, pin):
    """A warm-up run of redis-benchmark, then a measured one.

    As with wrk, the server's CPU time is read just before the measured run
    starts and just after it exits: the window also holds redis-benchmark's
    start-up, its CONFIG GET, and the 50 connects and closes of each of its
    four tests, against millions of requests. The requests are -n times the
    tests; their time is the sum of each test's -n / its requests/s, so
    requests/s leaves out the connects and the start-up."""
    if args.resp_warmup_requests:
        redis_benchmark(server, args.resp_warmup_requests, args, pin)
    cpu_start = server.cpu_seconds()
    tests = redis_benchmark(server, args.resp_requests, args, pin)
    cpu_stop = server.cpu_seconds()
    server.check_alive()
    requests = args.resp_requests * len(tests)
    seconds = sum(args.resp_requests / t["rps"] for t in tests)
    return {
        "messages": requests,
        "seconds": seconds,
        "msgs_per_s": requests / seconds,
        "p50_us": max(t["p50_latency_ms"] for t in tests) * 1e3,
        "p99_us": max(t["p99_latency_ms"] for t in tests) * 1e3,
        "server_cpu_s": cpu_stop - cpu_start,
        "tests": tests,
    }


def process_memory_kib(pid):
    """(VmRSS, VmSize) of a process, in KiB."""
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmSize"):
                values[key] = int(rest.split()[0])
    return values["VmRSS"], values["VmSize"]


def run_idle(server, args, pin):
    """Opens --idle-connections connections, echoes one message on each so
    that the server has accepted and served it, and reads the server's
    memory before and after: what each idle connection holds."""
    n = args.idle_connections
    message = b"x" * 64
    rss0, vsz0 = process_memory_kib(server.proc.pid)
    cpu0 = server.cpu_seconds()
    started = time.monotonic()
    socks = []
    try:
        for _ in range(n):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            sock.sendall(message)
            got = b""
            while len(got) < len(message):
                part = sock.recv(len(message) - len(got))
                if not part:
                    raise BenchError(f"{server.label} closed an idle connection")
                got += part
            if got != message:
                raise BenchError(f"{server.label} echoed wrong bytes")
            socks.append(sock)
        time.sleep(0.5)  # let the server finish what the last echo started
        server.check_alive()
        rss1, vsz1 = process_memory_kib(server.proc.pid)
        cpu1 = server.cpu_seconds()
    except OSError as e:
        raise BenchError(f"idle connections to {server.label}: {e}") from e
    finally:
        for sock in socks:
            sock.close()
    seconds = time.monotonic() - started
    return {
        "messages": n,
        "seconds": seconds,
        "msgs_per_s": n / seconds,
        "p99_us": None,
        "server_cpu_s": cpu1 - cpu0,
        "rss_per_conn_b": (rss1 - rss0) * 1024 / n,
        "vsz_per_conn_b": (vsz1 - vsz0) * 1024 / n,
    }


RUNNERS = {
    "echo": run_echo,
    "http": run_http,
    "tls": run_echo,
    "resp": run_resp,
    "sweep": run_echo,  # given each count as `connections`
    "idle": run_idle,
}

RECORD_COST = "tls_record_cost"


def make_certificate(directory):
    """A self-signed P-256 certificate and its key, made with the openssl
    command: (certfile, keyfile), or None and why not."""
    if not shutil.which("openssl"):
        return None, "the openssl command was not found (Debian: openssl)"
    cert, key = Path(directory) / "cert.pem", Path(directory) / "key.pem"
    cmd = [
        "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
        "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
    ]  # fmt: skip
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        return None, f"openssl req failed: {proc.stdout.strip()[-300:]}"
    return (cert, key), None


def measure_record_cost(rows, round_number, args):
    """One run of tls_record_cost (OpenSSL's cost per echoed message on the
    server's side, over memory BIOs), pinned as the servers are; a row of
    the tls table, one entry per round."""
    row = rows.setdefault(
        RECORD_COST,
        {"server": RECORD_COST, "backend": "OpenSSL", "status": "ok", "note": "", "rounds": []},
    )
    if row["status"] != "ok":
        return
    path = args.bin_dir / RECORD_COST
    if args.tls_files is None or not os.access(path, os.X_OK):
        why = args.tls_unavailable if args.tls_files is None else f"not built ({path} is missing)"
        row.update(status="skipped", note=why)
        return
    cmd = args.server_pin + [str(path), str(args.tls_files[0]), str(args.tls_files[1])]
    cmd += ["--size", str(args.workload_size), "--messages", "100000", "--rounds", "3"]
    log(f"tls round {round_number}/{args.rounds}: {RECORD_COST}")
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        row.update(status="failed", note=f"{RECORD_COST}: {proc.stderr.strip()[-500:]}")
        return
    result = json.loads(proc.stdout)
    result["round"] = round_number
    result["cpu_us_per_msg"] = result["server_ns_per_msg"] / 1e3
    log(f"  {result['cipher']}: {result['cpu_us_per_msg']:.3f} us/msg on the server's side")
    row["rounds"].append(result)


def tls_comparisons(rows):
    """The tls workload's per-round comparisons, median over rounds: for a
    library server with TLS, its CPU per message over (tls_vs_plain) and
    minus (tls_extra_us) the same server's and backend's without TLS, the
    record cost in those rounds (record_us) and what is left of it
    (margin_us = record - extra), and the same for raw_epoll_tls, the C
    floor (raw_tls_server over raw_epoll_server); for every TLS server, its
    CPU per message over raw_epoll_tls's (vs_raw_tls) and Python's (asyncio
    and uvloop) of the same API over it (python_over_this,
    uvloop_over_this; the raw server counts as a protocol)."""

    def by_round(row):
        if row is None or row["status"] != "ok":
            return {}
        return {r["round"]: r["cpu_us_per_msg"] for r in row["rounds"]}

    def median_of(values):
        return statistics.median(values) if values else None

    record = by_round(rows.get(RECORD_COST))
    raw_tls = by_round(rows.get("raw_epoll_tls@epoll"))
    for row in rows.values():
        if not row["server"].endswith("_tls") or row["status"] != "ok":
            continue
        mine = by_round(row)
        api = "streams" if "streams" in row["server"] else "protocol"
        ratios = [mine[r] / raw_tls[r] for r in mine if r in raw_tls and raw_tls[r]]
        row["vs_raw_tls"] = median_of(ratios)
        if not row["server"].startswith("python_"):
            plain = by_round(rows.get(f"{row['server'][: -len('_tls')]}@{row['backend']}"))
            both = [r for r in mine if r in plain]
            row["tls_extra_us"] = median_of([mine[r] - plain[r] for r in both])
            row["tls_vs_plain"] = median_of([mine[r] / plain[r] for r in both if plain[r]])
            with_record = [r for r in both if r in record]
            row["record_us"] = median_of([record[r] for r in with_record])
            row["margin_us"] = median_of([record[r] - (mine[r] - plain[r]) for r in with_record])
        for loop in PYTHON_LOOPS:
            peer = by_round(rows.get(f"python_{api}_tls@{loop}"))
            ratios = [peer[r] / mine[r] for r in mine if r in peer and mine[r]]
            row[f"{'python' if loop == 'asyncio' else loop}_over_this"] = median_of(ratios)
        ciphers = {r["client"].get("cipher") for r in row["rounds"]}
        row["cipher"] = ", ".join(sorted(c for c in ciphers if c))


def resp_comparisons(rows):
    """The resp workload's per-round ratios, median over rounds: each
    server's CPU per request over redis-server's (vs_redis), and the streams
    server's over the Protocol API server's on the same backend
    (streams_over_protocol)."""

    def by_round(row):
        if row is None or row["status"] != "ok":
            return {}
        return {r["round"]: r["cpu_us_per_msg"] for r in row["rounds"]}

    redis = by_round(rows.get("redis-server@epoll"))
    for row in rows.values():
        mine = by_round(row)
        ratios = [mine[r] / redis[r] for r in mine if redis.get(r)]
        row["vs_redis"] = statistics.median(ratios) if ratios else None
        row["vs_redis_rounds"] = ratios
        if row["server"] == "redis_server":
            protocol = by_round(rows.get(f"resp_protocol@{row['backend']}"))
            ratios = [mine[r] / protocol[r] for r in mine if protocol.get(r)]
            row["streams_over_protocol"] = statistics.median(ratios) if ratios else None
            row["streams_over_protocol_rounds"] = ratios


def planned_servers(workload, args):
    """(name, backend, command, env, tls) of each server selected for a
    workload, and (name, backend, reason) of those that cannot run at all."""
    planned, unavailable = [], []
    for name, binary, mode_args, kind, tls in SERVERS[workload]:
        backends = {"library": args.backends, "python": args.python_loops}.get(
            kind, [RAW_BACKEND.get(name)]
        )
        for backend in backends:
            if not selected(name, backend, args.servers):
                continue
            if tls and args.tls_files is None:
                unavailable.append((name, backend, args.tls_unavailable))
                continue
            tls_args = ["--tls", str(args.tls_files[0]), str(args.tls_files[1])] if tls else []
            env = dict(os.environ)
            if kind == "redis":
                path = shutil.which(binary)
                if path is None:
                    unavailable.append((name, backend, f"{binary} not found (Debian: {binary})"))
                    continue
                port = free_port()
                args.ready[f"{name}@{backend}"] = (port, REDIS_READY)
                cmd = args.server_pin + [path, "--port", str(port)] + mode_args
                planned.append((name, backend, cmd, env, tls))
                continue
            if kind == "python":
                python = args.uvloop_python if backend == "uvloop" else args.python
                cmd = [python, str(PYTHON_SCRIPTS.get(workload, PYTHON_ECHO)), "0"] + tls_args
                cmd += ["--loop", backend, "--api", binary]
                planned.append((name, backend, args.server_pin + cmd, env, tls))
                continue
            path = args.bin_dir / binary
            if not os.access(path, os.X_OK):
                reason = f"not built ({NOT_BUILT.get(name, f'{path} is missing')})"
                unavailable.append((name, backend, reason))
                continue
            if kind == "library":
                env["ASYNCIO_BACKEND"] = backend
            cmd = args.server_pin + [str(path)] + mode_args + ["0"] + tls_args
            planned.append((name, backend, cmd, env, tls))
    return planned, unavailable


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on now, for a server
    that cannot be given port 0 (redis-server: 0 turns TCP off)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def selected(name, backend, patterns):
    if not patterns:
        return True
    return any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(f"{name}@{backend}", p) for p in patterns)


def run_workload(workload, args):
    """Runs every selected server of one workload; returns its rows."""
    rows = {}  # label -> row dict
    planned, unavailable = planned_servers(workload, args)
    if not planned and not unavailable:
        log(f"warning: --servers selects no server of the {workload} workload")
    for name, backend, reason in unavailable:
        rows[f"{name}@{backend}"] = {
            "server": name,
            "backend": backend,
            "status": "skipped",
            "note": reason,
            "rounds": [],
        }
    if workload == "http" and planned and not shutil.which("wrk"):
        for name, backend, _, _, _ in planned:
            rows[f"{name}@{backend}"] = {
                "server": name,
                "backend": backend,
                "status": "skipped",
                "note": "wrk not found (scripts/deps.sh wrk)",
                "rounds": [],
            }
        return rows
    if workload == "resp" and planned and not shutil.which("redis-benchmark"):
        for name, backend, _, _, _ in planned:
            rows[f"{name}@{backend}"] = {
                "server": name,
                "backend": backend,
                "status": "skipped",
                "note": "redis-benchmark not found (scripts/deps.sh redis-tools)",
                "rounds": [],
            }
        return rows

    servers = []
    try:
        for name, backend, cmd, env, tls in planned:
            server = Server(name, backend, cmd, env, tls)
            server.ready = args.ready.get(server.label)
            row = {"server": name, "backend": backend, "status": "ok", "note": "", "rounds": []}
            rows[server.label] = row
            try:
                reason = server.start(args.start_timeout)
            except BenchError as e:
                row.update(status="failed", note=str(e))
                continue
            if reason is not None:
                log(f"{server.label}: skipped: {reason}")
                row.update(status="skipped", note=reason)
                continue
            servers.append(server)

        # The sweep's counts in turn within a round, every server at one
        # count before the next: a ratio to raw_epoll at one count compares
        # windows close in time.
        points = args.sweep_counts if workload == "sweep" else [None]
        for r in range(args.rounds):
            if workload == "tls":
                measure_record_cost(rows, r + 1, args)
            for point, server in itertools.product(points, servers):
                row = rows[server.label]
                if row["status"] != "ok":
                    continue
                at = "" if point is None else f" at {point:,} connections"
                log(f"{workload} round {r + 1}/{args.rounds}: {server.label}{at}")
                try:
                    extra = {} if point is None else {"connections": point}
                    result = RUNNERS[workload](server, args, args.client_pin, **extra)
                except BenchError as e:
                    log(f"error: {e}")
                    row.update(status="failed", note=str(e))
                    server.kill()
                    continue
                result["round"] = r + 1
                if point is not None:
                    result["connections"] = point
                result["cpu_us_per_msg"] = result["server_cpu_s"] * 1e6 / result["messages"]
                result["cpu_ticks"] = round(result["server_cpu_s"] * CLK_TCK)
                if workload == "idle":
                    log(
                        f"  {result['rss_per_conn_b'] / 1024:,.2f} KiB resident, "
                        f"{result['vsz_per_conn_b'] / 1024:,.2f} KiB address space per connection"
                    )
                else:
                    log(
                        f"  {result['msgs_per_s']:,.0f} msgs/s, p99 {result['p99_us']:,.0f} us, "
                        f"server CPU {result['cpu_us_per_msg']:.2f} us/msg"
                    )
                row["rounds"].append(result)
    finally:
        for server in servers:
            row = rows[server.label]
            try:
                server.stop()
            except BenchError as e:
                log(f"error: {e}")
                if row["status"] == "ok":
                    row.update(status="failed", note=str(e))
            finally:
                row["peak_rss_kib"] = server.peak_rss
                server.kill()

    for row in rows.values():
        # A sweep's rounds are of several counts: sweep_points takes their
        # medians per count.
        if row["status"] == "ok" and row["rounds"] and workload != "sweep":
            for key in ("msgs_per_s", "p99_us", "cpu_us_per_msg", "rss_per_conn_b", "vsz_per_conn_b"):
                if row["rounds"][0].get(key) is not None:  # the record cost has CPU only
                    row[key] = statistics.median(r[key] for r in row["rounds"])
        if row["status"] == "ok" and row["rounds"]:
            errors = sum(r.get("socket_errors", 0) for r in row["rounds"])
            if errors:
                row["note"] = f"wrk reported {errors} socket errors"
    if workload == "tls":
        tls_comparisons(rows)
    if workload == "resp":
        resp_comparisons(rows)
    # Ratios to the raw peers are taken within each round, then the median
    # of those: the machine's speed drifts between rounds (other work on
    # the shared host comes and goes) far more than within one, so a ratio
    # of medians would mix a fast round of one server with a slow one of
    # the other. In a sweep, within each round and count.
    for ref in REFERENCES:
        base = next(
            (x for x in rows.values() if x["server"] == ref and x["status"] == "ok"), None
        )
        base_rounds = (
            {(r["round"], r.get("connections")): r["cpu_us_per_msg"] for r in base["rounds"]}
            if base
            else {}
        )
        for row in rows.values():
            ratios = []
            for r in row["rounds"]:
                base_cpu = base_rounds.get((r["round"], r.get("connections")))
                if row["status"] == "ok" and base_cpu:
                    r[f"vs_{ref}"] = r["cpu_us_per_msg"] / base_cpu
                    ratios.append(r[f"vs_{ref}"])
            if workload != "sweep":
                row[f"vs_{ref}"] = statistics.median(ratios) if ratios else None
                row[f"vs_{ref}_rounds"] = ratios
    if workload == "sweep":
        sweep_points(rows, args)
    return rows


def sweep_points(rows, args):
    """A measured sweep row's figures per count, medians over rounds:
    row["by_connections"], one dict per count, in the order of the counts."""
    for row in rows.values():
        if row["status"] != "ok" or not row["rounds"]:
            continue
        row["by_connections"] = []
        for n in args.sweep_counts:
            rounds = [r for r in row["rounds"] if r["connections"] == n]
            point = {"connections": n}
            for key in ("msgs_per_s", "p50_us", "p99_us", "cpu_us_per_msg", "vs_raw_epoll"):
                values = [r[key] for r in rounds if r.get(key) is not None]
                point[key] = statistics.median(values) if values else None
            row["by_connections"].append(point)


def fmt_num(v, digits=0):
    return "n/a" if v is None else f"{v:,.{digits}f}"


def fmt_ratio(v):
    return "n/a" if v is None else f"{v:.2f}x"


def fmt_rss(row):
    """Peak RSS in MiB, or a dash when the server was not measured."""
    kib = row.get("peak_rss_kib")
    return "–" if kib is None else f"{kib / 1024:,.1f}"


def server_order(workload, row):
    names = [s[0] for s in SERVERS[workload]] + [RECORD_COST]
    order = BACKENDS + PYTHON_LOOPS
    backend = order.index(row["backend"]) if row["backend"] in order else len(order)
    return names.index(row["server"]), backend


def tls_markdown(rows, args):
    """The tls workload's table, and whether each library TLS server meets
    the goals."""
    size = args.workload_size
    lines = [
        f"### tls: echo_client, {args.connections} connections, {size}-byte messages, "
        "plain and TLS",
        "",
        "| server | backend | msgs/s | p99 µs | server CPU µs/msg | TLS − plain µs/msg "
        "| TLS / plain | vs raw TLS | Python ÷ this | uvloop ÷ this | peak RSS MiB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    notes, goals, ciphers = [], [], set()
    record = rows.get(RECORD_COST)
    for row in sorted(rows.values(), key=lambda r: server_order("tls", r)):
        ok = row["status"] == "ok" and row["rounds"]
        if row["server"] == RECORD_COST and ok:
            first = row["rounds"][0]
            cells = ["–", "–", fmt_num(row["cpu_us_per_msg"], 2)] + ["–"] * 6
            ciphers.add(first["cipher"])
            label = f"{RECORD_COST} ({first['version']}, {first['cipher']})"
            lines.append(f"| {label} | – | " + " | ".join(cells) + " |")
            continue
        if ok:
            cells = [
                fmt_num(row["msgs_per_s"]),
                fmt_num(row["p99_us"]),
                fmt_num(row["cpu_us_per_msg"], 2),
                fmt_num(row.get("tls_extra_us"), 2),
                fmt_ratio(row.get("tls_vs_plain")),
                fmt_ratio(row.get("vs_raw_tls")),
                fmt_ratio(row.get("python_over_this")),
                fmt_ratio(row.get("uvloop_over_this")),
                fmt_rss(row),
            ]
            if row.get("cipher"):
                ciphers.update(row["cipher"].split(", "))
        else:
            cells = [row["status"]] + ["–"] * 8
        lines.append(f"| {row['server']} | {row['backend']} | " + " | ".join(cells) + " |")
        if row["note"]:
            notes.append(f"- {row['server']} ({row['backend']}): {row['status']}: {row['note']}")
        if ok and not row["server"].startswith("python_") and row["server"].endswith("_tls"):
            extra, margin = row.get("tls_extra_us"), row.get("margin_us")
            python = row.get("python_over_this")
            g1 = "n/a"
            if extra is not None and margin is not None:
                g1 = (
                    f"{'met' if margin >= 0 else 'MISSED'} (TLS − plain {extra:.2f} µs vs "
                    f"record {row['record_us']:.2f} µs: margin {margin:+.2f} µs)"
                )
            g2 = "n/a"
            if python is not None:
                g2 = f"{'met' if python >= 3 else 'MISSED'} ({python:.2f}x)"
            goals.append(f"- {row['server']}@{row['backend']}: TLS cost {g1}; Python ÷ this ≥ 3: {g2}")
    if len(ciphers) > 1:
        notes.append(f"- WARNING: not one cipher throughout: {', '.join(sorted(ciphers))}")
    if record is None or record["status"] != "ok":
        notes.append("- the record cost was not measured: the TLS cost goal is not checked")
    out = lines + [""]
    if goals:
        out += ["Goals (TLS − plain ≤ OpenSSL's record cost; Python ÷ ours ≥ 3):", ""] + goals + [""]
    return "\n".join(out + notes)


def table_rows(workload, rows, width, cells_of):
    """Each server's row of a table: cells_of(row) for a measured server,
    else its status and dashes (`width` cells in all); and the notes of
    the servers that have one."""
    lines, notes = [], []
    for row in sorted(rows.values(), key=lambda r: server_order(workload, r)):
        if row["status"] == "ok" and row["rounds"]:
            cells = cells_of(row)
        else:
            cells = [row["status"]] + ["–"] * (width - 1)
        lines.append(f"| {row['server']} | {row['backend']} | " + " | ".join(cells) + " |")
        if row["note"]:
            notes.append(f"- {row['server']} ({row['backend']}): {row['status']}: {row['note']}")
    return lines, notes


def resp_markdown(rows, args):
    """The resp workload's table."""
    lines = [
        f"### resp: redis-benchmark -t {RESP_TESTS} -P {args.pipeline} -c {RESP_CLIENTS} "
        f"-n {args.resp_requests:,}",
        "",
        "| server | backend | requests/s | p99 µs | server CPU µs/request | vs redis-server "
        "| streams ÷ protocol | peak RSS MiB |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    def cells(row):
        streams = row["server"] == "redis_server"
        return [
            fmt_num(row["msgs_per_s"]),
            fmt_num(row["p99_us"]),
            fmt_num(row["cpu_us_per_msg"], 2),
            fmt_ratio(row.get("vs_redis")),
            fmt_ratio(row.get("streams_over_protocol")) if streams else "–",
            fmt_rss(row),
        ]

    body, notes = table_rows("resp", rows, 6, cells)
    return "\n".join(lines + body + [""] + notes)


def idle_markdown(rows, args):
    """The idle workload's table, against the goals."""
    lines = [
        f"### idle: {args.idle_connections:,} connections held open after one 64-byte echo each",
        "",
        "| server | backend | KiB resident / connection | KiB address space / connection "
        "| goals (≤ 2 KiB resident, ≤ 16 KiB address space) |",
        "|---|---|---:|---:|---|",
    ]
    def cells(row):
        rss, vsz = row["rss_per_conn_b"] / 1024, row["vsz_per_conn_b"] / 1024
        goal = "–"  # the goals are this library's
        if any(s[0] == row["server"] and s[3] == "library" for s in SERVERS["idle"]):
            goal = "met" if rss <= 2 and vsz <= 16 else "MISSED"
        return [f"{rss:,.2f}", f"{vsz:,.2f}", goal]

    body, notes = table_rows("idle", rows, 3, cells)
    return "\n".join(lines + body + [""] + notes)


def sweep_markdown(rows, args):
    """The sweep's tables: a column per count; CPU per message, its ratio to
    raw_epoll's and msgs/s in one, latency in the other."""
    counts = args.sweep_counts
    head = "| server | backend | " + " | ".join(f"{n:,}" for n in counts) + " |"
    rule = "|---|---|" + "---:|" * len(counts)

    def by_count(cell, *more):
        return lambda row: [cell(point) for point in row["by_connections"]] + [
            f(row) for f in more
        ]

    def cost(point):
        return (
            f"{fmt_num(point['cpu_us_per_msg'], 2)} ({fmt_ratio(point['vs_raw_epoll'])}) "
            f"· {fmt_num(point['msgs_per_s'])}"
        )

    def latency(point):
        return f"{fmt_num(point['p50_us'])} / {fmt_num(point['p99_us'])}"

    cost_rows, notes = table_rows("sweep", rows, len(counts) + 1, by_count(cost, fmt_rss))
    latency_rows, _ = table_rows("sweep", rows, len(counts), by_count(latency))
    duration, warmup = args.sweep_window
    lines = [
        f"### sweep: echo_client, {args.workload_size}-byte messages, by connections "
        f"({duration:g} s windows after {warmup:g} s of warm-up)",
        "",
        "Server CPU µs per message (that over raw_epoll's at the same count) · msgs/s; "
        "the server's peak RSS over the whole sweep:",
        "",
        head + " peak RSS MiB |",
        rule + "---:|",
        *cost_rows,
        "",
        "Latency p50 / p99 µs:",
        "",
        head,
        rule,
        *latency_rows,
        "",
    ]
    return "\n".join(lines + notes)


def markdown(workload, rows, args):
    if workload == "idle":
        return idle_markdown(rows, args)
    if workload == "sweep":
        return sweep_markdown(rows, args)
    if workload == "tls":
        return tls_markdown(rows, args)
    if workload == "resp":
        return resp_markdown(rows, args)
    title = {
        "echo": f"echo: echo_client, {args.connections} connections, {args.workload_size}-byte messages",
        "http": f"http: wrk -t1 -c{HTTP_CONNECTIONS}, GET / -> 13-byte body, keep-alive",
    }[workload]
    lines = [
        f"### {title}",
        "",
        "| server | backend | msgs/s | p99 µs | server CPU µs/msg | vs raw_epoll | vs raw_uring "
        "| peak RSS MiB |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    def cells(row):
        return [
            fmt_num(row["msgs_per_s"]),
            fmt_num(row["p99_us"]),
            fmt_num(row["cpu_us_per_msg"], 2),
            fmt_ratio(row["vs_raw_epoll"]),
            fmt_ratio(row["vs_raw_uring"]),
            fmt_rss(row),
        ]

    body, notes = table_rows(workload, rows, 6, cells)
    return "\n".join(lines + body + [""] + notes)


TASK_COUNTS = (1000, 10000, 100000, 1000000)
TASK_COUNTS_QUICK = (1000, 10000, 100000)
# The tasks workload's programs, by the name the table gives them: the
# binary under the build directory, and what one of its tasks is.
TASK_PROGRAMS = {
    "asyncio": (
        Path("benchmarks/net/task_scaling"),
        "create_task of a coroutine awaiting one asyncio::Event",
    ),
    "asio": (
        Path("benchmarks/peers/asio/asio_task_scaling"),
        "co_spawn of an awaitable<void> waiting on one never-expiring steady_timer",
    ),
}
TASK_FIGURES = ("spawn_ns", "finish_ns", "cold_spawn_ns", "heap_bytes", "rss_bytes")


def run_tasks(args):
    """The tasks workload: each program of TASK_PROGRAMS once per round,
    rounds interleaved as the servers' are, pinned to the servers' CPU.
    Returns, by program name, its status and, per task count, the medians
    over rounds and their rise over the smallest count's."""
    counts = TASK_COUNTS_QUICK if args.quick else TASK_COUNTS
    programs = {}
    for name, (binary, what) in TASK_PROGRAMS.items():
        path = args.build_dir / binary
        entry = {"program": path.name, "task": what, "status": "ok", "note": "", "counts": []}
        if not os.access(path, os.X_OK):
            reason = NOT_BUILT.get(path.name, f"{path} is missing")
            entry.update(status="skipped", note=f"not built ({reason})")
        programs[name] = (entry, path, {n: [] for n in counts})
    for r in range(args.rounds):
        for entry, path, per_count in programs.values():
            if entry["status"] != "ok":
                continue
            log(f"tasks round {r + 1}/{args.rounds}: {path.name} {' '.join(map(str, counts))}")
            done = subprocess.run(
                args.server_pin + [str(path)] + [str(n) for n in counts],
                capture_output=True,
                text=True,
            )
            if done.returncode != 0:
                why = f"exited with {signal_name(done.returncode)}: {done.stderr.strip()[-500:]}"
                log(f"error: {path.name} {why}")
                entry.update(status="failed", note=why)
                continue
            for line in done.stdout.splitlines():
                result = json.loads(line)
                per_count[result["tasks"]].append(result)
    for entry, path, per_count in programs.values():
        if entry["status"] != "ok":
            continue
        missing = [n for n in counts if len(per_count[n]) != args.rounds]
        if missing:
            entry.update(status="failed", note=f"printed no line for {missing[0]:,} tasks")
            continue
        for n in counts:
            row = {"tasks": n, "rounds": per_count[n]}
            for key in TASK_FIGURES:
                row[key] = statistics.median(x[key] for x in per_count[n])
            entry["counts"].append(row)
        first = entry["counts"][0]
        for row in entry["counts"]:
            for key in ("spawn_ns", "finish_ns"):
                rise = row[key] / first[key] if first[key] > 0 else None
                row[f"{key[: -len('_ns')]}_rise"] = rise
    return {name: entry for name, (entry, _, _) in programs.items()}


def tasks_markdown(programs, args):
    counts = TASK_COUNTS_QUICK if args.quick else TASK_COUNTS
    first = f"{counts[0]:,}"
    lines = [
        "### tasks: N tasks alive at once, each waiting on one event",
        "",
        "| program | tasks alive | spawn ns/task | finish ns/task | cold spawn ns/task "
        f"| heap B/pending task | RSS B/pending task | spawn vs {first} | finish vs {first} |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rises, notes = [], []
    for name, entry in programs.items():
        if entry["status"] != "ok":
            lines.append(f"| {name} | {entry['status']} |" + " – |" * 7)
            notes.append(f"- {name} ({entry['program']}): {entry['status']}: {entry['note']}")
            continue
        for row in entry["counts"]:
            lines.append(
                f"| {name} | {row['tasks']:,} | {fmt_num(row['spawn_ns'], 1)} "
                f"| {fmt_num(row['finish_ns'], 1)} | {fmt_num(row['cold_spawn_ns'], 1)} "
                f"| {fmt_num(row['heap_bytes'])} | {fmt_num(row['rss_bytes'])} "
                f"| {fmt_ratio(row['spawn_rise'])} | {fmt_ratio(row['finish_rise'])} |"
            )
        last = entry["counts"][-1]
        rises.append(
            f"- {name} ({entry['task']}): spawn {fmt_ratio(last['spawn_rise'])}, "
            f"finish {fmt_ratio(last['finish_rise'])}"
        )
    out = lines + [""]
    if rises:
        out += [f"Rise from {first} to {counts[-1]:,} tasks alive:", ""] + rises + [""]
    ours = programs.get("asyncio")
    if ours is not None and ours["status"] == "ok":
        last = ours["counts"][-1]
        rise, heap = last["spawn_rise"], last["heap_bytes"]
        out.append(
            f"Goals (this library): spawn cost from {first} to {last['tasks']:,} tasks rises at "
            "most 3x: "
            + ("n/a" if rise is None else f"{'met' if rise <= 3 else 'MISSED'} ({rise:.2f}x)")
            + "; at most 256 heap bytes per pending task: "
            + f"{'met' if heap <= 256 else 'MISSED'} ({heap:,.0f} B at {last['tasks']:,})."
        )
        out.append("")
    return "\n".join(out + notes)


def run_gnuplot(gnuplot, script, data):
    """Draws `script`'s chart from the data file `data`, then removes it."""
    done = subprocess.run([gnuplot], input=script, text=True, capture_output=True)
    if done.returncode != 0:
        raise BenchError(f"gnuplot failed on {data}: {done.stderr.strip()}")
    data.unlink()


def line_chart(out_dir, gnuplot, name, title, xlabel, ylabel, columns, styles):
    """OUT_DIR/NAME.png: one line per column of `columns` ({title: {x: y}}),
    both axes on a log scale: what is read off them is how many times a
    cost grows. styles[title] is the line's (colour, point type) number, so
    that lines of one program share a colour."""
    xs = sorted({x for points in columns.values() for x in points})
    data = out_dir / f"{name}.dat"
    with data.open("w") as f:
        for x in xs:
            values = [columns[c].get(x) for c in columns]
            f.write(f"{x} " + " ".join("-" if v is None else f"{v:.4f}" for v in values) + "\n")
    png = out_dir / f"{name}.png"
    plots = [
        f"'{data}' using 1:{i + 2} with linespoints lc {styles[c][0]} pt {styles[c][1]} "
        f"title '{c}'"
        for i, c in enumerate(columns)
    ]
    script = "\n".join(
        [
            "set terminal pngcairo noenhanced size 900,560 font ',10'",
            f"set output '{png}'",
            f"set title '{title} (lower is better)'",
            f"set xlabel '{xlabel}'",
            f"set ylabel '{ylabel}'",
            "set datafile missing '-'",
            "set logscale xy",
            "set grid",
            "set key outside right top",
            "plot " + ", ".join(plots),
        ]
    )
    run_gnuplot(gnuplot, script, data)
    return png


def tasks_chart(programs, out_dir, gnuplot):
    columns, styles = {}, {}
    for colour, (name, entry) in enumerate(programs.items(), start=1):
        if entry["status"] != "ok":
            continue
        spawn = "create_task" if name == "asyncio" else "co_spawn"
        lines = ((spawn, "spawn_ns"), ("wake and finish", "finish_ns"))
        for point, (what, key) in enumerate(lines):
            title = f"{name}: {what}"
            columns[title] = {r["tasks"]: r[key] for r in entry["counts"]}
            styles[title] = (colour, point + 5)
    if not columns:
        return None
    return line_chart(
        out_dir, gnuplot, "tasks", "Tasks alive at once: cost per task", "tasks alive",
        "ns per task", columns, styles,
    )  # fmt: skip


def sweep_chart(rows, out_dir, gnuplot):
    columns, styles = {}, {}
    for row in sorted(rows.values(), key=lambda r: server_order("sweep", r)):
        if row["status"] != "ok" or not row.get("by_connections"):
            continue
        title = f"{row['server']}@{row['backend']}"
        columns[title] = {p["connections"]: p["cpu_us_per_msg"] for p in row["by_connections"]}
        # A colour per server, a point type per backend or loop.
        server, backend = server_order("sweep", row)
        styles[title] = (server + 1, backend + 4)
    if not columns:
        return None
    return line_chart(
        out_dir, gnuplot, "sweep", "echo by connections: server CPU per message", "connections",
        "µs (utime + stime) per message", columns, styles,
    )  # fmt: skip


# What a workload's chart shows: the row's key, its scale, the axis label.
CHART_METRIC = {"idle": ("rss_per_conn_b", 1 / 1024, "KiB resident per idle connection")}
CHART_TITLES = {
    "idle": "Idle connections: memory each holds",
    "echo": "echo: server CPU per message",
    "http": "HTTP under wrk: server CPU per request",
    "tls": "TLS echo: server CPU per message",
    "resp": "RESP under redis-benchmark: server CPU per request",
}


def write_charts(results, out_dir):
    """One PNG per workload (OUT_DIR/WORKLOAD.png): each measured server's
    CPU per operation, drawn by gnuplot. Returns the files written."""
    gnuplot = shutil.which("gnuplot")
    if gnuplot is None:
        log("gnuplot not found (scripts/deps.sh gnuplot-nox): no charts")
        return []
    written = []
    for workload, rows in results.items():
        # Lines over a count, not a bar per server.
        chart = {"tasks": tasks_chart, "sweep": sweep_chart}.get(workload)
        if chart is not None:
            png = chart(rows, out_dir, gnuplot)
            if png is not None:
                written.append(png)
            continue
        metric, scale, ylabel = CHART_METRIC.get(
            workload, ("cpu_us_per_msg", 1, "µs (utime + stime) per operation")
        )
        measured = [
            row
            for row in sorted(rows.values(), key=lambda r: server_order(workload, r))
            if row["status"] == "ok" and row.get(metric) is not None
        ]
        if not measured:
            continue
        data = out_dir / f"{workload}.dat"
        with data.open("w") as f:
            for row in measured:
                f.write(f"\"{row['server']}@{row['backend']}\" {row[metric] * scale:.4f}\n")
        png = out_dir / f"{workload}.png"
        width = max(800, 60 * len(measured) + 200)
        script = "\n".join(
            [
                f"set terminal pngcairo noenhanced size {width},560 font ',10'",
                f"set output '{png}'",
                f"set title '{CHART_TITLES[workload]} (lower is better)'",
                f"set ylabel '{ylabel}'",
                "set style data histograms",
                "set style fill solid 0.8 border -1",
                "set boxwidth 0.8",
                "set xtics rotate by -45 scale 0 nomirror",
                "set grid ytics",
                "set yrange [0:*]",
                "set bmargin 12",
                "unset key",
                f"plot '{data}' using 2:xtic(1) lc rgb '#4477aa'",
            ]
        )
        run_gnuplot(gnuplot, script, data)
        written.append(png)
    return written


def parse_args(argv):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Ratios: this server's CPU per message / the raw peer's (above 1.00x: costs more).",
    )
    p.add_argument(
        "--workload",
        choices=("echo", "http", "tls", "resp", "sweep", "tasks", "idle", "all"),
        default="all",
    )
    p.add_argument(
        "--sweep-connections",
        help="sweep: connection counts, comma-separated "
        f"[{','.join(map(str, SWEEP_COUNTS))}; --quick: {','.join(map(str, SWEEP_COUNTS_QUICK))}]",
    )
    p.add_argument(
        "--idle-connections",
        type=int,
        help="idle: connections held open [10,000; --quick: 200]",
    )
    p.add_argument(
        "--servers",
        default="",
        help="comma-separated shell patterns matched against NAME or NAME@BACKEND "
        "(e.g. 'raw_*,echo_protocol@epoll'); default: all",
    )
    p.add_argument(
        "--backends",
        default=",".join(BACKENDS),
        help=f"library backends to run, comma-separated [{','.join(BACKENDS)}]",
    )
    # None: the default, or --quick's if given; an explicit value wins over both.
    p.add_argument("--rounds", type=int, help="measured rounds per server [3]")
    p.add_argument("--duration", type=float, help="seconds per measured window [5]")
    p.add_argument("--warmup", type=float, help="seconds of warm-up per round [2]")
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run (CI): 1 round of 2 s after 1 s of warm-up (sweep: "
        f"{SWEEP_QUICK_WINDOW[0]:g} s after {SWEEP_QUICK_WINDOW[1]:g} s), unless given explicitly",
    )
    p.add_argument("--connections", type=int, default=50, help="echo connections [50]")
    p.add_argument(
        "--size", type=int, help=f"echo message bytes [64; tls: {TLS_SIZE}]"
    )
    p.add_argument(
        "--python-loops",
        default=",".join(PYTHON_LOOPS),
        help=f"the Python servers' loops [{','.join(PYTHON_LOOPS)}]",
    )
    p.add_argument(
        "--pipeline", type=int, default=16, help="resp: redis-benchmark's -P [16]; 1: no pipelining"
    )
    p.add_argument(
        "--resp-requests",
        type=int,
        help="resp: redis-benchmark's -n, requests per test (PING_INLINE, PING_MBULK, SET, GET) "
        f"[--duration x {RESP_RATE['pipelined']:,} with -P above 1, x {RESP_RATE['single']:,} "
        "with -P 1; the warm-up run: --warmup x the same]",
    )
    p.add_argument("--python", default="python3", help="interpreter for asyncio [python3]")
    p.add_argument(
        "--uvloop-python",
        default="/usr/bin/python3",
        help="interpreter for uvloop (Debian's python3-uvloop) [/usr/bin/python3]",
    )
    p.add_argument(
        "--build-dir",
        type=Path,
        default=REPO / "build" / "bench",
        help="the bench preset's build directory [build/bench]",
    )
    p.add_argument("--out-dir", type=Path, help="where table.md and results.json go [BUILD_DIR/net]")
    p.add_argument("--server-cpu", default="0", help="CPU the servers are pinned to, or none [0]")
    p.add_argument("--client-cpu", default="1", help="CPU the load generator is pinned to [1]")
    p.add_argument("--start-timeout", type=float, default=10, help="seconds to wait for a server")
    args = p.parse_args(argv)
    defaults = {"rounds": 1, "duration": 2, "warmup": 1} if args.quick else {
        "rounds": 3,
        "duration": 5,
        "warmup": 2,
    }
    given = {key for key in defaults if getattr(args, key) is not None}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    # The sweep's (seconds measured, of warm-up).
    args.sweep_window = (
        SWEEP_QUICK_WINDOW[0] if args.quick and "duration" not in given else args.duration,
        SWEEP_QUICK_WINDOW[1] if args.quick and "warmup" not in given else args.warmup,
    )
    if args.sweep_connections is None:
        args.sweep_counts = list(SWEEP_COUNTS_QUICK if args.quick else SWEEP_COUNTS)
    else:
        try:
            args.sweep_counts = [int(n) for n in args.sweep_connections.split(",") if n.strip()]
        except ValueError:
            p.error("--sweep-connections takes whole numbers, comma-separated")
        if not args.sweep_counts or min(args.sweep_counts) < 1:
            p.error("--sweep-connections must be positive")
    if args.idle_connections is None:
        args.idle_connections = 200 if args.quick else 10000
    if args.idle_connections < 1:
        p.error("--idle-connections must be positive")
    if args.rounds < 1 or args.duration <= 0 or args.warmup < 0:
        p.error("--rounds must be positive, --duration positive, --warmup not negative")
    if args.connections < 1 or (args.size is not None and args.size < 1):
        p.error("--connections and --size must be positive")
    if args.pipeline < 1 or (args.resp_requests is not None and args.resp_requests < 1):
        p.error("--pipeline and --resp-requests must be positive")
    rate = RESP_RATE["pipelined" if args.pipeline > 1 else "single"]
    if args.resp_requests is None:
        args.resp_requests = max(1000, round(args.duration * rate))
    args.resp_warmup_requests = round(args.warmup * rate)
    # (port, readiness regex) of the servers given a port (redis-server),
    # by NAME@BACKEND: planned_servers fills it.
    args.ready = {}
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = sorted(set(args.backends) - set(BACKENDS))
    if unknown:
        p.error(f"unknown backend(s) {', '.join(unknown)}; known: {', '.join(BACKENDS)}")
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    args.python_loops = [x.strip() for x in args.python_loops.split(",") if x.strip()]
    unknown = sorted(set(args.python_loops) - set(PYTHON_LOOPS))
    if unknown:
        p.error(f"unknown Python loop(s) {', '.join(unknown)}; known: {', '.join(PYTHON_LOOPS)}")
    args.workloads = (
        ["echo", "http", "tls", "resp", "sweep", "tasks", "idle"]
        if args.workload == "all"
        else [args.workload]
    )
    # wrk takes whole seconds.
    args.duration_whole = max(1, round(args.duration))
    args.warmup_whole = max(1, round(args.warmup)) if args.warmup > 0 else 0
    args.bin_dir = args.build_dir / "benchmarks" / "net"
    args.out_dir = args.out_dir or args.build_dir / "net"
    return args


def raise_open_files_limit(needed, what):
    """Raises this process's descriptor limit (the servers and echo_client
    inherit it) to the hard limit: the idle and sweep workloads hold
    thousands of connections. `what` needs `needed` descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise BenchError(f"{what} needs about {needed:,} descriptors, the hard limit is {hard:,}")
    if soft != resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main(argv=None):
    args = parse_args(argv)
    needs = []  # (descriptors, what needs them)
    if "idle" in args.workloads:
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        if args.quick and hard != resource.RLIM_INFINITY and hard < args.idle_connections + 256:
            # A smoke run checks that the workload works, at any size.
            args.idle_connections = max(1, hard - 256)
            log(f"idle: {args.idle_connections} connections, as the descriptor limit allows")
        needs.append((args.idle_connections + 256, "--idle-connections"))
    if "sweep" in args.workloads:
        # echo_client and the server, each a process with this limit, hold
        # one end of every connection each.
        needs.append((max(args.sweep_counts) + 256, "the sweep's largest connection count"))
    if needs:
        try:
            raise_open_files_limit(*max(needs))
        except BenchError as e:
            log(f"error: {e}")
            return 2
    if not os.access(args.bin_dir / "echo_client", os.X_OK):
        log(f"{args.bin_dir / 'echo_client'} is missing: build the bench preset first")
        return 2
    args.server_pin, server_pin_note = cpu_pin(args.server_cpu)
    args.client_pin, client_pin_note = cpu_pin(args.client_cpu)
    if args.server_cpu == args.client_cpu and args.server_pin:
        log("warning: server and load generator are pinned to the same CPU")

    started = datetime.datetime.now(datetime.timezone.utc)
    results, tables, failed_programs = {}, [], []
    with tempfile.TemporaryDirectory(prefix="asyncio-net-bench-") as tmp:
        args.tls_files, args.tls_unavailable = None, None
        if "tls" in args.workloads:
            args.tls_files, args.tls_unavailable = make_certificate(tmp)
        for workload in args.workloads:
            if workload == "tasks":
                results["tasks"] = run_tasks(args)
                tables.append(tasks_markdown(results["tasks"], args))
                failed_programs += [
                    e["program"] for e in results["tasks"].values() if e["status"] == "failed"
                ]
                continue
            args.workload_size = args.size or (TLS_SIZE if workload == "tls" else 64)
            args.window = args.sweep_window if workload == "sweep" else (args.duration, args.warmup)
            results[workload] = run_workload(workload, args)
            tables.append(markdown(workload, results[workload], args))

    http_note = (
        f"; http: a {args.warmup_whole} s wrk warm-up run, then a measured run"
        if "http" in args.workloads
        else ""
    )
    method = (
        f"Medians of {args.rounds} round(s) of {args.duration:g} s"
        f" (echo: after a {args.warmup:g} s warm-up on the same connections{http_note}); "
        f"servers on {server_pin_note}, load generator on {client_pin_note}; server CPU = "
        f"utime+stime from /proc/PID/stat over the measured window (1/{CLK_TCK} s ticks) "
        "divided by the messages (requests) completed in it; vs = this server's CPU/msg over "
        "the raw peer's in the same round, median over rounds (above 1.00x: costs more)."
    )
    if "tls" in args.workloads:
        method += (
            " tls: echo_client (--tls for the TLS servers) as for echo, after the same warm-up; "
            "Python servers: asyncio on "
            f"{args.python}, uvloop on {args.uvloop_python}; tls_record_cost: OpenSSL's CPU per "
            "message on the server's side (BIO_write + SSL_read + SSL_write + BIO_read over "
            "memory BIOs), run before each round on the servers' CPU; TLS − plain, TLS / plain "
            "(a library server with TLS and the same server and backend without) and Python ÷ "
            "this (Python's server of the same API over this one) are taken within each round, "
            "median over rounds."
        )
    if "idle" in args.workloads:
        method += (
            f" idle: run.py opens {args.idle_connections:,} connections to each echo server, one "
            "after the other, echoes 64 bytes on each and keeps it open; the server's VmRSS and "
            "VmSize (/proc/PID/status) before and after, over the connections, are the memory "
            "one idle connection holds (rounds after the first reuse what the first freed)."
        )
    if "sweep" in args.workloads:
        sweep_duration, sweep_warmup = args.sweep_window
        method += (
            " sweep: the echo workload's method at each of "
            f"{', '.join(f'{n:,}' for n in args.sweep_counts)} connections, windows of "
            f"{sweep_duration:g} s after {sweep_warmup:g} s of warm-up; within a round every "
            "server at one count, then the next count; echo_client opens the connections 64 "
            "at a time, each batch echoed once before the next connects (no listen backlog "
            "overflows); vs raw_epoll is taken within each round at the same count, median "
            "over rounds."
        )
    if "tasks" in args.workloads:
        method += (
            " tasks: task_scaling (pinned as the servers) creates N tasks that each await one "
            "Event, lets them all start, sets the Event and awaits them, on a fresh loop twice "
            "per N; spawn and finish ns per task are from the second (warm) run, whose blocks "
            "the first freed; cold spawn, heap (mallinfo2) and RSS (VmRSS) bytes per pending "
            "task from the first; medians over rounds. asio_task_scaling does the same with "
            "Boost.Asio: co_spawn of N awaitable<void> on a fresh io_context, each waiting on "
            "one steady_timer that never expires, cancelled to wake them all; the two programs "
            "take turns within each round; vs = the figure at N over the one at the smallest N."
        )
    if "resp" in args.workloads:
        method += (
            f" resp: redis-benchmark -t {RESP_TESTS} -P {args.pipeline} -c {RESP_CLIENTS} --csv, "
            f"a warm-up run of -n {args.resp_warmup_requests:,}, then a measured run of -n "
            f"{args.resp_requests:,} per test (4 tests: PING_INLINE, PING_MBULK, SET, GET), the "
            "server's CPU read just before it starts and just after it exits; requests/s = all "
            "requests over the sum of the tests' times; p99 = the highest of the tests'; "
            "redis-server is Debian's, with --save '' --appendonly no; vs redis-server and "
            "streams ÷ protocol (redis_server over resp_protocol on the same backend) are "
            "CPU/request ratios taken within each round, median over rounds."
        )
    text = "\n\n".join(tables) + "\n\n" + method + "\n"
    print(text)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "table.md").write_text(text)
    doc = {
        "date": started.isoformat(timespec="seconds"),
        "host": platform.node(),
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "settings": {
            "workloads": args.workloads,
            "rounds": args.rounds,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "wrk_duration_s": args.duration_whole,
            "wrk_warmup_s": args.warmup_whole,
            "echo_connections": args.connections,
            "sweep_connections": args.sweep_counts,
            "sweep_duration_s": args.sweep_window[0],
            "sweep_warmup_s": args.sweep_window[1],
            "echo_size": args.size or 64,
            "tls_size": args.size or TLS_SIZE,
            "python": args.python,
            "uvloop_python": args.uvloop_python,
            "python_loops": args.python_loops,
            "http_connections": HTTP_CONNECTIONS,
            "resp_pipeline": args.pipeline,
            "resp_clients": RESP_CLIENTS,
            "resp_requests_per_test": args.resp_requests,
            "resp_warmup_requests_per_test": args.resp_warmup_requests,
            "backends": args.backends,
            "servers": args.servers,
            "server_pinning": server_pin_note,
            "client_pinning": client_pin_note,
            "clk_tck": CLK_TCK,
        },
        "method": method,
        "results": results,
    }
    (args.out_dir / "results.json").write_text(json.dumps(doc, indent=2) + "\n")
    log(f"wrote {args.out_dir / 'table.md'} and {args.out_dir / 'results.json'}")
    for png in write_charts(results, args.out_dir):
        log(f"wrote {png}")
    failed = failed_programs + [
        f"{row['server']}@{row['backend']}"
        for workload, rows in results.items()
        if workload != "tasks"
        for row in rows.values()
        if row["status"] == "failed"
    ]
    if failed:
        log(f"FAILED: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
