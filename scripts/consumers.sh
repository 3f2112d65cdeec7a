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
# Usage: scripts/consumers.sh [BUILD_DIR...]
#   BUILD_DIR: an already built tree of the library to install; a. to c. run
#   against each (CI passes build/release, static, and build/clang, shared).
#   Without one, a Release build in build/consumers/lib.
# Each package is installed to a temporary prefix, removed on exit; the
# consumers' build trees live in build/consumers and d./e. are reused
# between runs (they build the library at -O0: only the wiring is tested).
# For a shared library, a. also checks that the program loads it, that it
# exports names of asyncio::, that its internal functions are local, and
# that it exports nothing of fmt.
set -euo pipefail
cd "$(dirname "$0")/.."
src=$PWD
out=build/consumers
jobs=${JOBS:-$(nproc)}

libs=("$@")
if [ ${#libs[@]} -eq 0 ]; then
  libs=("$out/lib")
  echo "== consumers: build the library (Release, static) in ${libs[0]}"
  cmake -S . -B "${libs[0]}" -G Ninja -DCMAKE_BUILD_TYPE=Release -DASYNCIO_BUILD_TESTS=OFF \
    -DASYNCIO_BUILD_EXAMPLES=OFF -DASYNCIO_KQUEUE_COMPILE_CHECK=OFF >/dev/null
  cmake --build "${libs[0]}" -j "$jobs"
fi

root=$(mktemp -d "${TMPDIR:-/tmp}/asyncio-consumers.XXXXXX")
trap 'rm -rf "$root"' EXIT

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

# installed_consumers LIB PREFIX: a. to c. against LIB installed to PREFIX.
installed_consumers() {
  local lib=$1 prefix=$2 config pcfile requires_private components shared pcdir
  local built=() static=() ssl_define=() rpath=()
  echo "== consumers: install $lib to $prefix"
  cmake --install "$lib" --prefix "$prefix" >/dev/null
  config=$(find "$prefix" -name asyncioConfig.cmake -print -quit)
  pcfile=$(find "$prefix" -name asyncio.pc -print -quit)
  if [ -z "$config" ] || [ -z "$pcfile" ]; then
    echo "the install has no asyncioConfig.cmake or asyncio.pc" >&2
    exit 1
  fi
  shared=$(find "$prefix" -name 'libasyncio.so.*' -type f -print -quit)

  # Which components this package has, from what its pkg-config file links.
  requires_private=$(sed -n 's/^Requires.private://p' "$pcfile")
  case " $requires_private " in *" libssl "*) built+=(ssl) ;; esac
  case " $requires_private " in *" liburing"*) built+=(io_uring) ;; esac
  echo "built components: ${built[*]:-none}; library: ${shared:-static}"

  echo "== consumers: a. find_package(asyncio CONFIG REQUIRED)"
  configure_build_run find_package tests/consumers/find_package -DCMAKE_PREFIX_PATH="$prefix"
  configure_build_run api tests/consumer -DCMAKE_PREFIX_PATH="$prefix"
  if [ -n "$shared" ]; then
    check_exports "$shared" "$out/find_package/consumer"
  fi

  echo "== consumers: b. find_package(asyncio CONFIG REQUIRED COMPONENTS ...)"
  if [ ${#built[@]} -gt 0 ]; then
    components=$(IFS=';' && echo "${built[*]}")
    configure_build_run components tests/consumers/find_package -DCMAKE_PREFIX_PATH="$prefix" \
      -DASYNCIO_CONSUMER_COMPONENTS="$components"
  fi
  expect_missing_component "$prefix" no_such_component

  echo "== consumers: c. pkg-config"
  pcdir=$(dirname "$pcfile")
  # asyncio.pc names its prefix relative to itself: the install prefix given
  # here, not the configure-time CMAKE_INSTALL_PREFIX.
  if [ ! -f "$(PKG_CONFIG_PATH=$pcdir pkg-config --variable=includedir asyncio)/asyncio.hpp" ]; then
    echo "asyncio.pc does not find the installed headers: $(grep -m1 '^prefix=' "$pcfile")" >&2
    exit 1
  fi
  if [ -n "$shared" ]; then
    # pkg-config gives no run path: a user's program finds the library in
    # the system's directories or its own rpath, here the latter.
    rpath=("-Wl,-rpath,$(PKG_CONFIG_PATH=$pcdir pkg-config --variable=libdir asyncio)")
  else
    static=(--static)
    # On Windows the users of a static library must not see dllimport.
    if ! PKG_CONFIG_PATH=$pcdir pkg-config --cflags asyncio | grep -q -- -DASYNCIO_STATIC_DEFINE; then
      echo "asyncio.pc of a static library lacks -DASYNCIO_STATIC_DEFINE in Cflags" >&2
      exit 1
    fi
  fi
  case " ${built[*]:-} " in *" ssl "*) ssl_define=(-DASYNCIO_CONSUMER_EXPECT_SSL=1) ;; esac
  echo "pkg-config ${static[*]:-} --libs asyncio: $(PKG_CONFIG_PATH=$pcdir pkg-config "${static[@]}" --libs asyncio)"
  rm -rf "$out/pkg-config" && mkdir -p "$out/pkg-config"
  # shellcheck disable=SC2046 # pkg-config's output is a list of flags
  g++ -O1 '-DASYNCIO_CONSUMER_KIND="pkg-config"' "${ssl_define[@]}" \
    $(PKG_CONFIG_PATH=$pcdir pkg-config --cflags asyncio) tests/consumers/common/main.cpp \
    -o "$out/pkg-config/consumer" $(PKG_CONFIG_PATH=$pcdir pkg-config "${static[@]}" --libs asyncio) \
    "${rpath[@]}"
  "$out/pkg-config/consumer"
}

# check_exports LIBRARY PROGRAM: PROGRAM runs against LIBRARY, which
# exports the names its headers mark ASYNCIO_EXPORT and hides the rest: its
# internal functions, inline functions, and what it instantiates of fmt.
check_exports() {
  local library=$1 program=$2 exported hidden leaked
  if ! ldd "$program" | grep -q "=> $(dirname "$library")/libasyncio\.so"; then
    ldd "$program" >&2
    echo "$program does not load $library" >&2
    exit 1
  fi
  exported=$(nm -D -C --defined-only "$library" | grep -c ' asyncio::' || true)
  # Hidden, a function with external linkage is local ("t") in the library.
  hidden=$(nm -C --defined-only "$library" | grep ' t asyncio::' | grep -vc 'anonymous namespace' || true)
  leaked=$(nm -D -C --defined-only "$library" | grep -E ' fmt::' || true)
  echo "$(basename "$library"): $exported names of asyncio:: exported, $hidden hidden"
  if [ "$exported" -eq 0 ] || [ "$hidden" -le 0 ] || [ -n "$leaked" ]; then
    echo "$library does not hide what it should (hidden visibility not applied?)" >&2
    echo "$leaked" | head -20 >&2
    exit 1
  fi
}

n=0
for lib in "${libs[@]}"; do
  n=$((n + 1))
  installed_consumers "$lib" "$root/$n"
done

# d. and e. build the library themselves: -O0 without debug info, so that
# they cost little; their trees are kept between runs.
fast=(-G Ninja -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG=-O0 -DASYNCIO_SOURCE_DIR="$src")

echo "== consumers: d. add_subdirectory (ASYNCIO_WITH_SSL=OFF)"
cmake -S tests/consumers/add_subdirectory -B "$out/add_subdirectory" "${fast[@]}" \
  -DASYNCIO_WITH_SSL=OFF -DASYNCIO_INSTALL=ON >/dev/null
cmake --build "$out/add_subdirectory" -j "$jobs" >/dev/null
"$out/add_subdirectory/consumer"
echo "== consumers: b. a component that was not built (the package of d.)"
rm -rf "$root/nossl"
cmake --install "$out/add_subdirectory" --prefix "$root/nossl" >/dev/null
expect_missing_component "$root/nossl" ssl

echo "== consumers: e. FetchContent"
cmake -S tests/consumers/fetchcontent -B "$out/fetchcontent" "${fast[@]}" >/dev/null
cmake --build "$out/fetchcontent" -j "$jobs" >/dev/null
"$out/fetchcontent/consumer"

echo "== consumers: all passed"
