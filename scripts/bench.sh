#!/usr/bin/env bash
# Builds the benchmarks (preset bench) and runs one suite of them.
#
# Micro benchmarks (the default, --suite core|tasks|sync): ours against
# their peers (Boost.Asio, Python asyncio, uvloop), a table of ratios. Extra
# arguments go to compare.py, e.g.
#   scripts/bench.sh --rounds 3 --json build/bench/core.json
#   scripts/bench.sh --suite tasks
#
# Network workloads (--suite net): the library's servers on each backend
# against raw C epoll and io_uring servers and the Boost.Asio, libuv and
# Python (asyncio, uvloop) peers, under echo_client and wrk, TLS echo
# against plain echo and Python's asyncio with ssl=, and a Redis server
# against redis-server under redis-benchmark. The other arguments go to
# benchmarks/net/run.py, e.g.
#   scripts/bench.sh --suite net --quick
#   scripts/bench.sh --suite net --workload echo --rounds 5
#   scripts/bench.sh --suite net --workload tls --rounds 5
#   scripts/bench.sh --suite net --workload resp --backends epoll,io_uring
set -euo pipefail
cd "$(dirname "$0")/.."

# The suite; compare.py sees --suite too, among the other arguments, while
# run.py gets the arguments without it.
suite=core
args=("$@")
rest=()
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[i]}" in
    --suite)
      suite="${args[i + 1]:-core}"
      i=$((i + 1))
      ;;
    --suite=*) suite="${args[i]#--suite=}" ;;
    *) rest+=("${args[i]}") ;;
  esac
done

# What every suite needs to build the bench preset: it builds all of
# benchmarks/, the micro benchmarks and the C programs of net/ included.
deps=(cmake ninja-build g++ gcc pkgconf libfmt-dev libbenchmark-dev python3 util-linux)
if [ "$suite" = net ]; then
  # liburing-dev for the io_uring peer, wrk for the HTTP workload (taskset,
  # from util-linux, pins the servers and the load generators); for the TLS
  # one libssl-dev, the openssl command (its certificate) and uvloop (a
  # Python peer of every workload); Boost.Asio 1.81 and libuv, the other
  # peers of echo and HTTP; for the RESP one redis-server (the peer) and
  # redis-tools (redis-benchmark).
  # gnuplot-nox draws the charts.
  deps+=(liburing-dev wrk libssl-dev openssl python3-uvloop libboost1.81-dev libuv1-dev
    redis-server redis-tools gnuplot-nox)
else
  deps+=(libboost1.81-dev python3-uvloop)
fi
scripts/deps.sh "${deps[@]}"

cmake --preset bench >/dev/null
if [ "$suite" = net ]; then
  cmake --build --preset bench -j "$(nproc)" --target net_suite
else
  cmake --build --preset bench -j "$(nproc)"
fi

if [ "$suite" = net ]; then
  exec python3 benchmarks/net/run.py "${rest[@]+"${rest[@]}"}"
fi
exec python3 benchmarks/compare.py --ours "build/bench/benchmarks/bench_${suite}" \
  --asio "build/bench/benchmarks/peers/asio/asio_${suite}_bench" "$@"
