"""Peer of bench_train_ddp: the same data-parallel training step in PyTorch 1.13 (Python), the way
an mmsegmentation user runs it on CPUs: N processes (torch.multiprocessing, spawn), Gloo process
group, DistributedDataParallel (bucket_cap_mb as segrun's dist.bucket_mb, gradients all-reduced
during backward), forward + the model's losses + backward + AdamW, on the weights and per-rank
batches bench_train_ddp wrote to DIR.

Models (the independent references the golden tests use, not the C++):
  fpn      tests/models/reference_clip_fpn.py FpnSegmentor, mmseg cross-entropy on logits
           upsampled to the label size;
  clip_sp  tests/models/reference_clip_sp.py ClipSp (the SRM gate and output transform as
           model.txt's srm_sigmoid and srm_output_proj say), loss = CE + lambda_ml * ASL(label logits,
           present classes) + lambda_aux * CE(SRM attention logits, scene targets), targets
           computed as segrun computes them (nearest label per x4 cell, slot of the selected class).
Norm is plain BatchNorm on both sides (SyncBatchNorm has no CPU path in PyTorch), dropout 0,
CLIP-SP's batch drop off (plain top-k), as in bench_train_ddp.

Usage: train_ddp_peer.py DIR WORLD STEPS WARMUP THREADS BUCKET_MB (the model's settings come from
DIR/model.txt, key=value lines bench_train_ddp wrote). Prints "images_per_s_total first_loss_rank0
max_peak_rss_mib world images_per_cpu_s" like the C++ (CPU: user + system time of every rank).
"""
import os
import resource
import socket
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "models"))
from reference_clip_fpn import FpnSegmentor  # noqa: E402
from reference_clip_sp import ClipSp, asl  # noqa: E402

NUM_CLASSES = 150
# The model.txt keys each model reads (bench_train_ddp writes them).
MODEL_KEYS = {
    "fpn": ("width", "channels"),
    "clip_sp": ("width", "channels", "top_k", "blocks", "nodes", "attn_dim", "heads", "srm_dim", "srm_sigmoid",
                "srm_output_proj", "lambda_ml", "lambda_aux"),
}


class FpnStep(torch.nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.seg = FpnSegmentor("clip_rn50", int(cfg["width"]), int(cfg["channels"]), NUM_CLASSES)
        self.seg.decode_head.dropout.p = 0.0

    def forward(self, images, labels):
        _, logits = self.seg(images)
        logits = F.interpolate(logits, size=labels.shape[1:], mode="bilinear", align_corners=False)
        return F.cross_entropy(logits, labels, reduction="none", ignore_index=255).mean()


class ClipSpStep(torch.nn.Module):
    def __init__(self, cfg, text):
        super().__init__()
        cfg = dict(cfg, num_classes=NUM_CLASSES, fpn_channels=cfg["channels"])
        self.seg = ClipSp(cfg, text)
        self.seg.decode_head.dropout.p = 0.0
        self.lambda_ml, self.lambda_aux = float(cfg["lambda_ml"]), float(cfg["lambda_aux"])

    def forward(self, images, labels):
        label_logits, selected, attn_logits, seg, grid = self.seg(images)
        b = labels.shape[0]
        with torch.no_grad():
            present = torch.zeros(b, NUM_CLASSES)
            for i in range(b):
                valid = labels[i][labels[i] != 255]
                present[i, valid.unique()] = 1
            h, w = int(grid[0]), int(grid[1])
            height, width = labels.shape[1:]
            rows = torch.div(torch.arange(h) * height, h, rounding_mode="floor")
            cols = torch.div(torch.arange(w) * width, w, rounding_mode="floor")
            small = labels.index_select(1, rows).index_select(2, cols).reshape(b, h * w, 1)
            match = small == selected.unsqueeze(1)
            target = torch.where(match.any(2), match.long().argmax(2), torch.full((b, h * w), 255))
        seg_up = F.interpolate(seg, size=labels.shape[1:], mode="bilinear", align_corners=False)
        loss_seg = F.cross_entropy(seg_up, labels, ignore_index=255, reduction="none").mean()
        loss_ml = self.lambda_ml * asl(label_logits, present)
        loss_aux = self.lambda_aux * F.cross_entropy(attn_logits.reshape(-1, attn_logits.shape[-1]),
                                                     target.reshape(-1), ignore_index=255)
        return loss_seg + loss_ml + loss_aux


def cpu_seconds():  # user + system time of every thread of this process
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def worker(rank, world, directory, kind, cfg, steps, warmup, threads, bucket_mb, port, results):
    torch.set_num_threads(threads)
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    weights = torch.load(os.path.join(directory, "weights.pt"))
    batch = torch.load(os.path.join(directory, f"batch_{rank}.pt"))
    images, labels = batch["images"], batch["labels"]
    if kind == "fpn":
        model = FpnStep(cfg)
    else:
        model = ClipSpStep(cfg, torch.zeros_like(weights["seg.text_embeddings"]))
    model.load_state_dict(weights, strict=True)
    del weights
    model.train()
    ddp = DistributedDataParallel(model, bucket_cap_mb=bucket_mb)
    optimizer = torch.optim.AdamW(ddp.parameters(), lr=1e-4, weight_decay=1e-4)
    first = 0.0
    for step in range(warmup + steps):
        if step == warmup:
            dist.barrier()
            start = time.perf_counter()
            cpu_start = cpu_seconds()
        optimizer.zero_grad()
        loss = ddp(images, labels)
        if step == 0:
            first = loss.item()
        loss.backward()
        optimizer.step()
    dist.barrier()
    seconds = time.perf_counter() - start
    cpu = torch.tensor([cpu_seconds() - cpu_start], dtype=torch.float64)
    rss = torch.tensor([resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0])
    dist.all_reduce(rss, op=dist.ReduceOp.MAX)
    dist.all_reduce(cpu)
    if rank == 0:
        images = steps * images.shape[0] * world
        results.put(f"{images / seconds:.4f} {first:.6f} {rss.item():.1f} {world} {images / cpu.item():.4f}")
    dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    directory, world, steps, warmup, threads, bucket_mb = sys.argv[1:7]
    model_txt = os.path.join(directory, "model.txt")
    with open(model_txt) as f:
        cfg = dict(line.strip().split("=", 1) for line in f if line.strip())
    kind = cfg.get("kind")
    if kind not in MODEL_KEYS:
        raise SystemExit(f"train_ddp_peer.py: {model_txt}: unknown model kind {kind} (fpn, clip_sp)")
    missing = [key for key in MODEL_KEYS[kind] if key not in cfg]
    if missing:  # an exchange folder written by another version of bench_train_ddp
        raise SystemExit(f"train_ddp_peer.py: {model_txt}: no {', '.join(missing)} for the {kind} model "
                         "(written by an older bench_train_ddp? rebuild it)")
    context = mp.get_context("spawn")
    results = context.SimpleQueue()
    args = (int(world), directory, kind, cfg, int(steps), int(warmup), int(threads), float(bucket_mb), free_port(),
            results)
    mp.spawn(worker, args=args, nprocs=int(world), join=True)
    print(results.get())


if __name__ == "__main__":
    main()
