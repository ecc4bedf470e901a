#!/usr/bin/env bash
# End-to-end sweep through the segrun CLI on a tiny synthetic store: plan -> run (2 runs of 2 ranks,
# one at a time) -> reuse on re-run -> plan after editing the spec -> table (csv, md, json) + SVG plot (gnuplot)
# -> a failing run does not stop the others -> Ctrl-C stops a run resumably -> a re-run on another
# number of ranks leaves it -> re-run resumes it.
# Usage: sweep_e2e_test.sh SEGRUN_BINARY
set -uo pipefail
segrun="$(realpath "$1")"
. "$(dirname "$0")/../lib.sh"
enter_work_dir sweep-test

make_tiny_stores "$work" || { echo "cannot make the tiny stores"; exit 1; }

mkdir -p configs
tiny_train_config ../train ../val 6 2 3 0 3 > configs/tiny.toml

cat > sweep.toml <<'TOML'
name = "e2e"
base = "configs/tiny.toml"
seeds = [0]
[resources]
ranks = 2
[grid]
"model.dropout" = [0.0, 0.5]
[table]
rows = "model.dropout"
baseline = { "model.dropout" = 0.0 }
TOML

# plan: two new runs.
"$segrun" sweep plan sweep.toml > plan1.txt
check "plan exit code" test $? -eq 0
check "plan lists 2 new runs" grep -q "2 runs: 2 new, 0 done" plan1.txt

# run: both finish, one at a time.
start=$(date +%s)
"$segrun" sweep run sweep.toml --on local --max-parallel 1 > run1.txt 2>&1
code=$?
check "sweep run exit code 0 (got $code)" test "$code" -eq 0
echo "two tiny runs took $(( $(date +%s) - start )) s"
check "run output says 2/2 done" grep -q "2/2 done (0 reused), 0 failed" run1.txt
check "one at a time, 2 ranks each" grep -q "(1 at a time x 2 rank(s)" run1.txt
runs=$(ls -d runs/e2e/*/ | wc -l)
check "two run folders" test "$runs" -eq 2
for d in runs/e2e/*/; do
  check "$d done" grep -q '^done' "$d/status"
  check "$d has overrides.json" test -s "$d/overrides.json"
  check "$d has result.json" test -s "$d/result.json"
  check "$d ran on 2 ranks" test "$(json "$d/result.json" 'd["world_size"]')" = 2
done

# re-run: nothing repeated.
"$segrun" sweep run sweep.toml --on local > run2.txt 2>&1
check "re-run exit code 0" test $? -eq 0
check "re-run reuses both" grep -q "2 runs, 2 done, 0 to run" run2.txt
"$segrun" sweep status sweep.toml --format csv > status.csv
check "status shows done 6/6" test "$(grep -c ',done,6/6,' status.csv)" -eq 2
"$segrun" sweep status sweep.toml --metric mIou > status_typo.txt 2>&1
check "status --metric of a metric no run records: exit 2" test $? -eq 2
check "... naming the metric meant" grep -q "^segrun: error: --metric mIou: no run of the sweep records it (did you mean 'mIoU'?)" status_typo.txt

# editing the spec: the old runs are reused, the new value is added.
sed -i 's/\[0.0, 0.5\]/[0.0, 0.5, 0.2]/' sweep.toml
"$segrun" sweep plan sweep.toml > plan2.txt
check "edited plan: 1 new, 2 reused" grep -q "3 runs: 1 new, 2 done (reused)" plan2.txt
sed -i 's/\[0.0, 0.5, 0.2\]/[0.0, 0.5]/' sweep.toml

# editing the base config: finished runs are still reused, but flagged.
sed -i 's/^lr = 2e-3/lr = 3e-3/' configs/tiny.toml
"$segrun" sweep plan sweep.toml > plan3.txt
check "plan flags runs made with another base config" test "$(grep -c 'done (reuse; base config changed)' plan3.txt)" -eq 2
sed -i 's/^lr = 3e-3/lr = 2e-3/' configs/tiny.toml
"$segrun" sweep plan sweep.toml > plan4.txt
check "restored base: no flag" test "$(grep -c 'base config changed' plan4.txt)" -eq 0

# tables: values equal result.json.
"$segrun" table sweep.toml --format csv > table.csv
check "table exit code" test $? -eq 0
check "table header" test "$(head -1 table.csv)" = "model.dropout,mIoU,std,n,delta,baseline,within_spread,best"
for v in 0.0 0.5; do
  d=$(grep -l "\"model.dropout\": \"$v\"" runs/e2e/*/overrides.json | xargs dirname)
  expected=$("$py" -c "import json; print(round(json.load(open('$d/result.json'))['mIoU'], 6))")
  check "table cell for dropout $v = result.json mIoU $expected" grep -q "^$v,$expected," table.csv
done
check "baseline row" grep -qE "^0.0,[^,]*,[^,]*,[0-9]+,0,1,0,[01]$" table.csv
"$segrun" table runs/e2e --format md --plot plot.svg > table.md 2> table.err
check "table from runs folder" grep -q "| model.dropout |" table.md
check "plot written" grep -q "wrote plot.svg" table.err
check "gnuplot script and data kept next to the plot" test -s plot.gp -a -s plot.dat
check "plot is well-formed SVG with 2 points (gnuplot)" test "$("$py" -c "
import xml.etree.ElementTree as ET
S = '{http://www.w3.org/2000/svg}'
r = ET.parse('plot.svg').getroot()
g = [g for g in r.iter(S + 'g') if (g.get('id') or '').startswith('gnuplot_plot_')]
print(sum(len(list(x.iter(S + 'use'))) for x in g))")" = 2
one_run=$(ls -d runs/e2e/*/ | head -n 1)
one_miou=$("$py" -c "import json; print(round(json.load(open('${one_run}result.json'))['mIoU'], 6))")
"$segrun" table "$one_run" --format csv > table-one.csv
check "table of one run folder: its mIoU (exit $?)" test "$(sed -n 2p table-one.csv | cut -d, -f1)" = "$one_miou"
"$segrun" table sweep.toml --format json > table.json
check "json table has 2 cells" test "$(json table.json 'len(d["cells"])')" = 2

# A store that does not exist is refused before any run starts (exit 2), as `submit` refuses it.
cat > nostore.toml <<'TOML'
name = "nostore"
base = "configs/tiny.toml"
[[variants]]
"data.store" = "/nonexistent/store"
[[variants]]
"model.dropout" = 0.3
TOML
"$segrun" sweep run nostore.toml --on local --max-parallel 1 > nostore.txt 2>&1
code=$?
check "sweep on a missing store exits 2 (got $code)" test "$code" -eq 2
check "the refusal names the run and the store" \
  grep -q "^segrun: error: nostore.toml: run .*: data.store = /nonexistent/store: no such store folder" nostore.txt
check "no run of it started" test -z "$(ls runs/nostore)"

# A failing run (a store folder whose manifest is malformed: the launcher's check sees a store,
# the run cannot read it) is marked failed with its reason; the other run finishes.
mkdir -p empty_store && echo '{}' > empty_store/manifest.json
cat > bad.toml <<'TOML'
name = "bad"
base = "configs/tiny.toml"
[[variants]]
"data.store" = "empty_store"
[[variants]]
"model.dropout" = 0.3
TOML
"$segrun" sweep run bad.toml --on local --max-parallel 1 > bad.txt 2>&1
code=$?
check "sweep with a failed run exits 1 (got $code)" test "$code" -eq 1
check "one failed, one done" grep -q "1/2 done (0 reused), 1 failed" bad.txt
failed_dir=$(grep -l "empty_store" runs/bad/*/overrides.json | xargs dirname)
check "failed status names the store" grep -q "^failed .*empty_store" "$failed_dir/status"
"$segrun" sweep plan bad.toml > bad-plan.txt
check "failed run will be retried" grep -q "retry (failed:" bad-plan.txt

# Ctrl-C: the running run checkpoints (status preempted), the sweep exits 75, re-run resumes.
cp configs/tiny.toml configs/long.toml
sed -i 's/^iters = 6/iters = 4000/; s/^interval = 3/interval = 1/' configs/long.toml
cat > long.toml <<'TOML'
name = "long"
base = "configs/long.toml"
[grid]
"model.dropout" = [0.1, 0.2]
TOML
"$segrun" sweep run long.toml --on local --max-parallel 1 > long1.txt 2>&1 &
sweeper=$!
for _ in $(seq 1 600); do grep -qs "iter 3/" runs/long/*/logs/rank-0.log && break; sleep 0.1; done
kill -INT "$sweeper"
wait "$sweeper"
code=$?
check "interrupted sweep exits 75 (got $code)" test "$code" -eq 75
check "interrupted: 1 preempted, 1 not started" grep -q "1 preempted, 1 not started" long1.txt
check "the progress line does not count the preempted run as ended" bash -c "! grep -q 'sweep long: 1/2 runs' long1.txt"
long_dir=$(grep -l '"model.dropout": "0.1"' runs/long/*/overrides.json | xargs dirname)
check "status preempted" grep -q "^preempted" "$long_dir/status"
ckpt=$(ls "$long_dir/checkpoints/" | grep iter_ | sed 's/iter_\([0-9]*\).pt/\1/' | sort -n | tail -1)
check "preemption checkpoint exists" test -n "$ckpt"
"$segrun" sweep plan long.toml > long-plan.txt
check "plan: 1 to resume, 1 new" grep -q "2 runs: 1 new, 0 done (reused), 1 to resume" long-plan.txt
# Shorten the base so that the resumed run ends soon (ids do not depend on the base).
sed -i "s/^iters = 4000/iters = $((ckpt + 2))/" configs/long.toml
# On 2 ranks per run now: the preempted run's checkpoints are of 1 rank (another global batch), so
# it is left as it is, not failed by a resume the trainer refuses; the new run trains on 2 ranks.
cp long.toml long-1rank.toml
printf '[resources]\nranks = 2\n' >> long.toml
"$segrun" sweep plan long.toml > long-plan-2ranks.txt
check "plan: not run, with why" grep -q "not run (iter ${ckpt}; checkpoints of 1 rank(s), \[resources\] ranks = 2" long-plan-2ranks.txt
check "... and counted so" grep -q "2 runs: 1 new, 0 done (reused), 0 to resume, 1 not run, 0 to retry" long-plan-2ranks.txt
"$segrun" sweep run long.toml --on local --max-parallel 1 > long-2ranks.txt 2>&1
code=$?
check "a resume on another world size is not run: exit 1 (got $code)" test "$code" -eq 1
check "... saying why" grep -q "^not run: .*$(basename "$long_dir"): its checkpoints were written by 1 rank(s) (global batch 2), the sweep now runs it on 2 (global batch 4)" long-2ranks.txt
check "... and leaving it preempted" grep -q "^preempted" "$long_dir/status"
check "... counted as not run, not failed" grep -q "1/2 done (0 reused), 0 failed, 0 preempted, 0 not started, 1 not run" long-2ranks.txt
mv long-1rank.toml long.toml
"$segrun" sweep run long.toml --on local --max-parallel 2 > long2.txt 2>&1
code=$?
check "resumed sweep exit code 0 (got $code)" test "$code" -eq 0
check "resumed from the preemption checkpoint" grep -q "resumed from .*iter_${ckpt}.pt" "$long_dir/logs/rank-0.log"
check "resumed run done" grep -q '^done' "$long_dir/status"

finish sweep_e2e_test
