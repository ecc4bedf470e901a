#!/usr/bin/env bash
# End-to-end tiny CLIP-SP sweep over k on 2 ranks producing its table and plot (issue #6's test):
# configs/sweeps/clip_sp/tiny_topk.toml trimmed to k in [2, 6] x 1 seed x 30 iterations (the
# spec checks each override against the base config alone, whose 30 warmup iterations must not
# exceed train.iters) on the
# tiny synthetic stores of tests/lib.sh, `segrun sweep run --on local --max-parallel 1`, then
# `segrun table SPEC --format md --plot k.svg`: one cell per k holding that run's mIoU from its
# result.json, the baseline (k = 6) marked, and a gnuplot SVG with one point per k, its script and
# data file next to it.
# Usage: clip_sp_topk_e2e_test.sh SEGRUN_BINARY SOURCE_DIR
set -uo pipefail
segrun="$(realpath "$1")"
src="$(realpath "$2")"
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/../lib.sh"
enter_work_dir clip-sp-topk

make_tiny_stores "$work" || { echo "cannot make the tiny stores"; exit 1; }

# The trimmed spec: the lead's file with a few lines replaced (each replacement must hit).
"$py" - "$src/configs/sweeps/clip_sp/tiny_topk.toml" "$src/configs/clip_sp/tiny.toml" "$work" > topk.toml <<'PY'
import re, sys
spec, base, work = sys.argv[1:4]
text = open(spec).read()
for pattern, line in [
    (r'^base = .*$', f'base = "{base}"'),
    (r'^seeds = .*$', 'seeds = [0]'),
    (r'^"data.store" = .*$', f'"data.store" = "{work}/train"'),
    (r'^"data.val_store" = .*$', f'"data.val_store" = "{work}/val"'),
    (r'^"train.iters" = .*$', '"train.iters" = 30'),
    (r'^"train.checkpoint_interval" = .*$', '"train.checkpoint_interval" = 15'),
    (r'^"model.clip_sp.top_k" = .*$', '"model.clip_sp.top_k" = [2, 6]'),
]:
    text, n = re.subn(pattern, line, text, flags=re.M)
    if n != 1:
        sys.exit(f"tiny_topk.toml: {pattern} matched {n} lines")
print(text, end="")
PY
check "trimmed copy of tiny_topk.toml" test -s topk.toml

"$segrun" sweep plan topk.toml > plan.txt 2>&1
check "plan: 2 new runs ($(tail -1 plan.txt))" grep -q "2 runs: 2 new, 0 done" plan.txt

start=$(date +%s)
"$segrun" sweep run topk.toml --on local --max-parallel 1 > run.txt 2>&1
code=$?
check "sweep run exit code 0 (got $code)" test "$code" -eq 0
echo "two tiny CLIP-SP runs (30 iterations, 2 ranks, one at a time) took $(( $(date +%s) - start )) s"
check "2/2 done" grep -q "2/2 done (0 reused), 0 failed" run.txt
check "one at a time, 2 ranks each" grep -q "(1 at a time x 2 rank(s)" run.txt
[ "$code" -eq 0 ] || { tail -5 runs/clip_sp_tiny_topk/*/sweep.log; }
for k in 2 6; do
  d=$(grep -l "\"model.clip_sp.top_k\": \"$k\"" runs/clip_sp_tiny_topk/*/overrides.json 2>/dev/null | xargs -r dirname)
  check "k=$k has one run folder" test "$(echo "$d" | grep -c .)" -eq 1
  check "k=$k done" grep -q '^done' "$d/status"
  check "k=$k ran on 2 ranks" test "$(json "$d/result.json" 'd["world_size"]')" = 2
  check "k=$k config has top_k = $k" grep -Eq "^[[:space:]]*top_k = $k$" "$d/config.toml"
done

"$segrun" table topk.toml --format md --plot k.svg > table.md 2> table.err
code=$?
check "table exit code 0 ($(head -1 table.err))" test "$code" -eq 0
cat table.md
# One row, one cell per k; each cell starts with the run's mIoU (2 decimals), k = 6 is the baseline.
check "table cells are the runs' mIoU" test "$("$py" - <<'PY'
import glob, json, os
rows = [l for l in open("table.md") if l.startswith("|")]
header = [c.strip() for c in rows[0].strip().strip("|").split("|")]
cells = [c.strip().replace("*", "") for c in rows[2].strip().strip("|").split("|")]
ok = len(rows) == 3 and header[1:] == ["model.clip_sp.top_k=2", "model.clip_sp.top_k=6"]
for d in glob.glob("runs/clip_sp_tiny_topk/*/"):
    k = json.load(open(d + "overrides.json"))["overrides"]["model.clip_sp.top_k"]
    miou = json.load(open(d + "result.json"))["mIoU"]
    cell = cells[header.index("model.clip_sp.top_k=" + k)]
    ok = ok and cell.split(",")[0] == "%.2f" % miou
    ok = ok and ((k == "6") == ("Δ" not in cell))
print(ok)
PY
)" = True
check "plot written" grep -q "^wrote k.svg (gnuplot script k.gp, data k.dat)" table.err
check "plot script and data kept" test -s k.gp -a -s k.dat
check "plot: 2 points at the runs' mIoU" test "$("$py" - <<'PY'
import glob, json
import xml.etree.ElementTree as ET
S = "{http://www.w3.org/2000/svg}"
r = ET.parse("k.svg").getroot()
groups = [g for g in r.iter(S + "g") if (g.get("id") or "").startswith("gnuplot_plot_")]
rows = [l.split("\t") for l in open("k.dat") if l[0].isdigit()]
want = {}
for d in glob.glob("runs/clip_sp_tiny_topk/*/"):
    want[json.load(open(d + "overrides.json"))["overrides"]["model.clip_sp.top_k"]] = json.load(open(d + "result.json"))["mIoU"]
ok = len(groups) == 1 and len(list(groups[0].iter(S + "use"))) == 2 and len(rows) == 2
ok = ok and all(abs(float(m) - want[x]) < 1e-6 and n == "1" for x, m, s, n, label in rows)
print(ok)
PY
)" = True

finish clip_sp_topk_e2e_test
