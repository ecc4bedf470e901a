#!/usr/bin/env bash
# Fault injection: preemption (SIGUSR1 to the launcher, as Slurm's --signal sends it) at three
# random iterations of one 2-rank run, each followed by `--resume auto`. The run must finish with
# exactly the uninterrupted run's per-iteration losses and final metrics.
# Usage: preempt_test.sh SEGRUN_BINARY
set -uo pipefail
segrun="$(realpath "$1")"
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/report.sh"
enter_work_dir preempt-test

make_tiny_stores "$work" || { echo "cannot make the tiny stores"; exit 1; }
# 90 iterations: the last stop targets iteration 45-54, and the signal has 36 or more iterations
# left to land in (with 60 it had 6, a fraction of a second).
tiny_train_config train val 90 4 1000 0 1 > "$work/tiny.toml"

"$segrun" launch -n 2 -- train "$work/tiny.toml" --run-dir "$work/runs/straight" > "$work/straight.out" 2>&1
check "uninterrupted run" test $? -eq 0

injected=0
survived=0
RANDOM=7
for cycle in 1 2 3; do
  # Stop somewhere in the next stretch of iterations; every cycle resumes the previous checkpoint.
  target=$((cycle * 15 + RANDOM % 10))
  "$segrun" launch -n 2 -- train "$work/tiny.toml" --run-dir "$work/runs/preempted" --resume auto \
    > "$work/cycle$cycle.out" 2>&1 &
  launcher=$!
  for _ in $(seq 1 900); do grep -q "iter $target/" "$work/cycle$cycle.out" 2>/dev/null && break; sleep 0.1; done
  kill -USR1 "$launcher"
  wait "$launcher"
  code=$?
  injected=$((injected + 1))
  if [ "$code" -eq 75 ] && grep -q '^preempted' "$work/runs/preempted/status"; then
    survived=$((survived + 1))
  else
    echo "FAIL: cycle $cycle: exit $code, status $(cat "$work/runs/preempted/status")"
    failures=$((failures + 1))
  fi
done
"$segrun" launch -n 2 -- train "$work/tiny.toml" --run-dir "$work/runs/preempted" --resume auto > "$work/last.out" 2>&1
check "the preempted run completes" test $? -eq 0
check "status done" grep -q '^done' "$work/runs/preempted/status"

# Per-iteration losses (the last record of each iteration) and final metrics must be identical.
check "loss of every iteration equals the uninterrupted run's" \
  same_train_losses "$work/runs/straight/metrics.jsonl" "$work/runs/preempted/metrics.jsonl"
check "final mIoU and per-class IoU equal the uninterrupted run's" \
  test "$(json "$work/runs/straight/result.json" '(d["mIoU"], d["per_class"])')" = \
       "$(json "$work/runs/preempted/result.json" '(d["mIoU"], d["per_class"])')"
report_faults preempt_test
finish preempt_test
