#!/usr/bin/env bash
# Builds the documentation site into build/docs/html with doxygen (Debian's,
# 1.9.4): the Markdown guide in docs/*.md as pages, docs/index.md the main
# page, beside the API reference of include/asyncio (docs/Doxyfile). Fails
# when doxygen prints any warning (a broken link or \ref, a malformed doc
# comment), listing them, so the site never silently loses a page or a link.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh doxygen

out=build/docs
log=$out/doxygen-warnings.log
rm -rf "$out/html"
mkdir -p "$out"
# WARN_LOGFILE set here rather than in the Doxyfile, so that the log's
# place follows the output directory; stderr is kept too, since doxygen
# prints some configuration problems there before it opens the log.
{ cat docs/Doxyfile; echo "WARN_LOGFILE = $log"; } | doxygen - 2>"$out/doxygen-stderr.log"
if [ -s "$log" ] || [ -s "$out/doxygen-stderr.log" ]; then
  cat "$log" "$out/doxygen-stderr.log" >&2
  echo "docs: doxygen warned ($(cat "$log" "$out/doxygen-stderr.log" | grep -c .) lines); fix them at their source" >&2
  exit 1
fi
echo "docs: build/docs/html/index.html"
