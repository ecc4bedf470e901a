"""Communication cost model for data-parallel training at 4 / 32 / 256 GPUs (docs/performance.md).

Inputs measured from segrun itself (bench_train_ddp): the gradient buckets dist::GradientSync forms
for a config (--buckets 1, bytes per bucket in the order they are all-reduced) and the forward
multiply-adds of one crop (--flops 1, models::count_flops = segrun model info). Everything else is
a stated assumption, printed with the tables:

  all-reduce of one bucket of s bytes on n GPUs with bus bandwidth B and per-step latency a:
    ring  t = 2(n-1)/n * s/B + 2(n-1) a        (NCCL ring: 2(n-1) steps)
    tree  t = 2(n-1)/n * s/B + 2 log2(n) a     (NCCL double binary tree: full bandwidth,
                                                 logarithmic latency)
  busbw correction 2(n-1)/n: nccl-tests doc/PERFORMANCE.md.
  Compute: train step = 3 x forward (forward + backward = 2 x forward), 2 FLOPs per multiply-add,
  at an assumed fraction of the GPU's peak.
  NCCL's tuner picks ring or tree per call: the overlap model uses the faster of the two per bucket.
  Overlap: backward is 2/3 of the step; bucket j becomes ready when backward has produced the
  gradients of buckets 0..j, assumed proportional to their bytes (the late backbone layers hold
  most bytes and finish early in reality, so this is pessimistic); one bucket at a time is
  reduced, in order (dist::GradientSync's communication thread, like DDP). Exposed = time from the
  end of backward to the end of the last all-reduce.

  /usr/bin/python3 bench/comm_model.py --build-dir build
"""
import argparse
import math
import os
import subprocess

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
MODELS = [("R50 Semantic FPN", "configs/ade20k_fpn_clip_rn50_80k.toml"),
          ("CLIP-SP R50", "configs/clip_sp/r50_ade20k.toml")]
# (GPUs, interconnect, bus bandwidth GB/s per GPU per direction, per-step latency us)
SCENARIOS = [
    (4, "NVLink 3 / NVSwitch (A100 SXM), 300 GB/s", 300.0, 5.0),
    (4, "PCIe 4.0 x16, 32 GB/s", 32.0, 5.0),
    (32, "4 nodes x 8, 1 x 100 Gb/s IB per node", 12.5, 5.0),
    (32, "4 nodes x 8, 1 x 200 Gb/s IB per node", 25.0, 5.0),
    (32, "4 nodes x 8, 1 x 400 Gb/s IB per node", 50.0, 5.0),
    (32, "4 nodes x 8, 8 x 200 Gb/s IB per node (1 per GPU)", 200.0, 5.0),
    (256, "32 nodes x 8, 1 x 100 Gb/s IB per node", 12.5, 5.0),
    (256, "32 nodes x 8, 1 x 200 Gb/s IB per node", 25.0, 5.0),
    (256, "32 nodes x 8, 1 x 400 Gb/s IB per node", 50.0, 5.0),
    (256, "32 nodes x 8, 8 x 200 Gb/s IB per node (1 per GPU)", 200.0, 5.0),
]
# (GPU, peak TFLOP/s used, assumed achieved fraction)
GPUS = [("V100 FP32", 15.7, 0.4), ("A100 TF32", 156.0, 0.3)]
BATCH, CROP = 4, 512


def bench(args, *extra):
    binary = os.path.join(os.path.abspath(args.build_dir), "bench", "bench_train_ddp")
    out = subprocess.run([binary, *extra], check=True, stdout=subprocess.PIPE, text=True).stdout
    return out.strip().splitlines()[-1]


def allreduce(s, n, bus, alpha, algo):
    steps = 2 * (n - 1) if algo == "ring" else 2 * math.ceil(math.log2(n))
    return 2 * (n - 1) / n * s / (bus * 1e9) + steps * alpha * 1e-6


def best(s, n, bus, alpha):  # NCCL's tuner picks the faster algorithm per call
    return min(allreduce(s, n, bus, alpha, "ring"), allreduce(s, n, bus, alpha, "tree"))


def exposed(buckets, n, bus, alpha, backward):
    total, done, clock = sum(buckets), 0, 0.0
    for s in buckets:
        done += s
        ready = backward * done / total
        clock = max(clock, ready) + best(s, n, bus, alpha)
    return max(0.0, clock - backward)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--build-dir", default="build")
    parser.add_argument("--bucket-mb", default="25")
    args = parser.parse_args()
    print(f"Per GPU: batch {BATCH}, crop {CROP}x{CROP}, float32 gradients, dist.bucket_mb = {args.bucket_mb}; "
          f"per-step latency 5 us (assumed); compute at {', '.join(f'{g} {p:g} TFLOP/s x {f:g}' for g, p, f in GPUS)}\n")
    rows = []
    for name, config in MODELS:
        path = os.path.join(ROOT, config)
        buckets = [int(b) for b in bench(args, "--config", path, "--buckets", "1", "--bucket-mb", args.bucket_mb).split()]
        macs = int(bench(args, "--config", path, "--flops", "1", "--crop", str(CROP)))
        step_flop = 3 * 2 * macs * BATCH
        steps = {g: step_flop / (p * 1e12 * f) for g, p, f in GPUS}
        print(f"- {name} (`{config}`): {sum(buckets) / 4e6:.2f} M float32 gradients = {sum(buckets) / 1e6:.1f} MB in "
              f"{len(buckets)} buckets ({', '.join(f'{b / 2**20:.1f}' for b in buckets)} MiB, all-reduce order); "
              f"forward {macs / 1e9:.1f} GMAC per {CROP}x{CROP} image; step compute "
              + ", ".join(f"{g} {t * 1e3:.0f} ms" for g, t in steps.items()))
        rows.append((name, buckets, steps))
    gpu_names = [g for g, _, _ in GPUS]
    print("\n| model | GPUs | interconnect | ring all-reduce / step ms | tree ms | "
          + " | ".join(f"all-reduce / compute; exposed after overlap ({g})" for g in gpu_names) + " |")
    print("|---|---|---|---|---|" + "---|" * len(gpu_names))
    for name, buckets, steps in rows:
        for n, link, bus, alpha in SCENARIOS:
            ring = sum(allreduce(s, n, bus, alpha, "ring") for s in buckets)
            tree = sum(allreduce(s, n, bus, alpha, "tree") for s in buckets)
            comm = sum(best(s, n, bus, alpha) for s in buckets)
            cells = []
            for g in gpu_names:
                step = steps[g]
                left = exposed(buckets, n, bus, alpha, step * 2 / 3)
                cells.append(f"{comm / step * 100:.0f} %; {left * 1e3:.1f} ms = {left / step * 100:.0f} % "
                             f"({(1 - left / comm) * 100:.0f} % hidden)")
            print(f"| {name} | {n} | {link} | {ring * 1e3:.1f} | {tree * 1e3:.1f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
