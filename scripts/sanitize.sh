#!/usr/bin/env bash
# Builds segrun's unit and multi-rank test suites with AddressSanitizer + UBSan
# (-DSEGRUN_SANITIZE=ON instruments every segrun target, not LibTorch/MPI/HDF5 themselves) in
# their own build folder and runs them (docs/reliability.md, "Sanitizers").
# Scope: every gtest suite labelled unit (segrun_add_gtest) and every multi-rank suite
# (segrun_add_mpi_gtest, under mpirun -np 2) -- core, dist, data, sweeps, cluster, models,
# engine -- as CMake lists them in <build>/test_suites.txt, so a new suite is covered without
# editing this script. SEGRUN_SANITIZE_SCOPE=libs narrows it to the suites that do not
# link the models or engine libraries (the LibTorch-heavy compiles; a quick local check).
# The build is -O1 -g1 instead of RelWithDebInfo's -O2 -g: -O1 is what ASan recommends, line
# tables are all a report needs, and it takes about 45% off the compile time of the LibTorch-heavy
# units (objects 3x smaller), which is what lets CI afford the full scope.
# Leak detection is on, except under mpirun: Open MPI's own allocations alive at exit are
# reported as leaks there (ASAN_OPTIONS=detect_leaks=0 for the MPI suites; scripts/lsan.supp
# holds the suppressions the single-process runs need). UBSan findings are fatal.
#   scripts/sanitize.sh [extra ctest args]
#   SEGRUN_SANITIZE_BUILD_DIR  build folder (default build-sanitize)
#   SEGRUN_JOBS                parallel compile and test jobs (default 2)
#   SEGRUN_SANITIZE_SCOPE      full (default) or libs (core, dist, data, sweeps, cluster only)
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir="${SEGRUN_SANITIZE_BUILD_DIR:-build-sanitize}"
scope="${SEGRUN_SANITIZE_SCOPE:-full}"
case "$scope" in
  full|libs) ;;
  *) echo "sanitize: SEGRUN_SANITIZE_SCOPE must be full or libs, not '$scope'" >&2; exit 2 ;;
esac

start=$SECONDS
# Warnings are errors in the normal build; here they are not: GCC reports false positives
# (-Wmaybe-uninitialized in <regex>, <functional>) when the sanitizers are on. This build leaves
# out the NCCL backend (the normal one has it wherever /usr/local/cuda is), so CI also compiles and
# tests a segrun without NCCL, as a CPU cluster's build is.
mkdir -p "$build_dir"
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" -DSEGRUN_SANITIZE=ON -DSEGRUN_WITH_NCCL=OFF \
  -DSEGRUN_WERROR=OFF > "$build_dir/configure.log" 2>&1 || { cat "$build_dir/configure.log"; exit 1; }
# One line per suite, "unit|mpi|<other label> NAME HEAVY" (HEAVY = 1: links segrun_models or
# segrun_engine), written by tests/CMakeLists.txt at configure time.
unit_tests=()
mpi_tests=()
while read -r kind name heavy; do
  if [ "$scope" = libs ] && [ "$heavy" = 1 ]; then continue; fi
  case "$kind" in
    unit) unit_tests+=("$name") ;;
    mpi) mpi_tests+=("$name") ;;
  esac
done < "$build_dir/test_suites.txt"
if [ ${#unit_tests[@]} -eq 0 ] || [ ${#mpi_tests[@]} -eq 0 ]; then
  echo "sanitize: $build_dir/test_suites.txt lists no unit or no MPI suite" >&2; exit 1
fi
echo "sanitize ($scope): ${#unit_tests[@]} unit suites: ${unit_tests[*]}"
echo "sanitize ($scope): ${#mpi_tests[@]} MPI suites: ${mpi_tests[*]}"

# gtest case discovery runs each binary at build time, so the options apply from here on.
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:detect_odr_violation=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export LSAN_OPTIONS="suppressions=$PWD/scripts/lsan.supp:print_suppressions=0"
cmake --build "$build_dir" -j "${SEGRUN_JOBS:-2}" --target "${unit_tests[@]}" "${mpi_tests[@]}"
built=$((SECONDS - start))

cd "$build_dir"
# Only the binaries built above have discovered cases labelled unit (the others register an
# unlabelled <target>_NOT_BUILT placeholder); the integration scripts are not run here. The GPU
# suite's rehearsal on the CPU (gpu_test_on_cpu, a unit test whose main starts MPI) runs with the
# MPI suites, without leak detection (Open MPI's own allocations), where gpu_test was built.
ctest --output-on-failure -j "${SEGRUN_JOBS:-2}" -L unit -E '^gpu_test_on_cpu$' "$@"
unit_time=$((SECONDS - start - built))
mpi_runs=("${mpi_tests[@]}")
if [[ " ${unit_tests[*]} " == *" gpu_test "* ]]; then mpi_runs+=(gpu_test_on_cpu); fi
mpi_regex="^($(IFS='|'; echo "${mpi_runs[*]}"))\$"
ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:detect_odr_violation=0" \
  ctest --output-on-failure -R "$mpi_regex" "$@"
echo "sanitize ($scope): ASan+UBSan build ${built} s, ${#unit_tests[@]} unit suites ${unit_time} s," \
  "${#mpi_tests[@]} MPI suites $((SECONDS - start - built - unit_time)) s"
