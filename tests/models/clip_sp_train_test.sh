#!/usr/bin/env bash
# A 2-rank tiny CLIP-SP training run through the CLI on synthetic ADE20K-layout data: the loss and
# each of its parts (seg, ASL, aux) are logged, the total falls, the validation multi-label mAP
# beats the constant-score predictor, `segrun eval` of the checkpoint reproduces the run's final
# metrics, and resuming a finished run is a no-op. Usage: clip_sp_train_test.sh SEGRUN_BINARY SOURCE_DIR
set -uo pipefail
segrun="$(realpath "$1")"
source_dir="$(realpath "$2")"
. "$source_dir/tests/lib.sh"
enter_work_dir clip-sp-test

make_stores "$work" ade20k 24 8 64x80 5 || exit 1

# The tiny CLIP-SP config, shrunk further: 64x64 crops, width 8, a 1-layer text encoder.
overrides=(data.store="$work/train" data.val_store="$work/val" data.crop=[64,64] data.scale=[160,64]
           data.batch_per_rank=2 data.workers=1 model.width=8 model.fpn_channels=16 model.text.width=32
           model.text.layers=1 model.clip_sp.top_k=6 model.clip_sp.graph_nodes=8 model.clip_sp.attn_dim=32
           model.clip_sp.srm_dim=16 train.iters=60 train.lr=2e-3 train.warmup_iters=5
           train.checkpoint_interval=60 log.interval=10)
start=$(date +%s)
"$segrun" launch -n 2 -- train "$source_dir/configs/clip_sp/tiny.toml" "${overrides[@]}" --run-dir run > train.log 2>&1
code=$?
check "2-rank CLIP-SP training exits 0 (got $code)" test "$code" -eq 0
echo "60 iterations on 2 ranks took $(( $(date +%s) - start )) s"
[ "$code" -eq 0 ] || { tail -20 train.log; finish clip_sp_train_test; }

check "progress lines show the loss parts" grep -q "loss_seg .* loss_ml .* loss_aux" train.log
first=$(grep '"mode":"train"' run/metrics.jsonl | head -1)
last=$(grep '"mode":"train"' run/metrics.jsonl | tail -1)
loss_first=$(echo "$first" | "$py" -c "import json,sys; print(json.load(sys.stdin)['loss'])")
loss_last=$(echo "$last" | "$py" -c "import json,sys; print(json.load(sys.stdin)['loss'])")
echo "loss $loss_first -> $loss_last"
check "loss falls ($loss_first -> $loss_last)" holds "$loss_last < 0.8 * $loss_first"
check "metrics.jsonl has every loss part" "$py" -c "
import json, sys
line = json.loads('''$last''')
sys.exit(0 if all(k in line for k in ('loss_seg', 'loss_ml', 'loss_aux')) else 1)"
map=$(json run/result.json "d['label_mAP']")
prior=$(json run/result.json "d['label_mAP_prior']")
echo "validation multi-label mAP $map vs constant-score predictor $prior"
check "multi-label mAP ($map) beats the constant-score predictor ($prior)" holds "$map > $prior"
check_eval_and_resume label_mAP "$map" run/checkpoints/iter_60.pt "$source_dir/configs/clip_sp/tiny.toml" "${overrides[@]}"
finish clip_sp_train_test
