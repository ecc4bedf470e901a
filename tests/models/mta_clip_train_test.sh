#!/usr/bin/env bash
# A 2-rank tiny MTA-CLIP training run through the CLI on synthetic Cityscapes-layout data (19
# classes: 3 prompts x 19 = 57 text queries joined with the 20 mask queries): every loss part
# (class CE, mask BCE, dice, mask-to-text contrastive) is logged, the loss falls, the validation
# mIoU rises from the first validation to the last, `segrun eval` of the checkpoint (which carries
# the frozen text encoder) reproduces the run's final mIoU, and resuming a finished run is a no-op.
# Usage: mta_clip_train_test.sh SEGRUN_BINARY SOURCE_DIR
set -uo pipefail
segrun="$(realpath "$1")"
source_dir="$(realpath "$2")"
. "$source_dir/tests/lib.sh"
enter_work_dir mta-clip-test

make_stores "$work" cityscapes 32 8 64x128 3 || exit 1

config="$source_dir/configs/mta_clip/tiny_cityscapes.toml"
overrides=(data.store="$work/train" data.val_store="$work/val" data.scale=[128,64] data.crop=[64,64]
           train.iters=80 train.eval_interval=20 train.checkpoint_interval=80 log.interval=10)
start=$(date +%s)
"$segrun" launch -n 2 -- train "$config" "${overrides[@]}" --run-dir run > train.log 2>&1
code=$?
check "2-rank MTA-CLIP training exits 0 (got $code)" test "$code" -eq 0
echo "80 iterations on 2 ranks took $(( $(date +%s) - start )) s"
[ "$code" -eq 0 ] || { tail -20 train.log; finish mta_clip_train_test; exit 1; }

check "progress lines show the four loss parts" grep -q "loss_cls .* loss_mask .* loss_dice .* loss_sim" train.log
"$py" - run/metrics.jsonl > curve.txt <<'PY'
import json, sys
train = [json.loads(l) for l in open(sys.argv[1]) if '"mode":"train"' in l]
val = [json.loads(l) for l in open(sys.argv[1]) if '"mode":"val"' in l]
print(train[0]["loss"], train[-1]["loss"], val[0]["mIoU"], val[-1]["mIoU"], len(val),
      int(all(k in train[-1] for k in ("loss_cls", "loss_mask", "loss_dice", "loss_sim"))))
PY
read -r loss_first loss_last miou_first miou_last validations parts < curve.txt
echo "loss $loss_first -> $loss_last; validation mIoU $miou_first (iteration 20) -> $miou_last (iteration 80)"
check "four validations ran (got $validations)" test "$validations" -eq 4
check "metrics.jsonl has every loss part" test "$parts" -eq 1
check "loss falls ($loss_first -> $loss_last)" holds "$loss_last < 0.85 * $loss_first"
check "validation mIoU rises ($miou_first -> $miou_last)" holds "$miou_last > $miou_first + 3"
check_eval_and_resume mIoU "$miou_last" run/checkpoints/iter_80.pt "$config" "${overrides[@]}"
finish mta_clip_train_test
