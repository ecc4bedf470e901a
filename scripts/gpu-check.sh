#!/usr/bin/env bash
# Proves segrun on a GPU machine in one command (docs/gpu.md): configures and builds segrun against
# the CUDA LibTorch of a pip-installed torch (NCCL from its nvidia/nccl package), then runs
#   1. the GPU tests (ctest -L gpu): models on CUDA vs CPU, NCCL stream order, SyncBN and the
#      overlapped gradient sync on 2 ranks sharing the GPU, checkpoints GPU <-> CPU, precision;
#   2. `segrun demo` on the GPU (2 ranks sharing it), with the CPU demo's bar: mIoU >= 80; then
#      `segrun predict` of its run on the validation images equals `segrun eval --save-pred`;
#   3. the training-step benchmark at the papers' size against the PyTorch peer (CLIP-RN50 +
#      Semantic FPN, 150 classes, batch 16 at 512x512, fp32 and bf16), and CLIP-SP (RN50 and
#      ViT-B/16), Mask2Former and MTA-CLIP (RN50) at their configs' crop and per-GPU batch;
#   4. the data pipeline's images/s per CPU core (512x512 crops) and the cores one GPU needs.
# Each part runs even if an earlier one failed; the summary table goes to stdout and to the file
# named by the first argument (default gpu-check-summary.md); logs go next to it. Exit status:
# 0 when every check passed.
#   bash scripts/gpu-check.sh [summary.md]
# Environment: PYTHON (python3 with torch), SEGRUN_GPU_DEPS (default .gpu-deps, made by
# scripts/gpu-deps.sh: toml++, ISA-L and a static OpenCV for machines without them),
# SEGRUN_GPU_BUILD_DIR (default build-gpu), SEGRUN_JOBS (default: all cores),
# SEGRUN_GPU_BUILD_LIMIT_S (the build's deadline: 420 s, or 3600 s with SEGRUN_GPU_CHECK_QUICK=1),
# SEGRUN_GPU_CHECK_QUICK=1 (tiny sizes: checks the script itself on any machine),
# SEGRUN_GPU_CHECK_BUILD=0 (use the build folder as it is: no configure, no build; CI runs the quick
# parts so against its own build, tests/gpu/gpu_check_quick_test.sh),
# SEGRUN_GPU_CHECK_PARTS (default tests,demo,bench,data: which of 1-4 run after the build, so that
# a lease whose calls are limited to 10 minutes can take them in two calls; the second call's
# build is a no-op when the first call's build folder is still there),
# SEGRUN_GPU_CHECK_DEADLINE_S (default 0: none; the whole run's limit in seconds: every stage's own
# limit is cut to what is left of it, less 20 s, and a part with under 30 s left is NOT RUN, so a
# caller killed at a hard wall-clock limit, such as a device call's, still gets its summary).
# The summary file is rewritten after every row: even a killed run leaves the rows it finished.
set -uo pipefail
cd "$(dirname "$0")/.."
summary="$(realpath -m "${1:-gpu-check-summary.md}")"
logs="$(dirname "$summary")"
mkdir -p "$logs"
# The Python whose torch holds the CUDA LibTorch: $PYTHON, else the first python3 found that imports torch.
python=""
candidates=(python3 /opt/torch/.venv/bin/python3 /usr/bin/python3)
[ -n "${PYTHON:-}" ] && candidates=("$PYTHON")
for candidate in "${candidates[@]}"; do
  if "$candidate" -c 'import torch' > /dev/null 2>&1; then python="$candidate"; break; fi
done
[ -n "$python" ] || { echo "gpu-check: no python with torch among: ${candidates[*]} (set PYTHON)" >&2; exit 2; }
# CMake and ninja may be pip's, beside that python (a virtual environment not on PATH).
python_bin="$(dirname "$(command -v "$python")")"
for tool in cmake ninja; do
  command -v "$tool" > /dev/null || [ ! -x "$python_bin/$tool" ] || export PATH="$python_bin:$PATH"
done
build_it="${SEGRUN_GPU_CHECK_BUILD:-1}"
if [ "$build_it" != 0 ] && ! { command -v cmake && command -v ninja; } > /dev/null; then
  echo "gpu-check: cmake and ninja are needed, on PATH or in $python_bin" >&2
  exit 2
fi
build="${SEGRUN_GPU_BUILD_DIR:-build-gpu}"
deps="$(realpath -m "${SEGRUN_GPU_DEPS:-.gpu-deps}")"
jobs="${SEGRUN_JOBS:-$(nproc)}"
quick="${SEGRUN_GPU_CHECK_QUICK:-0}"
parts="${SEGRUN_GPU_CHECK_PARTS:-tests,demo,bench,data}"
deadline="${SEGRUN_GPU_CHECK_DEADLINE_S:-0}"
start=$SECONDS
rows=()
failed=0
torch_version="?"
seconds_left() { echo $((deadline - (SECONDS - start))); }
# Each stage has a deadline, so that one hang cannot eat a lease on a borrowed GPU machine.
stage() {
  local limit=$1 left; shift
  left=$(($(seconds_left) - 20))
  if [ "$deadline" -gt 0 ] && [ "$left" -lt "$limit" ]; then
    limit=$left
    if [ "$limit" -le 0 ]; then
      echo "gpu-check: no time left of SEGRUN_GPU_CHECK_DEADLINE_S=$deadline" >&2
      return 124
    fi
  fi
  timeout --kill-after=10 "$limit" "$@"
}
write_summary() {
  {
    echo "segrun gpu-check, $(date -u '+%F %H:%M') UTC, commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
    echo "machine: $(head -1 "$logs/gpu.txt" 2>/dev/null), $(nproc) cores, LibTorch $torch_version;" \
         "command: SEGRUN_GPU_CHECK_PARTS=$parts bash scripts/gpu-check.sh; $((SECONDS - start)) s in all"
    echo
    echo "| check | result | details |"
    echo "|---|---|---|"
    printf '%s\n' "${rows[@]}"
  } > "$summary"
}
row() {
  rows+=("| $1 | $2 | $3 |")
  case "$2" in FAIL | "NOT RUN") failed=1 ;; esac
  echo "gpu-check: $1: $2 -- $3"
  write_summary
}
elapsed() { echo "$((SECONDS - $1)) s"; }

# ---- configure and build --------------------------------------------------------------------
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$logs/gpu.txt" 2> /dev/null ||
  echo "no nvidia-smi" > "$logs/gpu.txt"
write_summary
t=$SECONDS
read -r torch_version torch_prefix < <("$python" -c 'import torch; print(torch.__version__, torch.utils.cmake_prefix_path)')
nccl_root="$("$python" -c 'import nvidia.nccl as n; print(list(n.__path__)[0])' 2>/dev/null || true)"
prefixes="$torch_prefix"
if [ -d "$deps/root/usr" ]; then
  # Unpacked .deb files say prefix=/usr: point their pkg-config file at where they are now.
  pc_dir="$deps/root/usr/lib/x86_64-linux-gnu/pkgconfig"
  [ -f "$pc_dir/libisal.pc" ] && sed -i "s|^prefix=.*|prefix=$deps/root/usr|" "$pc_dir/libisal.pc"
  export PKG_CONFIG_PATH="$pc_dir${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
  export LD_LIBRARY_PATH="$deps/root/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  prefixes="$prefixes;$deps/root/usr"
fi
[ -d "$deps/opencv" ] && prefixes="$prefixes;$deps/opencv"
configure=(cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release "-DCMAKE_PREFIX_PATH=$prefixes"
           -DSEGRUN_WERROR=OFF -DSEGRUN_TEST_FOLDERS=gpu "-DSEGRUN_REFERENCE_PYTHON=$(command -v "$python")")
[ -n "$nccl_root" ] && configure+=("-DNCCL_ROOT=$nccl_root")
# LibTorch's CMake files look for the CUDA toolkit; some system packages' CMake files predate
# CMake 4's minimum policy version.
[ -x /usr/local/cuda/bin/nvcc ] && configure+=(-DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc -DCUDAToolkit_ROOT=/usr/local/cuda)
configure+=(-DCMAKE_POLICY_VERSION_MINIMUM=3.5)
targets=(segrun gpu_test gpu_mpi_test bench_train_step bench_data_pipeline)
# 420 s is for a 16-core GPU node; a cold build of these targets takes ~30 min on 2 cores.
build_limit="${SEGRUN_GPU_BUILD_LIMIT_S:-420}"
[ "$quick" = 1 ] && build_limit="${SEGRUN_GPU_BUILD_LIMIT_S:-3600}"
if [ "$build_it" = 0 ]; then
  row "build" SKIPPED "SEGRUN_GPU_CHECK_BUILD=0: $build as it is"
elif ! "${configure[@]}" > "$logs/configure.log" 2>&1; then
  row "build" FAIL "configure failed, see $logs/configure.log: $(grep -m3 -E 'Error|error' "$logs/configure.log" | tr '\n|' '  ' | cut -c1-300)"
elif stage "$build_limit" cmake --build "$build" -j "$jobs" --target "${targets[@]}" -- -k 0 > "$logs/build.log" 2>&1; then
  row "build" PASS "LibTorch $torch_version, $(grep -o 'CUDA devices [A-Z]*' "$logs/configure.log" | head -1), $(grep -o 'NCCL backend [A-Z]*' "$logs/configure.log" | head -1); $(elapsed $t)"
elif [ -z "$(grep -m1 -E 'error' "$logs/build.log")" ]; then
  row "build" FAIL "not finished in time (SEGRUN_GPU_BUILD_LIMIT_S=$build_limit, SEGRUN_GPU_CHECK_DEADLINE_S=$deadline; running again continues it), see $logs/build.log"
else
  row "build" FAIL "see $logs/build.log: $(grep -m3 -E 'error' "$logs/build.log" | tr '\n|' '  ' | cut -c1-300)"
fi
segrun="$build/launcher/segrun"
# Which CUDA, cuDNN, NCCL and LibTorch libraries the binary loads, and from where: a second
# libcudart or libnccl beside torch's own is the first suspect when a GPU test crashes.
if [ -x "$segrun" ]; then
  { ldd "$segrun" 2> /dev/null | grep -E 'not found|libcudart|libcublas|libcudnn|libnccl|libc10|libtorch'; } \
    > "$logs/libraries.txt" || true
  missing="$(grep 'not found' "$logs/libraries.txt" | awk '{ print $1 }' | tr '\n' ' ')"
  if [ -n "$missing" ]; then
    row "libraries" FAIL "segrun cannot load: $missing(see $logs/libraries.txt)"
  fi
else
  echo "segrun not built" > "$logs/libraries.txt"
fi

# ---- 1. GPU tests ----------------------------------------------------------------------------
part_tests() {
  t=$SECONDS
  if [ -x "$build/tests/gpu/gpu_test" ]; then
    (cd "$build" && stage 600 ctest -L gpu --output-on-failure --timeout 300 -V) > "$logs/gpu-tests.log" 2>&1
    code=$?
    passed="$(grep -c '\[       OK \]' "$logs/gpu-tests.log" || true)"
    # A case that skips itself on a GPU machine (the NCCL one where NCCL was not found) is a miss.
    skipped_cases="$(sed -nE 's/^([0-9]+: )?\[  SKIPPED \] ([A-Za-z][A-Za-z0-9_./]*).*/\2/p' "$logs/gpu-tests.log" | sort -u | tr '\n' ' ')"
    if [ -n "$skipped_cases" ] && [ "$quick" != 1 ]; then
      row "GPU tests (ctest -L gpu)" FAIL "cases skipped: $skipped_cases(see $logs/gpu-tests.log)"
    elif grep -q "tests passed, 0 tests failed" "$logs/gpu-tests.log" && ! grep -q "Skipped" "$logs/gpu-tests.log"; then
      row "GPU tests (ctest -L gpu)" PASS "$passed test cases; $(elapsed $t)"
    elif [ "$quick" = 1 ] && grep -q "tests passed, 0 tests failed" "$logs/gpu-tests.log"; then
      row "GPU tests (ctest -L gpu)" SKIPPED "no GPU here: $(grep -h 'GPU tests skipped' "$build"/Testing/Temporary/LastTest.log | head -1)"
    else
      row "GPU tests (ctest -L gpu)" FAIL "exit $code: $(grep -E 'FAILED|Skipped|skipped' "$logs/gpu-tests.log" | head -4 | tr '\n|' '  ')"
    fi
  else
    row "GPU tests (ctest -L gpu)" FAIL "not built"
  fi
}

# ---- 2. the demo on the GPU ------------------------------------------------------------------
part_demo() {
  t=$SECONDS
  demo_dir="$(mktemp -d /tmp/segrun-gpu-demo.XXXXXX)"
  demo_args=(demo --dir "$demo_dir")
  [ "$quick" = 1 ] && demo_args+=(--iters 30)
  if [ -x "$segrun" ] && stage 300 "$segrun" "${demo_args[@]}" > "$logs/demo.log" 2>&1; then
    miou="$(sed -n 's/^demo: mIoU \([0-9.]*\).*/\1/p' "$logs/demo.log")"
    device="$(grep -o 'device cuda:[0-9][^,]*' "$demo_dir"/runs/demo-1/logs/rank-0.log 2>/dev/null | head -1)"
    bar=80
    [ "$quick" = 1 ] && bar=0
    if [ -n "$miou" ] && awk -v m="$miou" -v b="$bar" 'BEGIN { exit !(m >= b) }' && { [ -n "$device" ] || [ "$quick" = 1 ]; }; then
      row "segrun demo on the GPU" PASS "mIoU $miou (bar $bar), ${device:-no GPU}, $(grep -o '[0-9]* s in all' "$logs/demo.log")"
    else
      row "segrun demo on the GPU" FAIL "mIoU ${miou:-?} (bar $bar), ${device:-not on a GPU}"
    fi
    part_predict "$demo_dir"
  else
    row "segrun demo on the GPU" FAIL "see $logs/demo.log: $(tail -2 "$logs/demo.log" | tr '\n|' '  ' | cut -c1-200)"
  fi
  rm -rf "$demo_dir"
}

# The demo's run on the GPU through `segrun predict` (the validation images as files) and
# `segrun eval --save-pred`: the same label maps, file for file. Both without cuDNN's autotuning
# (train.cudnn_benchmark): two processes may time their way to different convolution algorithms,
# whose TF32 sums differ in the last bits and flip a pixel whose two best classes are that close.
part_predict() {
  local run="$1/runs/demo-1" images="$1/ade20k/ADEChallengeData2016/images/validation" same=0 total=0 f
  t=$SECONDS
  if stage 120 "$segrun" eval "$run" train.cudnn_benchmark=false --no-record --save-pred "$1/eval-pred" \
       > "$logs/predict.log" 2>&1 &&
     stage 120 "$segrun" predict "$run" train.cudnn_benchmark=false --images "$images" --out "$1/predict" \
       >> "$logs/predict.log" 2>&1; then
    for f in "$1"/eval-pred/*.png; do
      total=$((total + 1))
      cmp -s "$f" "$1/predict/$(basename "$f")" && same=$((same + 1))
    done
    status=FAIL
    [ "$total" -gt 0 ] && [ "$same" = "$total" ] && status=PASS
    row "segrun predict on the GPU" "$status" "$same of $total label maps equal eval --save-pred's; $(grep -o 'rank 0: [0-9]* in [0-9.]* s' "$logs/predict.log"); $(elapsed $t)"
  else
    row "segrun predict on the GPU" FAIL "see $logs/predict.log: $(tail -2 "$logs/predict.log" | tr '\n|' '  ' | cut -c1-200)"
  fi
}

# ---- 3. training-step benchmarks -------------------------------------------------------------
part_bench() {
  bench="$build/bench/bench_train_step"
  device=cuda
  [ "$quick" = 1 ] && device=cpu
  fpn_size=(--width 64 --channels 256 --crop 512 --batch 16 --steps 20 --warmup 5)
  fpn_label="b16 512^2"
  [ "$quick" = 1 ] && fpn_size=(--width 16 --channels 64 --crop 128 --batch 2 --steps 2 --warmup 1) && fpn_label="quick"
  precisions=(fp32 bf16)
  [ "$quick" = 1 ] && precisions=(fp32)  # reduced precision needs a GPU
  for precision in "${precisions[@]}"; do
    t=$SECONDS
    if stage 240 "$bench" "${fpn_size[@]}" --device "$device" --precision "$precision" --python "$python" \
         > "$logs/bench-fpn-$precision.log" 2> "$logs/bench-fpn-$precision.err"; then
      s="$(grep '^summary:' "$logs/bench-fpn-$precision.err")"
      get() { echo "$s" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
      status=PASS
      awk -v r="$(get time_ratio)" -v m="$(get mem_ratio)" 'BEGIN { exit !(r <= 1.0 && m <= 1.0) }' || status=SLOWER
      row "train step FPN $precision $fpn_label" "$status" "segrun $(get ms) ms vs peer $(get peer_ms) ms ($(get time_ratio)x), memory $(get mem_mib) vs $(get peer_mem_mib) MiB ($(get mem_ratio)x), $(get host_waits) host waits/step; $(elapsed $t)"
    else
      row "train step FPN $precision $fpn_label" FAIL "see $logs/bench-fpn-$precision.log/.err: $(tail -2 "$logs/bench-fpn-$precision.err" | tr '\n|' '  ' | cut -c1-200)"
    fi
  done
  for config in configs/clip_sp/r50_ade20k.toml configs/clip_sp/vit_b16_ade20k.toml \
                configs/mask2former/ade20k_mask2former_clip_rn50_160k.toml configs/mta_clip/ade20k_mta_clip_rn50_160k.toml; do
    t=$SECONDS
    name="$(basename "$config" .toml)"
    steps=(--steps 10 --warmup 3)
    [ "$quick" = 1 ] && steps=(--steps 1 --warmup 1)
    if [ "$quick" = 1 ]; then
      tiny=tiny.toml
      case "$name" in *vit*) tiny=tiny_vit.toml ;; esac
      config="configs/$(dirname "${config#configs/}")/$tiny"
    fi
    if stage 240 "$bench" --config "$config" "${steps[@]}" --device "$device" --precision fp32 \
         > "$logs/bench-$name.log" 2> "$logs/bench-$name.err"; then
      s="$(grep '^summary:' "$logs/bench-$name.err")"
      get() { echo "$s" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
      row "train step $name" PASS "$(get ms) ms/step, $(get img_s) img/s at batch $(get batch) x $(get crop)^2, memory $(get mem_mib) MiB, $(get host_waits) host waits/step; $(elapsed $t)"
    else
      row "train step $name" FAIL "see $logs/bench-$name.err: $(tail -2 "$logs/bench-$name.err" | tr '\n|' '  ' | cut -c1-200)"
    fi
  done
}

# ---- 4. data pipeline per core ---------------------------------------------------------------
part_data() {
  t=$SECONDS
  # The pipeline's peer (bench/data_pipeline_peer.py) needs cv2, h5py and numpy besides torch; a GPU
  # node's pip environment may lack them, and then segrun's side is measured alone.
  pipe_python="$python"
  "$pipe_python" -c 'import cv2, h5py, numpy' > /dev/null 2>&1 || pipe_python=none
  pipe_args=(--workers 1,8 --threads 1 --batches 30 --warmup 3 --profile 0 --python "$pipe_python")
  [ "$quick" = 1 ] && pipe_args=(--workers 1 --threads 1 --batches 4 --warmup 1 --profile 0 --images 8 --python "$pipe_python")
  if stage 240 "$build/bench/bench_data_pipeline" "${pipe_args[@]}" > "$logs/bench-data.log" 2> "$logs/bench-data.err"; then
    # Row "| 1 | 1 | segrun images/s | ... | segrun images/CPU-s | ...": one worker, one thread.
    per_core="$(awk -F'|' '$2 ~ /^ *1 *$/ && $3 ~ /^ *1 *$/ { gsub(/ /, "", $7); print $7; exit }' "$logs/bench-data.log")"
    fpn_img_s="$(grep -h '^summary:' "$logs/bench-fpn-fp32.err" 2>/dev/null | tr ' ' '\n' | sed -n 's/^img_s=//p')"
    need="?"
    [ -n "$per_core" ] && [ -n "$fpn_img_s" ] && need="$(awk -v a="$fpn_img_s" -v b="$per_core" 'BEGIN { printf "%.1f", a / b }')"
    peer_note="the Python peer in the same run: see $logs/bench-data.log"
    [ "$pipe_python" = none ] && peer_note="no Python peer (this python lacks cv2/h5py/numpy)"
    row "data pipeline per core" PASS "${per_core:-?} images per CPU-second (512^2 crops); the FPN fp32 step at ${fpn_img_s:-?} img/s needs $need cores per GPU; $peer_note; $(elapsed $t)"
  else
    row "data pipeline per core" FAIL "see $logs/bench-data.err: $(tail -2 "$logs/bench-data.err" | tr '\n|' '  ' | cut -c1-200)"
  fi
}

for part in ${parts//,/ }; do
  if [ "$deadline" -gt 0 ] && [ "$(seconds_left)" -lt 30 ]; then
    row "part $part" "NOT RUN" "$(seconds_left) s left of SEGRUN_GPU_CHECK_DEADLINE_S=$deadline"
    continue
  fi
  case "$part" in
    tests|demo|bench|data) "part_$part" ;;
    *) row "parts" FAIL "unknown part '$part' in SEGRUN_GPU_CHECK_PARTS (tests, demo, bench, data)" ;;
  esac
done

# ---- summary ---------------------------------------------------------------------------------
write_summary
cat "$summary"
exit $failed
