#!/usr/bin/env python3
"""Run one suite of micro benchmarks of every implementation and compare them.

Side by side, in one invocation (one after the other, never concurrently):
  ours            our Google Benchmark binary              (--ours PATH)
  Asio            benchmarks/peers/asio asio_core_bench     (--asio PATH)
  Python          peers/python/<suite>.py, asyncio loop     (--python, default python3)
  uvloop          peers/python/<suite>.py, uvloop loop      (--uvloop-python, default
                                                             /usr/bin/python3; skipped
                                                             if uvloop is not importable)

--suite picks the workloads and the Python script: core (the default), tasks
or sync; the C++ binaries of that suite are given with --ours and --asio.

Contract with the Google Benchmark binaries: the benchmarks are named
BM_<workload> (any /arg or /real_time suffix is ignored), one iteration runs one
batch, and the user counter `batch` holds the batch size. ns/op is the median
repetition's real_time per iteration divided by `batch`.

Prints a Markdown table of ns/op and peer/ours ratios (> 1 means ours is
faster); --json OUT also writes every number. Exits 1 if any benchmark process
fails or reports an error. Standard library only.

Example:
    benchmarks/compare.py --ours build/benchmarks/asyncio_core_bench \\
        --asio build/benchmarks/peers/asio/asio_core_bench --json /tmp/core.json
    benchmarks/compare.py --suite sync --ours build/bench/benchmarks/bench_sync \\
        --asio build/bench/benchmarks/peers/asio/asio_sync_bench
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

PEERS_PY = Path(__file__).resolve().parent / "peers" / "python"

# suite -> its workloads (in table order) and the Python peer that runs them.
SUITES = {
    "core": {
        "workloads": ("call_soon", "create_task", "await_done_future", "sleep0", "timer_cancel"),
        "python": PEERS_PY / "core.py",
    },
    "tasks": {"workloads": ("gather", "taskgroup"), "python": PEERS_PY / "tasks.py"},
    "sync": {"workloads": ("queue_pingpong", "lock_contended"), "python": PEERS_PY / "sync.py"},
}

# Column order of the table; "ours" is the denominator of every ratio.
IMPLS = ("ours", "asio", "python-asyncio", "python-uvloop")
LABELS = {"ours": "ours", "asio": "Asio", "python-asyncio": "Python", "python-uvloop": "uvloop"}

NS_PER_UNIT = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}

# Every C++ peer batch holds 10000 operations (kBatch in peers/asio/core.cpp).
# Python batches default to the same size (rather than core.py's own default of
# 100000) so that every implementation has the same number of callbacks, tasks
# or timers alive at once, hence comparable working sets and queue/heap depths.
DEFAULT_PYTHON_N = 10_000


class BenchError(Exception):
    """A benchmark process failed or produced unusable output."""


def log(msg):
    print(f"compare.py: {msg}", file=sys.stderr, flush=True)


def clean_env():
    # asyncio's debug mode makes every callback several times slower.
    env = dict(os.environ)
    for var in ("PYTHONASYNCIODEBUG", "PYTHONDEVMODE"):
        env.pop(var, None)
    return env


def pin_prefix(cpu):
    """taskset prefix that pins a benchmark to one core, or [] (with a reason)."""
    if cpu in ("", "none", "-1"):
        return [], "not pinned (--cpu none)"
    if not shutil.which("taskset"):
        return [], "not pinned (taskset not found)"
    try:
        allowed = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        allowed = None
    if cpu.isdigit() and allowed is not None and int(cpu) not in allowed:
        return [], f"not pinned (CPU {cpu} not in this process's affinity {sorted(allowed)})"
    return ["taskset", "-c", cpu], f"pinned to CPU {cpu} with taskset"


def run(cmd, *, stdout):
    log("running: " + " ".join(cmd))
    try:
        proc = subprocess.run(cmd, stdout=stdout, env=clean_env(), text=True)
    except OSError as e:
        raise BenchError(f"cannot run {cmd[0]}: {e}") from e
    if proc.returncode != 0:
        raise BenchError(f"{' '.join(cmd)} exited with status {proc.returncode}")
    return proc


def workload_of(run_name):
    # "BM_call_soon/10000/real_time" -> "call_soon"
    base = run_name.split("/", 1)[0]
    return base[3:] if base.startswith("BM_") else None


def parse_gbench(report, where, workloads):
    """ns/op per workload from a Google Benchmark JSON report."""
    medians, singles = {}, {}
    for b in report.get("benchmarks", []):
        workload = workload_of(b.get("run_name", b.get("name", "")))
        if workload not in workloads:
            continue
        if b.get("error_occurred"):
            raise BenchError(f"{where}: {b['name']}: {b.get('error_message', 'error')}")
        if b.get("run_type") == "aggregate" and b.get("aggregate_name") != "median":
            continue
        batch = b.get("batch")
        if not batch:
            raise BenchError(f"{where}: {b['name']} has no `batch` counter")
        unit = b.get("time_unit", "ns")
        if unit not in NS_PER_UNIT:
            raise BenchError(f"{where}: {b['name']}: unknown time_unit {unit!r}")
        ns_per_op = b["real_time"] * NS_PER_UNIT[unit] / batch
        if b.get("run_type") == "aggregate":
            medians[workload] = ns_per_op
        else:
            singles.setdefault(workload, []).append(ns_per_op)
    # With a single repetition Google Benchmark emits no aggregates at all.
    for workload, values in singles.items():
        medians.setdefault(workload, statistics.median(values))
    return medians


def run_gbench(binary, args, pin, workloads):
    if not os.access(binary, os.X_OK):
        raise BenchError(f"{binary} is not an executable file")
    names = "|".join(workloads)
    with tempfile.TemporaryDirectory(prefix="compare-") as tmp:
        out = Path(tmp) / "report.json"
        # The JSON goes to a file rather than stdout so that anything the binary
        # itself prints cannot corrupt it; the console table (progress) is
        # forwarded to our stderr, keeping our stdout for the Markdown table.
        cmd = pin + [
            str(binary),
            f"--benchmark_filter=^BM_({names})(/|$)",
            f"--benchmark_repetitions={args.repetitions}",
            "--benchmark_report_aggregates_only=true",
            "--benchmark_format=console",
            f"--benchmark_out={out}",
            "--benchmark_out_format=json",
        ]
        if args.min_time:
            cmd.append(f"--benchmark_min_time={args.min_time}")
        run(cmd, stdout=sys.stderr)
        try:
            report = json.loads(out.read_text())
        except (OSError, ValueError) as e:
            raise BenchError(f"{binary}: unreadable JSON report: {e}") from e
    results = parse_gbench(report, binary, workloads)
    missing = [w for w in workloads if w not in results]
    if missing:
        log(f"warning: {binary} has no benchmark for: {', '.join(missing)}")
    return results, {"context": report.get("context", {})}


def run_peer_py(python, loop, args, pin, workloads):
    script = SUITES[args.suite]["python"]
    cmd = pin + [
        python,
        str(script),
        "--loop",
        loop,
        "--repetitions",
        str(args.repetitions),
        "--n",
        str(args.python_n),
        "--filter",
        ",".join(workloads),
    ]
    proc = run(cmd, stdout=subprocess.PIPE)
    try:
        report = json.loads(proc.stdout)
    except ValueError as e:
        raise BenchError(f"{script.name} ({python}, {loop}): invalid JSON output: {e}") from e
    info = {k: report.get(k) for k in ("python", "executable", "uvloop", "batch")}
    return report["results"], info


def uvloop_available(python):
    try:
        return (
            subprocess.run(
                [python, "-c", "import uvloop"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=clean_env(),
            ).returncode
            == 0
        )
    except OSError:
        return False


def fmt_ns(v):
    if v is None:
        return "n/a"
    return f"{v:.1f}" if v < 100 else f"{v:,.0f}"


def fmt_ratio(peer, ours):
    if peer is None or not ours:
        return "n/a"
    return f"{peer / ours:.2f}x"


def markdown_table(results, workloads):
    peers = [i for i in IMPLS if i != "ours"]
    header = ["workload", "ours ns/op"]
    for p in peers:
        header += [f"{LABELS[p]} ns/op", f"{LABELS[p]}/ours"]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    for w in workloads:
        ours = results.get("ours", {}).get(w)
        row = [w, fmt_ns(ours)]
        for p in peers:
            v = results.get(p, {}).get(w)
            row += [fmt_ns(v), fmt_ratio(v, ours)]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def parse_args(argv):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Ratios are peer ns/op divided by ours: above 1.00x, ours is faster.",
    )
    p.add_argument(
        "--suite", choices=sorted(SUITES), default="core", help="which workloads to compare [core]"
    )
    p.add_argument("--ours", type=Path, help="our Google Benchmark binary of that suite")
    p.add_argument("--asio", type=Path, help="the Asio peer binary of that suite (optional)")
    p.add_argument("--python", default="python3", help="interpreter for asyncio [python3]")
    p.add_argument(
        "--uvloop-python",
        default="/usr/bin/python3",
        help="interpreter that can import uvloop [/usr/bin/python3]",
    )
    p.add_argument("--no-python", action="store_true", help="skip the asyncio column")
    p.add_argument("--no-uvloop", action="store_true", help="skip the uvloop column")
    p.add_argument(
        "--repetitions", type=int, default=5, help="repetitions per benchmark, median kept [5]"
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run every implementation this many times, interleaved, and keep the median "
        "of the per-round medians: on a noisy machine, drift then hits all columns alike [1]",
    )
    p.add_argument(
        "--min-time",
        default="",
        help="passed as --benchmark_min_time to the C++ binaries (e.g. 0.05 for a smoke test)",
    )
    p.add_argument(
        "--python-n",
        type=int,
        default=DEFAULT_PYTHON_N,
        help=f"operations per batch in the Python peer [{DEFAULT_PYTHON_N}, the C++ batch size]",
    )
    p.add_argument("--cpu", default="1", help="CPU to pin every run to with taskset, or none [1]")
    p.add_argument("--filter", default="", help="comma-separated workloads (default: all)")
    p.add_argument("--json", type=Path, metavar="OUT", help="also write all numbers to OUT")
    args = p.parse_args(argv)
    if args.repetitions < 1 or args.rounds < 1 or args.python_n < 1:
        p.error("--repetitions, --rounds and --python-n must be positive")
    known = SUITES[args.suite]["workloads"]
    args.workloads = [w.strip() for w in args.filter.split(",") if w.strip()] or list(known)
    unknown = sorted(set(args.workloads) - set(known))
    if unknown:
        p.error(f"unknown workload(s) {', '.join(unknown)}; known: {', '.join(known)}")
    # Keep the canonical order whatever order --filter used.
    args.workloads = [w for w in known if w in args.workloads]
    return args


def main(argv=None):
    args = parse_args(argv)
    pin, pin_note = pin_prefix(args.cpu)
    notes = [pin_note]

    # impl -> zero-argument callable returning (results, info)
    runners = {}
    if args.ours:
        runners["ours"] = lambda: run_gbench(args.ours, args, pin, args.workloads)
    else:
        notes.append("ours: no --ours binary given, ratios are n/a")
    if args.asio:
        runners["asio"] = lambda: run_gbench(args.asio, args, pin, args.workloads)
    else:
        notes.append("Asio: skipped (no --asio binary given)")
    if args.no_python:
        notes.append("Python: skipped (--no-python)")
    elif not shutil.which(args.python):
        notes.append(f"Python: skipped ({args.python} not found)")
    else:
        runners["python-asyncio"] = lambda: run_peer_py(
            args.python, "asyncio", args, pin, args.workloads
        )
    if args.no_uvloop:
        notes.append("uvloop: skipped (--no-uvloop)")
    elif not uvloop_available(args.uvloop_python):
        notes.append(f"uvloop: skipped (cannot import uvloop with {args.uvloop_python})")
    else:
        runners["python-uvloop"] = lambda: run_peer_py(
            args.uvloop_python, "uvloop", args, pin, args.workloads
        )

    rounds = {impl: [] for impl in runners}  # impl -> [ {workload: ns/op} per round ]
    info, failures = {}, {}
    for r in range(args.rounds):
        if args.rounds > 1:
            log(f"round {r + 1}/{args.rounds}")
        for impl, runner in runners.items():
            if impl in failures:
                continue
            try:
                res, info[impl] = runner()
            except BenchError as e:
                failures[impl] = str(e)
                log(f"error: {LABELS[impl]}: {e}")
                continue
            rounds[impl].append(res)

    results = {}
    for impl, per_round in rounds.items():
        if impl in failures or not per_round:
            continue
        results[impl] = {
            w: statistics.median(r[w] for r in per_round if w in r)
            for w in args.workloads
            if any(w in r for r in per_round)
        }

    print(markdown_table(results, args.workloads))
    print()
    print(
        f"ns/op: median of {args.repetitions} repetition(s)"
        + (f", then median of {args.rounds} rounds" if args.rounds > 1 else "")
        + "; ratio = peer / ours (above 1.00x, ours is faster)."
    )
    if "asio" in results and "await_done_future" in args.workloads:
        notes.append(
            "Asio await_done_future: Asio has no awaitable future; it awaits an "
            "awaitable<int> that returns immediately (one coroutine frame per op)."
        )
    if "python-asyncio" in results or "python-uvloop" in results:
        note = f"Python batches: {args.python_n} ops"
        if args.suite == "core":
            note += " (create_task: min(that, 20000))"
        notes.append(note + ".")
    for impl, err in failures.items():
        notes.append(f"{LABELS[impl]}: FAILED: {err}")
    for note in notes:
        print(f"- {note}")

    if args.json:
        doc = {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "host": platform.node(),
            "settings": {
                "suite": args.suite,
                "repetitions": args.repetitions,
                "rounds": args.rounds,
                "min_time": args.min_time or None,
                "python_n": args.python_n,
                "pinning": pin_note,
                "workloads": args.workloads,
            },
            "binaries": {"ours": str(args.ours or ""), "asio": str(args.asio or "")},
            "ns_per_op": results,
            "rounds": rounds,
            "ratios_vs_ours": {
                impl: {
                    w: v / results["ours"][w]
                    for w, v in vals.items()
                    if results.get("ours", {}).get(w)
                }
                for impl, vals in results.items()
                if impl != "ours"
            },
            "info": info,
            "failures": failures,
            "notes": notes,
        }
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
        log(f"wrote {args.json}")

    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
