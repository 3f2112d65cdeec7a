#!/usr/bin/env python3
"""Fails when a header includes a layer above its own (docs/index.md, Modules).

Each public and detail header is compiled on its own with `g++ -H`, which
lists every header it pulls in, directly or not. A header may pull in its
own layer and the layers below, nothing above; the sync, queue and task
function layers must also stay clear of sockets, transports and threads,
which sit below them in the table only by order. Compiling each header on
its own also checks that it includes what it uses.
"""
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INCLUDE = ROOT / "include"

# The layers that docs/index.md lists under Modules, lowest first.
LAYERS = [
    ("errors", ["exceptions.hpp", "log.hpp", "detail/allocator.hpp", "detail/storage.hpp",
                "detail/intrusive.hpp", "detail/library_key.hpp", "detail/native.hpp"]),
    ("coroutine core", ["coro.hpp", "future.hpp", "task.hpp", "handle.hpp", "contextvars.hpp",
                        "exception_context.hpp", "asyncgen.hpp", "outcome.hpp", "detail/future_state.hpp",
                        "detail/loop_core.hpp", "detail/multi_watch.hpp"]),
    ("event loop", ["loop.hpp", "policy.hpp", "runners.hpp", "backend.hpp", "clock.hpp",
                    "detail/network_forward.hpp"]),
    ("task functions", ["tasks.hpp", "timeouts.hpp", "taskgroups.hpp"]),
    ("threads", ["threads.hpp"]),
    ("sync", ["locks.hpp"]),
    ("queues", ["queues.hpp"]),
    ("sockets", ["socket.hpp"]),
    ("TLS contexts", ["ssl.hpp"]),
    ("transports", ["transports.hpp", "protocols.hpp", "detail/open_transport.hpp"]),
    ("streams", ["streams.hpp"]),
    ("subprocess", ["subprocess.hpp"]),
]

# Headers that must not pull in these, whatever the order of the table says.
KEEP_CLEAR = {
    "locks.hpp": ("socket.hpp", "transports.hpp", "protocols.hpp", "threads.hpp"),
    "queues.hpp": ("socket.hpp", "transports.hpp", "protocols.hpp", "threads.hpp"),
    "tasks.hpp": ("socket.hpp", "transports.hpp", "protocols.hpp", "threads.hpp"),
}

# The most project headers each may pull in: a light header stays light
# (fmt's base.h), so a new include has to earn its place here.
MOST_PULLED_IN = {"locks.hpp": 12, "queues.hpp": 12}

RANK = {name: rank for rank, (_, names) in enumerate(LAYERS) for name in names}
LAYER_NAME = {name: layer for layer, names in LAYERS for name in names}


def pulled_in(header: str, compiler: str) -> list[str]:
    """The project headers `header` pulls in, relative to include/asyncio."""
    result = subprocess.run(
        [compiler, "-std=c++20", "-fsyntax-only", "-H", f"-I{INCLUDE}", "-x", "c++",
         str(INCLUDE / "asyncio" / header)],
        capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{header} does not compile on its own:\n{result.stderr}")
    prefix = str(INCLUDE / "asyncio") + "/"
    names = []
    for line in result.stderr.splitlines():
        match = re.match(r"^\.+ (.*)$", line)
        if match:
            path = os.path.normpath(match.group(1))
            if path.startswith(prefix):
                names.append(path[len(prefix):])
    return sorted(set(names))


def main() -> int:
    compiler = os.environ.get("CXX", "g++")
    headers = sorted(str(p.relative_to(INCLUDE / "asyncio"))
                     for p in (INCLUDE / "asyncio").rglob("*.hpp"))
    unknown = [h for h in headers if h not in RANK]
    if unknown:
        print("headers missing from the layer table in scripts/check_layers.py: "
              + ", ".join(unknown))
        return 1
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        results = dict(zip(headers, pool.map(lambda h: pulled_in(h, compiler), headers)))
    failures = []
    for header, included in results.items():
        for dep in included:
            if dep not in RANK:
                failures.append(f"{header} pulls in {dep}, which is in no layer")
            elif RANK[dep] > RANK[header]:
                failures.append(f"{header} ({LAYER_NAME[header]}) pulls in {dep} "
                                f"({LAYER_NAME[dep]}), a layer above it")
        for dep in KEEP_CLEAR.get(header, ()):
            if dep in included:
                failures.append(f"{header} must not pull in {dep}")
        if header in MOST_PULLED_IN and len(included) > MOST_PULLED_IN[header]:
            failures.append(f"{header} pulls in {len(included)} project headers, "
                            f"more than its {MOST_PULLED_IN[header]}")
    for header in ("locks.hpp", "queues.hpp", "tasks.hpp"):
        print(f"{header} pulls in {len(results[header])} project headers")
    if failures:
        print("\n".join(failures))
        return 1
    print(f"layers: {len(headers)} headers checked")
    return 0


if __name__ == "__main__":
    sys.exit(main())
