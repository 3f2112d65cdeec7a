"""What the Python peers (core.py, tasks.py, sync.py) share: the loop, the
command line, and the timing of batches into the JSON compare.py reads:

    {"implementation": "python-asyncio" | "python-uvloop",
     "python": "3.11.7", "executable": "...", "uvloop": "0.17.0" (if used),
     "results": {workload: median ns per op},
     "batch":   {workload: N},
     "samples": {workload: [ns per op, ...]}}

A bench is `bench(loop, n) -> elapsed ns` for a batch of n operations.
"""

import argparse
import asyncio
import gc
import json
import os
import platform
import statistics
import sys


def new_loop(kind):
    if kind == "uvloop":
        try:
            import uvloop
        except ImportError:
            script = os.path.basename(sys.argv[0])
            sys.exit(f"{script}: uvloop is not importable from {sys.executable}")
        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    # PYTHONASYNCIODEBUG or -X dev would otherwise make every step far slower.
    loop.set_debug(False)
    asyncio.set_event_loop(loop)
    return loop


def parse_args(argv, doc, workloads, default_n, min_n=1, add_arguments=None):
    """--loop, --repetitions, --n, --filter, and whatever add_arguments adds."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    p.add_argument("--repetitions", type=int, default=5, help="timed batches per workload")
    p.add_argument("--n", type=int, default=default_n, help="operations per batch")
    p.add_argument("--filter", default="", help="comma-separated workloads to run (default: all)")
    if add_arguments:
        add_arguments(p)
    args = p.parse_args(argv)
    if args.repetitions < 1 or args.n < min_n:
        p.error(f"--repetitions must be positive and --n at least {min_n}")
    args.workloads = [w.strip() for w in args.filter.split(",") if w.strip()] or list(workloads)
    unknown = sorted(set(args.workloads) - set(workloads))
    if unknown:
        p.error(f"unknown workload(s) {', '.join(unknown)}; known: {', '.join(workloads)}")
    args.parser = p
    return args


def coroutine_bench(batch):
    """A bench from `async def batch(n) -> elapsed ns`."""
    return lambda loop, n: loop.run_until_complete(batch(n))


def run(args, benches, batch_size=None):
    """Times every selected workload (in `benches` order) and prints the JSON."""
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
        for name, bench in benches.items():
            if name not in args.workloads:
                continue
            n = batch_size(name) if batch_size else args.n
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
