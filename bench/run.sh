#!/usr/bin/env bash
# Builds and runs segrun's benchmarks against their peers; prints markdown for docs/performance.md.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir="${SEGRUN_BUILD_DIR:-build}"
bash scripts/setup.sh
cmake --build "$build_dir" --target bench_train_step -j "${SEGRUN_JOBS:-2}"
echo "## Training step, 1 rank, 1 thread ($(nproc) cores, $(date -u +%F))"
"$build_dir/bench/bench_train_step" --threads 1 "$@"

# Data pipeline: store -> decode -> mmseg train transforms -> batch, segrun's TrainLoader vs a
# torch DataLoader peer (bench/data_pipeline_peer.py) with as many worker processes.
cmake --build "$build_dir" --target bench_data_pipeline -j "${SEGRUN_JOBS:-2}"
echo
echo "## Data pipeline ($(nproc) cores, $(date -u +%F))"
"$build_dir/bench/bench_data_pipeline"
