#!/usr/bin/env bash
# Fault injection: preemption at four random iterations of one 2-rank run, each followed by
# `--resume auto`, one per cluster.slurm.signal: SIGUSR1 (the default), SIGUSR2 and SIGTERM to the
# launcher, as Slurm's --signal sends them, then SIGKILL of the launcher (its ranks must still
# checkpoint, and leave no process behind). The run must finish with exactly the uninterrupted
# run's per-iteration losses and final metrics. Then a lone `segrun train` (no launcher) gets each
# configured signal straight: it must checkpoint and exit 75; with USR2 configured, SIGUSR1 is
# left alone (the default action kills the process: some stacks reserve USR1).
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
signals=(USR1 USR2 TERM KILL)
for cycle in 1 2 3 4; do
  # Stop somewhere in the next stretch of iterations; every cycle resumes the previous checkpoint.
  target=$((cycle * 15 + RANDOM % 10))
  signal=${signals[cycle - 1]}
  configured=$signal
  [ "$signal" = KILL ] && configured=USR1
  "$segrun" launch -n 2 -- train "$work/tiny.toml" cluster.slurm.signal="$configured" --run-dir "$work/runs/preempted" \
    --resume auto > "$work/cycle$cycle.out" 2>&1 &
  launcher=$!
  for _ in $(seq 1 900); do grep -q "iter $target/" "$work/cycle$cycle.out" 2>/dev/null && break; sleep 0.1; done
  kill -"$signal" "$launcher"
  wait "$launcher"
  code=$?
  if [ "$signal" = KILL ]; then
    # A launcher killed outright: mpirun gets the stop signal as its parent dies, and the ranks,
    # still writing to the stderr relay that outlives the launcher, checkpoint and exit 75.
    for _ in $(seq 1 600); do
      pgrep -f -- "--run-dir $work/runs/preempted" > /dev/null || break
      sleep 0.1
    done
    if pgrep -f -- "--run-dir $work/runs/preempted" > /dev/null; then
      echo "FAIL: processes left: $(pgrep -af -- "--run-dir $work/runs/preempted")"
      code=1
    elif [ "$code" -eq 137 ] && ! grep -q "SIGPIPE" "$work/cycle$cycle.out"; then
      code=75  # what the ranks ended with, as far as the status and the output tell
    fi
  fi
  injected=$((injected + 1))
  if [ "$code" -eq 75 ] && grep -q '^preempted' "$work/runs/preempted/status"; then
    survived=$((survived + 1))
  else
    echo "FAIL: cycle $cycle (SIG$signal): exit $code, status $(cat "$work/runs/preempted/status")"
    failures=$((failures + 1))
  fi
done
# Another world size would continue at another global batch: refused, the run left as it was.
"$segrun" train "$work/runs/preempted" --resume auto > "$work/one-rank.out" 2>&1
code=$?
check "a 1-rank resume of the 2-rank run is refused (exit $code, expected 2)" test "$code" -eq 2
check "the refusal names both world sizes" grep -qE \
  "was trained on 2 rank\(s\) \(global batch [0-9]+\), this resume runs on 1 \(global batch [0-9]+\)" "$work/one-rank.out"
check "the refused resume leaves the run preempted" grep -q '^preempted' "$work/runs/preempted/status"
"$segrun" launch -n 2 -- train "$work/tiny.toml" --run-dir "$work/runs/preempted" --resume auto > "$work/last.out" 2>&1
check "the preempted run completes" test $? -eq 0
check "status done" grep -q '^done' "$work/runs/preempted/status"

# Per-iteration losses (the last record of each iteration) and final metrics must be identical.
check "loss of every iteration equals the uninterrupted run's" \
  same_train_losses "$work/runs/straight/metrics.jsonl" "$work/runs/preempted/metrics.jsonl"
check "final mIoU and per-class IoU equal the uninterrupted run's" \
  test "$(json "$work/runs/straight/result.json" '(d["mIoU"], d["per_class"])')" = \
       "$(json "$work/runs/preempted/result.json" '(d["mIoU"], d["per_class"])')"
# A done run whose result.json was lost: `--resume auto` evaluates its final checkpoint again
# (nothing is trained) and writes the same result.
cp "$work/runs/preempted/result.json" "$work/result-before.json"
rm "$work/runs/preempted/result.json"
"$segrun" launch -n 2 -- train "$work/tiny.toml" --run-dir "$work/runs/preempted" --resume auto > "$work/again.out" 2>&1
check "a done run without result.json is evaluated again (exit $?)" grep -q "is done but has no result.json" "$work/again.out"
check "... to the same mIoU and per-class IoU" \
  test "$(json "$work/result-before.json" '(d["mIoU"], d["per_class"], d["iterations"])')" = \
       "$(json "$work/runs/preempted/result.json" '(d["mIoU"], d["per_class"], d["iterations"])')"
# One whose result.json is unreadable (cut short): evaluated again too, the cut file kept aside.
head -c 30 "$work/result-before.json" > "$work/runs/preempted/result.json"
"$segrun" launch -n 2 -- train "$work/tiny.toml" --run-dir "$work/runs/preempted" --resume auto > "$work/cut.out" 2>&1
check "a done run with a cut result.json is evaluated again (exit $?)" \
  grep -q "is done but .*result.json: not a segrun result.json (parse error" "$work/cut.out"
check "... the cut file set aside as result.json.unreadable" \
  cmp -s "$work/runs/preempted/result.json.unreadable" <(head -c 30 "$work/result-before.json")
check "... to the same mIoU" \
  test "$(json "$work/result-before.json" '(d["mIoU"], d["iterations"])')" = \
       "$(json "$work/runs/preempted/result.json" '(d["mIoU"], d["iterations"])')"
# One rank, no launcher: the configured signal itself reaches the trainer.
lone_stop() {  # SIGNAL_CONFIGURED SIGNAL_SENT EXPECTED_EXIT
  local dir="$work/runs/lone-$1-$2"
  "$segrun" train "$work/tiny.toml" cluster.slurm.signal="$1" --run-dir "$dir" > "$dir.out" 2>&1 &
  local pid=$!
  for _ in $(seq 1 900); do grep -q "iter 5/" "$dir.out" 2>/dev/null && break; sleep 0.1; done
  kill -"$2" "$pid"
  wait "$pid"
  local code=$?
  [ "$code" -eq "$3" ] || { echo "lone run, signal $1 configured, SIG$2 sent: exit $code, expected $3"; return 1; }
  [ "$3" -ne 75 ] || grep -q '^preempted' "$dir/status"
}
for signal in USR1 USR2 TERM; do
  check "lone train, cluster.slurm.signal = $signal: SIG$signal checkpoints and exits 75" lone_stop "$signal" "$signal" 75
done
check "lone train, cluster.slurm.signal = USR2: SIGUSR1 is not claimed (killed, 128+10)" lone_stop USR2 USR1 138

report_faults preempt_test
finish preempt_test
