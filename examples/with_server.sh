#!/bin/sh
# Runs a client against one of the example servers, for CTest:
#
#   with_server.sh SERVER CLIENT [ARG...]
#   with_server.sh SERVER [SERVER_ARG...] -- CLIENT [ARG...]
#
# starts `SERVER 0 [SERVER_ARG...]` (any free port; the TLS servers take
# their certificate and key after it), reads its output up to the line
# "Serving on HOST:PORT", runs CLIENT with the ARGs (@PORT@ replaced by the
# port), then stops the server with SIGTERM. Prints the client's output, a
# "--- server" line and the server's output; fails unless the client and the
# server both exit 0.
set -u
server=$1
shift
# Without "--" every word after SERVER is the client's, as before servers
# took arguments; a client's own "--" then needs `SERVER -- CLIENT ...`.
separated=
for arg do
  [ "$arg" = -- ] && separated=yes
done
[ -n "$separated" ] || set -- -- "$@"

dir=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$dir"' EXIT
mkfifo "$dir/out"
# The server's words are those before the first "--": a subshell keeps them
# alone, then becomes the server, so that $pid is the server's.
(
  server_args=yes
  for arg do
    shift
    if [ "$arg" = -- ]; then server_args=; elif [ -n "$server_args" ]; then set -- "$@" "$arg"; fi
  done
  exec "$server" 0 "$@"
) >"$dir/out" 2>"$dir/server.err" &
pid=$!
while [ "$1" != -- ]; do shift; done
shift
client=$1
shift
exec 3<"$dir/out"

port=
: >"$dir/server.out"
while IFS= read -r line <&3; do
  printf '%s\n' "$line" >>"$dir/server.out"
  case $line in
    "Serving on "*) port=${line##*:}; break ;;
  esac
done
if [ -z "$port" ]; then
  echo "the server did not print \"Serving on HOST:PORT\""
  cat "$dir/server.out" "$dir/server.err"
  exit 1
fi
cat <&3 >>"$dir/server.out" &
drain=$!

for arg do
  shift
  set -- "$@" "$(printf '%s' "$arg" | sed "s/@PORT@/$port/g")"
done
"$client" "$@" >"$dir/client.out" 2>"$dir/client.err"
client_rc=$?

kill -TERM "$pid"
wait "$pid"
server_rc=$?
pid=
wait "$drain"

cat "$dir/client.out"
echo "--- server"
cat "$dir/server.out"
if [ "$client_rc" -ne 0 ] || [ "$server_rc" -ne 0 ]; then
  echo "client exited with $client_rc, server with $server_rc"
  cat "$dir/client.err" "$dir/server.err"
  exit 1
fi
