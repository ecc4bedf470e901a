#!/usr/bin/env bash
# World-size invariance through `segrun train` (docs/distributed.md): each of the four models --
# FPN with dropout, CLIP-SP (batch drop on; on the ResNet and on the ViT with stochastic depth),
# Mask2Former and MTA-CLIP (random point sampling) --
# trains 6 iterations as 2 ranks x batch 2 and as 1 rank x batch 4 from the same seed, and every
# logged train loss and loss part must agree to TOL (relative). The runs differ only in how the
# global batch is split: SyncBN's statistics, the gradient average and every random draw (keyed
# by sample) are the same computation; what remains is float32 reduction order.
# Usage: world_size_invariance_test.sh SEGRUN_BINARY SOURCE_DIR
set -uo pipefail
segrun="$(realpath "$1")"
src="$(realpath "$2")"
. "$(dirname "$0")/../lib.sh"
enter_work_dir world-size
TOL=1e-3

make_tiny_stores "$work" || { echo "cannot make the tiny stores"; exit 1; }
common=(data.store=\""$work/train"\" data.val_store=\"\" train.iters=6 train.warmup_iters=0 train.eval_interval=0
        train.checkpoint_interval=0 log.interval=1 data.workers=1 train.seed=3)

compare() {  # compare NAME A/metrics.jsonl B/metrics.jsonl: prints the largest gap, checks TOL
  "$py" - "$1" "$2" "$3" "$TOL" <<'PY'
import json, sys
name, a, b, tol = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
def rows(path):
    return {r["iter"]: r for r in map(json.loads, open(path)) if r["mode"] == "train"}
ra, rb = rows(a), rows(b)
keys = [k for k in next(iter(ra.values())) if k == "loss" or k.startswith("loss_")]
worst, where = 0.0, ""
for it in sorted(ra):
    for k in keys:
        x, y = ra[it][k], rb[it][k]
        gap = abs(x - y) / max(abs(y), 1e-12)
        if gap > worst: worst, where = gap, f"iteration {it} {k}: {x:.6g} vs {y:.6g}"
ok = len(ra) == 6 and sorted(ra) == sorted(rb) and worst <= tol
print(f"{name}: {len(ra)} iterations, parts {', '.join(keys)}; largest relative gap {worst:.2e}"
      + (f" ({where})" if where else ""))
sys.exit(0 if ok else 1)
PY
}

run_pair() {  # run_pair NAME CONFIG [OVERRIDE...]
  local name="$1" config="$2"
  shift 2
  "$segrun" launch -n 2 -- train "$config" "${common[@]}" data.batch_per_rank=2 "$@" --run-dir "$work/$name-2x2" \
    > "$work/$name-2x2.log" 2>&1
  check "$name: 2 ranks x 2 trains (exit $?)" test -s "$work/$name-2x2/metrics.jsonl"
  "$segrun" train "$config" "${common[@]}" data.batch_per_rank=4 "$@" --run-dir "$work/$name-1x4" \
    > "$work/$name-1x4.log" 2>&1
  check "$name: 1 rank x 4 trains (exit $?)" test -s "$work/$name-1x4/metrics.jsonl"
  check "$name: every loss agrees to $TOL" compare "$name" "$work/$name-2x2/metrics.jsonl" "$work/$name-1x4/metrics.jsonl"
}

tiny_config "$work/train" > "$work/fpn.toml"
run_pair fpn_dropout "$work/fpn.toml" model.dropout=0.1
# CLIP-SP at lr 1e-5: its top-k choice of scene labels is discontinuous, and at the tiny model's
# random start many class probabilities are near-ties, so float rounding can flip a choice and
# AdamW then carries the two runs apart (largest gap over 6 iterations, measured: 1.8e-2 at the
# config's lr 1e-3, 1.1e-3 at 1e-4, 1.8e-6 at 1e-5). The draws and normalizers checked here are
# the same at every lr; iteration 1 agrees to ~1e-7 at any lr.
run_pair clip_sp "$src/configs/clip_sp/tiny.toml" model.clip_sp.batch_drop.decay=1.0 model.clip_sp.batch_drop.r_start=0.5 train.lr=1e-5
# The same on the ViT backbone, whose stochastic depth (0.1 in the config) draws per sample too.
run_pair clip_sp_vit "$src/configs/clip_sp/tiny_vit.toml" model.clip_sp.batch_drop.decay=1.0 model.clip_sp.batch_drop.r_start=0.5 train.lr=1e-5
run_pair mask2former "$src/configs/mask2former/tiny.toml"
run_pair mta_clip "$src/configs/mta_clip/tiny.toml"

finish world_size_invariance_test
