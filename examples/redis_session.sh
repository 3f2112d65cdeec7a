#!/bin/sh
# Checks the example Redis server against the real one, for CTest:
#
#   redis_session.sh SERVER REDIS_SERVER REDIS_CLI
#
# starts `SERVER 0` (any free port; it prints "Serving on HOST:PORT") and
# `REDIS_SERVER` (no persistence, on a Unix socket in a temporary
# directory, so that no port can clash), then gives both the same session:
# the redis-cli commands of redis_session.txt, a QUIT, and, if python3 is
# there, raw exchanges redis-cli cannot make (inline commands, pipelining,
# protocol errors; redis_session.py). Prints "same replies as redis-server"
# if every output is identical, else the differences; fails if they differ
# or a server does not exit 0 on SIGTERM, or if ours writes to its standard
# error (an exception it did not handle).
set -u
server=$1
redis_server=$2
redis_cli=$3
here=$(dirname "$0")

dir=$(mktemp -d)
pid=
redis_pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null
  [ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT

# Our server, on a free port.
mkfifo "$dir/out"
"$server" 0 >"$dir/out" 2>"$dir/server.err" &
pid=$!
exec 3<"$dir/out"
port=
while IFS= read -r line <&3; do
  case $line in
    "Serving on "*) port=${line##*:}; break ;;
  esac
done
if [ -z "$port" ]; then
  echo "the server did not print \"Serving on HOST:PORT\""
  cat "$dir/server.err"
  exit 1
fi
cat <&3 >"$dir/server.out" &
drain=$!

# The real one, as the benchmarks run it (--save '' --appendonly no).
"$redis_server" --port 0 --unixsocket "$dir/redis.sock" --save '' --appendonly no \
  --dir "$dir" >"$dir/redis.log" 2>&1 &
redis_pid=$!
tries=0
until [ "$("$redis_cli" -s "$dir/redis.sock" ping 2>/dev/null)" = PONG ]; do
  tries=$((tries + 1))
  if [ "$tries" -gt 100 ]; then
    echo "redis-server did not answer within 10 s"
    cat "$dir/redis.log"
    exit 1
  fi
  sleep 0.1
done

# The same session against each.
session() {
  "$redis_cli" "$@" --no-raw <"$here/redis_session.txt" 2>&1
  "$redis_cli" "$@" --no-raw quit 2>&1
}
session -h 127.0.0.1 -p "$port" >"$dir/ours.txt"
session -s "$dir/redis.sock" >"$dir/redis.txt"
raw=
if command -v python3 >/dev/null 2>&1; then
  python3 "$here/redis_session.py" tcp 127.0.0.1 "$port" >>"$dir/ours.txt" 2>&1
  python3 "$here/redis_session.py" unix "$dir/redis.sock" >>"$dir/redis.txt" 2>&1
  raw=", and raw exchanges"
fi

kill -TERM "$pid"
wait "$pid"
server_rc=$?
pid=
wait "$drain"
kill -TERM "$redis_pid"
wait "$redis_pid"
redis_rc=$?
redis_pid=

commands=$(grep -c . "$here/redis_session.txt")
if ! cmp -s "$dir/ours.txt" "$dir/redis.txt"; then
  echo "replies differ (< redis-server, > $server):"
  diff "$dir/redis.txt" "$dir/ours.txt"
  exit 1
fi
if [ "$server_rc" -ne 0 ] || [ "$redis_rc" -ne 0 ]; then
  echo "the server exited with $server_rc, redis-server with $redis_rc"
  cat "$dir/server.err" "$dir/redis.log"
  exit 1
fi
if [ -s "$dir/server.err" ]; then
  echo "the server wrote to its standard error:"
  cat "$dir/server.err"
  exit 1
fi
echo "same replies as redis-server ($commands redis-cli commands and QUIT$raw)"
