"""Communication cost model for data-parallel training at 4 / 32 / 256 GPUs (docs/performance.md).

Inputs measured from segrun itself, per model config (crop and per-GPU batch from the config's
[data] crop and batch_per_rank):
  - the gradient buckets dist::GradientSync forms (bench_train_ddp --buckets 1 --bucket-mb M: bytes
    per bucket, in the order they are all-reduced), for dist.bucket_mb = 25 and the sweep sizes;
  - the forward FLOPs of one crop per submodule (segrun model info --input HxW --format json,
    models::count_flops; fvcore's rule: 1 multiply-add = 1 FLOP).
  - optionally, measured per-GPU step times (no communication in them: one rank), from
    --measured-step-ms or from the logs of scripts/gpu-check.sh (--gpu-check-dir); a model with a
    measurement uses it instead of the FLOP estimate, and every row says which it used.
Everything else is a stated assumption, printed with the tables:

  all-reduce of one bucket of s bytes on n GPUs with bus bandwidth B and per-step latency a:
    ring  t = 2(n-1)/n * s/B + 2(n-1) a        (NCCL ring: 2(n-1) steps)
    tree  t = 2(n-1)/n * s/B + 2 log2(n) a     (NCCL double binary tree: full bandwidth,
                                                 logarithmic latency)
  busbw correction 2(n-1)/n: nccl-tests doc/PERFORMANCE.md. Flat (one level): across nodes B is
  the node's total NIC bandwidth (every ring's inter-node hop carries the node's whole share).
  NCCL's tuner picks ring or tree per call: the overlap model uses the faster of the two per bucket.
  Hierarchical (two levels, nodes of g GPUs): reduce-scatter inside the node over NVLink
    (g-1)/g * s/B_nvlink + (g-1) a, all-reduce of the s/g shard across the N nodes (g concurrent
    ones sharing the node's NICs: 2(N-1)/N * s/B_node + ring or tree latency), all-gather inside
    the node (as the reduce-scatter).
  Compute (assumed, when no measurement): a train step is 3 x forward (backward = 2 x forward) of
  every per-image submodule, times the batch, plus 2 x forward of the per-step text side
  (MTA-CLIP's prompts through the frozen text encoder run once per step, not per image; frozen
  weights: backward computes input gradients only), 2 FLOPs per multiply-add, at an assumed
  fraction of the GPU's peak. A measured step taken at another batch is scaled linearly.
  Overlap: backward is 2/3 of the step; bucket j becomes ready when backward has produced the
  gradients of buckets 0..j, assumed proportional to their bytes (the late backbone layers hold
  most bytes and finish early in reality, so this is pessimistic); one bucket at a time is
  reduced, in order (dist::GradientSync on GPUs: started from backward on the NCCL stream, like
  DDP; SyncBatchNorm's backward all-reduces, which queue behind them, are not modelled). Exposed E = time from
  the end of backward to the end of the last all-reduce. Predicted step = compute C + E.
  Communication-bound: E / (C + E) > --bound (default 10 %): more than that share of every step
  is spent waiting for the all-reduce after backward.
  Gradient accumulation over k micro-steps (dist::GradientSync::no_sync, as DDP; the trainer has
  no setting for it yet): one all-reduce per k steps, overlapped with the last backward only:
  per micro-step C + E/k, exposed share E / (kC + E).

  /usr/bin/python3 bench/comm_model.py --build-dir build
  /usr/bin/python3 bench/comm_model.py --build-dir build --measured-step-ms mask2former=180,mta_clip=260@2 \
      --measured-gpu "H100 SXM TF32"
  /usr/bin/python3 bench/comm_model.py --build-dir build --gpu-check-dir <folder of gpu-check-summary.md>
"""
import argparse
import glob
import json
import math
import os
import subprocess
import sys
import tomllib

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
# (key for --measured-step-ms, name, config). Crop and per-GPU batch come from the config.
MODELS = [("fpn", "R50 Semantic FPN", "configs/ade20k_fpn_clip_rn50_80k.toml"),
          ("clip_sp", "CLIP-SP R50", "configs/clip_sp/r50_ade20k.toml"),
          ("mask2former", "Mask2Former R50", "configs/mask2former/ade20k_mask2former_clip_rn50_160k.toml"),
          ("mta_clip", "MTA-CLIP R50", "configs/mta_clip/ade20k_mta_clip_rn50_160k.toml")]
# Submodules whose forward runs once per step whatever the batch (MTA-CLIP's learnable prompts
# through the frozen CLIP text encoder); their backward only carries input gradients (1 x forward).
PER_STEP_SUBMODULES = {"text_encoder", "text_prompts"}
NVLINK = 300.0  # GB/s per GPU and direction inside a node (A100 SXM4, NVSwitch)
GPUS_PER_NODE = 8
LATENCY_US = 5.0
# (GPUs, interconnect, bus bandwidth GB/s per GPU per direction, nodes, ladder): `ladder` groups a
# 32- and a 256-GPU scenario with the NVLink node, the path "one node -> 4 nodes -> 32 nodes" on
# one network.
SCENARIOS = [
    (4, "NVLink 3 / NVSwitch (A100 SXM), 300 GB/s", NVLINK, 1, "node"),
    (4, "PCIe 4.0 x16, 32 GB/s", 32.0, 1, "pcie"),
    (32, "4 nodes x 8, 1 x 100 Gb/s IB per node", 12.5, 4, "1 x 100 Gb/s"),
    (32, "4 nodes x 8, 1 x 200 Gb/s IB per node", 25.0, 4, "1 x 200 Gb/s"),
    (32, "4 nodes x 8, 1 x 400 Gb/s IB per node", 50.0, 4, "1 x 400 Gb/s"),
    (32, "4 nodes x 8, 8 x 200 Gb/s IB per node (1 per GPU)", 200.0, 4, "8 x 200 Gb/s"),
    (256, "32 nodes x 8, 1 x 100 Gb/s IB per node", 12.5, 32, "1 x 100 Gb/s"),
    (256, "32 nodes x 8, 1 x 200 Gb/s IB per node", 25.0, 32, "1 x 200 Gb/s"),
    (256, "32 nodes x 8, 1 x 400 Gb/s IB per node", 50.0, 32, "1 x 400 Gb/s"),
    (256, "32 nodes x 8, 8 x 200 Gb/s IB per node (1 per GPU)", 200.0, 32, "8 x 200 Gb/s"),
]
LADDERS = ["pcie", "1 x 100 Gb/s", "1 x 200 Gb/s", "1 x 400 Gb/s", "8 x 200 Gb/s"]
# (GPU, peak TFLOP/s used, assumed achieved fraction)
GPUS = [("V100 FP32", 15.7, 0.4), ("A100 TF32", 156.0, 0.3)]
ACCUMULATION = [2, 4, 8]


def tool(*command):
    if not os.access(command[0], os.X_OK):
        sys.exit(f"comm_model.py: {command[0]} is not built (cmake --build <build> --target segrun bench_train_ddp)")
    return subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout


def bench(args, *extra):
    binary = os.path.join(os.path.abspath(args.build_dir), "bench", "bench_train_ddp")
    return tool(binary, *extra).strip().splitlines()[-1]


def model_info(args, config, crop):
    binary = os.path.join(os.path.abspath(args.build_dir), "launcher", "segrun")
    return json.loads(tool(binary, "model", "info", config, "model.pretrained=none",
                           "--input", f"{crop}x{crop}", "--format", "json"))


def allreduce(s, n, bus, alpha, algo):
    if n <= 1:
        return 0.0
    steps = 2 * (n - 1) if algo == "ring" else 2 * math.ceil(math.log2(n))
    return 2 * (n - 1) / n * s / (bus * 1e9) + steps * alpha * 1e-6


def best(s, n, bus, alpha):  # NCCL's tuner picks the faster algorithm per call
    return min(allreduce(s, n, bus, alpha, "ring"), allreduce(s, n, bus, alpha, "tree"))


def hierarchical(s, scenario, alpha):
    n, _, bus, nodes, _ = scenario
    if nodes == 1:
        return best(s, n, bus, alpha)
    g = n // nodes
    intra = 2 * ((g - 1) / g * s / (NVLINK * 1e9) + (g - 1) * alpha * 1e-6)
    return intra + best(s / g, nodes, bus / g, alpha)


def bucket_cost(scenario, hier):
    n, _, bus, _, _ = scenario
    alpha = LATENCY_US
    return (lambda s: hierarchical(s, scenario, alpha)) if hier else (lambda s: best(s, n, bus, alpha))


def exposed(buckets, cost, backward):
    total, done, clock = sum(buckets), 0, 0.0
    for s in buckets:
        done += s
        ready = backward * done / total
        clock = max(clock, ready) + cost(s)
    return max(0.0, clock - backward)


def evaluate(buckets, scenario, compute, hier=False, k=1):
    """Predicted micro-step time (s), exposed share of the step, all-reduce time (s)."""
    cost = bucket_cost(scenario, hier)
    comm = sum(cost(s) for s in buckets)
    e = exposed(buckets, cost, compute * 2 / 3)
    return compute + e / k, e / (k * compute + e), comm, e


def parse_measured(text):
    """'key=ms[@batch],...' -> {key: (ms, batch or None)}."""
    out = {}
    for item in filter(None, (x.strip() for x in (text or "").split(","))):
        key, _, value = item.partition("=")
        ms, _, batch = value.partition("@")
        out[key.strip()] = (float(ms), int(batch) if batch else None)
    return out


def read_gpu_check(folder):
    """The fp32 'summary:' lines scripts/gpu-check.sh keeps in <folder>/bench-*.err, and the GPU's name."""
    found = {}
    for path in sorted(glob.glob(os.path.join(folder, "bench-*.err"))):
        for line in open(path, errors="replace"):
            if not line.startswith("summary:"):
                continue
            fields = dict(x.split("=", 1) for x in line.split()[1:] if "=" in x)
            if fields.get("precision") != "fp32" or "ms" not in fields:
                continue
            model = fields.get("model", "")
            keys = [key for key, _, config in MODELS if model == key or model.endswith(config)]
            if not keys:
                print(f"comm_model.py: {path}: {model} is none of the modelled configs, ignored", file=sys.stderr)
            for key in keys:
                found[key] = (float(fields["ms"]), int(fields["batch"]) if "batch" in fields else None)
    name = None
    gpu_txt = os.path.join(folder, "gpu.txt")
    if os.path.exists(gpu_txt):
        first = open(gpu_txt).readline().strip()
        if first and first != "no nvidia-smi":
            name = first.split(",")[0].strip()
    return found, name


def pct(x, digits=0):
    return f"{x * 100:.{digits}f} %"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--build-dir", default="build")
    parser.add_argument("--bucket-mb", default="25", help="dist.bucket_mb of the main table")
    parser.add_argument("--sweep-bucket-mb", default="5,10,50,100", help="bucket sizes tried as remedies")
    parser.add_argument("--bound", type=float, default=0.10,
                        help="communication-bound when exposed / (compute + exposed) exceeds this")
    parser.add_argument("--measured-step-ms", default="",
                        help="per-GPU step times without communication, key=ms[@batch],... with key in "
                             + ", ".join(k for k, _, _ in MODELS))
    parser.add_argument("--gpu-check-dir", default="",
                        help="folder with scripts/gpu-check.sh's logs (bench-*.err summary lines, gpu.txt)")
    parser.add_argument("--measured-gpu", default="",
                        help="name of the GPU the measurements come from; an assumed profile's name "
                             f"({', '.join(g for g, _, _ in GPUS)}) replaces its estimates")
    args = parser.parse_args()

    measured, gpu_name = {}, None
    if args.gpu_check_dir:
        measured, gpu_name = read_gpu_check(args.gpu_check_dir)
    measured.update(parse_measured(args.measured_step_ms))
    unknown = set(measured) - {k for k, _, _ in MODELS}
    if unknown:
        sys.exit(f"comm_model.py: unknown model key(s) {sorted(unknown)}; known: {[k for k, _, _ in MODELS]}")
    measured_gpu = args.measured_gpu or gpu_name or "measured GPU"
    profiles = [g for g, _, _ in GPUS]
    if measured and measured_gpu not in profiles:
        profiles.append(measured_gpu)
    sweep = [m for m in args.sweep_bucket_mb.split(",") if m and float(m) != float(args.bucket_mb)]

    print(f"float32 gradients, dist.bucket_mb = {args.bucket_mb}; per-step latency {LATENCY_US:g} us (assumed); "
          f"NVLink {NVLINK:g} GB/s inside a node of {GPUS_PER_NODE}; assumed compute at "
          f"{', '.join(f'{g} {p:g} TFLOP/s x {f:g}' for g, p, f in GPUS)}"
          + (f"; measured step times ({measured_gpu}): "
             + ", ".join(f"{k} {ms:g} ms" + (f" at batch {b}" if b else "") for k, (ms, b) in measured.items())
             if measured else "; no measured step times given (--measured-step-ms / --gpu-check-dir)")
          + f". Communication-bound: exposed all-reduce > {pct(args.bound)} of the predicted step "
          f"(compute + exposed).\n")

    rows = []
    for key, name, config in MODELS:
        path = os.path.join(ROOT, config)
        with open(path, "rb") as f:
            data = tomllib.load(f)["data"]
        crop, batch = int(data["crop"][0]), int(data["batch_per_rank"])
        buckets = {mb: [int(b) for b in bench(args, "--config", path, "--buckets", "1", "--bucket-mb", mb).split()]
                   for mb in [args.bucket_mb, *sweep]}
        info = model_info(args, path, crop)
        per_step = sum(m["flops"] for m in info["submodules"] if m["name"] in PER_STEP_SUBMODULES)
        per_image = info["flops"] - per_step
        step_macs = 3 * per_image * batch + 2 * per_step
        steps = {}  # profile -> (seconds, source)
        for g, p, f in GPUS:
            steps[g] = (2 * step_macs / (p * 1e12 * f), "assumed")
        if key in measured:
            ms, at = measured[key]
            scaled = ms * batch / at if at and at != batch else ms
            steps[measured_gpu] = (scaled / 1e3, "measured" + (f", {ms:g} ms at batch {at} scaled to {batch}"
                                                               if at and at != batch else ""))
        grads = sum(buckets[args.bucket_mb])
        check = "" if grads // 4 == info["params"]["trainable"] else (
            f" [bench_train_ddp buckets hold {grads // 4 / 1e6:.2f} M, segrun model info says "
            f"{info['params']['trainable'] / 1e6:.2f} M trainable: rebuild bench_train_ddp]")
        b0 = buckets[args.bucket_mb]
        print(f"- {name} (`{config}`, batch {batch} x {crop}x{crop} per GPU): {grads / 4e6:.2f} M float32 gradients "
              f"= {grads / 1e6:.1f} MB in {len(b0)} buckets ({', '.join(f'{b / 2**20:.1f}' for b in b0)} MiB, "
              f"all-reduce order){check}; forward {per_image / 1e9:.1f} GMAC per image"
              + (f" + {per_step / 1e9:.1f} GMAC per step (text side)" if per_step else "")
              + "; step compute " + ", ".join(f"{g} {t * 1e3:.0f} ms ({src})" for g, (t, src) in steps.items()))
        rows.append((key, name, buckets, steps))

    # ---- the main table --------------------------------------------------------------------------
    print("\n| model | GPUs | interconnect | ring all-reduce / step ms | tree ms | "
          + " | ".join(f"all-reduce / compute; exposed = share of step ({g})" for g in profiles)
          + f" | compute ({' / '.join(profiles)}) |")
    print("|---|---|---|---|---|" + "---|" * len(profiles) + "---|")
    results = {}  # (profile, key, scenario index) -> exposed share
    for key, name, buckets, steps in rows:
        b0 = buckets[args.bucket_mb]
        for i, scenario in enumerate(SCENARIOS):
            n, link, bus, _, _ = scenario
            ring = sum(allreduce(s, n, bus, LATENCY_US, "ring") for s in b0)
            tree = sum(allreduce(s, n, bus, LATENCY_US, "tree") for s in b0)
            cells = []
            for g in profiles:
                if g not in steps:
                    cells.append("no measurement")
                    continue
                compute = steps[g][0]
                _, share, comm, e = evaluate(b0, scenario, compute)
                results[(g, key, i)] = share
                mark = " **bound**" if share > args.bound else ""
                cells.append(f"{comm / compute * 100:.0f} %; {e * 1e3:.1f} ms = {pct(share)}{mark}")
            sources = " / ".join(steps[g][1].split(",")[0] if g in steps else "-" for g in profiles)
            print(f"| {name} | {n} | {link} | {ring * 1e3:.1f} | {tree * 1e3:.1f} | " + " | ".join(cells)
                  + f" | {sources} |")

    # ---- where each model first becomes communication-bound ---------------------------------------
    print(f"\nFirst GPU count at which each model is communication-bound (exposed > {pct(args.bound)} of the "
          "step), per network: PCIe = 4 GPUs on PCIe 4.0; the others = one NVLink node of 4, then 4 and 32 "
          "nodes of 8 on that InfiniBand (the exposed share there in ()).\n")
    print("| compute | model | " + " | ".join("PCIe 4.0 (4 GPUs)" if l == "pcie" else l for l in LADDERS) + " |")
    print("|---|---|" + "---|" * len(LADDERS))
    for g in profiles:
        for key, name, _, steps in rows:
            if g not in steps:
                continue
            cells = []
            for ladder in LADDERS:
                path = [i for i, s in enumerate(SCENARIOS) if s[4] in (ladder, "node" if ladder != "pcie" else "-")]
                first = next((i for i in path if results[(g, key, i)] > args.bound), None)
                if first is None:
                    worst = max(results[(g, key, i)] for i in path)
                    cells.append(f"not bound (<= {pct(worst)})")
                else:
                    cells.append(f"**{SCENARIOS[first][0]}** ({pct(results[(g, key, first)])})")
            print(f"| {g} ({steps[g][1].split(',')[0]}) | {name} | " + " | ".join(cells) + " |")

    # The answer for one compute profile: the measured one when it covers every model, else the
    # faster assumed GPU (a shorter step leaves less backward to hide the all-reduce behind).
    primary = measured_gpu if all(measured_gpu in steps for _, _, _, steps in rows) else GPUS[-1][0]
    candidates = []
    for key, name, buckets, steps in rows:
        bound = [i for i in range(len(SCENARIOS)) if results[(primary, key, i)] > args.bound]
        if bound:
            n_first = min(SCENARIOS[i][0] for i in bound)
            at = [i for i in bound if SCENARIOS[i][0] == n_first]
            candidates.append((n_first, -len(at), -max(results[(primary, key, i)] for i in at), key, name, at))
    if not candidates:
        print(f"\nWith {primary} compute no model is communication-bound on any network up to 256 GPUs.")
        return
    n_first, _, _, key, name, at = min(candidates)
    buckets, steps = next((r[2], r[3]) for r in rows if r[0] == key)
    compute = steps[primary][0]
    others = sorted(c for c in candidates if c[3] != key)
    never = [r[1] for r in rows if r[0] not in {c[3] for c in candidates}]

    def where(model_key, indices):
        return ", ".join((f"{SCENARIOS[i][4]} per node" if SCENARIOS[i][3] > 1 else SCENARIOS[i][1])
                         + f" ({pct(results[(primary, model_key, i)])} exposed)" for i in indices)

    kinds = {r[0]: r[3][primary][1].split(",")[0] for r in rows}
    source = (next(iter(kinds.values())) if len(set(kinds.values())) == 1 else
              "measured for " + ", ".join(k for k, v in kinds.items() if v == "measured") + ", assumed for the others")
    print(f"\nWith {primary} compute ({source}), **{name} is the first to become "
          f"communication-bound: at {n_first} GPUs**, on {where(key, at)}"
          + ("; then " + "; ".join(f"{c[4]} at {c[0]} GPUs on {where(c[3], c[5])}" for c in others) if others else "")
          + ("; never (up to 256 GPUs on these networks): " + ", ".join(never) if never else "")
          + f". What moves it back, per setting (predicted step ms / exposed share; compute alone "
          f"{compute * 1e3:.0f} ms; bucket sizes from dist::GradientSync's own bucketing; accumulation = per "
          "micro-step, one all-reduce per k):\n")
    # Every scenario where this model is bound, not only the first GPU count.
    cols = [i for i in range(len(SCENARIOS)) if results[(primary, key, i)] > args.bound]
    settings = [(f"dist.bucket_mb = {args.bucket_mb} (config), flat", buckets[args.bucket_mb], False, 1)]
    settings += [(f"dist.bucket_mb = {mb}, flat", buckets[mb], False, 1) for mb in sweep]
    settings += [(f"hierarchical (NVLink in node, then across nodes), bucket_mb = {args.bucket_mb}",
                  buckets[args.bucket_mb], True, 1)]
    settings += [(f"hierarchical, bucket_mb = {mb}", buckets[mb], True, 1) for mb in sweep]
    settings += [(f"accumulate k = {k} (bucket_mb = {args.bucket_mb}, flat)", buckets[args.bucket_mb], False, k)
                 for k in ACCUMULATION]
    print("| setting | " + " | ".join(f"{SCENARIOS[i][0]} GPUs, {SCENARIOS[i][1]}" for i in cols) + " |")
    print("|---|" + "---|" * len(cols))
    table = {}  # (label, scenario) -> (step, share)
    for label, b, hier, k in settings:
        cells = []
        for i in cols:
            if hier and SCENARIOS[i][3] == 1:
                cells.append("n/a (one node)")
                continue
            step, share, _, _ = evaluate(b, SCENARIOS[i], compute, hier, k)
            table[(label, i)] = (step, share)
            cells.append(f"{step * 1e3:.1f} ms / {pct(share, 1)}" + ("" if share <= args.bound else " **bound**"))
        print(f"| {label} | " + " | ".join(cells) + " |")
    print()
    # Per scenario, the best of each family: bucket size alone, hierarchical (any bucket size),
    # the smallest accumulation that suffices.
    families = [("bucket size", [x for x in settings if not x[2] and x[3] == 1]),
                ("hierarchical", [x for x in settings if x[2]]),
                ("accumulation", [x for x in settings if x[3] > 1])]
    for i in cols:
        parts = []
        for family, members in families:
            scored = [(table[(m[0], i)][1], m[0]) for m in members if (m[0], i) in table]
            if not scored:
                continue
            if family == "accumulation":
                ok = [x for x in scored if x[0] <= args.bound]
                share, label = ok[0] if ok else scored[-1]
            else:
                share, label = min(scored)
            best_word = "smallest that suffices" if family == "accumulation" and share <= args.bound else "best"
            parts.append(f"{family}: {best_word} {label} -> {pct(share, 1)} "
                         + ("(back)" if share <= args.bound else "(still bound)"))
        print(f"- {SCENARIOS[i][0]} GPUs, {SCENARIOS[i][1]}: " + "; ".join(parts))

if __name__ == "__main__":
    main()
