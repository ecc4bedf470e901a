#!/usr/bin/env bash
# Installs the Debian packages segrun needs (idempotent), configures and builds it: the targets
# named as arguments (e.g. `segrun`, what the demo needs), else everything (tests, benchmarks).
#   bash scripts/setup.sh [TARGET...]
#   SEGRUN_BUILD_DIR  build folder (default: build)
#   SEGRUN_JOBS       parallel compile jobs (default: 2)
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

build_dir="${SEGRUN_BUILD_DIR:-build}"
jobs="${SEGRUN_JOBS:-2}"
if [ ! -f "$build_dir/build.ninja" ]; then
  cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
fi
targets=()
[ $# -gt 0 ] && targets=(--target "$@")
cmake --build "$build_dir" -j "$jobs" "${targets[@]}"
