#!/usr/bin/env bash
# mIoU (single scale) and mIoU_ms (multi-scale + flip) through the CLI, as the papers' tables
# report them: a 2-run sweep over eval.report_ms on the tiny stores -> the report_ms run's final
# validation has mIoU_ms in result.json and metrics.jsonl -> `segrun table --metric mIoU_ms`
# refuses, naming the run that lacks it -> `segrun eval --ms` of that run's final checkpoint
# records it (metrics.jsonl "eval" line, result.json) -> the table shows both runs; eval --ms of
# the other run reproduces its training-time mIoU_ms; an unwritable run; config validation.
# Usage: ms_eval_test.sh SEGRUN_BINARY
set -uo pipefail
segrun="$(realpath "$1")"
. "$(dirname "$0")/../lib.sh"
enter_work_dir ms-eval-test

make_tiny_stores "$work" || { echo "cannot make the tiny stores"; exit 1; }
mkdir -p configs
tiny_train_config ../train ../val 4 1 0 2 2 > configs/tiny.toml
cat > sweep.toml <<'TOML'
name = "ms"
base = "configs/tiny.toml"
seeds = [0]
[resources]
ranks = 1
[grid]
"eval.report_ms" = [false, true]
TOML

"$segrun" sweep run sweep.toml --on local --max-parallel 1 > sweep.out 2>&1
check "sweep run exit code" test $? -eq 0
run_of() { "$py" -c "
import glob, json, os
for d in sorted(glob.glob('runs/ms/*/')):
    if json.load(open(d + 'overrides.json'))['overrides']['eval.report_ms'] == '$1': print(d.rstrip('/'))"; }
off=$(run_of false)
on=$(run_of true)
check "two runs found ($off, $on)" test -n "$off" -a -n "$on"

# Training with eval.report_ms: the final validation has both figures, the periodic one only SS.
check "report_ms run: result.json has mIoU and mIoU_ms" "$py" -c "
import json, sys; d = json.load(open('$on/result.json'))
sys.exit(0 if all(isinstance(d[k], float) for k in ('mIoU', 'mIoU_ms', 'mAcc_ms', 'aAcc_ms')) and d['ms_scales'] == [0.5, 0.75, 1.0, 1.25, 1.5, 1.75] and d['ms_flip'] is True else 1)"
check "report_ms run: only the final val line has mIoU_ms" "$py" -c "
import json, sys; v = [x for x in map(json.loads, open('$on/metrics.jsonl')) if x['mode'] == 'val']
sys.exit(0 if [x['iter'] for x in v] == [2, 4] and 'mIoU_ms' not in v[0] and 'mIoU_ms' in v[1] else 1)"
check "report_ms run: the training output ends with the SS / MS summary" \
  grep -rq "multi-scale+flip (MS)" "$on" runs/ms/logs 2> /dev/null
check "plain run: no mIoU_ms" "$py" -c "
import json, sys; sys.exit(0 if 'mIoU_ms' not in json.load(open('$off/result.json')) else 1)"

# A table of mIoU_ms over runs of which one lacks it: one line naming that run.
"$segrun" table runs/ms --metric mIoU_ms > table_err.out 2> table_err.err
code=$?
check "table --metric mIoU_ms refuses a run without it (exit $code)" test "$code" -ne 0
check "the error names the run and the metric" grep -q "run $off has no 'mIoU_ms' in result.json" table_err.err
check "the error is one line" test "$(wc -l < table_err.err)" -eq 1

# segrun eval --ms of the plain run's final checkpoint records mIoU_ms in the run.
"$segrun" eval "$off/config.toml" --checkpoint "$off/checkpoints/iter_4.pt" --ms --json > eval_off.json 2> eval_off.err
check "eval --ms exit code" test $? -eq 0
check "eval --ms JSON has mIoU and mIoU_ms" "$py" -c "
import json, sys; d = json.load(open('eval_off.json'))
sys.exit(0 if isinstance(d['mIoU'], float) and isinstance(d['mIoU_ms'], float) and 'per_class_ms' in d else 1)"
check "eval's single-scale mIoU equals the training's" test \
  "$(json eval_off.json 'round(d["mIoU"], 6)')" = "$(json "$off/result.json" 'round(d["mIoU"], 6)')"
check "result.json now has the eval's mIoU_ms" test \
  "$(json eval_off.json 'round(d["mIoU_ms"], 6)')" = "$(json "$off/result.json" 'round(d["mIoU_ms"], 6)')"
check "metrics.jsonl has the eval line" "$py" -c "
import json, sys; e = [x for x in map(json.loads, open('$off/metrics.jsonl')) if x['mode'] == 'eval']
sys.exit(0 if len(e) == 1 and e[0]['iter'] == 4 and 'mIoU_ms' in e[0] and e[0]['checkpoint'].endswith('iter_4.pt') else 1)"

# eval --ms reproduces the training-time mIoU_ms; --no-record leaves the run untouched.
lines=$(wc -l < "$on/metrics.jsonl")
"$segrun" eval "$on/config.toml" --checkpoint "$on/checkpoints/iter_4.pt" --ms --no-record > eval_on.txt 2>&1
check "eval --ms (text) exit code" test $? -eq 0
check "text output has the SS and MS rows" grep -q "multi-scale+flip (MS)" eval_on.txt
ms_text=$(grep "multi-scale+flip (MS)" eval_on.txt | awk '{print $4}')
check "eval mIoU_ms ($ms_text) equals training's" test "$ms_text" = "$(json "$on/result.json" '"%.2f" % d["mIoU_ms"]')"
check "--no-record wrote nothing" test "$(wc -l < "$on/metrics.jsonl")" -eq "$lines"

# Now every run has it: the table shows both; mIoU still tabulates as before.
"$segrun" table runs/ms --metric mIoU_ms --format csv > table_ms.csv 2> table_ms.err
check "table --metric mIoU_ms exit code" test $? -eq 0
cat table_ms.csv
for d in "$off" "$on"; do
  v=$(json "$d/result.json" 'round(d["mIoU_ms"], 6)')
  check "table shows $d's mIoU_ms $v" grep -qE ",$v," table_ms.csv
done
"$segrun" table runs/ms --metric mIoU --format csv > table_ss.csv 2>&1
check "table --metric mIoU still works" test $? -eq 0

# A run that cannot be written: recording in the checkpoint's own run is best effort (a warning,
# exit 0: a full disk must not lose the printed evaluation), an explicit --run-dir is an error.
cp -r "$off" broken && rm broken/metrics.jsonl && mkdir broken/metrics.jsonl
"$segrun" eval broken/config.toml --checkpoint broken/checkpoints/iter_4.pt --json > broken.json 2> broken.err
check "unwritable checkpoint run: exit 0" test $? -eq 0
check "unwritable checkpoint run: warning" grep -q "evaluation not recorded in broken" broken.err
check "unwritable checkpoint run: JSON still printed" test -n "$(json broken.json 'd["mIoU"]')"
"$segrun" eval broken/config.toml --checkpoint broken/checkpoints/iter_4.pt --run-dir broken > /dev/null 2> broken2.err
check "unwritable --run-dir: error" test $? -ne 0
# A folder of the user's own files is not a run: refused, their metrics.jsonl left as it was.
mkdir mine && echo mine > mine/metrics.jsonl
"$segrun" eval broken/config.toml --checkpoint broken/checkpoints/iter_4.pt --run-dir mine > /dev/null 2> mine.err
check "--run-dir of the user's own files: exit 2" test $? -eq 2
check "--run-dir of the user's own files: one line naming it" grep -q "^segrun: error: --run-dir mine: not a segrun run folder" mine.err
check "--run-dir of the user's own files: left as it was" test "$(cat mine/metrics.jsonl)" = mine

# Config validation.
"$segrun" config configs/tiny.toml 'eval.ms_scales=[]' > /dev/null 2> cfg1.err
check "empty eval.ms_scales refused" grep -q "eval.ms_scales: expected a non-empty array" cfg1.err
"$segrun" config configs/tiny.toml 'eval.ms_scales=[0.5, 0]' > /dev/null 2> cfg2.err
check "zero scale refused" grep -q "eval.ms_scales: value 0 is out of range" cfg2.err
check "defaults written out" test -n "$("$segrun" config configs/tiny.toml | grep -F 'ms_scales = [ 0.5, 0.75, 1.0, 1.25, 1.5, 1.75 ]')"

finish ms_eval_test
