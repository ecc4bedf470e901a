#!/usr/bin/env bash
# The MTA-CLIP paper's sweeps (configs/sweeps/mta_clip/*.toml): every spec plans against the
# config schema with the expected runs (their swept values, all new), and `segrun table SPEC`
# renders the paper's tables from fabricated run folders holding the paper's numbers (status
# done + result.json, as a finished run leaves them), compared with hand-written golden files in
# golden/mta_*: Table 3 right (components), Table 4 left (attention) and right (prompts x
# negatives), Tables 1-2 (Mask2Former vs MTA-CLIP per backbone, SS and MS; Table 1 with its
# ViT-B/16 row). Also the tiny CPU
# sweep's markdown table. No training.
# Usage: mta_clip_tables_test.sh SEGRUN_BINARY SOURCE_DIR
set -uo pipefail
segrun="$(realpath "$1")"
src="$(realpath "$2")"
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/../lib.sh"
enter_work_dir mta-clip-tables
specs="$src/configs/sweeps/mta_clip"

# Per spec: the plan's overrides column of every expected configuration -> (mIoU, mIoU_ms).
# The paper's numbers (Tables 1-4; Table 4 right's single-prompt run is Table 3's
# "+ Text-Enhanced + MTCL"); the ablation tables report SS only. The tiny sweep's are made up.
cat > values.py <<'PY'
M2F = "model.head=mask2former, model.mask2former.mask_loss_norm=num_masks"
M2F_STOCK = M2F + ", model.mask2former.supervise_initial=true"  # the paper baselines: 10 predictions
TE = "model.head=mta_clip, model.mta_clip.contrastive=false, model.mta_clip.prompts=1, model.mta_clip.text_enhanced=true"
MTCL = "model.head=mta_clip, model.mta_clip.contrastive=true, model.mta_clip.prompts=1, model.mta_clip.text_enhanced=true"
MTPL = "model.head=mta_clip, model.mta_clip.contrastive=true, model.mta_clip.prompts=3, model.mta_clip.text_enhanced=true"
def prompts(neg, k): return "model.mta_clip.negatives=%s, model.mta_clip.prompts=%d" % (neg, k)
def main(backbone, head, archive=None):
    return "model.backbone=clip_%s, model.head=%s, %smodel.pretrained=pretrained/%s.pt" % (
        backbone, head, "model.mask2former.mask_loss_norm=num_masks, model.mask2former.supervise_initial=true, "
        if head == "mask2former" else "",
        archive or backbone.upper())
V = {
  "table3_components": {M2F_STOCK: (47.4, None), TE: (48.1, None), MTCL: (48.6, None), MTPL: (49.1, None)},
  "table4_attention": {M2F_STOCK: (47.4, None),
                       "model.head=mta_clip, model.mta_clip.joint_attention=false": (48.6, None),
                       "model.head=mta_clip, model.mta_clip.joint_attention=true": (49.1, None)},
  "table4_prompts": {prompts("mixneg", 1): (48.6, None),
                     prompts("separateneg", 2): (48.5, None), prompts("separateneg", 3): (48.7, None),
                     prompts("separateneg", 4): (48.9, None), prompts("separateneg", 5): (48.2, None),
                     prompts("mixneg", 2): (48.6, None), prompts("mixneg", 3): (49.1, None),
                     prompts("mixneg", 4): (48.9, None), prompts("mixneg", 5): (48.4, None)},
  "table1_ade20k": {main("rn50", "mask2former"): (47.4, 49.0), main("rn50", "mta_clip"): (49.1, 49.9),
                    main("rn101", "mask2former"): (48.4, 49.3), main("rn101", "mta_clip"): (49.8, 51.1),
                    main("vit_b16", "mask2former", "ViT-B-16"): (51.0, 51.9),
                    main("vit_b16", "mta_clip", "ViT-B-16"): (52.3, 53.1)},
  "table2_cityscapes": {main("rn50", "mask2former"): (81.0, 82.1), main("rn50", "mta_clip"): (81.7, 82.8),
                        main("rn101", "mask2former"): (81.1, 82.4), main("rn101", "mta_clip"): (82.1, 83.6)},
  "tiny_components": {M2F: (18.0, None), TE: (19.5, None), MTCL: (20.25, None), MTPL: (17.75, None)},
}
PY
# fabricate.py NAME PLAN_CSV RUNS_DIR SPEC: the plan must list exactly the expected configurations
# (seeds 0, 1, 2 each) in folders named <id>-<slug>, the slug built here from the swept values as
# docs/sweeps.md describes it (sweeps/spec.h, configuration_slugs); writes status + result.json
# into every run folder (the same values for every seed).
cat > fabricate.py <<'PY'
import csv, json, os, re, sys, tomllib
sys.path.insert(0, ".")
from values import V
name, plan, runs, spec = sys.argv[1:5]
rows = list(csv.DictReader(open(plan)))
got = sorted((r["overrides"], r["seed"]) for r in rows)
want = sorted((o, str(seed)) for o in V[name] for seed in (0, 1, 2))
if got != want:
    sys.exit("%s: planned %s, expected %s" % (name, got, want))

def split(overrides):  # "k=v, k2=[1, 2]" -> {k: v, k2: "[1, 2]"} (display values)
    return dict(kv.split("=", 1) for kv in re.split(r", (?=[a-z_][a-z_0-9.]*=)", overrides))
def canonical(v):  # a display value (or a TOML value of [fixed]) as canonical TOML text
    if isinstance(v, bool): return "true" if v else "false"
    if isinstance(v, int): return str(v)
    if v in ("true", "false") or re.fullmatch(r"-?[0-9]+(\.[0-9]+)?(e-?[0-9]+)?", v) or v.startswith("["): return v
    return '"%s"' % v
def fnv(text):
    h, m = 1469598103934665603, (1 << 64) - 1
    for c in text.encode():
        h = ((h ^ c) * 1099511628211) & m
    for k in (0xff51afd7ed558ccd, 0xc4ceb9fe1a85ec53):
        h ^= h >> 33; h = (h * k) & m
    return "%016x" % (h ^ (h >> 33))
def value(c):  # as in a folder name: arrays 640x640, paths by their file name
    t = "".join("x" if ch == "," else ch for ch in c[1:-1] if ch not in ' "') if c.startswith("[") else c.split("/")[-1]
    return "".join(ch if ch.isalnum() or ch in ".-_" else "-" for ch in t)
configs = {r["overrides"]: split(r["overrides"]) for r in rows}
keys = sorted({k for c in configs.values() for k in c})
def short(key):  # the fewest trailing components no other swept key ends with
    parts = key.split(".")
    for n in range(1, len(parts) + 1):
        suffix = ".".join(parts[-n:])
        if not any(o != key and (o == suffix or o.endswith("." + suffix)) for o in keys): return suffix
    return key
distinct = {k: len({c.get(k) for c in configs.values()}) for k in keys}
kept = []  # the keys that tell the configurations apart, each not determined by those before it
for k in sorted(keys, key=lambda k: (-distinct[k], k)):
    seen = {}
    for c in configs.values():
        if seen.setdefault(tuple(c.get(x) for x in kept), c.get(k)) != c.get(k):
            kept.append(k); break
fixed = {k: canonical(v) for k, v in tomllib.load(open(spec, "rb")).get("fixed", {}).items()}
def slug(overrides):
    c = configs[overrides]
    first = "_".join(short(k) + value(c[k]) for k in sorted(c) if k in kept)
    then = "_".join(short(k) + value(c[k]) for k in sorted(c) if k not in kept)
    full = "_".join(p for p in (first, then) if p)
    if len(full) + 3 <= 64: return full
    everything = dict(fixed, **{k: canonical(v) for k, v in c.items()})
    text = "".join("%s=%s\n" % (k, everything[k]) for k in sorted(everything) if not k.startswith("cluster."))
    return first[:64 - 7 - 3] + "~" + fnv(text)[:6]

for row in rows:
    want_dir = row["id"] + "-" + slug(row["overrides"]) + "_s" + row["seed"]
    if row["run"] != want_dir or len(row["id"]) != 10:
        sys.exit("%s: run folder %s, expected %s" % (name, row["run"], want_dir))
    miou, miou_ms = V[name][row["overrides"]]
    d = os.path.join(runs, row["run"])
    os.makedirs(d, exist_ok=True)
    open(os.path.join(d, "status"), "w").write("done\n")
    result = {"mIoU": miou, "mAcc": 60.0, "aAcc": 85.0}
    if miou_ms is not None:
        result.update({"mIoU_ms": miou_ms, "mAcc_ms": 61.0, "aAcc_ms": 86.0})
    json.dump(result, open(os.path.join(d, "result.json"), "w"))
PY

# name expected_runs: plan (exit code, run count, the swept values), fabricate, plan again (all reused).
plan_spec() {
  local name="$1" expected="$2"
  local spec="$specs/$name.toml" runs="$work/runs/$name"
  "$segrun" sweep plan "$spec" --runs-dir "$runs" --format csv > "$name.plan.csv" 2> "$name.plan.err"
  code=$?
  check "$name: plan exit code ($(head -1 "$name.plan.err"))" test "$code" -eq 0
  check "$name: $expected runs, all new" test "$(grep -c ',new$' "$name.plan.csv")" -eq "$expected"
  check "$name: nothing else planned" test "$(wc -l < "$name.plan.csv")" -eq $((expected + 1))
  "$py" fabricate.py "$name" "$name.plan.csv" "$runs" "$spec" 2> "$name.fab.err"
  code=$?
  check "$name: the planned configurations are the expected ones ($(tail -1 "$name.fab.err"))" test "$code" -eq 0
  "$segrun" sweep plan "$spec" --runs-dir "$runs" > "$name.plan2.txt"
  check "$name: every fabricated run is reused" grep -q "$expected runs: 0 new, $expected done (reused)" "$name.plan2.txt"
}

# name golden format [table args...]: `segrun table SPEC` equals golden/<golden>.
table_equals() {
  local name="$1" golden="$2" format="$3"; shift 3
  "$segrun" table "$specs/$name.toml" --runs-dir "$work/runs/$name" --format "$format" "$@" > "$golden" 2> "$golden.err"
  code=$?
  check "$name: table exit code ($(head -1 "$golden.err"))" test "$code" -eq 0
  check "$name: $format table equals golden/$golden" diff -u "$here/golden/$golden" "$golden"
}

plan_spec table3_components 12  # 4 configurations x 3 seeds
table_equals table3_components mta_table3_components.tex latex
table_equals table3_components mta_table3_components.md md
plan_spec table4_attention 9
table_equals table4_attention mta_table4_attention.tex latex
plan_spec table4_prompts 27
table_equals table4_prompts mta_table4_prompts.tex latex
table_equals table4_prompts mta_table4_prompts.md md
plan_spec table1_ade20k 18  # 3 backbones x 2 heads x 3 seeds
table_equals table1_ade20k mta_table1_ade20k.tex latex
table_equals table1_ade20k mta_table1_ade20k_ms.tex latex --metric mIoU_ms
plan_spec table2_cityscapes 12
table_equals table2_cityscapes mta_table2_cityscapes.tex latex
table_equals table2_cityscapes mta_table2_cityscapes_ms.tex latex --metric mIoU_ms

# The full-size specs train the paper's recipes: 8 ranks, 160k (ADE20K) / 90k (Cityscapes)
# iterations, the OpenAI weights of each backbone.
for name in table3_components table4_attention table4_prompts table1_ade20k table2_cityscapes; do
  check "$name: 8 ranks per run" grep -q '^ranks = 8$' "$specs/$name.toml"
done
"$segrun" sweep run "$specs/table4_prompts.toml" --runs-dir "$work/runs/dry" --on local --dry-run > dry.txt 2> dry.err
code=$?
check "table4_prompts: dry run exit code ($(head -1 dry.err))" test "$code" -eq 0
check "table4_prompts: 27 mpirun commands of 8 ranks" test "$(grep -c 'mpirun -np 8 ' dry.txt)" -eq 27
check "table4_prompts: every command trains from RN50.pt" test "$(grep -c "'model.pretrained=\"pretrained/RN50.pt\"'" dry.txt)" -eq 27
for name_runs in table1_ade20k:18 table2_cityscapes:12; do
  name="${name_runs%%:*}" runs="${name_runs##*:}"
  "$segrun" sweep run "$specs/$name.toml" --runs-dir "$work/runs/dry_$name" --on local --dry-run > "dry_$name.txt" 2> "dry_$name.err"
  code=$?
  check "$name: dry run exit code ($(head -1 "dry_$name.err"))" test "$code" -eq 0
  check "$name: every run reports mIoU_ms" test "$(grep -c ' eval.report_ms=true ' "dry_$name.txt")" -eq "$runs"
  check "$name: six runs train clip_rn101 from RN101.pt" test "$(grep -c "model.backbone=\"clip_rn101\"' .*'model.pretrained=\"pretrained/RN101.pt\"'" "dry_$name.txt")" -eq 6
done

# The tiny CPU sweep: 4 configurations x 3 seeds of 2 ranks on the tiny Cityscapes config.
plan_spec tiny_components 12
table_equals tiny_components mta_tiny_components.md md
"$segrun" sweep run "$specs/tiny_components.toml" --runs-dir "$work/runs/tiny_dry" --on local --dry-run > tiny_dry.txt 2> tiny_dry.err
code=$?
check "tiny_components: dry run exit code ($(head -1 tiny_dry.err))" test "$code" -eq 0
check "tiny_components: 12 mpirun commands of 2 ranks" test "$(grep -c 'mpirun -np 2 ' tiny_dry.txt)" -eq 12
check "tiny_components: 60 iterations each" test "$(grep -c 'train.iters=60' tiny_dry.txt)" -eq 12

finish mta_clip_tables_test
