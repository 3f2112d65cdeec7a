#!/usr/bin/env bash
# Builds and runs the whole test suite, as CI does (.ci/run calls this):
#   1. the formatting check: clang-format 16 (scripts/check_format.sh);
#      the layer check: no header pulls in a layer above its own
#      (scripts/check_layers.py);
#   2. GCC, optimized: unit tests on every available backend, examples;
#   3. GCC with AddressSanitizer + UndefinedBehaviorSanitizer: the same tests;
#   4. Clang 16, with libasyncio a shared library (hidden visibility, only
#      what the headers mark ASYNCIO_EXPORT exported): the same tests;
#   5. GCC with ThreadSanitizer: only the tests that use threads (the tsan
#      presets name them);
#   6. the fuzzers (Clang 16 libFuzzer + ASan + UBSan), each for a bounded
#      time over its seed corpus in fuzz/corpus;
#   7. install, then build and run outside projects against the library,
#      static (release) and shared (clang): find_package (with and without
#      components), pkg-config, add_subdirectory and FetchContent
#      (scripts/consumers.sh);
#   8. without TLS (ASYNCIO_WITH_SSL=OFF): the library and an example that
#      names SSLContext still link, and ssl= says TLS is not available;
#   9. Windows: the mingw-w64 cross-build (library, tests, examples), the
#      whole suite and the examples under wine on the IOCP backend, and an
#      installed-package consumer built with the same toolchain file and run
#      under wine (the cases wine cannot run: docs/backends.md); then
#      libasyncio as a DLL (mingw-dll preset) and the consumer using it;
#  10. the network benchmark suite's smoke run (scripts/bench.sh --suite
#      net --quick): every server of every workload starts, serves its load
#      generator correctly for 2 s and exits cleanly; the table and charts
#      are written to build/bench/net. Its numbers are not checked.
#  11. the docs site (scripts/docs.sh): doxygen builds docs/*.md and the API
#      reference into build/docs/html and must print no warning.
# Build trees live in build/<preset> and are reused between runs.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh cmake ninja-build g++ pkgconf libfmt-dev catch2 liburing-dev libssl-dev \
  clang-16 clang-format-16 libclang-rt-16-dev python3 curl openssl redis-server redis-tools

echo "== format"
scripts/check_format.sh

echo "== layers: each header includes only the layers below it"
python3 scripts/check_layers.py

jobs=$(nproc)
for preset in release asan clang tsan; do
  echo "== ${preset}: build"
  cmake --preset "$preset" >/dev/null
  cmake --build --preset "$preset" -j "$jobs"
  echo "== ${preset}: test"
  ctest --preset "$preset" -j "$jobs"
done

# What a fuzzer discovers goes to a scratch directory, the first corpus
# directory given: the repository's seeds are only read. A crash's input is
# kept in build/fuzz/artifacts and printed in the log.
fuzz_seconds=${FUZZ_SECONDS:-60}
echo "== fuzz: build"
cmake --preset fuzz >/dev/null
cmake --build --preset fuzz -j "$jobs"
mkdir -p build/fuzz/artifacts
for target in fuzz_stream_reader fuzz_address fuzz_tls_records; do
  echo "== fuzz: ${target}, ${fuzz_seconds} s"
  scratch=$(mktemp -d)
  log=build/fuzz/artifacts/${target}.log
  if ! build/fuzz/fuzz/"$target" -max_total_time="$fuzz_seconds" -print_final_stats=1 \
      -artifact_prefix=build/fuzz/artifacts/ "$scratch" "fuzz/corpus/$target" >"$log" 2>&1; then
    tail -n 60 "$log"
    rm -rf "$scratch"
    exit 1
  fi
  grep -E '^stat::number_of_executed_units|^Done' "$log"
  rm -rf "$scratch"
done

echo "== install, then outside projects: find_package, pkg-config, add_subdirectory, FetchContent"
scripts/consumers.sh build/release build/clang

echo "== without TLS: ASYNCIO_WITH_SSL=OFF links, and ssl= is refused clearly"
cmake -S . -B build/nossl -G Ninja -DCMAKE_BUILD_TYPE=Release -DASYNCIO_WITH_SSL=OFF \
  -DASYNCIO_BUILD_TESTS=OFF -DASYNCIO_WERROR=ON >/dev/null
cmake --build build/nossl --target example_get_http_headers
if build/nossl/examples/get_http_headers https://localhost:1/ >build/nossl/https.log 2>&1 ||
    ! grep -q "TLS is not available" build/nossl/https.log; then
  cat build/nossl/https.log
  exit 1
fi

echo "== Windows: mingw-w64 cross-build (library, tests, examples); the suite under wine"
scripts/deps.sh g++-mingw-w64-x86-64-posix wine wine64
export WINEDEBUG=-all
cmake --preset mingw >/dev/null
cmake --build --preset mingw -j "$jobs"
ctest --preset mingw -j "$jobs"
echo "== Windows: install + find_package(asyncio) from another project, under wine"
rm -rf build/mingw-install build/mingw-consumer
cmake --install build/mingw --prefix "$PWD/build/mingw-install" >/dev/null
cmake -S tests/consumer -B build/mingw-consumer -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_TOOLCHAIN_FILE="$PWD/cmake/toolchains/mingw-w64.cmake" \
  -DCMAKE_PREFIX_PATH="$PWD/build/mingw-install" >/dev/null
cmake --build build/mingw-consumer
/usr/lib/wine/wine64 build/mingw-consumer/consumer.exe
echo "== Windows: libasyncio as a DLL, and a program using it, under wine"
rm -rf build/mingw-dll-install build/mingw-dll-consumer
# Only the library: the suite against the DLL takes ten minutes more
# (ctest --preset mingw-dll, docs/packaging.md).
cmake --preset mingw-dll >/dev/null
cmake --build --preset mingw-dll -j "$jobs" --target asyncio
cmake --install build/mingw-dll --prefix "$PWD/build/mingw-dll-install" >/dev/null
cmake -S tests/consumer -B build/mingw-dll-consumer -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_TOOLCHAIN_FILE="$PWD/cmake/toolchains/mingw-w64.cmake" -DBUILD_SHARED_LIBS=ON \
  -DCMAKE_PREFIX_PATH="$PWD/build/mingw-dll-install" >/dev/null
cmake --build build/mingw-dll-consumer
runtime=$(dirname "$(x86_64-w64-mingw32-g++-posix -print-file-name=libstdc++-6.dll)")
WINEPATH="$runtime;/usr/x86_64-w64-mingw32/lib;$PWD/build/mingw-dll-install/bin" \
  /usr/lib/wine/wine64 build/mingw-dll-consumer/consumer.exe

echo "== benchmarks: the net suite, smoke run"
scripts/bench.sh --suite net --quick

echo "== docs: doxygen site, no warnings"
scripts/docs.sh

echo "== all tests passed"
