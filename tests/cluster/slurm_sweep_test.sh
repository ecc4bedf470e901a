#!/usr/bin/env bash
# A real one-node Slurm (scripts/slurm-local.sh) runs a tiny 3-run sweep submitted with
# `segrun submit SPEC --on slurm` as a job array (at most 2 tasks at once on the 2 CPUs). Two runs
# are preempted once they have a checkpoint: run 0 by `scontrol requeue` (Slurm sends SIGTERM:
# the ranks checkpoint, Slurm requeues), run 1 by SIGUSR2 to its batch shell (the sweep sets
# cluster.slurm.signal = "USR2": what --signal=B:USR2@grace does before the time limit: the script
# forwards it, the ranks checkpoint, the script requeues itself). Slurm holds requeued jobs back for 120 s; the test moves their begin
# time to 3 s after the requeue. Then all three must finish with results, both preempted runs must
# have resumed from their checkpoint, their losses and mIoU must equal uninterrupted local runs of
# the same configs, and `segrun sweep status` / `segrun status` / `segrun cancel` must report the
# jobs. Then one run (not a sweep) on 2 ranks with mpirun inside the job, and `segrun launch` inside
# an allocation.
# Exit 77 (ctest: skipped) only when Slurm cannot start here.
# Usage: slurm_sweep_test.sh SEGRUN_BINARY SLURM_LOCAL_SCRIPT
set -uo pipefail
segrun="$(realpath "$1")"
slurm_local="$(realpath "$2")"
. "$(dirname "$0")/../lib.sh"
t0=$(date +%s)

# One thread per rank everywhere: the uninterrupted reference must compute bit for bit the same.
export OMP_NUM_THREADS=1
export SEGRUN_SLURM_DIR="${SEGRUN_SLURM_DIR:-/tmp/segrun-slurm}"
was_running=0
"$slurm_local" status > /dev/null 2>&1 && was_running=1
if ! start_out="$("$slurm_local" start 2>&1)"; then
  echo "$start_out"
  echo "SKIPPED: a local Slurm cluster cannot start here (see above); install slurm-wlm and munge"
  exit 77
fi
export SLURM_CONF="$SEGRUN_SLURM_DIR/slurm.conf"

work="$(mktemp -d /tmp/segrun-slurm-test.XXXXXX)"
cleanup() {
  [ -f "$work/sweep.toml" ] && (cd "$work" && "$segrun" cancel sweep.toml > /dev/null 2>&1)
  rm -rf "$work"
  [ "$was_running" -eq 0 ] && "$slurm_local" stop > /dev/null 2>&1
}
trap cleanup EXIT
cd "$work" || exit 1

make_tiny_stores "$work" || { echo "cannot make the tiny stores"; exit 1; }
mkdir -p configs
# 200 iterations, a checkpoint every 10: a run takes ~4 s here, so the test has seconds, not the
# fraction of one that 16 iterations gave, to preempt it between its first checkpoint and its end.
iters=200
tiny_train_config ../train ../val "$iters" 2 10 0 1 > configs/tiny.toml
# The runs folder has a hostile name: it reaches the job only single-quoted (no #SBATCH line holds a path).
rdir='runs/it'"'"'s a $(touch PWNED) `touch PWNED2` dir'
cat > sweep.toml <<'TOML'
name = "slurmtest"
base = "configs/tiny.toml"
runs_dir = "runs/it's a $(touch PWNED) `touch PWNED2` dir"
seeds = [0]
[fixed]
"cluster.slurm.max_parallel" = 2
"cluster.slurm.signal_grace_s" = 30
"cluster.slurm.signal" = "USR2"
[grid]
"model.dropout" = [0.0, 0.1, 0.2]
TOML

# --dry-run prints the array script and writes nothing.
"$segrun" submit sweep.toml --on slurm --dry-run > dry.txt 2> dry.err
check "dry run exit code" test $? -eq 0
check "dry run: stdout is the script" test "$(head -1 dry.txt)" = '#!/bin/bash'
check "dry run: bash accepts it" bash -n dry.txt
check "dry run: an array of 3, 2 at once" grep -q '^#SBATCH --array=0-2%2$' dry.txt
check "dry run: USR2 (cluster.slurm.signal) 30 s before the limit" grep -q '^#SBATCH --signal=B:USR2@30$' dry.txt
check "dry run: srun with pmix or none" grep -q "^launch=(srun --mpi=" dry.txt
check "dry run wrote nothing" test ! -e runs

# Submit. The cluster's MpiDefault decides srun's plugin; use it explicitly.
mpi="$(sed -n 's/^MpiDefault=//p' "$SLURM_CONF")"
"$segrun" submit sweep.toml --on slurm --mpi "$mpi" > submit.txt 2>&1
code=$?
cat submit.txt
check "submit exit code 0 (got $code)" test "$code" -eq 0
job="$(sed -n 's/.*as Slurm job array \([0-9]*\) .*/\1/p' submit.txt)"
check "submit printed the array job id" test -n "$job"
[ -n "$job" ] || { finish slurm_sweep_test; exit 1; }
mapfile -t runs < "$rdir/slurm/submit-1.tasks"
check "tasks file lists 3 runs" test "${#runs[@]}" -eq 3
check "job script is 0750" test "$(stat -c %a "$rdir/slurm/submit-1.sbatch")" = 750
check "tasks file is 0640" test "$(stat -c %a "$rdir/slurm/submit-1.tasks")" = 640
check "runs folder not world-writable" test -z "$(find runs -perm -o+w)"
for r in "${runs[@]}"; do
  check "$r has its job recorded" grep -q "\"job_id\": \"${job}_" "$rdir/$r/slurm_job.json"
done
run0="$rdir/${runs[0]}"
run1="$rdir/${runs[1]}"
run2="$rdir/${runs[2]}"

# A second submit while they are queued submits nothing.
"$segrun" submit sweep.toml --on slurm > submit2.txt 2>&1
check "resubmit while queued: nothing new" grep -q "3 already queued, 0 to submit" submit2.txt

has_checkpoint() { compgen -G "$1/checkpoints/iter_*.pt" > /dev/null; }
job_state() { squeue --noheader --array --states=all -j "$1" -O "State:|" 2> /dev/null | head -1 | tr -d '|'; }
# Requeued jobs wait 120 s for their begin time; move it to 3 s from now, once per requeue (a begin
# time already that close is left alone). Not to now: slurmd refuses a job credential issued in the
# same second as the revocation of the job's previous one ("Killing non-startable batch job: Job
# credential revoked", and the task ends FAILED), which is what Slurm's hold guards against.
release_requeued() {
  local now begin
  now="$(date +%s)"
  squeue --noheader --array --me -t PENDING -O "JobArrayID:|,Reason:|,StartTime:|" 2> /dev/null |
    while IFS='|' read -r id reason start _; do
      [ "$reason" = BeginTime ] || continue
      begin="$(date -d "$start" +%s 2> /dev/null)" || continue
      [ "$begin" -gt $((now + 5)) ] && scontrol update JobId="$id" StartTime=now+3 > /dev/null 2>&1
    done
}
wait_for() {  # wait_for SECONDS CMD...: poll until CMD succeeds
  local deadline=$(( $(date +%s) + $1 )); shift
  until "$@"; do
    [ "$(date +%s)" -ge "$deadline" ] && return 1
    release_requeued
    sleep 0.3
  done
}
running_with_checkpoint() { [ "$(job_state "$1")" = RUNNING ] && has_checkpoint "$2" && grep -q '^running' "$2/status"; }

# Runs 0 and 1 run side by side; once both have a checkpoint, preempt both at once (one after the
# other would give the second the time the first took to be caught). Run 0: scontrol requeue.
# Run 1: SIGUSR2 to the batch shell, like --signal=B:USR2@grace (the sweep sets
# cluster.slurm.signal = "USR2"; the ranks then do not claim SIGUSR1).
both_running_with_checkpoint() {
  running_with_checkpoint "${job}_0" "$run0" && running_with_checkpoint "${job}_1" "$run1"
}
check "runs 0 and 1 run and checkpoint" wait_for 90 both_running_with_checkpoint
scontrol requeue "${job}_0"
check "scontrol requeue ${job}_0 accepted" test $? -eq 0
scancel --batch --signal=USR2 "${job}_1"
check "USR2 to ${job}_1 sent" test $? -eq 0

# While a preempted run waits: status shows it requeued (or already running again).
wait_for 30 grep -q '^preempted' "$run0/status"
squeue --noheader --array --states=all --me -O "JobArrayID:|,State:|,Reason:|,RestartCnt:|,NodeList:|" > squeue-sample.txt
"$segrun" sweep status sweep.toml > status-mid.txt 2>&1
echo "--- squeue during the test (a recorded sample)"; cat squeue-sample.txt
echo "--- sweep status while preempted"; cat status-mid.txt
check "status lists the array jobs" grep -q "${job}_0" status-mid.txt
check "status shows a requeued or restarted run" grep -Eq "requeued|restart 1|running" status-mid.txt

all_done() { for r in "$run0" "$run1" "$run2"; do grep -q '^done' "$r/status" 2> /dev/null || return 1; done; }
check "all three runs finish" wait_for 150 all_done
for r in "$run0" "$run1" "$run2"; do
  check "$r done" grep -q '^done' "$r/status"
  check "$r has a result with mIoU" test "$(json "$r/result.json" "'mIoU' in d and d['iterations'] == $iters")" = True
done
for r in "$run0" "$run1"; do
  check "$r resumed from its checkpoint" grep -q "resumed from .*iter_" "$r/logs/rank-0.log"
  check "$r ran twice (restart 1 in slurm.log)" grep -q "restart 1)" "$r/slurm.log"
done
check "run 2 ran once" test "$(grep -c 'segrun job .* (slurm job' "$run2/slurm.log")" -eq 1
check "run 0 was stopped by SIGTERM and not requeued twice" grep -q "stopped by SIGTERM" "$run0/slurm.log"
check "run 1 got USR2 and requeued itself" grep -q "checkpointed; requeueing" "$run1/slurm.log"
check "run 1's batch shell forwarded SIGUSR2" grep -q "SIGUSR2 received" "$run1/slurm.log"
echo "--- $run1/slurm.log"; cat "$run1/slurm.log"

# Each resumed run equals an uninterrupted one: same losses at every iteration, same mIoU.
compare='
import json, sys
def losses(path):
    out = {}
    for line in open(path):
        d = json.loads(line)
        if d.get("mode") == "train" and "loss" in d: out[d["iter"]] = d["loss"]
    return out
a, b = losses(sys.argv[1] + "/metrics.jsonl"), losses(sys.argv[2] + "/metrics.jsonl")
ra, rb = json.load(open(sys.argv[1] + "/result.json")), json.load(open(sys.argv[2] + "/result.json"))
ok = sorted(a) == sorted(b) == list(range(1, int(sys.argv[3]) + 1)) and all(a[i] == b[i] for i in a) and ra["mIoU"] == rb["mIoU"]
print(ok, len(a), len(b), ra["mIoU"], rb["mIoU"])
'
for i in 0 1; do
  r="$rdir/${runs[$i]}"
  "$segrun" train "$r/config.toml" --run-dir "$work/reference$i" > "reference$i.log" 2>&1
  check "uninterrupted reference of run $i" test $? -eq 0
  cmp_out="$("$py" -c "$compare" "$r" "$work/reference$i" "$iters")"
  echo "run $i resumed vs uninterrupted: $cmp_out"
  check "preempted run $i equals the uninterrupted run (losses, mIoU)" test "${cmp_out%% *}" = True
done

"$segrun" sweep status sweep.toml --format csv > status.csv 2>&1
cat status.csv
check "sweep status: 3 done with job ids and logs" test "$(grep -c ",done,$iters/$iters,.*,${job}_[0-2],.*slurm.log" status.csv)" -eq 3
"$segrun" status "$run1" > run-status.txt 2>&1
cat run-status.txt
check "segrun status RUN: done" grep -q "^state *done" run-status.txt
check "segrun status RUN: job id" grep -q "^job *${job}_1" run-status.txt
check "segrun status RUN: log" grep -q "^log .*slurm.log" run-status.txt
"$segrun" submit sweep.toml --on slurm > submit3.txt 2>&1
check "resubmit when done: nothing to submit" grep -q "3 done, 0 already queued, 0 to submit" submit3.txt
"$segrun" cancel sweep.toml > cancel.txt 2>&1
check "cancel when done: nothing to cancel" grep -q "nothing to cancel" cancel.txt

# One run (not a sweep) on 2 ranks, started by mpirun inside the batch script; and `segrun launch`
# inside an allocation, which starts its 2 ranks with srun.
"$segrun" submit configs/tiny.toml train.iters=4 --on slurm --launcher mpirun -n 2 --run-dir "$work/single" > single.txt 2>&1
check "submit one run exit code" test $? -eq 0
check "one run: job script in the run directory" test -x "$work/single/job.sbatch"
sbatch --parsable -n 2 -o "$work/launch.out" \
  --wrap "cd '$work' && '$segrun' launch -n 2 -- train configs/tiny.toml train.iters=2 train.warmup_iters=1 --run-dir '$work/launched'" > /dev/null
check "sbatch --wrap segrun launch" test $? -eq 0
both_done() { grep -q '^done' "$work/single/status" 2> /dev/null && grep -q '^done' "$work/launched/status" 2> /dev/null; }
check "one run and the launched run finish" wait_for 90 both_done
check "one run: 2 ranks under mpirun" test "$(json "$work/single/result.json" 'd["world_size"]')" = 2
check "launch inside the allocation: 2 ranks" test "$(json "$work/launched/result.json" 'd["world_size"]')" = 2
check "launch inside the allocation used srun" grep -q "inside Slurm job .*srun --mpi=.* --ntasks=2" "$work/launch.out"
"$segrun" status "$work/single" > single-status.txt 2>&1
check "segrun status of one run: done, job id" grep -Eq "^job +[0-9]+ \(slurm completed" single-status.txt

check "no injected command ran" test -z "$(find "$work" /tmp -maxdepth 3 -name 'PWNED*' 2> /dev/null)"

echo "slurm sweep test took $(( $(date +%s) - t0 )) s"
finish slurm_sweep_test
