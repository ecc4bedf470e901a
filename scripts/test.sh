#!/usr/bin/env bash
# Builds segrun with its tests and runs the whole suite (unit, mpi, integration).
# Extra arguments go to ctest, e.g. `scripts/test.sh -L unit` or `-R config`.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
build_dir="${SEGRUN_BUILD_DIR:-build}"
cd "$build_dir"
ctest --output-on-failure --timeout 900 -j "${SEGRUN_JOBS:-2}" "$@"
