"""Data-parallel training step: segrun (bench_train_ddp under mpirun) against PyTorch DDP over Gloo
(bench/train_ddp_peer.py) on 1 and 2 ranks, interleaved (segrun, peer, segrun, peer, ...; the order
inside a round alternates), plus the machine's float32 GEMM rate measured in every round and the
achieved FLOP rate of the step as a fraction of it. Prints markdown tables for docs/performance.md.

  /usr/bin/python3 bench/train_ddp_compare.py --build-dir build [--rounds 3] [--ranks 1,2]
      [--steps 10] [--warmup 2] [--threads 1] [--gemm 1024]
      [--case "NAME|CONFIG|CROP|BATCH|override ..."]...   (default: the tiny R50 FPN and CLIP-SP)

images/CPU-s = images / CPU time (user + system) of every thread of every rank in the timed steps:
the figure that stays put when other work shares the cores. Each ratio is computed per round from the two sides' runs in that round and reported as the
median with the [min, max] over rounds; absolute figures likewise.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
DEFAULT_CASES = [
    "R50 Semantic FPN, width 16|configs/demo_tiny.toml|128|4|",
    "CLIP-SP, width 16|configs/clip_sp/tiny.toml|128|4|",
]


def run(cmd):
    out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if out.returncode != 0:
        sys.exit(f"train_ddp_compare: failed ({out.returncode}): {' '.join(cmd)}\n{out.stderr[-3000:]}")
    return out.stdout.strip().splitlines()[-1]


def spread(values, fmt="{:.2f}"):
    return f"{fmt.format(statistics.median(values))} [{fmt.format(min(values))}-{fmt.format(max(values))}]"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--build-dir", default="build")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ranks", default="1,2")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--bucket-mb", default="25")
    parser.add_argument("--gemm", type=int, default=1024)
    parser.add_argument("--case", action="append")
    args = parser.parse_args()
    bench = os.path.join(os.path.abspath(args.build_dir), "bench", "bench_train_ddp")
    mpirun = ["mpirun", "--oversubscribe", "--bind-to", "none"] + (["--allow-run-as-root"] if os.getuid() == 0 else [])
    ranks = [int(r) for r in args.ranks.split(",")]
    cases = []
    for spec in args.case or DEFAULT_CASES:
        name, config, crop, batch, overrides = spec.split("|")
        cases.append(dict(name=name, config=os.path.join(ROOT, config), crop=int(crop), batch=int(batch),
                          overrides=overrides.split()))
    common = ["--steps", str(args.steps), "--warmup", str(args.warmup), "--threads", str(args.threads)]

    for case in cases:  # forward FLOPs (multiply-adds, fvcore convention) of one image
        case["macs"] = int(run([bench, "--config", case["config"], "--crop", str(case["crop"]), "--flops", "1"] +
                               case["overrides"]))
    workdir = tempfile.mkdtemp(prefix="bench_train_ddp_")
    results = {}  # (case index, ranks, side) -> list of (images/s total, first loss, rss) per round
    gemm = []
    try:
        for rnd in range(args.rounds):
            gemm.append(float(run([bench, "--gemm", str(args.gemm), "--threads", str(args.threads)])))
            for ci, case in enumerate(cases):
                for n in ranks:
                    exchange = os.path.join(workdir, f"{ci}_{n}")
                    os.makedirs(exchange, exist_ok=True)
                    ours = mpirun + ["-np", str(n), bench, "--config", case["config"], "--crop", str(case["crop"]),
                                     "--batch", str(case["batch"]), "--bucket-mb", args.bucket_mb,
                                     "--exchange", exchange] + common + case["overrides"]
                    peer = ["/usr/bin/python3", os.path.join(ROOT, "bench", "train_ddp_peer.py"), exchange, str(n),
                            str(args.steps), str(args.warmup), str(args.threads), args.bucket_mb]
                    order = [("segrun", ours), ("peer", peer)]
                    if rnd % 2 == 1:  # the exchange files exist from round 1 on
                        order.reverse()
                    for side, cmd in order:
                        ips, loss, rss, _, ipc = run(cmd).split()
                        results.setdefault((ci, n, side), []).append((float(ips), float(loss), float(rss),
                                                                      float(ipc)))
                        print(f"round {rnd + 1}: {case['name']}, {n} rank(s), {side}: {ips} images/s, {ipc} "
                              f"images/CPU-s, first loss {loss}, peak RSS {rss} MiB", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"{args.rounds} rounds, {args.steps} timed steps after {args.warmup} per run, {args.threads} thread(s) "
          f"per rank, bucket {args.bucket_mb} MB; median [min-max] over rounds\n")
    print("| model | crop x batch/rank | ranks | segrun images/s | peer images/s | speed ratio | "
          "segrun images/CPU-s | peer images/CPU-s | per-CPU ratio | "
          "segrun peak RSS/rank MiB | peer MiB | memory ratio | first loss segrun / peer |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for ci, case in enumerate(cases):
        for n in ranks:
            ours, peer = results[(ci, n, "segrun")], results[(ci, n, "peer")]
            speed = [a[0] / b[0] for a, b in zip(ours, peer)]
            memory = [a[2] / b[2] for a, b in zip(ours, peer)]
            per_cpu = [a[3] / b[3] for a, b in zip(ours, peer)]
            print(f"| {case['name']} | {case['crop']} x {case['batch']} | {n} | {spread([a[0] for a in ours])} | "
                  f"{spread([b[0] for b in peer])} | **{spread(speed)}x** | {spread([a[3] for a in ours])} | "
                  f"{spread([b[3] for b in peer])} | **{spread(per_cpu)}x** | {spread([a[2] for a in ours], '{:.0f}')} | "
                  f"{spread([b[2] for b in peer], '{:.0f}')} | **{spread(memory)}x** | "
                  f"{ours[0][1]:.5f} / {peer[0][1]:.5f} |")
    if len(ranks) > 1:
        lo, hi = ranks[0], ranks[-1]
        print(f"\nWeak scaling {lo} -> {hi} ranks (same batch per rank): per-rank images/s and images per "
              f"CPU-second; efficiency = value at {hi} / value at {lo} (paired by round)\n")
        print(f"| model | side | per rank at {lo} | per rank at {hi} | wall efficiency | images/CPU-s at {lo} | "
              f"at {hi} | CPU efficiency |")
        print("|---|---|---|---|---|---|---|---|")
        for ci, case in enumerate(cases):
            for side in ("segrun", "peer"):
                a = [r[0] / lo for r in results[(ci, lo, side)]]
                b = [r[0] / hi for r in results[(ci, hi, side)]]
                c = [r[3] for r in results[(ci, lo, side)]]
                d = [r[3] for r in results[(ci, hi, side)]]
                print(f"| {case['name']} | {side} | {spread(a)} | {spread(b)} | {spread([y / x for x, y in zip(a, b)])} | "
                      f"{spread(c)} | {spread(d)} | {spread([y / x for x, y in zip(c, d)])} |")
    print(f"\nfloat32 GEMM rate (torch::mm {args.gemm}x{args.gemm}, {args.threads} thread, best of 5, every round): "
          f"{spread(gemm, '{:.1f}')} GFLOP/s. Train step FLOPs = 3 x forward (forward + backward), 2 FLOPs per "
          "multiply-add; forward multiply-adds per image from models::count_flops (= segrun model info).\n")
    print("| model | ranks | forward GMAC/image | train GFLOP/image | side | GFLOP/s per rank (wall) | fraction | "
          "GFLOP per CPU-second | fraction |")
    print("|---|---|---|---|---|---|---|---|---|")
    for ci, case in enumerate(cases):
        train_gflop = 6.0 * case["macs"] / 1e9
        for n in ranks:
            for side in ("segrun", "peer"):
                rate = [r[0] / n * train_gflop for r in results[(ci, n, side)]]
                frac = [x / g for x, g in zip(rate, gemm)]
                cpu_rate = [r[3] * train_gflop for r in results[(ci, n, side)]]
                cpu_frac = [x / g for x, g in zip(cpu_rate, gemm)]
                print(f"| {case['name']} | {n} | {case['macs'] / 1e9:.3f} | {train_gflop:.3f} | {side} | "
                      f"{spread(rate)} | {spread(frac, '{:.3f}')} | {spread(cpu_rate)} | {spread(cpu_frac, '{:.3f}')} |")


if __name__ == "__main__":
    main()
