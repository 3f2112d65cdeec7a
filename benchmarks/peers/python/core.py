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

import asyncio
import time

import harness

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


def add_arguments(p):
    p.add_argument(
        "--n-create-task",
        type=int,
        default=None,
        help="operations per create_task batch (default: min(N, 20000); every task of a "
        "batch is alive at once, so this bounds memory)",
    )


def main(argv=None):
    args = harness.parse_args(argv, __doc__, WORKLOADS, 100_000, add_arguments=add_arguments)
    if args.n_create_task is None:
        args.n_create_task = min(args.n, 20_000)
    elif args.n_create_task < 1:
        args.parser.error("--n-create-task must be positive")
    harness.run(args, BENCHES, lambda name: args.n_create_task if name == "create_task" else args.n)


if __name__ == "__main__":
    main()
