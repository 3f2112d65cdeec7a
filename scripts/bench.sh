#!/usr/bin/env bash
# Builds the micro benchmarks and their peers (Boost.Asio, Python asyncio,
# uvloop) and prints a table of ratios. Extra arguments go to compare.py,
# e.g. `scripts/bench.sh --rounds 3 --json build/bench/core.json`;
# `--suite tasks|sync` compares that suite instead of the core one.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh cmake ninja-build g++ pkgconf libfmt-dev libbenchmark-dev libboost1.81-dev \
  python3 python3-uvloop util-linux

cmake --preset bench >/dev/null
cmake --build --preset bench -j "$(nproc)"
# The suite's binaries; compare.py sees --suite too, among the other arguments.
suite=core
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[i]}" in
    --suite) suite="${args[i + 1]:-core}" ;;
    --suite=*) suite="${args[i]#--suite=}" ;;
  esac
done
exec python3 benchmarks/compare.py --ours "build/bench/benchmarks/bench_${suite}" \
  --asio "build/bench/benchmarks/peers/asio/asio_${suite}_bench" "$@"
