#!/usr/bin/env bash
# Builds and runs every segrun benchmark against its peer, then writes the results (markdown
# tables, the machine, the commit, the command) into docs/performance.md between the
# "bench/run.sh results" markers, replacing the previous run; the hand-written analysis around it
# is kept. The same markdown goes to stdout as it is produced; build output goes to
# <build>/bench-build.log.
#   bash bench/run.sh [bench_train_step flags]
#   SEGRUN_BUILD_DIR     build folder (default build)
#   SEGRUN_JOBS          parallel compile jobs (default 2)
#   SEGRUN_BENCH_ROUNDS  rounds of the data-parallel comparison (default 3)
#   SEGRUN_BENCH_FULL=1  also the full-width models at crop 256 (~7 more minutes on 2 cores)
#   SEGRUN_BENCH_DOC     file to write into (default docs/performance.md; "-" = stdout only)
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir="${SEGRUN_BUILD_DIR:-build}"
doc="${SEGRUN_BENCH_DOC:-docs/performance.md}"
begin_marker="<!-- bench/run.sh results: begin (generated; edits here are overwritten) -->"
end_marker="<!-- bench/run.sh results: end -->"
if [ "$doc" != - ] && { ! grep -qF "$begin_marker" "$doc" || ! grep -qF "$end_marker" "$doc"; }; then
  echo "bench/run.sh: $doc lacks the results markers ('$begin_marker' ... '$end_marker')" >&2
  exit 2
fi
bash scripts/setup.sh > /dev/null
build_log="$build_dir/bench-build.log"
: > "$build_log"
build() {
  cmake --build "$build_dir" --target "$1" -j "${SEGRUN_JOBS:-2}" >> "$build_log" 2>&1 ||
    { cat "$build_log" >&2; echo "bench/run.sh: building $1 failed" >&2; exit 1; }
}
section() { printf '\n### %s\n\n' "$1"; }  # a results heading, blank lines around it
mpi_flags=(--oversubscribe)
[ "$(id -u)" -eq 0 ] && mpi_flags+=(--allow-run-as-root)

run_all() {
  local changes=""  # (the file written here does not count)
  git diff --quiet HEAD -- . ":(exclude)$doc" || changes=" (with local changes)"
  echo "Run $(date -u '+%F %H:%M') UTC, commit $(git rev-parse --short HEAD)$changes,"
  echo "command \`bash bench/run.sh${*:+ $*}\`. Machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1)," \
    "$(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB, $(. /etc/os-release && echo "$PRETTY_NAME"), LibTorch" \
    "$(/usr/bin/python3 -c 'import torch; print(torch.__version__)' 2>/dev/null || echo '?')," \
    "$(mpirun --version 2>/dev/null | head -1), load average at start $(cut -d' ' -f1-3 /proc/loadavg)."

  build bench_train_step
  section "Training step, 1 rank, 1 thread"
  "$build_dir/bench/bench_train_step" --threads 1 "$@"

  # The decode-head loss alone: the fused upsample + cross-entropy vs the unfused ops and a peer.
  build bench_seg_loss
  section "Decode-head loss"
  "$build_dir/bench/bench_seg_loss"

  # All-reduce bus bandwidth on 2 ranks: segrun's mpi Communicator vs raw MPI_Allreduce vs Gloo.
  build bench_allreduce
  section "All-reduce, 2 ranks"
  mpirun "${mpi_flags[@]}" -np 2 "$build_dir/bench/bench_allreduce"

  # Data pipeline: store -> decode -> mmseg train transforms -> batch, segrun's TrainLoader vs a
  # torch DataLoader peer (bench/data_pipeline_peer.py) with as many worker processes.
  build bench_data_pipeline
  section "Data pipeline"
  "$build_dir/bench/bench_data_pipeline" 2> /dev/null

  # Store: pack throughput and sequential reads through StoreReader vs read(2)/cat of the same
  # shard files, with a warm page cache and with the files' pages dropped before every read.
  build bench_store_io
  for cold in 0 1; do
    section "Store, $([ "$cold" = 1 ] && echo "from the device (cold)" || echo "from the page cache (warm)")"
    "$build_dir/bench/bench_store_io" --images 512 --rounds 5 --cold "$cold" 2> /dev/null
  done

  # Data-parallel training step on 1 and 2 ranks x 1 thread: bench_train_ddp under mpirun vs a
  # PyTorch DDP (Gloo) peer (bench/train_ddp_peer.py), interleaved over rounds; weak scaling; the
  # float32 GEMM rate and the step's achieved fraction of it (bench/train_ddp_compare.py).
  build bench_train_ddp
  section "Data-parallel training step"
  /usr/bin/python3 bench/train_ddp_compare.py --build-dir "$build_dir" --rounds "${SEGRUN_BENCH_ROUNDS:-3}"
  if [ "${SEGRUN_BENCH_FULL:-0}" = 1 ]; then
    /usr/bin/python3 bench/train_ddp_compare.py --build-dir "$build_dir" --rounds 3 --steps 3 --warmup 1 \
      --case "R50 Semantic FPN, width 64|configs/ade20k_fpn_clip_rn50_80k.toml|256|2|" \
      --case "CLIP-SP R50, width 64|configs/clip_sp/r50_ade20k.toml|256|2|"
  fi

  # Communication cost model at 4 / 32 / 256 GPUs from segrun's gradient buckets and FLOP counts.
  section "Communication cost model"
  /usr/bin/python3 bench/comm_model.py --build-dir "$build_dir"
}

results="$(mktemp)"
trap 'rm -f "$results"' EXIT
run_all "$@" | tee "$results"
[ "$doc" = - ] && exit 0
# Splice: keep everything outside the markers, replace what is between them.
/usr/bin/python3 - "$doc" "$results" "$begin_marker" "$end_marker" <<'PY'
import os, sys
doc, results, begin, end = sys.argv[1:]
text = open(doc).read()
head, rest = text.split(begin, 1)
_, tail = rest.split(end, 1)
body = open(results).read().strip()
tmp = doc + ".tmp"
with open(tmp, "w") as f:
    f.write(head + begin + "\n\n" + body + "\n\n" + end + tail)
os.replace(tmp, doc)
PY
echo "bench/run.sh: results written to $doc" >&2
