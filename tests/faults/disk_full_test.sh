#!/usr/bin/env bash
# Fault injection: a full disk (a small tmpfs) during packing and during a checkpoint write. Each
# must end with one clear error naming the file, no partial file under a final name, and earlier
# checkpoints intact (and loadable). Needs root to mount tmpfs; skipped otherwise (exit 77, which
# ctest reports as "Skipped", not as a pass).
# Usage: disk_full_test.sh SEGRUN_BINARY
set -uo pipefail
segrun="$1"
work="$(mktemp -d /tmp/segrun-disk-full-test.XXXXXX)"
mounted=()
cleanup() {
  for m in "${mounted[@]}"; do umount "$m" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/report.sh"

small_disk() {  # small_disk DIR SIZE
  mkdir -p "$1" && mount -t tmpfs -o "size=$2" tmpfs "$1" && mounted+=("$1")
}
if ! small_disk "$work/probe" 64k; then
  echo "disk_full_test: skipped (cannot mount tmpfs here; needs root)"
  exit 77
fi

make_tiny_stores "$work" || { echo "cannot make the tiny stores"; exit 1; }
injected=0
survived=0

# 1. Packing onto a disk smaller than the store.
"$segrun" data synth --layout ade20k --out "$work/big" --train 16 --val 2 --size 256x256 > /dev/null 2>&1
small_disk "$work/disk1" 256k  # the shard is ~440 KB
"$segrun" data pack --root "$work/big" --split training --out "$work/disk1/store" > "$work/pack.out" 2>&1
code=$?
injected=$((injected + 1))
if [ "$code" -ne 0 ] && grep -q "shard-00000-of-00001.h5: write failed: No space left on device" "$work/pack.out" \
   && ! grep -qiE "segmentation fault|terminate called|Aborted" "$work/pack.out" \
   && [ -z "$(ls -A "$work/disk1/store" 2>/dev/null)" ]; then
  survived=$((survived + 1))
else
  echo "FAIL: pack on a full disk (exit $code):"; head -n 5 "$work/pack.out"; ls -la "$work/disk1/store"
  failures=$((failures + 1))
fi

# 2. A checkpoint write that fills the disk: iter_2 fits (about 5.3 MB), iter_4 does not.
tiny_config "$work/train" "$work/val" > "$work/tiny.toml"
printf '[train]\niters = 4\nwarmup_iters = 0\ncheckpoint_interval = 2\neval_interval = 0\n' >> "$work/tiny.toml"
small_disk "$work/disk2" 8m
"$segrun" train "$work/tiny.toml" --run-dir "$work/disk2/run" > "$work/train.out" 2>&1
code=$?
injected=$((injected + 1))
ckpts="$work/disk2/run/checkpoints"
if [ "$code" -ne 0 ] && grep -q "iter_4.pt: write failed: No space left on device" "$work/train.out" \
   && ! grep -qiE "segmentation fault|terminate called|Aborted" "$work/train.out" \
   && [ -e "$ckpts/iter_2.pt" ] && [ ! -e "$ckpts/iter_4.pt" ] && [ -z "$(ls "$ckpts" | grep tmp-)" ] \
   && grep -q "^failed .*No space left" "$work/disk2/run/status"; then
  survived=$((survived + 1))
else
  echo "FAIL: checkpoint on a full disk (exit $code):"; grep -v "^20" "$work/train.out" | head -n 5; ls -la "$ckpts"
  failures=$((failures + 1))
fi
"$segrun" eval "$work/tiny.toml" --checkpoint "$ckpts/iter_2.pt" --json > "$work/eval.json" 2>&1
check "the earlier checkpoint still loads and evaluates" test $? -eq 0
report_faults disk_full_test
finish disk_full_test
