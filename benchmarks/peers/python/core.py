#!/usr/bin/env python3
"""Python peer of the core micro benchmarks (asyncio or uvloop event loop).

The five workloads mirror our Google Benchmark binary and
benchmarks/peers/asio/core.cpp; benchmarks/compare.py matches them by name.
Each batch performs N operations and is timed with time.perf_counter_ns; a
workload's result is the median over the repetitions of (batch ns / N).

Prints one JSON object to stdout:
    {"implementation": "python-asyncio" | "python-uvloop",
     "python": "3.11.7",
     "results": {"call_soon": ns_per_op, ...},   # medians
     "batch":   {"call_soon": N, ...},
     "samples": {"call_soon": [ns_per_op, ...], ...}}

uvloop is only importable from the system interpreter on our machines:
    python3 core.py --loop asyncio
    /usr/bin/python3 core.py --loop uvloop
"""

import argparse
import asyncio
import gc
import json
import platform
import statistics
import sys
import time

WORKLOADS = ("call_soon", "create_task", "await_done_future", "sleep0", "timer_cancel")

now_ns = time.perf_counter_ns


def _noop():
    pass


def bench_call_soon(loop, n):
    counter = 0

    def cb():
        nonlocal counter
        counter += 1

    def last():
        nonlocal counter
        counter += 1
        loop.stop()

    # Bound once, as a hot loop in real code would: we measure the event loop,
    # not the interpreter's attribute lookup.
    call_soon = loop.call_soon
    start = now_ns()
    for _ in range(n - 1):
        call_soon(cb)
    call_soon(last)
    loop.run_forever()
    elapsed = now_ns() - start
    assert counter == n, (counter, n)
    return elapsed


async def trivial():
    return 1


async def _create_task_batch(loop, n):
    create_task = loop.create_task
    start = now_ns()
    for _ in range(n):
        last = create_task(trivial())
    # Tasks start in FIFO order, so once the last one is done all of them are.
    await last
    return now_ns() - start


def bench_create_task(loop, n):
    return loop.run_until_complete(_create_task_batch(loop, n))


async def _await_done_future_batch(loop, n):
    fut = loop.create_future()
    fut.set_result(1)
    start = now_ns()
    for _ in range(n):
        await fut
    return now_ns() - start


def bench_await_done_future(loop, n):
    return loop.run_until_complete(_await_done_future_batch(loop, n))


async def _sleep0_batch(n):
    sleep = asyncio.sleep
    start = now_ns()
    for _ in range(n):
        await sleep(0)
    return now_ns() - start


def bench_sleep0(loop, n):
    return loop.run_until_complete(_sleep0_batch(n))


def bench_timer_cancel(loop, n):
    call_later = loop.call_later
    start = now_ns()
    for _ in range(n):
        handle = call_later(3600, _noop)
        handle.cancel()
    # One loop iteration: that is when asyncio drops cancelled TimerHandles
    # from its heap, which is part of what cancelling costs.
    loop.call_soon(loop.stop)
    loop.run_forever()
    elapsed = now_ns() - start
    scheduled = getattr(loop, "_scheduled", None)  # asyncio only
    assert not scheduled, f"{len(scheduled)} cancelled timers were not purged"
    return elapsed


BENCHES = {
    "call_soon": bench_call_soon,
    "create_task": bench_create_task,
    "await_done_future": bench_await_done_future,
    "sleep0": bench_sleep0,
    "timer_cancel": bench_timer_cancel,
}


def new_loop(kind):
    if kind == "uvloop":
        try:
            import uvloop
        except ImportError:
            sys.exit(f"core.py: uvloop is not importable from {sys.executable}")
        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    # PYTHONASYNCIODEBUG or -X dev would otherwise make every callback far slower.
    loop.set_debug(False)
    asyncio.set_event_loop(loop)
    return loop


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    p.add_argument("--repetitions", type=int, default=5, help="timed batches per workload")
    p.add_argument("--n", type=int, default=100_000, help="operations per batch")
    p.add_argument(
        "--n-create-task",
        type=int,
        default=None,
        help="operations per create_task batch (default: min(N, 20000); every task of a "
        "batch is alive at once, so this bounds memory)",
    )
    p.add_argument("--filter", default="", help="comma-separated workloads to run (default: all)")
    args = p.parse_args(argv)
    if args.repetitions < 1 or args.n < 1:
        p.error("--repetitions and --n must be positive")
    if args.n_create_task is None:
        args.n_create_task = min(args.n, 20_000)
    elif args.n_create_task < 1:
        p.error("--n-create-task must be positive")
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
            bench = BENCHES[name]
            n = args.n_create_task if name == "create_task" else args.n
            bench(loop, n)  # warm-up: allocator pools, free lists, code caches
            samples = []
            for _ in range(args.repetitions):
                # Start every batch from the same heap state; the collector stays
                # enabled because collections a batch triggers are part of its cost.
                gc.collect()
                samples.append(bench(loop, n) / n)
            out["results"][name] = statistics.median(samples)
            out["batch"][name] = n
            out["samples"][name] = samples
    finally:
        loop.close()
    json.dump(out, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
