#!/usr/bin/env bash
# End-to-end through the segrun CLI: the config key reference (= docs/config.md) -> synth -> 2-rank
# pack -> inspect -> 2-rank train -> eval (+ saved predictions re-scored by `segrun metrics`, which
# must agree) -> preemption by SIGUSR1 and resume -> refusal to overwrite -> the device and world
# checks. Usage: cli_test.sh SEGRUN_BINARY
set -uo pipefail
segrun="$(realpath "$1")"
. "$(dirname "$0")/../lib.sh"
tb_reader="$(realpath "$(dirname "$0")/../engine/read_tensorboard.py")"
config_md="$(realpath "$(dirname "$0")/../../docs/config.md")"
enter_work_dir cli-test

# The key reference: the committed docs/config.md is what the program prints (core_test checks the
# library's page; this, the command line that prints it).
"$segrun" config --keys --format md > "$work/config.md"
check "config --keys --format md prints docs/config.md" diff -q "$config_md" "$work/config.md"
"$segrun" config --keys model.mta_clip > "$work/keys.txt"
check "config --keys PREFIX lists only those keys" test "$(grep -c '^  model\.mta_clip\.' "$work/keys.txt")" = \
  "$(grep -c '^| `model\.mta_clip\.' "$config_md")"
check "config --keys PREFIX lists nothing else" test "$(grep -c '^  [a-z_0-9]*\.' "$work/keys.txt")" = \
  "$(grep -c '^  model\.mta_clip\.' "$work/keys.txt")"

make_tiny_stores "$work" 2 || { echo "cannot make the tiny stores"; exit 1; }
"$segrun" data inspect "$work/train" --json > "$work/inspect.json"
check "inspect exit code" test $? -eq 0
check "inspect counts 8 records" test "$(json "$work/inspect.json" 'd["records"]')" = 8

tiny_train_config train val 40 4 20 20 5 > "$work/tiny.toml"

# 2-rank training: loss goes down, the run directory is complete.
"$segrun" launch -n 2 -- train "$work/tiny.toml" --run-dir "$work/runs/a" > "$work/train.out" 2>&1
code=$?
check "2-rank train exit code (got $code)" test "$code" -eq 0
[ "$code" -eq 0 ] || grep -v " info " "$work/train.out" | tail -n 25  # a rare flake must be readable from CI's log
run="$work/runs/a"
for f in config.toml status metrics.jsonl result.json checkpoints/iter_40.pt logs/rank-0.log logs/rank-1.log; do
  check "run dir has $f" test -e "$run/$f"
done
check "status done" grep -q '^done' "$run/status"
first=$("$py" -c "import json; L=[json.loads(l) for l in open('$run/metrics.jsonl')]; t=[x['loss'] for x in L if x['mode']=='train']; print(t[0] > t[-1])")
check "loss decreases" test "$first" = True
check "table printed" grep -q "mIoU" "$work/train.out"
check "resolved config written" grep -q "backbone_lr_mult = 1" "$run/config.toml"

# What a person looks at: TensorBoard files under tb/ (read back by an independent reader,
# tests/engine/read_tensorboard.py) carry metrics.jsonl's numbers, and each evaluation's pictures
# are in samples/iter_<n>/ and in TensorBoard.
"$py" "$tb_reader" "$run/tb" > "$work/tb.json"
check "TensorBoard files read back with valid checksums" test $? -eq 0
"$py" - "$run/metrics.jsonl" "$work/tb.json" > "$work/tb_check.out" 2>&1 <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
tb = json.load(open(sys.argv[2]))
s = tb["scalars"]
train = [(x["iter"], x["loss"]) for x in lines if x["mode"] == "train"]
val = [(x["iter"], x["mIoU"]) for x in lines if x["mode"] == "val"]
assert tb["file_version"] == ["brain.Event:2"], tb["file_version"]
assert [p[0] for p in s["train/loss"]] == [i for i, _ in train], (s["train/loss"], train)
assert all(abs(a[1] - b) <= 1e-6 * max(1, abs(b)) for a, b in zip(s["train/loss"], [l for _, l in train]))
for key in ("train/lr", "train/images_per_s", "train/data_wait_fraction", "train/sync_wait_fraction", "val/mAcc", "val/aAcc"):
    assert key in s, key
assert [p[0] for p in s["val/mIoU"]] == [i for i, _ in val], (s["val/mIoU"], val)
assert all(abs(a[1] - b) <= 1e-4 for a, b in zip(s["val/mIoU"], [m for _, m in val]))
assert any(k.startswith("val/IoU.") for k in s), "no per-class IoU"
images = tb["images"]
assert len(images) == 2, images.keys()  # rank 0 evaluates 2 of the 4 validation images
for tag, shots in images.items():
    assert [x["step"] for x in shots] == [i for i, _ in val], shots
    assert all(x["decoded"] == [x["height"], x["width"], 3] for x in shots), shots
print("ok")
PY
check "TensorBoard scalars and images equal metrics.jsonl ($(tail -1 "$work/tb_check.out"))" grep -q '^ok' "$work/tb_check.out"
check "samples of the last evaluation" test "$(ls "$run/samples/iter_40" | grep -c '\.png$')" = 2

# eval agrees with itself through saved predictions and `segrun metrics`.
"$segrun" eval "$work/tiny.toml" --checkpoint "$run/checkpoints/iter_40.pt" --save-pred "$work/pred" --json > "$work/eval.json"
check "eval exit code" test $? -eq 0
check "eval wrote 4 predictions" test "$(ls "$work/pred" | wc -l)" = 4
"$segrun" metrics --pred "$work/pred" --gt "$work/raw/ADEChallengeData2016/annotations/validation" \
  --num-classes 150 --reduce-zero-label --json > "$work/metrics.json"
check "metrics exit code" test $? -eq 0
check "eval mIoU == metrics mIoU" test "$(json "$work/eval.json" 'round(d["mIoU"],6)')" = "$(json "$work/metrics.json" 'round(d["mIoU"],6)')"
# --layout ade20k: the released annotations as they are (the mapping and class names of pack).
"$segrun" metrics --pred "$work/pred" --gt "$work/raw/ADEChallengeData2016/annotations/validation" \
  --layout ade20k --json > "$work/metrics_layout.json"
check "metrics --layout ade20k mIoU == eval mIoU, with ADE20K's class names" test \
  "$(json "$work/metrics_layout.json" 'round(d["mIoU"],6), list(d["per_class"])[0]')" = "$(json "$work/eval.json" 'round(d["mIoU"],6), "wall"')"
check "eval mIoU == result.json mIoU" test "$(json "$work/eval.json" 'round(d["mIoU"],6)')" = "$(json "$run/result.json" 'round(d["mIoU"],6)')"
# A run folder as eval's source: its config.toml and its newest checkpoint (iter_40), same figures.
"$segrun" eval "$run" --json --no-record > "$work/eval_run.json" 2> "$work/eval_run.err"
check "eval RUN_DIR exit code" test $? -eq 0
check "eval RUN_DIR mIoU == eval CONFIG --checkpoint mIoU" test "$(json "$work/eval_run.json" 'round(d["mIoU"],6)')" = "$(json "$work/eval.json" 'round(d["mIoU"],6)')"
check "eval RUN_DIR names the checkpoint it chose" grep -q "evaluating its newest checkpoint, .*iter_40.pt" "$work/eval_run.err"

# --confusion: the same matrix on 1 and 2 ranks and from `segrun metrics` on the saved
# predictions, and the evaluation's mIoU recomputed from it (IoU_c = diagonal / (row + column -
# diagonal) over the classes present in truth or prediction).
"$segrun" eval "$run" --no-record --confusion "$work/confusion1.csv" > "$work/confusion1.out" 2>&1
check "eval --confusion exit code" test $? -eq 0
check "eval --confusion prints the most confused classes" grep -q "^most confused" "$work/confusion1.out"
"$segrun" launch -n 2 -- eval "$run" --no-record --json --confusion "$work/confusion2.csv" > "$work/confusion2.json" 2> /dev/null
check "2-rank eval --confusion exit code" test $? -eq 0
check "the confusion matrix of 1 and 2 ranks is the same file" cmp -s "$work/confusion1.csv" "$work/confusion2.csv"
# segrun metrics on eval's saved predictions (the same checkpoint) counts the same matrix.
"$segrun" metrics --pred "$work/pred" --gt "$work/raw/ADEChallengeData2016/annotations/validation" \
  --num-classes 150 --reduce-zero-label --confusion "$work/confusion_metrics.csv" > /dev/null 2>&1
check "metrics --confusion exit code" test $? -eq 0
"$py" - "$work/confusion2.csv" "$work/eval.json" "$work/confusion2.json" "$work/confusion_metrics.csv" \
  > "$work/confusion_check.out" 2>&1 <<'PY'
import csv, json, sys
rows = list(csv.reader(open(sys.argv[1])))
from_metrics = list(csv.reader(open(sys.argv[4])))
assert from_metrics[0][1:4] == ["class_0", "class_1", "class_2"], from_metrics[0][:4]
assert [r[1:] for r in from_metrics[1:]] == [r[1:] for r in rows[1:]], "metrics and eval count different matrices"
names = rows[0][1:]
assert rows[0][0] == "truth \\ prediction" and len(names) == 150, rows[0][:3]
m = [[int(x) for x in r[1:]] for r in rows[1:]]
assert [r[0] for r in rows[1:]] == names
ious = []
for c in range(len(names)):
    tp, row, col = m[c][c], sum(m[c]), sum(r[c] for r in m)
    if row + col - tp > 0:
        ious.append(tp / (row + col - tp))
miou = 100 * sum(ious) / len(ious)
want = json.load(open(sys.argv[2]))["mIoU"]
assert abs(miou - want) < 1e-9, (miou, want)
top = json.load(open(sys.argv[3]))["top_confusions"]
assert top and all(t["truth"] != t["predicted"] for t in top), top
print("ok", round(miou, 4))
PY
check "mIoU recomputed from the confusion CSV ($(tail -1 "$work/confusion_check.out"))" grep -q '^ok' "$work/confusion_check.out"

# --color: the dataset's palette (ADE20K wall = RGB 120,120,120) and an overlay, beside the ids.
"$segrun" eval "$work/tiny.toml" --checkpoint "$run/checkpoints/iter_40.pt" --save-pred "$work/predc" --color > /dev/null 2>&1
check "eval --color exit code" test $? -eq 0
check "colour and overlay pictures" test "$(ls "$work/predc/color" | wc -l),$(ls "$work/predc/overlay" | wc -l)" = 4,4
"$py" - "$work/predc" > "$work/color_check.out" 2>&1 <<'PY'
import os, sys, cv2, numpy as np
d = sys.argv[1]
for name in sorted(os.listdir(os.path.join(d, "color"))):
    ids = cv2.imread(os.path.join(d, name), cv2.IMREAD_UNCHANGED)
    rgb = cv2.imread(os.path.join(d, "color", name))[:, :, ::-1]
    assert ids.shape == rgb.shape[:2]
    colours = {}
    for i in np.unique(ids):
        c = {tuple(x) for x in rgb[ids == i]}
        assert len(c) == 1, (name, i, len(c))  # one colour per class
        colours[int(i)] = c.pop()
    assert len(set(colours.values())) == len(colours)  # distinct classes, distinct colours
    if 0 in colours:
        assert colours[0] == (120, 120, 120), colours[0]
print("ok")
PY
check "one palette colour per class ($(tail -1 "$work/color_check.out"))" grep -q '^ok' "$work/color_check.out"

# predict on the raw validation images (the run folder's newest checkpoint, iter_40): the very files
# eval --save-pred --color wrote for their records, on 1 rank and on 2; a folder holding a file
# of the user's is refused and kept.
val_images="$work/raw/ADEChallengeData2016/images/validation"
"$segrun" predict "$run" --images "$val_images" --out "$work/predict1" > "$work/predict1.out" 2>&1
check "predict exit code" test $? -eq 0
check "predict names what it wrote" grep -q "^predict: 4 images -> .* (iteration 40)" "$work/predict1.out"
"$segrun" launch -n 2 -- predict "$run" --images "$val_images" --out "$work/predict2" > /dev/null 2>&1
check "2-rank predict exit code" test $? -eq 0
same=0
for f in "$work"/predc/*.png "$work"/predc/color/*.png "$work"/predc/overlay/*.jpg; do
  rel="${f#"$work/predc/"}"
  cmp -s "$f" "$work/predict1/$rel" && cmp -s "$f" "$work/predict2/$rel" && same=$((same + 1))
done
check "predict files equal eval --save-pred --color's, 1 and 2 ranks ($same of 12)" test "$same" = 12
# A folder's subfolders too (ADE20K's images/training and images/validation, as Cityscapes'
# leftImg8bit/test/<city>/), and --label-ids: the dataset's own values (ADE20K: train id + 1).
"$segrun" predict "$run" --images "$work/raw/ADEChallengeData2016/images" --out "$work/predict_all" --label-ids \
  > "$work/predict_all.out" 2>&1
check "predict of a nested folder exit code" test $? -eq 0
check "predict finds every image below the folder" test "$(ls "$work/predict_all/label_ids" | wc -l)" = \
  "$(find "$work/raw/ADEChallengeData2016/images" -name '*.jpg' | wc -l)"
"$py" - "$work/predict_all" > "$work/label_ids_check.out" 2>&1 <<'PY'
import glob, os, sys
import cv2
import numpy as np
for path in glob.glob(os.path.join(sys.argv[1], "label_ids", "*.png")):
    ids = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    train = cv2.imread(os.path.join(sys.argv[1], os.path.basename(path)), cv2.IMREAD_UNCHANGED)
    assert ids is not None and train is not None and np.array_equal(ids.astype(int), train.astype(int) + 1), path
print("ok")
PY
check "label_ids = train ids + 1 for ADE20K ($(tail -1 "$work/label_ids_check.out"))" grep -q '^ok' "$work/label_ids_check.out"
mkdir -p "$work/predict3" && echo mine > "$work/predict3/notes.txt"
"$segrun" predict "$run" --images "$val_images" --out "$work/predict3" > "$work/predict3.out" 2>&1
code=$?
check "predict into a non-empty folder: exit 2 (got $code)" test "$code" -eq 2
check "predict names the folder" grep -q "predict3: exists and is not empty" "$work/predict3.out"
check "predict keeps the folder as it was" test "$(ls "$work/predict3")" = notes.txt

# Preemption: SIGUSR1 to the launcher reaches every rank; they checkpoint and exit 75; resume
# completes the run.
"$segrun" launch -n 2 -- train "$work/tiny.toml" --run-dir "$work/runs/b" train.iters=4000 log.interval=1 > "$work/b.out" 2>&1 &
launcher=$!
for _ in $(seq 1 600); do grep -q "iter 3/" "$work/b.out" 2>/dev/null && break; sleep 0.1; done
kill -USR1 "$launcher"
wait "$launcher"
code=$?
check "preempted exit code is 75 (got $code)" test "$code" -eq 75
check "status preempted" grep -q '^preempted' "$work/runs/b/status"
check "preemption checkpoint exists" test -n "$(ls "$work/runs/b/checkpoints/" | grep iter_)"
"$segrun" train "$work/tiny.toml" --run-dir "$work/runs/b" train.iters=4000 > "$work/b2.out" 2>&1
check "fresh start refuses a run dir with checkpoints" grep -q "pass --resume auto" "$work/b2.out"
ckpt=$(ls "$work/runs/b/checkpoints/" | grep iter_ | sed 's/iter_\([0-9]*\).pt/\1/' | sort -n | tail -1)
"$segrun" launch -n 2 -- train "$work/tiny.toml" --run-dir "$work/runs/b" --resume auto train.iters=$((ckpt + 6)) log.interval=1 > "$work/b3.out" 2>&1
check "resume exit code" test $? -eq 0
check "resumed from the preemption checkpoint" grep -q "resumed from .*iter_${ckpt}.pt" "$work/b3.out"
check "resumed run done" grep -q '^done' "$work/runs/b/status"

# Resume continues the same loss curve: an uninterrupted 12-iteration run vs a run resumed from
# its iteration-6 checkpoint must log identical losses for iterations 7..12.
"$segrun" train "$work/tiny.toml" --run-dir "$work/runs/c" train.iters=12 train.checkpoint_interval=6 \
  train.eval_interval=0 log.interval=1 data.val_store=\"\" > /dev/null 2>&1
check "uninterrupted run" test -e "$work/runs/c/checkpoints/iter_6.pt"
mkdir -p "$work/runs/d/checkpoints" && cp "$work/runs/c/checkpoints/iter_6.pt" "$work/runs/d/checkpoints/"
"$segrun" train "$work/tiny.toml" --run-dir "$work/runs/d" --resume auto train.iters=12 train.checkpoint_interval=6 \
  train.eval_interval=0 log.interval=1 data.val_store=\"\" > /dev/null 2>&1
curve() { "$py" -c "import json,sys; print([x['loss'] for x in map(json.loads, open(sys.argv[1])) if x['mode']=='train' and x['iter']>6])" "$1"; }
check "resumed loss curve equals the uninterrupted one" test "$(curve "$work/runs/c/metrics.jsonl")" = "$(curve "$work/runs/d/metrics.jsonl")"
check "resumed curve has 6 points" test "$("$py" -c "print(len($(curve "$work/runs/d/metrics.jsonl")))")" = 6

# A checkpoint write killed midway: its temp file is cleaned up, and a truncated newest checkpoint
# (as a non-atomic writer would leave) makes --resume auto fall back to the previous one.
head -c 5000 "$work/runs/c/checkpoints/iter_12.pt" > "$work/runs/c/checkpoints/iter_12.pt.tmp-4242"
head -c 5000 "$work/runs/c/checkpoints/iter_12.pt" > "$work/runs/c/checkpoints/iter_18.pt"
"$segrun" train "$work/tiny.toml" --run-dir "$work/runs/c" --resume auto train.iters=14 \
  train.eval_interval=0 data.val_store=\"\" > "$work/c2.out" 2>&1
check "resume falls back past a truncated checkpoint (exit $?)" grep -q "resumed from .*iter_12.pt" "$work/c2.out"
check "the truncated checkpoint is named" grep -q "iter_18.pt: not a readable segrun checkpoint" "$work/c2.out"
check "partial temp file removed" test ! -e "$work/runs/c/checkpoints/iter_12.pt.tmp-4242"

# Placement and precision: every rank's log names its device; reduced precision on a CPU, and
# asking for a GPU where there is none, are one-line config errors naming the rank and the host.
check "the device named in the log" grep -q "rank 0/2 on .*: device cpu, backend mpi" "$run/logs/rank-0.log"
check "rank 1's device in its log" grep -q "rank 1/2 on .*: device cpu, backend mpi" "$run/logs/rank-1.log"
"$segrun" train "$work/tiny.toml" --run-dir "$work/runs/e" train.precision=\"bf16\" > "$work/e.out" 2>&1
code=$?
check "bf16 on a CPU exits 2 (got $code)" test "$code" -eq 2
check "bf16 on a CPU: the error says why" grep -q 'train.precision = "bf16" needs a CUDA device' "$work/e.out"
"$segrun" train "$work/tiny.toml" --run-dir "$work/runs/f" dist.device=\"cuda\" > "$work/f.out" 2>&1
code=$?
if [ -z "$(command -v nvidia-smi)" ]; then
  check "dist.device = cuda without a GPU exits 2 (got $code)" test "$code" -eq 2
  check "the error names rank and host" grep -q "dist.device = \"cuda\": rank 0/1 on $(hostname)" "$work/f.out"
fi

# A world that is not the one asked for (an srun --mpi plugin that leaves every task a world of
# one, or an mpirun that started another count) stops before any work, naming the rank and the
# fix, and writes nothing: the environments are what srun / segrun launch give each task.
SLURM_STEP_NUM_TASKS=2 SLURM_PROCID=1 "$segrun" train "$work/tiny.toml" --run-dir "$work/runs/g" > "$work/g.out" 2>&1
code=$?
check "a world of one under a 2-task srun step exits non-zero (got $code)" test "$code" -ne 0
check "the error names the plugin fix" grep -q "srun started 2 tasks (SLURM_STEP_NUM_TASKS) but MPI sees a world of one.*--mpi=pmix" "$work/g.out"
check "nothing was written for it" test ! -e "$work/runs/g"
SEGRUN_WORLD_SIZE=3 "$segrun" train "$work/tiny.toml" --run-dir "$work/runs/h" > "$work/h.out" 2>&1
code=$?
check "a world of 1 where 3 were asked exits non-zero (got $code)" test "$code" -ne 0
check "the error names both sizes" grep -q "rank 0/1 on .*: the launcher asked for 3 ranks (SEGRUN_WORLD_SIZE) but MPI started a world of 1" "$work/h.out"

# A config error on one rank only (here rank 1 is given a store that does not exist; mpirun's
# MPMD form gives each rank its own words) is printed by that rank, naming it, though rank 0 has
# none (config errors met before MPI starts are left to rank 0).
as_root=(); if [ "$(id -u)" = 0 ]; then as_root=(--allow-run-as-root); fi
mpirun -np 1 --oversubscribe "${as_root[@]}" -x SEGRUN_LAUNCHED=1 -x SEGRUN_WORLD_SIZE=2 "$segrun" train "$work/tiny.toml" --run-dir "$work/runs/i" \
  : -np 1 "$segrun" train "$work/tiny.toml" --run-dir "$work/runs/i" data.store="$work/no-store" > "$work/i.out" 2>&1
code=$?
check "a config error on rank 1 alone exits 2 (got $code)" test "$code" -eq 2
check "rank 1 names its error" grep -q "^segrun: error on rank 1: .*no-store: no such store folder" "$work/i.out"

# --help of a launched command is answered once, by the launcher, not once per rank.
help_count=$("$segrun" launch -n 2 -- train --help 2>&1 | grep -c '^Usage: segrun train')
check "launch -n 2 -- train --help prints the help once (got $help_count)" test "$help_count" = 1

finish cli_test
