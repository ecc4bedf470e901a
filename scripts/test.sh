#!/usr/bin/env bash
# Builds segrun with its tests and runs the whole suite (unit, mpi, integration, faults,
# bad_inputs), then the fuzzers and the sanitizer build.
# Extra arguments go to ctest, e.g. `scripts/test.sh -L unit` or `-R config`.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
build_dir="${SEGRUN_BUILD_DIR:-build}"
cd "$build_dir"
ctest --output-on-failure --timeout 900 -j "${SEGRUN_JOBS:-2}" "$@"
cd - > /dev/null

# Reliability jobs (docs/reliability.md), on a whole run only: every fuzz target for
# SEGRUN_FUZZ_SECONDS (default 20) each, then the unit and MPI suites under ASan + UBSan, each in
# its own build folder. SEGRUN_RELIABILITY=0 skips them.
if [ $# -eq 0 ] && [ "${SEGRUN_RELIABILITY:-1}" != 0 ]; then
  bash scripts/fuzz.sh "${SEGRUN_FUZZ_SECONDS:-20}"
  bash scripts/sanitize.sh
fi
