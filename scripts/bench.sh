#!/usr/bin/env bash
# Builds the micro benchmarks and their peers (Boost.Asio, Python asyncio,
# uvloop) and prints a table of ratios. Extra arguments go to compare.py,
# e.g. `scripts/bench.sh --rounds 3 --json build/bench/core.json`.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh cmake ninja-build g++ pkgconf libfmt-dev libbenchmark-dev libboost1.81-dev \
  python3 python3-uvloop util-linux

cmake --preset bench >/dev/null
cmake --build --preset bench -j "$(nproc)"
exec python3 benchmarks/compare.py --ours build/bench/benchmarks/bench_core \
  --asio build/bench/benchmarks/peers/asio/asio_core_bench "$@"
