#!/usr/bin/env bash
# `segrun report` in a real browser (Debian's chromium, headless): fabricated run folders (a
# model.dropout sweep of 3 x 2 seeds plus one running run; metrics.jsonl, per-class IoU in
# result.json, samples/iter_<n>/*.png panels written here with zlib) -> report.html, loaded with
# --dump-dom: the page logs nothing to the console (a control page's console.error shows that
# messages would be seen), every <img> decodes (the page's own check sets data-images-ok on
# <body>), the result table's cells equal `segrun table --format md`'s and the per-class table's
# equal `segrun table --per-class ... --format md`'s, one train and one val curve per run with
# metrics, no external resource. A screenshot is kept as ARTIFACTS_DIR/report.png. Also the
# report of one run folder, and the user errors (one line naming the path, non-zero exit).
# Skipped (exit 77) when chromium is not installed (scripts/install-deps.sh installs it).
# Usage: report_browser_test.sh SEGRUN_BINARY ARTIFACTS_DIR
set -uo pipefail
segrun="$(realpath "$1")"
artifacts="$(realpath -m "$2")"
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/../lib.sh"
skip() { echo "report_browser_test: skipped ($*)"; exit 77; }
browser="$(command -v chromium || command -v chromium-browser)" || skip "chromium not found (apt-get install chromium)"
enter_work_dir report-browser
mkdir -p "$artifacts"

# chromium --headless with the flags every load here uses; extra arguments first, the URL last.
headless() {
  timeout 90 "$browser" --headless --no-sandbox --disable-gpu --enable-logging=stderr --no-first-run \
    --user-data-dir="$work/chromium-profile" --virtual-time-budget=5000 "$@"
}

"$py" - runs <<'PY'
import json, os, struct, sys, zlib
root = sys.argv[1]

def png(width, height, pixel):
    raw = b"".join(b"\x00" + b"".join(bytes(pixel(x, y)) for x in range(width)) for y in range(height))
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))

def panel(seed):
    # image | truth | prediction, 48 x 48 each
    def pixel(x, y):
        part, u = divmod(x, 48)
        if part == 0: return ((u * 5) % 256, (y * 5) % 256, (seed * 60) % 256)
        cls = (u // 16 + y // 16 + (seed if part == 2 and u > 30 else 0)) % 3
        return [(200, 40, 40), (40, 160, 60), (50, 80, 220)][cls]
    return png(144, 48, pixel)

classes = ["wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "window", "grass", "cabinet", "a<b&c"]
values = {"0.0": (40.0, 41.0), "0.1": (42.0, 42.5), "0.2": (40.2, 40.6)}
for d, (dropout, pair) in enumerate(sorted(values.items())):
    for seed, miou in enumerate(pair):
        run = os.path.join(root, "d%ds%d" % (d, seed))
        os.makedirs(run)
        json.dump({"sweep": "t", "id": "d%ds%d" % (d, seed), "seed": seed,
                   "overrides": {"model.dropout": dropout}}, open(run + "/overrides.json", "w"))
        open(run + "/status", "w").write("done\n")
        open(run + "/config.toml", "w").write("[model]\ndropout = %s\n" % dropout)
        per_class = {c: round(90.0 - 7.0 * i + d + 0.5 * seed, 2) for i, c in enumerate(classes)}
        json.dump({"aAcc": 80.0, "mIoU": miou, "mAcc": 50.0, "per_class": per_class, "iterations": 60},
                  open(run + "/result.json", "w"))
        with open(run + "/metrics.jsonl", "w") as f:
            for it in range(10, 70, 10):
                f.write(json.dumps({"iter": it, "mode": "train", "loss": 3.0 / (1 + it / 20.0) + 0.1 * seed,
                                    "lr": 0.01}) + "\n")
                if it % 20 == 0:
                    f.write(json.dumps({"iter": it, "mode": "val", "mIoU": miou * it / 60.0}) + "\n")
        if seed == 0 or d == 1:  # d0s1 and d2s1 have no samples
            for it in (20, 60):
                os.makedirs(run + "/samples/iter_%d" % it)
                for k in range(2):
                    open(run + "/samples/iter_%d/val_%d.png" % (it, k), "wb").write(panel(seed + k + it))
running = os.path.join(root, "d3s0")
os.makedirs(running)
json.dump({"sweep": "t", "id": "d3s0", "seed": 0, "overrides": {"model.dropout": "0.3"}},
          open(running + "/overrides.json", "w"))
open(running + "/status", "w").write("running\n")
PY
check "fabricated runs" test -f runs/d1s1/samples/iter_60/val_1.png

"$segrun" table runs --baseline model.dropout=0.0 --format md > table.md 2> table.err
check "segrun table exits 0" test $? -eq 0
"$segrun" table runs --baseline model.dropout=0.0 --per-class wall,building,sky,floor,tree,ceiling,road,bed,window,grass \
  --format md > per_class.md 2> per_class.err
check "segrun table --per-class exits 0" test $? -eq 0
"$segrun" report runs --baseline model.dropout=0.0 --out report.html > report.out 2> report.err
check "segrun report exits 0" test $? -eq 0
cat report.out

# A control page: console messages do reach stderr (so that none from the report means none).
cat > control.html <<'HTML'
<!DOCTYPE html><html><head><meta charset="utf-8"></head><body><script>console.error("control-error");</script></body></html>
HTML
headless --dump-dom "file://$work/control.html" > control.dom 2> control.log
check "a control page's console.error is seen" grep -q 'CONSOLE.*"control-error"' control.log

headless --dump-dom "file://$work/report.html" > dom.html 2> dom.log
check "chromium loads the report" test -s dom.html
check "no console message from the report" bash -c "! grep -E 'CONSOLE|Uncaught' dom.log"
grep -E 'CONSOLE|Uncaught' dom.log | head -5

cat > check_dom.py <<'PY'
import html.parser, re, sys
dom, table_md, per_class_md = (open(p, encoding="utf-8").read() for p in sys.argv[1:4])

class Page(html.parser.HTMLParser):
    """Tables (per section), img/svg/script/link elements and <body>'s attributes of the DOM."""
    def __init__(self):
        super().__init__()
        self.section, self.tables, self.images, self.polylines, self.external = None, {}, [], {}, []
        self.cell, self.body, self.chart = None, {}, None
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "body": self.body = a
        if tag == "section": self.section = a.get("id")
        if tag == "table": self.tables.setdefault(self.section, []).append([])
        if tag == "tr": self.tables[self.section][-1].append([])
        if tag in ("td", "th"): self.cell = ""
        if tag == "img": self.images.append(a.get("src", ""))
        if tag == "svg" and "chart" in a.get("class", ""): self.chart = a["class"].split()[-1]
        if tag == "polyline" and self.chart: self.polylines[self.chart] = self.polylines.get(self.chart, 0) + 1
        if tag in ("script", "link", "iframe", "img", "source", "object") and re.match(
                r"(https?:)?//", a.get("src", "") + a.get("href", "")):
            self.external.append((tag, a))
    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[self.section][-1][-1].append(self.cell); self.cell = None
        if tag == "svg": self.chart = None
        if tag == "section": self.section = None
    def handle_data(self, data):
        if self.cell is not None: self.cell += data

def markdown_cells(md):
    rows = []
    for line in md.splitlines():
        if not line.startswith("|") or re.fullmatch(r"[|:\- ]+", line): continue
        cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        rows.append([c[2:-2] if c.startswith("**") and c.endswith("**") and len(c) > 4 else c for c in cells])
    return rows

page = Page(); page.feed(dom)
failed = []
def expect(what, ok, detail=""):
    print(("ok: " if ok else "FAIL: ") + what + ("" if ok else " " + str(detail)))
    if not ok: failed.append(what)
expect("result table cells equal `segrun table --format md`",
       page.tables.get("table", [None])[0] == markdown_cells(table_md), (page.tables.get("table"), markdown_cells(table_md)))
expect("the best cell is bold", "<strong>42.25 ± 0.35 (n=2)</strong>" in dom)
expect("per-class cells equal `segrun table --per-class --format md`",
       page.tables.get("per-class", [None])[0] == markdown_cells(per_class_md),
       (page.tables.get("per-class"), markdown_cells(per_class_md)))
expect("8 images, all base64 PNG", len(page.images) == 8 and all(s.startswith("data:image/png;base64,") for s in page.images),
       len(page.images))
expect("every image decodes (data-images-ok)", page.body.get("data-images") == "8" and page.body.get("data-images-ok") == "8",
       page.body)
expect("one train and one val curve per run with metrics",
       page.polylines == {"train-loss": 6, "val-miou": 6}, page.polylines)
expect("the gnuplot plot is inline", re.search(r'<section id="plot">.*?<svg', dom, re.S) is not None)
expect("no external resource", not page.external, page.external)
expect("runs without samples are listed", "No samples/iter_&lt;n&gt;/*.png: d0s1, d2s1, d3s0." in dom)
sys.exit(1 if failed else 0)
PY
"$py" check_dom.py dom.html table.md per_class.md
check "the DOM's tables, images and curves" test $? -eq 0

rm -f "$artifacts/report.png"
headless --hide-scrollbars --window-size=1280,3200 --screenshot="$artifacts/report.png" "file://$work/report.html" \
  > screenshot.log 2>&1
check "screenshot written" "$py" -c "
import struct, sys
b = open(sys.argv[1], 'rb').read()
sys.exit(0 if b[:8] == b'\x89PNG\r\n\x1a\n' and struct.unpack('>II', b[16:24]) == (1280, 3200) else 1)" "$artifacts/report.png"
echo "report_browser_test: screenshot $artifacts/report.png"

# One run folder: curves, per-class, samples; no sweep table.
"$segrun" report runs/d1s0 --out one.html > one.out 2> one.err
check "report of one run folder exits 0" test $? -eq 0
check "one run: no sweep table, its samples and curves" holds \
  "(lambda t: 'id=\"table\"' not in t and t.count('data:image/png;base64,') == 2 and t.count('<polyline') == 2)(open('one.html').read())"
headless --dump-dom "file://$work/one.html" > one.dom 2> one.log
check "one run: its images decode" grep -q 'data-images="2" data-images-ok="2"' one.dom

# User errors: one line naming the path, non-zero exit, no report left behind.
"$segrun" report "$work/nope" --out x.html > /dev/null 2> err1
check "missing source: exit 2, one line naming it" holds \
  "$? == 2 and open('err1').read() == 'segrun: error: $work/nope: no such sweep spec, runs folder or run folder\n'"
mkdir -p empty
"$segrun" report empty --out x.html > /dev/null 2> err2
check "not a spec or run folder: non-zero, one line naming it" holds \
  "$? != 0 and (lambda t: t.count('\n') == 1 and 'empty: not a runs folder' in t)(open('err2').read())"
"$segrun" report runs --out "$work/no/such/dir/r.html" > /dev/null 2> err3
check "unwritable --out: non-zero, one line naming it" holds \
  "$? != 0 and (lambda t: t.count('\n') == 1 and '$work/no/such/dir/r.html: cannot write' in t)(open('err3').read())"
check "no report left after errors" test ! -e x.html

finish report_browser_test
