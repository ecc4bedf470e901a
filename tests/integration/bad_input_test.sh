#!/usr/bin/env bash
# Bad input through the CLI: every case must exit non-zero with ONE "segrun: error" line naming
# the file / field / record, and never crash (no segfault, no uncaught exception, no abort).
# Usage: bad_input_test.sh SEGRUN_BINARY
set -uo pipefail
segrun="$1"
work="$(mktemp -d /tmp/segrun-bad-input.XXXXXX)"
trap 'rm -rf "$work"' EXIT
. "$(dirname "$0")/../lib.sh"

# expect_error "substring" command...   (runs in $work)
expect_error() {
  local want="$1"; shift
  local out code
  out=$(cd "$work" && "$@" 2>&1 >/dev/null)
  code=$?
  local errors
  errors=$(printf '%s\n' "$out" | grep -c "segrun: error" || true)
  if [ "$code" -eq 0 ]; then
    echo "FAIL (exit 0): $*"; failures=$((failures + 1))
  elif printf '%s' "$out" | grep -qiE "segmentation fault|terminate called|core dumped|Aborted|stack trace"; then
    echo "FAIL (crash): $*"; printf '%s\n' "$out" | head -5; failures=$((failures + 1))
  elif [ "$errors" -ne 1 ] && ! printf '%s' "$out" | grep -q "Run with --help"; then
    echo "FAIL ($errors error lines): $*"; printf '%s\n' "$out" | head -5; failures=$((failures + 1))
  elif ! printf '%s' "$out" | grep -qF -- "$want"; then
    echo "FAIL (message lacks '$want'): $*"; printf '%s\n' "$out" | head -3; failures=$((failures + 1))
  else
    passed=$((passed + 1))
  fi
}

# ---- a valid small dataset, stores and config to break ------------------------------------------
"$segrun" data synth --layout ade20k --out "$work/raw" --train 4 --val 2 --size 64x64 > /dev/null 2>&1 || exit 1
"$segrun" data pack --layout ade20k --root "$work/raw" --split training --out "$work/train" > /dev/null 2>&1 || exit 1
"$segrun" data synth --layout cityscapes --out "$work/city" --train 2 --val 1 --size 48x96 > /dev/null 2>&1 || exit 1
"$segrun" data pack --layout cityscapes --root "$work/city" --split train --out "$work/city_train" > /dev/null 2>&1 || exit 1
cat > "$work/ok.toml" <<'TOML'
[data]
store = "train"
crop = [64, 64]
scale = [128, 64]
batch_per_rank = 2
workers = 1
[model]
width = 8
fpn_channels = 8
[train]
iters = 2
warmup_iters = 0
checkpoint_interval = 0
eval_interval = 0
TOML
"$segrun" train "$work/ok.toml" --run-dir "$work/runs/ok" > /dev/null 2>&1 || { echo "the valid config does not train"; exit 1; }
ckpt="$work/runs/ok/checkpoints/iter_2.pt"

# ---- configs ---------------------------------------------------------------------------------------
expect_error "missing.toml: config file not found" "$segrun" train missing.toml
printf '[train]\nlr = = 1\n' > "$work/syntax.toml"
expect_error "syntax.toml:2: syntax error" "$segrun" train syntax.toml
printf '[train]\nitres = 10\n' > "$work/unknown.toml"
expect_error "unknown.toml:2: train.itres: unknown key (did you mean 'train.iters'?)" "$segrun" train unknown.toml
printf '[data]\nbatch_per_rank = "4"\n' > "$work/type.toml"
expect_error "type.toml:2: data.batch_per_rank: expected an integer, got a string" "$segrun" train type.toml
printf '[train]\nlr = -0.1\n' > "$work/neg.toml"
expect_error "neg.toml:2: train.lr: value -0.1 is out of range" "$segrun" train neg.toml
printf '[model]\nwidth = 4\n' > "$work/width.toml"
expect_error "model.width: value 4 is out of range [8, 256]" "$segrun" train width.toml
printf '[model]\nhead = "segformer"\n' > "$work/head.toml"
expect_error "model.head: 'segformer' is not one of: fpn" "$segrun" train head.toml
expect_error "override 'train.lr=fast': train.lr: expected a number" "$segrun" train ok.toml train.lr=fast
expect_error "override 'nonsense': expected key=value" "$segrun" train ok.toml nonsense
printf '[data]\nstore = "nowhere"\n[train]\niters = 1\nwarmup_iters = 0\n' > "$work/nostore.toml"
expect_error "nowhere" "$segrun" train nostore.toml --run-dir runs/nostore
expect_error "data.store: not set" "$segrun" train ok.toml data.store=\"\" --run-dir runs/unset
expect_error "has 19 classes but data.layout = \"ade20k\" has 150" "$segrun" train ok.toml data.store=city_train --run-dir runs/mismatch
expect_error "data.val_store: not set" "$segrun" eval ok.toml --checkpoint "$ckpt"

# ---- sweep specs ---------------------------------------------------------------------------------
printf 'name = "x"\nbase = "ok.toml"\n[grid]\n"model.dropout" = [0.1]\nbogus = 1\n' > "$work/sweep1.toml"
expect_error "sweep1.toml:5: grid bogus: expected a list of values" "$segrun" sweep plan sweep1.toml
printf 'name = "x"\nbase = "ok.toml"\n[grid]\n' > "$work/sweep2.toml"
expect_error "sweep2.toml:3: grid: empty" "$segrun" sweep plan sweep2.toml
printf 'name = "x"\nbase = "ok.toml"\n[grid]\n"model.dropout" = [0.1, 0.1]\n' > "$work/sweep3.toml"
expect_error "sweep3.toml:4: grid model.dropout: value 0.1 is listed twice" "$segrun" sweep plan sweep3.toml
printf 'name = "x"\nbase = "nope.toml"\n[grid]\n"model.dropout" = [0.1]\n' > "$work/sweep4.toml"
expect_error "sweep4.toml:2: base:" "$segrun" sweep plan sweep4.toml
printf 'name = "x"\nbase = "ok.toml"\n[grid]\n"model.dropot" = [0.1]\n' > "$work/sweep5.toml"
expect_error "did you mean 'model.dropout'" "$segrun" sweep plan sweep5.toml

# ---- CLI --------------------------------------------------------------------------------------------
expect_error "config is required" "$segrun" train
expect_error "--checkpoint is required" "$segrun" eval ok.toml
expect_error ".: config file not found" "$segrun" train .
expect_error "ranks" "$segrun" launch -n 0 -- train ok.toml
expect_error "--size '12x': expected HxW" "$segrun" data synth --out synth-bad --size 12x
expect_error "--hosts: 'a:x': slots must be a positive integer" "$segrun" launch -n 2 --hosts a:x -- train ok.toml
expect_error "--num-classes must be in 1..255" "$segrun" metrics --pred raw --gt raw --num-classes 0

# ---- datasets and packing ------------------------------------------------------------------------
expect_error "does-not-exist" "$segrun" data pack --root does-not-exist --split training --out s1
expect_error "already exists" "$segrun" data pack --root raw --split training --out train
cp -r "$work/raw" "$work/noann"
rm "$(ls "$work"/noann/ADEChallengeData2016/annotations/training/*.png | head -1)"
expect_error "without annotation" "$segrun" data pack --root noann --split training --out s2
cp -r "$work/raw" "$work/badjpg"
first_jpg=$(ls "$work"/badjpg/ADEChallengeData2016/images/training/*.jpg | head -1)
head -c 100 "$first_jpg" > "$first_jpg.tmp" && mv "$first_jpg.tmp" "$first_jpg"
expect_error "$(basename "$first_jpg")" "$segrun" data pack --root badjpg --split training --out s3
cp -r "$work/raw" "$work/badlabel"
first_png=$(ls "$work"/badlabel/ADEChallengeData2016/annotations/training/*.png | head -1)
"$py" -c "import cv2,numpy as np,sys; a=cv2.imread(sys.argv[1],0); a[0,0]=200; cv2.imwrite(sys.argv[1],a)" "$first_png"
expect_error "outside" "$segrun" data pack --root badlabel --split training --out s4
cp -r "$work/raw" "$work/rgblabel"
first_png=$(ls "$work"/rgblabel/ADEChallengeData2016/annotations/training/*.png | head -1)
"$py" -c "import cv2,numpy as np,sys; a=cv2.imread(sys.argv[1],0); cv2.imwrite(sys.argv[1],np.dstack([a,a,a]))" "$first_png"
expect_error "$(basename "$first_png")" "$segrun" data pack --root rgblabel --split training --out s5
cp -r "$work/raw" "$work/sizelabel"
first_png=$(ls "$work"/sizelabel/ADEChallengeData2016/annotations/training/*.png | head -1)
"$py" -c "import cv2,sys; a=cv2.imread(sys.argv[1],0); cv2.imwrite(sys.argv[1],a[:20,:20])" "$first_png"
expect_error "$(basename "$first_png")" "$segrun" data pack --root sizelabel --split training --out s6
cp -r "$work/raw" "$work/emptyimg"
first_jpg=$(ls "$work"/emptyimg/ADEChallengeData2016/images/training/*.jpg | head -1)
: > "$first_jpg"
expect_error "$(basename "$first_jpg")" "$segrun" data pack --root emptyimg --split training --out s7
cp -r "$work/raw" "$work/label16"
first_png=$(ls "$work"/label16/ADEChallengeData2016/annotations/training/*.png | head -1)
"$py" -c "import cv2,numpy as np,sys; a=cv2.imread(sys.argv[1],0); cv2.imwrite(sys.argv[1],a.astype(np.uint16)*300)" "$first_png"
expect_error "$(basename "$first_png")" "$segrun" data pack --root label16 --split training --out s8
cp -r "$work/city" "$work/citybad"
first_city=$(ls "$work"/citybad/leftImg8bit/train/*/*.png | head -1)
head -c 200 "$first_city" > "$first_city.tmp" && mv "$first_city.tmp" "$first_city"
expect_error "$(basename "$first_city")" "$segrun" data pack --layout cityscapes --root citybad --split train --out s9
for s in s1 s2 s3 s4 s5 s6 s7 s8 s9; do
  if [ -e "$work/$s/manifest.json" ]; then echo "FAIL: failed pack left $s/manifest.json"; failures=$((failures + 1)); fi
done

# ---- stores ---------------------------------------------------------------------------------------
cp -r "$work/train" "$work/truncated"
shard=$(ls "$work"/truncated/*.h5 | head -1)
head -c 2000 "$shard" > "$shard.tmp" && mv "$shard.tmp" "$shard"
expect_error "$(basename "$shard")" "$segrun" data inspect truncated
cp -r "$work/train" "$work/foreign"
shard=$(ls "$work"/foreign/*.h5 | head -1)
"$py" -c "import h5py,sys; f=h5py.File(sys.argv[1],'w'); f['x']=[1,2,3]; f.close()" "$shard"
expect_error "$(basename "$shard")" "$segrun" data inspect foreign
cp -r "$work/train" "$work/notstore"
echo "not json" > "$work/notstore/manifest.json"
expect_error "manifest.json" "$segrun" data inspect notstore
expect_error "nostore" "$segrun" data inspect nostore

# A record whose bytes were flipped in the shard: CRC names shard and record; on_corrupt = "skip"
# trains on, counting and logging the skips.
cp -r "$work/train" "$work/corrupt"
"$py" - "$(ls "$work"/corrupt/*.h5 | head -1)" <<'PY'
import h5py, sys
with h5py.File(sys.argv[1], "r") as f:
    offset = f["images/bytes"].id.get_chunk_info(0).byte_offset
with open(sys.argv[1], "r+b") as fh:
    fh.seek(offset + 50); b = fh.read(8); fh.seek(offset + 50); fh.write(bytes(x ^ 0xFF for x in b))
PY
expect_error "shard-00000-of-00001.h5: record 0 (ADE_train_00000001): CRC mismatch" "$segrun" train ok.toml data.store=corrupt --run-dir runs/corrupt
(cd "$work" && "$segrun" train ok.toml data.store=corrupt data.on_corrupt=skip log.interval=1 --run-dir runs/skip > skip.out 2>&1)
check "on_corrupt=skip trains on" test $? -eq 0
check "on_corrupt=skip logs the skips" grep -q "corrupt records skipped" "$work/skip.out"

# ---- checkpoints --------------------------------------------------------------------------------------
head -c 3000 "$ckpt" > "$work/truncated.pt"
expect_error "truncated.pt: not a readable segrun checkpoint" "$segrun" eval ok.toml data.val_store=train --checkpoint truncated.pt
expect_error "checkpoint not found" "$segrun" eval ok.toml data.val_store=train --checkpoint missing.pt
expect_error "checkpoint is from model 'clip_rn50/w8/fpn/K150', the config builds 'clip_rn50/w16/fpn/K150'" "$segrun" eval ok.toml data.val_store=train model.width=16 --checkpoint "$ckpt"
expect_error "has shape" "$segrun" train ok.toml model.fpn_channels=16 --run-dir runs/ok2 --resume "$ckpt"

finish bad_input_test
