#!/usr/bin/env bash
# Checks the vcpkg port (ports/asyncio) and the Conan recipe (conanfile.py,
# test_package) without vcpkg or Conan, which this machine cannot install:
#   1. the recipes byte-compile, their options and features are the ones
#      the CMake package has, and their version is CMakeLists.txt's;
#   2. the CMake configure, build and install each would run, with the same
#      option values, then test_package built against that install and run:
#        vcpkg, default features (ssl, io-uring) = Conan's defaults
#          (shared=False, with_ssl=True, with_io_uring=True): one build;
#        vcpkg, no features (ASYNCIO_WITH_SSL=OFF, ASYNCIO_WITH_IO_URING=OFF);
#        Conan shared=True with_ssl=True with_io_uring=False, built from a
#          copy of only the files the recipe exports (exports_sources).
# What is not checked: vcpkg's and Conan's own steps (the portfile's helper
# functions, such as vcpkg_cmake_config_fixup moving the config to
# share/asyncio and rewriting its paths; the config files Conan generates
# from package_info()).
# Build trees live in build/package-check and are reused between runs; the
# installs go to a temporary prefix, removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
out=build/package-check
jobs=${JOBS:-$(nproc)}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/asyncio-package-check.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

echo "== package check: recipes"
PYTHONPYCACHEPREFIX=$tmp/pycache python3 -m py_compile conanfile.py test_package/conanfile.py
python3 - <<'PY'
import ast
import json
import re
import sys

version = re.search(r"project\(asyncio VERSION ([0-9.]+)", open("CMakeLists.txt").read()).group(1)
errors = []

port = json.load(open("ports/asyncio/vcpkg.json"))
if port.get("name") != "asyncio" or port.get("version") != version:
    errors.append(f"vcpkg.json: name/version {port.get('name')}/{port.get('version')}, want asyncio/{version}")
deps = {d if isinstance(d, str) else d["name"] for d in port.get("dependencies", [])}
for want in ("fmt", "vcpkg-cmake", "vcpkg-cmake-config"):
    if want not in deps:
        errors.append(f"vcpkg.json: no dependency {want}")
features = port.get("features", {})
for feature, dep in (("ssl", "openssl"), ("io-uring", "liburing")):
    fdeps = {d if isinstance(d, str) else d["name"] for d in features.get(feature, {}).get("dependencies", [])}
    if dep not in fdeps:
        errors.append(f"vcpkg.json: feature {feature} does not depend on {dep}")
if set(features) != {"ssl", "io-uring"}:
    errors.append(f"vcpkg.json: features {sorted(features)}, want io-uring and ssl")
defaults = {d if isinstance(d, str) else d["name"] for d in port.get("default-features", [])}
if defaults != {"ssl", "io-uring"}:
    errors.append(f"vcpkg.json: default features {sorted(defaults)}, want io-uring and ssl (the CMake defaults)")
portfile = open("ports/asyncio/portfile.cmake").read()
for option in ("ASYNCIO_WITH_SSL", "ASYNCIO_WITH_IO_URING", "vcpkg_cmake_config_fixup(CONFIG_PATH lib/cmake/asyncio)"):
    if option not in portfile:
        errors.append(f"portfile.cmake: no {option}")

recipe = ast.parse(open("conanfile.py").read())
attrs = {}
for node in ast.walk(recipe):
    if isinstance(node, ast.ClassDef) and node.name == "AsyncioConan":
        for stmt in node.body:
            if isinstance(stmt, ast.Assign) and isinstance(stmt.targets[0], ast.Name):
                try:
                    attrs[stmt.targets[0].id] = ast.literal_eval(stmt.value)
                except ValueError:
                    pass
want_defaults = {"shared": False, "fPIC": True, "with_ssl": True, "with_io_uring": True}
if attrs.get("name") != "asyncio":
    errors.append("conanfile.py: name is not asyncio")
if set(attrs.get("options", {})) != set(want_defaults):
    errors.append(f"conanfile.py: options {sorted(attrs.get('options', {}))}, want {sorted(want_defaults)}")
if attrs.get("default_options") != want_defaults:
    errors.append(f"conanfile.py: default_options {attrs.get('default_options')}, want {want_defaults}")
text = open("conanfile.py").read()
for prop in ('"cmake_file_name", "asyncio"', '"cmake_target_name", "asyncio::asyncio"', '"pkg_config_name", "asyncio"'):
    if prop not in text:
        errors.append(f"conanfile.py: no set_property({prop})")

for error in errors:
    print(error, file=sys.stderr)
if errors:
    sys.exit(1)
print(f"recipes: asyncio {version}, vcpkg features {sorted(features)}, conan options {sorted(want_defaults)}")
PY

# variant NAME SOURCE_DIR EXPECT_SSL CMAKE_ARGS...: configure, build and
# install the library as the recipe would, then build and run test_package
# against it.
variant() {
  local name=$1 source=$2 expect_ssl=$3 prefix=$tmp/$1
  shift 3
  echo "== package check: $name"
  # A tree configured from another source directory cannot be reused.
  if [ -f "$out/$name/CMakeCache.txt" ] && ! grep -qxF \
      "CMAKE_HOME_DIRECTORY:INTERNAL=$(cd "$source" && pwd)" "$out/$name/CMakeCache.txt"; then
    rm -rf "${out:?}/$name"
  fi
  cmake -S "$source" -B "$out/$name" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DASYNCIO_BUILD_TESTS=OFF -DASYNCIO_BUILD_EXAMPLES=OFF -DASYNCIO_BUILD_BENCHMARKS=OFF \
    -DASYNCIO_BUILD_FUZZERS=OFF -DASYNCIO_KQUEUE_COMPILE_CHECK=OFF -DASYNCIO_INSTALL=ON \
    "$@" >/dev/null
  cmake --build "$out/$name" -j "$jobs" >/dev/null
  cmake --install "$out/$name" --prefix "$prefix" >/dev/null
  rm -rf "$out/$name-test_package"
  cmake -S test_package -B "$out/$name-test_package" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$prefix" -DASYNCIO_EXPECT_SSL="$expect_ssl" \
    -DASYNCIO_CONSUMER_KIND="test_package, $name" >/dev/null
  cmake --build "$out/$name-test_package" -j "$jobs" >/dev/null
  "$out/$name-test_package/test_package"
}

variant vcpkg-default . ON -DASYNCIO_WITH_SSL=ON -DASYNCIO_WITH_IO_URING=ON -DBUILD_SHARED_LIBS=OFF
variant vcpkg-nofeatures . OFF -DASYNCIO_WITH_SSL=OFF -DASYNCIO_WITH_IO_URING=OFF -DBUILD_SHARED_LIBS=OFF
# Without the ssl feature, asking for the ssl component must fail, naming it.
rm -rf "$out/missing-ssl"
if cmake -S tests/consumers/find_package -B "$out/missing-ssl" -G Ninja \
    -DCMAKE_PREFIX_PATH="$tmp/vcpkg-nofeatures" -DASYNCIO_CONSUMER_COMPONENTS=ssl \
    >"$out/missing-ssl.log" 2>&1; then
  echo "find_package(asyncio COMPONENTS ssl) configured without the ssl feature" >&2
  exit 1
fi
if ! grep -A3 "Reason given by package:" "$out/missing-ssl.log" | grep -qi ssl; then
  cat "$out/missing-ssl.log"
  echo "find_package(asyncio COMPONENTS ssl) failed without a reason naming ssl" >&2
  exit 1
fi
echo "no features: COMPONENTS ssl refused"
# Conan builds what the recipe exports (exports_sources), not the checkout:
# a copy of just those files, kept in place (and their times) so that the
# build tree stays incremental.
rm -rf "$out/conan-export"
python3 - "$out/conan-export" <<'PY'
import ast
import fnmatch
import os
import shutil
import subprocess
import sys

for node in ast.walk(ast.parse(open("conanfile.py").read())):
    if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "exports_sources":
        patterns = ast.literal_eval(node.value)
files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                       capture_output=True, text=True, check=True).stdout.split()
copied = 0
for path in files:
    if os.path.isfile(path) and any(fnmatch.fnmatch(path, p) for p in patterns):
        os.makedirs(os.path.join(sys.argv[1], os.path.dirname(path)), exist_ok=True)
        shutil.copy2(path, os.path.join(sys.argv[1], path))
        copied += 1
print(f"conan export: {copied} files ({', '.join(patterns)})")
PY
variant conan-shared "$out/conan-export" ON -DASYNCIO_WITH_SSL=ON -DASYNCIO_WITH_IO_URING=OFF -DBUILD_SHARED_LIBS=ON \
  -DCMAKE_POSITION_INDEPENDENT_CODE=ON
if [ -z "$(find "$tmp/conan-shared" -name 'libasyncio.so*' -print -quit)" ]; then
  echo "shared=True installed no libasyncio.so" >&2
  exit 1
fi

echo "== package check: all passed"
