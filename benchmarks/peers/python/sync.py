#!/usr/bin/env python3
"""Python peer of the synchronization micro benchmarks (bench_sync.cpp).

Workloads (asyncio or uvloop event loop):
  queue_pingpong  one op = one round trip: task A puts an item on `ping`, task B
                  gets it and puts it on `pong`, A gets it back (asyncio.Queue(1))
  lock_contended  one op = one acquire/release pair of one asyncio.Lock, 4 tasks
                  contending, each yielding with sleep(0) while holding it

Each batch performs N operations and is timed with time.perf_counter_ns; a
workload's result is the median over the repetitions of (batch ns / N). Prints
the same JSON as core.py: {"implementation", "python", "executable", "results",
"batch", "samples"}.
"""

import argparse
import asyncio
import gc
import json
import platform
import statistics
import sys
import time

WORKLOADS = ("queue_pingpong", "lock_contended")
CONTENDERS = 4

now_ns = time.perf_counter_ns


async def _echo(ping, pong, n):
    for _ in range(n):
        v = await ping.get()
        await pong.put(v + 1)


async def queue_pingpong_batch(n):
    ping, pong = asyncio.Queue(1), asyncio.Queue(1)
    start = now_ns()
    echo = asyncio.create_task(_echo(ping, pong, n))
    total = 0
    for _ in range(n):
        await ping.put(1)
        total += await pong.get()
    await echo
    elapsed = now_ns() - start
    assert total == 2 * n, (total, n)
    return elapsed


async def lock_contended_batch(n):
    lock = asyncio.Lock()
    pairs = 0

    async def contender(count):
        nonlocal pairs
        for _ in range(count):
            async with lock:
                await asyncio.sleep(0)
                pairs += 1

    start = now_ns()
    await asyncio.gather(*(contender(n // CONTENDERS) for _ in range(CONTENDERS)))
    elapsed = now_ns() - start
    assert pairs == n // CONTENDERS * CONTENDERS, (pairs, n)
    return elapsed


BATCHES = {"queue_pingpong": queue_pingpong_batch, "lock_contended": lock_contended_batch}


def new_loop(kind):
    if kind == "uvloop":
        try:
            import uvloop
        except ImportError:
            sys.exit(f"sync.py: uvloop is not importable from {sys.executable}")
        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    # PYTHONASYNCIODEBUG or -X dev would otherwise make every step far slower.
    loop.set_debug(False)
    asyncio.set_event_loop(loop)
    return loop


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    p.add_argument("--repetitions", type=int, default=5, help="timed batches per workload")
    p.add_argument("--n", type=int, default=10_000, help="operations per batch")
    p.add_argument("--filter", default="", help="comma-separated workloads to run (default: all)")
    args = p.parse_args(argv)
    if args.repetitions < 1 or args.n < CONTENDERS:
        p.error(f"--repetitions must be positive and --n at least {CONTENDERS}")
    args.workloads = [w.strip() for w in args.filter.split(",") if w.strip()] or list(WORKLOADS)
    unknown = sorted(set(args.workloads) - set(WORKLOADS))
    if unknown:
        p.error(f"unknown workload(s) {', '.join(unknown)}; known: {', '.join(WORKLOADS)}")
    return args


def main(argv=None):
    args = parse_args(argv)
    loop = new_loop(args.loop)
    out = {
        "implementation": f"python-{args.loop}",
        "python": platform.python_version(),
        "executable": sys.executable,
        "results": {},
        "batch": {},
        "samples": {},
    }
    if args.loop == "uvloop":
        import uvloop

        out["uvloop"] = uvloop.__version__
    try:
        for name in WORKLOADS:
            if name not in args.workloads:
                continue
            batch = BATCHES[name]
            loop.run_until_complete(batch(args.n))  # warm-up
            samples = []
            for _ in range(args.repetitions):
                # Same heap state for every batch; collections a batch
                # triggers are part of its cost.
                gc.collect()
                samples.append(loop.run_until_complete(batch(args.n)) / args.n)
            out["results"][name] = statistics.median(samples)
            out["batch"][name] = args.n
            out["samples"][name] = samples
    finally:
        loop.close()
    json.dump(out, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
