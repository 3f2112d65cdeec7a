#!/usr/bin/env python3
"""Python peer of the structured concurrency benchmarks (bench_tasks.cpp).

Workloads, one op = one task created, run and collected:
  gather     await asyncio.gather(*[trivial(1) for _ in range(n)])
  taskgroup  async with asyncio.TaskGroup() as tg: tg.create_task(trivial(1)) n times

Prints the same JSON as core.py: {"implementation", "python", "results",
"batch", "samples"}; results are medians of ns per op.
"""

import asyncio
import sys
import time

import harness

WORKLOADS = ("gather", "taskgroup")

now_ns = time.perf_counter_ns


async def trivial(i):
    return i


async def gather_batch(n):
    start = now_ns()
    results = await asyncio.gather(*[trivial(1) for _ in range(n)])
    elapsed = now_ns() - start
    assert sum(results) == n
    return elapsed


async def taskgroup_batch(n):
    start = now_ns()
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(trivial(1)) for _ in range(n)]
    elapsed = now_ns() - start
    assert sum(t.result() for t in tasks) == n
    return elapsed


BENCHES = {
    "gather": harness.coroutine_bench(gather_batch),
    "taskgroup": harness.coroutine_bench(taskgroup_batch),
}


def main(argv=None):
    if not hasattr(asyncio, "TaskGroup"):
        sys.exit("tasks.py: asyncio.TaskGroup needs Python 3.11")
    args = harness.parse_args(argv, __doc__, WORKLOADS, 10_000)
    harness.run(args, BENCHES)


if __name__ == "__main__":
    main()
