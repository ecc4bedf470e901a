#!/usr/bin/env bash
# Builds segrun's libFuzzer targets (fuzz/, clang, -fsanitize=fuzzer,address,undefined) in their
# own build folder and runs each for a bounded time on its seed corpus (fuzz/corpus/<target>/,
# which also keeps every input that once crashed: they are replayed first). New interesting
# inputs go to a scratch corpus, not to the repository; a crash leaves its input in
# <build>/artifacts/ and fails the script.
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default 20 s, every target)
#   SEGRUN_FUZZ_BUILD_DIR  build folder (default build-fuzz)
#   SEGRUN_JOBS            parallel compile jobs (default 2)
#   SEGRUN_FUZZ_SEED       libFuzzer's -seed (default 1: CI replays the same mutations; 0 = random)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-20}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(config_fuzzer sweep_spec_fuzzer manifest_fuzzer record_fuzzer tokenizer_fuzzer)
fi
build_dir="${SEGRUN_FUZZ_BUILD_DIR:-build-fuzz}"

if [ ! -f "$build_dir/build.ninja" ]; then
  mkdir -p "$build_dir"
  CC=clang CXX=clang++ cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DSEGRUN_FUZZ=ON -DSEGRUN_BUILD_TESTS=OFF > "$build_dir/configure.log" 2>&1 \
    || { cat "$build_dir/configure.log"; exit 1; }
fi
cmake --build "$build_dir" -j "${SEGRUN_JOBS:-2}" --target "${targets[@]}"

mkdir -p "$build_dir/artifacts"
failed=0
for t in "${targets[@]}"; do
  seeds="fuzz/corpus/${t%_fuzzer}"
  scratch="$(mktemp -d "/tmp/segrun-fuzz-$t.XXXXXX")"
  start=$SECONDS
  # -timeout: one input taking > 10 s is a finding (a hang); -rss_limit_mb: so is > 2 GB.
  if UBSAN_OPTIONS=print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1 \
     "$build_dir/fuzz/$t" -max_total_time="$seconds" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
       -seed="${SEGRUN_FUZZ_SEED:-1}" \
       -print_final_stats=1 -artifact_prefix="$build_dir/artifacts/$t-" "$scratch" "$seeds" \
       > "$build_dir/$t.log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$build_dir/$t.log")
    echo "fuzz: $t: ${runs:-?} inputs in $((SECONDS - start)) s, no crash ($(ls "$seeds" | wc -l) seeds)"
  else
    echo "fuzz: $t: FAILED after $((SECONDS - start)) s:"
    grep -E "ERROR|fuzz_check|runtime error|Test unit written|SUMMARY" "$build_dir/$t.log" | head -n 8
    failed=$((failed + 1))
  fi
  rm -rf "$scratch"
done
[ "$failed" -eq 0 ] || { echo "fuzz: $failed target(s) found a crash"; exit 1; }
echo "fuzz: ${#targets[@]} targets, ${seconds} s each, no crash"
