#!/usr/bin/env bash
# Fault injection: SIGKILL in a 2-rank training run with a checkpoint at every iteration.
#  1. SIGKILL of rank 1 at a random iteration: the launcher exits non-zero within the watchdog
#     timeout (+15 s), naming rank 1.
#  2. Three SIGKILLs of rank 0 (the checkpoint writer) WHILE it writes a checkpoint (its temp file
#     exists; found by polling the folder, no hook in segrun), at random later iterations. After
#     each: no partial file under a final name (every iter_<n>.pt is a complete archive holding
#     next_iter = n, checked with Python's zipfile + torch.jit.load), `latest` names an intact one,
#     and the next `--resume auto` removes the partial temp file and resumes from the newest
#     intact checkpoint.
#  3. The run then completes with exactly the uninterrupted run's per-iteration losses and mIoU.
# Usage: kill_test.sh SEGRUN_BINARY
set -uo pipefail
segrun="$(realpath "$1")"
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/../lib.sh"
. "$here/report.sh"
enter_work_dir kill-test
timeout_s=10

make_tiny_stores "$work" || { echo "cannot make the tiny stores"; exit 1; }
tiny_config train val > "$work/tiny.toml"
cat >> "$work/tiny.toml" <<TOML
[train]
iters = 40
lr = 2e-3
backbone_lr_mult = 1.0
warmup_iters = 4
checkpoint_interval = 1
keep_checkpoints = 3
eval_interval = 0
[dist]
timeout_s = $timeout_s
[log]
interval = 1
TOML
train() { "$segrun" launch -n 2 -- train tiny.toml --run-dir "$work/runs/$1" "${@:2}"; }

train straight > straight.out 2>&1
check "uninterrupted run" test $? -eq 0

run="$work/runs/killed"
ckpts="$run/checkpoints"
RANDOM=11

# ---- 1. SIGKILL of rank 1 at a random iteration ------------------------------------------------------
target=$((3 + RANDOM % 5))
train killed > rank_kill.out 2>&1 &
launcher=$!
for _ in $(seq 1 600); do grep -q "iter $target/" rank_kill.out 2>/dev/null && break; sleep 0.05; done
victim=""
for pid in $(pgrep -f -- "--run-dir $run"); do
  tr '\0' '\n' < "/proc/$pid/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=1" && victim=$pid
done
start=$SECONDS
[ -n "$victim" ] && kill -KILL "$victim"
limit=$((timeout_s + 60))
while kill -0 "$launcher" 2>/dev/null && [ $((SECONDS - start)) -lt $limit ]; do sleep 0.2; done
kill -0 "$launcher" 2>/dev/null && { pkill -KILL -P "$launcher"; kill -KILL "$launcher"; }
wait "$launcher"
code=$?
elapsed=$((SECONDS - start))
echo "rank 1 killed at iteration $target: exit $code after ${elapsed}s"
ok=1
[ -n "$victim" ] && [ "$code" -ne 0 ] && [ "$elapsed" -le $((timeout_s + 15)) ] \
  && grep -qE "rank 1|rank \[1\]|ranks \[1\]" rank_kill.out && ok=0
injected_fault $ok "SIGKILL of rank 1 at iteration $target: exit $code after ${elapsed}s"
[ $ok -eq 0 ] || grep -E "error|rank" rank_kill.out | head -n 5

# ---- 2. SIGKILL of rank 0 inside a checkpoint write, three times -----------------------------------
newest=$("$py" "$here/check_checkpoints.py" "$ckpts" 2>/dev/null || echo 0)
mid_write=0
for cycle in 1 2 3; do
  min_iter=$((newest + 3 + RANDOM % 6))
  "$py" "$here/kill_in_write.py" "$ckpts" "$min_iter" 0 120 -- \
    "$segrun" launch -n 2 -- train tiny.toml --run-dir "$run" --resume auto > "cycle$cycle.out" 2>&1
  code=$?
  what=$(grep "^killed\|^no write seen" "cycle$cycle.out")
  echo "cycle $cycle: $what; exit $code"
  previous=$newest
  newest=$("$py" "$here/check_checkpoints.py" "$ckpts" 2> "check$cycle.err")
  ok=1
  if [ "$code" -eq 0 ] || [[ "$what" != killed* ]]; then
    echo "FAIL: cycle $cycle: no kill landed in a checkpoint write; the launch said:"
    grep -v " info " "cycle$cycle.out" | tail -n 25
  elif [ -s "check$cycle.err" ]; then
    echo "FAIL: cycle $cycle: $(cat "check$cycle.err")"
  elif [ "$newest" -lt $((min_iter - 1)) ]; then
    echo "FAIL: cycle $cycle: newest intact checkpoint is iter_$newest, expected >= iter_$((min_iter - 1))"
  else
    ok=0
  fi
  ls "$ckpts" | grep -q "\.tmp-" && mid_write=$((mid_write + 1))
  # The next start must resume from the newest intact checkpoint (and drop the temp file).
  if [ $ok -eq 0 ] && [ "$previous" -gt 0 ]; then
    grep -q "resumed from $ckpts/iter_$previous.pt at iteration $previous" "cycle$cycle.out" \
      || { ok=1; echo "FAIL: cycle $cycle did not resume from iter_$previous.pt"; }
  fi
  injected_fault $ok "SIGKILL of rank 0 writing a checkpoint (cycle $cycle)"
done
echo "$mid_write of 3 kills left a partial temp file (killed before the rename)"

# ---- 3. the run completes, equal to the uninterrupted one --------------------------------------------
train killed --resume auto > last.out 2>&1
check "the killed run completes" test $? -eq 0
check "it resumed from the newest intact checkpoint iter_$newest" \
  grep -q "resumed from $ckpts/iter_$newest.pt at iteration $newest" last.out
if [ "$mid_write" -gt 0 ]; then
  check "partial temp files were removed on resume" test -z "$(ls "$ckpts" | grep '\.tmp-')"
fi
check "loss of every iteration equals the uninterrupted run's" \
  same_train_losses runs/straight/metrics.jsonl "$run/metrics.jsonl"
check "final mIoU and per-class IoU equal the uninterrupted run's" \
  test "$(json runs/straight/result.json '(d["mIoU"], d["per_class"])')" = \
       "$(json "$run/result.json" '(d["mIoU"], d["per_class"])')"
report_faults kill_test
finish kill_test
