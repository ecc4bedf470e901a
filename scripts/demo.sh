#!/usr/bin/env bash
# Builds segrun and runs its demo: synthesize ADE20K-layout data, pack it into a sharded HDF5
# store on 2 ranks, train the tiny CLIP-RN50 Semantic FPN baseline on 2 ranks, print mIoU.
# Arguments go to `segrun demo` (e.g. --dir /tmp/segrun-demo).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh segrun  # the program alone: the tests and benchmarks are built by scripts/test.sh
exec "${SEGRUN_BUILD_DIR:-build}/launcher/segrun" demo "$@"
