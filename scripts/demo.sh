#!/usr/bin/env bash
# Builds the library and its examples, then runs the demo.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh cmake ninja-build g++ pkgconf libfmt-dev catch2 liburing-dev libssl-dev

cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)"

for example in hello_world_coroutine chained_coroutines future_run_until_complete; do
  echo "== examples/${example}.cpp"
  "build/release/examples/${example}"
done
