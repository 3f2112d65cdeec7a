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

import asyncio
import time

import harness

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


BENCHES = {
    "queue_pingpong": harness.coroutine_bench(queue_pingpong_batch),
    "lock_contended": harness.coroutine_bench(lock_contended_batch),
}


def main(argv=None):
    args = harness.parse_args(argv, __doc__, WORKLOADS, 10_000, min_n=CONTENDERS)
    harness.run(args, BENCHES)


if __name__ == "__main__":
    main()
