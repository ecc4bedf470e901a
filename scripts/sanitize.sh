#!/usr/bin/env bash
# Builds segrun's unit and multi-rank test suites with AddressSanitizer + UBSan
# (-DSEGRUN_SANITIZE=ON instruments every segrun target, not LibTorch/MPI/HDF5 themselves) in
# their own build folder and runs them. Scope (docs/reliability.md): the suites of the libraries
# below models/ -- core, dist (in-process backend, watchdog, grad sync, SyncBN), data (store,
# loader, transforms), sweeps, cluster -- and the multi-rank gradient-sync suite under mpirun.
# SEGRUN_SANITIZE_FULL=1 adds the suites that need the models and engine libraries
# (engine_metrics_test, mpi_dist_test): their LibTorch-heavy compiles do not fit CI's budget.
# Leak detection is on, except under mpirun: Open MPI's own allocations alive at exit are
# reported as leaks there (ASAN_OPTIONS=detect_leaks=0 for the MPI suites; scripts/lsan.supp
# holds the suppressions the single-process runs need). UBSan findings are fatal.
#   scripts/sanitize.sh [extra ctest args]
#   SEGRUN_SANITIZE_BUILD_DIR  build folder (default build-sanitize)
#   SEGRUN_JOBS                parallel compile jobs (default 2)
#   SEGRUN_SANITIZE_FULL=1     also the engine and model-dependent MPI suites
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir="${SEGRUN_SANITIZE_BUILD_DIR:-build-sanitize}"
unit_tests=(core_test sweeps_table_test sweeps_spec_test sweeps_results_test sweeps_scheduler_test
            sweeps_runner_test dist_test segrun_data_tests)
mpi_tests=(mpi_grad_sync_test)
if [ "${SEGRUN_SANITIZE_FULL:-0}" = 1 ]; then
  unit_tests+=(engine_metrics_test)
  mpi_tests+=(mpi_dist_test)
fi

start=$SECONDS
# Warnings are errors in the normal build; here they are not: GCC reports false positives
# (-Wmaybe-uninitialized in <regex>, <functional>) when the sanitizers are on.
mkdir -p "$build_dir"
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSEGRUN_SANITIZE=ON \
  -DSEGRUN_WERROR=OFF > "$build_dir/configure.log" 2>&1 || { cat "$build_dir/configure.log"; exit 1; }
# gtest case discovery runs each binary at build time, so the options apply from here on.
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:detect_odr_violation=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export LSAN_OPTIONS="suppressions=$PWD/scripts/lsan.supp:print_suppressions=0"
cmake --build "$build_dir" -j "${SEGRUN_JOBS:-2}" --target "${unit_tests[@]}" "${mpi_tests[@]}"
built=$((SECONDS - start))

cd "$build_dir"
# Only the binaries built above have discovered cases labelled unit (the others register an
# unlabelled <target>_NOT_BUILT placeholder); the integration scripts are not run here.
ctest --output-on-failure -j "${SEGRUN_JOBS:-2}" -L unit "$@"
mpi_regex="^($(IFS='|'; echo "${mpi_tests[*]}"))\$"
ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:detect_odr_violation=0" \
  ctest --output-on-failure -R "$mpi_regex" "$@"
echo "sanitize: ASan+UBSan build ${built} s, tests $((SECONDS - start - built)) s"
