#!/usr/bin/env bash
# Formats every C and C++ source in place with the pinned clang-format
# (see scripts/check_format.sh, which CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."

clang_format=${CLANG_FORMAT:-clang-format-16}
find include src tests examples benchmarks fuzz -type f \
  \( -name '*.c' -o -name '*.h' -o -name '*.cpp' -o -name '*.hpp' \) -print0 |
  xargs -0 "$clang_format" -i
