#!/usr/bin/env bash
# The test command: installs missing packages, configures, builds and runs the
# whole suite with CTest. Extra arguments go to ctest (e.g. -L unit).
#   BUILD_DIR   build directory (default: build)
#   JOBS        parallel build/test jobs (default: nproc, at most 2 on CI)
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
build_dir=${BUILD_DIR:-build}
# Paths relative to the checkout, so ccache hits across clones.
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$PWD}
jobs=${JOBS:-$(nproc)}

generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
if [ ! -f "$build_dir/CMakeCache.txt" ]; then
  cmake -S . -B "$build_dir" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release
fi
cmake --build "$build_dir" -j "$jobs"
cd "$build_dir"
ctest --output-on-failure -j "$jobs" "$@"
