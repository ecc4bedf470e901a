#!/usr/bin/env bash
# Fault test of the collective watchdog through the CLI: a 2-rank tiny training run with
# dist.timeout_s=10; rank 1 is (a) killed with SIGKILL, (b) stopped with SIGSTOP, mid-training.
# Each time the launcher must exit non-zero within timeout + 15 s and its output must name
# rank 1 (and, for the stall, which no MPI runtime notices by itself, the collective).
# Usage: watchdog_test.sh SEGRUN_BINARY
set -uo pipefail
segrun="$1"
work="$(mktemp -d /tmp/segrun-watchdog-test.XXXXXX)"
stopped_pid=""
cleanup() {
  if [ -n "$stopped_pid" ]; then kill -CONT "$stopped_pid" 2>/dev/null; kill -KILL "$stopped_pid" 2>/dev/null; fi
  rm -rf "$work"
}
trap cleanup EXIT
timeout_s=10
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../faults/report.sh"

make_tiny_stores "$work" || { echo "cannot make the tiny stores"; exit 1; }
tiny_config train > "$work/tiny.toml"
cat >> "$work/tiny.toml" <<TOML
[train]
iters = 100000
[log]
interval = 1
TOML

# pid of world rank $2 among the processes of run directory $1 (Open MPI exports the rank).
rank_pid() {
  local pid
  for pid in $(pgrep -f -- "--run-dir $1"); do
    if tr '\0' '\n' < "/proc/$pid/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$2"; then
      echo "$pid"
      return 0
    fi
  done
  return 1
}

# run_fault NAME SIGNAL: starts training, waits for iteration 3, signals rank 1, waits for the
# launcher; sets $code, $elapsed, $out.
run_fault() {
  local name="$1" signal="$2" run="$work/runs/$1"
  out="$work/$name.out"
  (cd "$work" && exec "$segrun" launch -n 2 -- train tiny.toml --run-dir "$run" dist.timeout_s=$timeout_s) > "$out" 2>&1 &
  local launcher=$!
  for _ in $(seq 1 600); do grep -q "iter 3/" "$out" 2>/dev/null && break; sleep 0.1; done
  local victim
  victim=$(rank_pid "$run" 1)
  if [ -z "$victim" ]; then
    echo "FAIL: $name: rank 1 process not found"; failures=$((failures + 1))
    kill -KILL "$launcher" 2>/dev/null; wait "$launcher"; return
  fi
  [ "$signal" = STOP ] && stopped_pid="$victim"
  local start=$SECONDS
  kill -"$signal" "$victim"
  # Guard against a hang: give up (and fail) well after the deadline.
  local limit=$((timeout_s + 60))
  while kill -0 "$launcher" 2>/dev/null && [ $((SECONDS - start)) -lt $limit ]; do sleep 0.2; done
  if kill -0 "$launcher" 2>/dev/null; then
    echo "FAIL: $name: launcher still running after ${limit}s (hang)"; failures=$((failures + 1))
    pkill -KILL -P "$launcher" 2>/dev/null; kill -KILL "$launcher" 2>/dev/null
  fi
  wait "$launcher"
  code=$?
  elapsed=$((SECONDS - start))
  if [ -n "$stopped_pid" ]; then kill -CONT "$stopped_pid" 2>/dev/null; kill -KILL "$stopped_pid" 2>/dev/null; stopped_pid=""; fi
  echo "$name: exit code $code after ${elapsed}s"
  grep -E "timed out|did not arrive|noticed|error|has waited" "$out" | head -5
}

before=$failures
run_fault killed KILL
check "killed: non-zero exit (got $code)" test "$code" -ne 0
check "killed: down within timeout + 15 s (took ${elapsed}s)" test "$elapsed" -le $((timeout_s + 15))
check "killed: output names rank 1" grep -qE "rank 1|rank \[1\]|ranks \[1\]" "$out"

injected=$((injected + 1)); [ "$failures" -eq "$before" ] && survived=$((survived + 1))
before=$failures
run_fault stalled STOP
check "stalled: non-zero exit (got $code)" test "$code" -ne 0
check "stalled: down within timeout + 15 s (took ${elapsed}s)" test "$elapsed" -le $((timeout_s + 15))
check "stalled: watchdog names the collective" grep -qE "collective (allreduce|broadcast|allgather|barrier) #[0-9]+" "$out"
check "stalled: watchdog names rank 1" grep -q "rank \[1\] did not arrive" "$out"
check "stalled: early warning at timeout/2" grep -qE "has waited [0-9]+ s on rank 0 for rank \[1\]" "$out"

injected=$((injected + 1)); [ "$failures" -eq "$before" ] && survived=$((survived + 1))
report_faults watchdog_test
finish watchdog_test
