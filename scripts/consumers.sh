#!/usr/bin/env bash
# Builds and runs outside projects that use the library each way a user can
# (tests/consumers: one program, a TCP echo over loopback on every backend):
#   a. find_package(asyncio CONFIG REQUIRED) against an installed package,
#      and tests/consumer (the documented API) the same way;
#   b. find_package(asyncio CONFIG REQUIRED COMPONENTS ...) with the
#      components that were built, and a component that was not built (or
#      does not exist) must fail at configure time, naming it;
#   c. pkg-config --cflags --libs asyncio (--static for a static library),
#      compiled with plain g++;
#   d. add_subdirectory of this source tree (ASYNCIO_WITH_SSL=OFF there, so
#      that the program checks TLS is refused, and its install is the package
#      without the ssl component that b. asks for);
#   e. FetchContent from this source tree.
# Usage: scripts/consumers.sh [BUILD_DIR]
#   BUILD_DIR: an already built tree of the library to install (CI passes
#   build/release); without it, a Release build in build/consumers/lib.
# The package is installed to a temporary prefix, removed on exit; the
# consumers' build trees live in build/consumers and d./e. are reused
# between runs (they build the library at -O0: only the wiring is tested).
set -euo pipefail
cd "$(dirname "$0")/.."
src=$PWD
out=build/consumers
jobs=${JOBS:-$(nproc)}

lib=${1:-}
if [ -z "$lib" ]; then
  lib=$out/lib
  echo "== consumers: build the library (Release, static) in $lib"
  cmake -S . -B "$lib" -G Ninja -DCMAKE_BUILD_TYPE=Release -DASYNCIO_BUILD_TESTS=OFF \
    -DASYNCIO_BUILD_EXAMPLES=OFF -DASYNCIO_KQUEUE_COMPILE_CHECK=OFF >/dev/null
  cmake --build "$lib" -j "$jobs"
fi

prefix=$(mktemp -d "${TMPDIR:-/tmp}/asyncio-consumers.XXXXXX")
trap 'rm -rf "$prefix"' EXIT
echo "== consumers: install $lib to $prefix"
cmake --install "$lib" --prefix "$prefix" >/dev/null
config=$(find "$prefix" -name asyncioConfig.cmake -print -quit)
pcfile=$(find "$prefix" -name asyncio.pc -print -quit)
if [ -z "$config" ] || [ -z "$pcfile" ]; then
  echo "the install has no asyncioConfig.cmake or asyncio.pc" >&2
  exit 1
fi

# Which components this package has, from what its pkg-config file links.
built=()
requires_private=$(sed -n 's/^Requires.private://p' "$pcfile")
case " $requires_private " in *" libssl "*) built+=(ssl) ;; esac
case " $requires_private " in *" liburing"*) built+=(io_uring) ;; esac
echo "built components: ${built[*]:-none}"

# configure_build_run NAME SOURCE_DIR CMAKE_ARGS...: a fresh build tree.
configure_build_run() {
  local name=$1 dir=$2
  shift 2
  rm -rf "${out:?}/$name"
  cmake -S "$dir" -B "$out/$name" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
  cmake --build "$out/$name" -j "$jobs" >/dev/null
  "$out/$name/consumer"
}

# expect_missing_component PREFIX COMPONENT: find_package must fail, with a
# reason from the package (asyncio_NOT_FOUND_MESSAGE) that names it.
expect_missing_component() {
  local where=$1 component=$2 log=$out/missing-$2.log reason
  rm -rf "$out/missing"
  if cmake -S tests/consumers/find_package -B "$out/missing" -G Ninja \
      -DCMAKE_PREFIX_PATH="$where" -DASYNCIO_CONSUMER_COMPONENTS="$component" >"$log" 2>&1; then
    echo "find_package(asyncio COMPONENTS $component) configured, but $component is not built" >&2
    exit 1
  fi
  # CMake prints the reason wrapped, after this line, up to a blank line.
  reason=$(awk '/Reason given by package:/ { on = 1; next }
                on && NF { printf "%s%s", sep, $0; sep = " "; seen = 1; next }
                on && seen { exit }' "$log" | tr -s ' ')
  if ! grep -qi -- "$component" <<<"$reason"; then
    cat "$log"
    echo "find_package(asyncio COMPONENTS $component) failed without a reason naming $component" >&2
    exit 1
  fi
  echo "COMPONENTS $component refused:$reason"
}

echo "== consumers: a. find_package(asyncio CONFIG REQUIRED)"
configure_build_run find_package tests/consumers/find_package -DCMAKE_PREFIX_PATH="$prefix"
configure_build_run api tests/consumer -DCMAKE_PREFIX_PATH="$prefix"

echo "== consumers: b. find_package(asyncio CONFIG REQUIRED COMPONENTS ...)"
if [ ${#built[@]} -gt 0 ]; then
  components=$(IFS=';' && echo "${built[*]}")
  configure_build_run components tests/consumers/find_package -DCMAKE_PREFIX_PATH="$prefix" \
    -DASYNCIO_CONSUMER_COMPONENTS="$components"
fi
expect_missing_component "$prefix" no_such_component

echo "== consumers: c. pkg-config"
static=()
if [ -n "$(find "$prefix" -name libasyncio.a -print -quit)" ] &&
    [ -z "$(find "$prefix" -name 'libasyncio.so*' -print -quit)" ]; then
  static=(--static)
fi
rm -rf "$out/pkg-config" && mkdir -p "$out/pkg-config"
pcdir=$(dirname "$pcfile")
# asyncio.pc names its prefix relative to itself: the install prefix given
# here, not the configure-time CMAKE_INSTALL_PREFIX.
if [ ! -f "$(PKG_CONFIG_PATH=$pcdir pkg-config --variable=includedir asyncio)/asyncio.hpp" ]; then
  echo "asyncio.pc does not find the installed headers: $(grep -m1 '^prefix=' "$pcfile")" >&2
  exit 1
fi
export PKG_CONFIG_PATH=$pcdir${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
ssl_define=()
case " ${built[*]:-} " in *" ssl "*) ssl_define=(-DASYNCIO_CONSUMER_EXPECT_SSL=1) ;; esac
echo "pkg-config ${static[*]:-} --libs asyncio: $(pkg-config "${static[@]}" --libs asyncio)"
# shellcheck disable=SC2046 # pkg-config's output is a list of flags
g++ -O1 '-DASYNCIO_CONSUMER_KIND="pkg-config"' "${ssl_define[@]}" \
  $(pkg-config --cflags asyncio) tests/consumers/common/main.cpp \
  -o "$out/pkg-config/consumer" $(pkg-config "${static[@]}" --libs asyncio)
"$out/pkg-config/consumer"

# d. and e. build the library themselves: -O0 without debug info, so that
# they cost little; their trees are kept between runs.
fast=(-G Ninja -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG=-O0 -DASYNCIO_SOURCE_DIR="$src")

echo "== consumers: d. add_subdirectory (ASYNCIO_WITH_SSL=OFF)"
cmake -S tests/consumers/add_subdirectory -B "$out/add_subdirectory" "${fast[@]}" \
  -DASYNCIO_WITH_SSL=OFF -DASYNCIO_INSTALL=ON >/dev/null
cmake --build "$out/add_subdirectory" -j "$jobs" >/dev/null
"$out/add_subdirectory/consumer"
echo "== consumers: b. a component that was not built (the package of d.)"
rm -rf "$prefix/nossl"
cmake --install "$out/add_subdirectory" --prefix "$prefix/nossl" >/dev/null
expect_missing_component "$prefix/nossl" ssl

echo "== consumers: e. FetchContent"
cmake -S tests/consumers/fetchcontent -B "$out/fetchcontent" "${fast[@]}" >/dev/null
cmake --build "$out/fetchcontent" -j "$jobs" >/dev/null
"$out/fetchcontent/consumer"

echo "== consumers: all passed"
