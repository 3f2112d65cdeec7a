#!/usr/bin/env bash
# Fails, listing each difference, if a C or C++ source is not formatted as
# .clang-format says (scripts/format.sh fixes them). The clang-format
# version is pinned because each release formats some constructs (requires
# clauses, comments) differently: CI and developers must run the same one.
set -euo pipefail
cd "$(dirname "$0")/.."

clang_format=${CLANG_FORMAT:-clang-format-16}
find include src tests examples benchmarks fuzz -type f \
  \( -name '*.c' -o -name '*.h' -o -name '*.cpp' -o -name '*.hpp' \) -print0 |
  xargs -0 "$clang_format" --dry-run -Werror
