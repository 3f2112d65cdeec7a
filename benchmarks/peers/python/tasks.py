#!/usr/bin/env python3
"""Python peer of the structured concurrency benchmarks (bench_tasks.cpp).

Workloads, one op = one task created, run and collected:
  gather     await asyncio.gather(*[trivial(1) for _ in range(n)])
  taskgroup  async with asyncio.TaskGroup() as tg: tg.create_task(trivial(1)) n times

Prints the same JSON as core.py: {"implementation", "python", "results",
"batch", "samples"}; results are medians of ns per op.
"""

import argparse
import asyncio
import gc
import json
import platform
import statistics
import sys
import time

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


BATCHES = {"gather": gather_batch, "taskgroup": taskgroup_batch}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--filter", default=",".join(WORKLOADS))
    args = parser.parse_args()

    if args.loop == "uvloop":
        import uvloop

        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    loop.set_debug(False)
    if not hasattr(asyncio, "TaskGroup"):
        print("asyncio.TaskGroup needs Python 3.11", file=sys.stderr)
        return 1

    wanted = [w for w in args.filter.split(",") if w]
    results, samples, batch = {}, {}, {}
    for name in wanted:
        run = BATCHES[name]
        loop.run_until_complete(run(args.n))  # warm-up
        per_op = []
        for _ in range(args.repetitions):
            gc.collect()
            per_op.append(loop.run_until_complete(run(args.n)) / args.n)
        results[name] = statistics.median(per_op)
        samples[name] = per_op
        batch[name] = args.n
    loop.close()
    print(json.dumps({
        "implementation": "python-" + args.loop,
        "python": platform.python_version(),
        "results": results,
        "batch": batch,
        "samples": samples,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
