#!/usr/bin/env bash
# scripts/gpu-check.sh gets one short lease on a borrowed GPU machine (docs/gpu.md), so what it
# reads out of segrun's and the benchmarks' output must not break unseen. This runs its parts
# demo, bench and data in quick mode (tiny sizes, on the CPU) against this build, without
# configuring or building anything, and checks that the script exits 0 and that every row of its
# summary passed and carries the figures it parses: the demo's mIoU and wall time, segrun's and
# the PyTorch peer's step time and memory with their ratios, each paper config's step time,
# images/s, batch, crop and memory, and the data pipeline's images per CPU-second.
# Then, past a deadline (SEGRUN_GPU_CHECK_DEADLINE_S), parts are reported NOT RUN and it exits 1.
# Part "tests" (ctest -L gpu) is left out: a ctest inside this ctest would share its log files.
#   gpu_check_quick_test.sh BUILD_DIR PYTHON
. "$(dirname "$0")/../lib.sh"
source_dir="$(realpath "$(dirname "$0")/../..")"
build="$(realpath "$1")"
python="$2"
enter_work_dir gpu-check-quick

status=0
SEGRUN_GPU_CHECK_QUICK=1 SEGRUN_GPU_CHECK_BUILD=0 SEGRUN_GPU_BUILD_DIR="$build" SEGRUN_GPU_CHECK_PARTS=demo,bench,data \
  PYTHON="$python" bash "$source_dir/scripts/gpu-check.sh" "$work/summary.md" > "$work/stdout.log" 2>&1 || status=$?
check "gpu-check.sh exits 0 (got $status; see $work/stdout.log)" test "$status" -eq 0
check "the summary names its command" grep -q '^machine: .*command: SEGRUN_GPU_CHECK_PARTS=demo,bench,data' "$work/summary.md"

num='[0-9]+(\.[0-9]+)?'
# has_row CHECK DETAILS_REGEX: the summary's row for CHECK passed and its details match.
has_row() {
  grep -qE "^\| $1 \| PASS \| $2" "$work/summary.md"
}
check "build row: skipped, the build used as it is" grep -qE '^\| build \| SKIPPED \|' "$work/summary.md"
check "demo row: mIoU and wall time" has_row "segrun demo on the GPU" "mIoU $num \(bar 0\), no GPU, [0-9]+ s in all"
check "predict row: every label map as eval's" has_row "segrun predict on the GPU" \
  "([0-9]+) of \1 label maps equal eval --save-pred's; rank 0: [0-9]+ in $num s; [0-9]+ s"
check "FPN row: both step times, memories and ratios, host waits" has_row "train step FPN fp32 quick" \
  "segrun $num ms vs peer $num ms \(${num}x\), memory $num vs $num MiB \(${num}x\), [0-9]+ host waits/step; [0-9]+ s"
for config in r50_ade20k vit_b16_ade20k ade20k_mask2former_clip_rn50_160k ade20k_mta_clip_rn50_160k; do
  check "$config row: step time, images/s, batch, crop, memory, host waits" has_row "train step $config" \
    "$num ms/step, $num img/s at batch [0-9]+ x [0-9]+\^2, memory $num MiB, [0-9]+ host waits/step; [0-9]+ s"
done
check "data row: images per CPU-second and cores per GPU" has_row "data pipeline per core" \
  "$num images per CPU-second \(512\^2 crops\); the FPN fp32 step at $num img/s needs $num cores per GPU"
check "no row failed" bash -c "! grep -q '| FAIL |' '$work/summary.md'"

# With no time left of its deadline, a part is not started, the summary still lists it, and the
# exit status is 1.
status=0
SEGRUN_GPU_CHECK_DEADLINE_S=1 SEGRUN_GPU_CHECK_BUILD=0 SEGRUN_GPU_BUILD_DIR="$build" SEGRUN_GPU_CHECK_PARTS=demo \
  PYTHON="$python" bash "$source_dir/scripts/gpu-check.sh" "$work/late.md" > "$work/late.log" 2>&1 || status=$?
check "past its deadline: exit 1 (got $status)" test "$status" -eq 1
check "past its deadline: the demo is NOT RUN, in the summary" \
  grep -qE '^\| part demo \| NOT RUN \| -?[0-9]+ s left of SEGRUN_GPU_CHECK_DEADLINE_S=1 \|' "$work/late.md"
[ "$failures" -eq 0 ] || cat "$work/summary.md"
finish gpu_check_quick_test
