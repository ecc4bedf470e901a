#!/usr/bin/env bash
# Builds and runs segrun's benchmarks against their peers; prints markdown for docs/performance.md.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir="${SEGRUN_BUILD_DIR:-build}"
bash scripts/setup.sh
cmake --build "$build_dir" --target bench_train_step -j "${SEGRUN_JOBS:-2}"
echo "## Training step, 1 rank, 1 thread ($(nproc) cores, $(date -u +%F))"
"$build_dir/bench/bench_train_step" --threads 1 "$@"

# The decode-head loss alone: the fused upsample + cross-entropy vs the unfused ops and a PyTorch peer.
cmake --build "$build_dir" --target bench_seg_loss -j "${SEGRUN_JOBS:-2}"
echo
"$build_dir/bench/bench_seg_loss"

# All-reduce bus bandwidth on 2 ranks: segrun's mpi Communicator vs raw MPI_Allreduce vs c10d Gloo.
cmake --build "$build_dir" --target bench_allreduce -j "${SEGRUN_JOBS:-2}"
mpi_flags=(--oversubscribe)
[ "$(id -u)" -eq 0 ] && mpi_flags+=(--allow-run-as-root)
echo
mpirun "${mpi_flags[@]}" -np 2 "$build_dir/bench/bench_allreduce"

# Data pipeline: store -> decode -> mmseg train transforms -> batch, segrun's TrainLoader vs a
# torch DataLoader peer (bench/data_pipeline_peer.py) with as many worker processes.
cmake --build "$build_dir" --target bench_data_pipeline -j "${SEGRUN_JOBS:-2}"
echo
echo "## Data pipeline ($(nproc) cores, $(date -u +%F))"
"$build_dir/bench/bench_data_pipeline"

# Store: pack throughput and sequential reads through StoreReader vs read(2)/cat of the same shard
# files, with a warm page cache and with the files' pages dropped before every read.
cmake --build "$build_dir" --target bench_store_io -j "${SEGRUN_JOBS:-2}"
for cold in 0 1; do
  echo
  echo "## Store (cold=$cold, $(nproc) cores, $(date -u +%F))"
  "$build_dir/bench/bench_store_io" --images 512 --rounds 5 --cold "$cold" 2> /dev/null
done

# Data-parallel training step on 1 and 2 ranks x 1 thread: bench_train_ddp under mpirun vs a
# PyTorch DDP (Gloo) peer (bench/train_ddp_peer.py), interleaved over rounds; weak scaling; the
# float32 GEMM rate and the step's achieved fraction of it (bench/train_ddp_compare.py).
cmake --build "$build_dir" --target bench_train_ddp -j "${SEGRUN_JOBS:-2}"
echo
echo "## Data-parallel training step ($(nproc) cores, $(date -u +%F))"
/usr/bin/python3 bench/train_ddp_compare.py --build-dir "$build_dir" --rounds "${SEGRUN_BENCH_ROUNDS:-3}"
# Opt-in (SEGRUN_BENCH_FULL=1, ~7 more minutes on 2 cores): the full-width models at crop 256.
if [ "${SEGRUN_BENCH_FULL:-0}" = 1 ]; then
  /usr/bin/python3 bench/train_ddp_compare.py --build-dir "$build_dir" --rounds 3 --steps 3 --warmup 1 \
    --case "R50 Semantic FPN, width 64|configs/ade20k_fpn_clip_rn50_80k.toml|256|2|" \
    --case "CLIP-SP R50, width 64|configs/clip_sp/r50_ade20k.toml|256|2|"
fi

# Communication cost model at 4 / 32 / 256 GPUs from segrun's gradient buckets and FLOP counts.
echo
echo "## Communication cost model"
/usr/bin/python3 bench/comm_model.py --build-dir "$build_dir"
