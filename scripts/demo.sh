#!/usr/bin/env bash
# Builds the library and its examples, then runs the demo: a TCP echo server
# and client (streams), then a few coroutine examples.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh cmake ninja-build g++ pkgconf libfmt-dev catch2 liburing-dev libssl-dev

cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)"

examples=build/release/examples
echo "== examples/tcp_echo_server_streams.cpp and examples/tcp_echo_client_streams.cpp"
# The server starts on a free port; the client's output comes first, then the server's.
sh examples/with_server.sh "$examples/tcp_echo_server_streams" "$examples/tcp_echo_client_streams" @PORT@

for example in hello_world_coroutine chained_coroutines future_run_until_complete; do
  echo "== examples/${example}.cpp"
  "$examples/${example}"
done
