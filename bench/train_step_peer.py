"""Peer of bench_train_step: the same CLIP-RN50 Semantic FPN training step in PyTorch (Python),
the way an mmsegmentation user runs it. Model code: tests/models/reference_clip_fpn.py (the
independent reference the golden tests use).
  train_step_peer.py EXCHANGE WIDTH CHANNELS CLASSES STEPS WARMUP THREADS [DEVICE PRECISION TF32]
DEVICE cpu | cuda[:i]; PRECISION fp32 | bf16 | fp16 (torch.autocast; fp16 with a GradScaler);
TF32 1/0 (cuDNN and matmul TF32, with cudnn.benchmark on, as bench_train_step sets them).
Prints "images_per_s first_loss peak_mib": the process's peak RSS on the CPU, the caching
allocator's peak of allocated memory over the timed steps on a GPU."""
import os
import resource
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "models"))
from reference_clip_fpn import FpnSegmentor  # noqa: E402


def main():
    path, width, channels, classes, steps, warmup, threads = sys.argv[1:8]
    device, precision, tf32 = (sys.argv[8:11] + ["cpu", "fp32", "1"][len(sys.argv[8:11]):])
    width, channels, classes, steps, warmup, threads = map(int, (width, channels, classes, steps, warmup, threads))
    device = torch.device(device)
    torch.set_num_threads(threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.allow_tf32 = tf32 == "1"
        torch.backends.cuda.matmul.allow_tf32 = tf32 == "1"
    data = torch.load(path, weights_only=False)
    images, labels = data.pop("bench.images").to(device), data.pop("bench.labels").to(device)
    model = FpnSegmentor("clip_rn50", width, channels, classes)
    model.load_state_dict(data, strict=True)
    model.decode_head.dropout.p = 0.0
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4)
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    scaler = torch.cuda.amp.GradScaler() if precision == "fp16" else None
    first = 0.0
    for step in range(warmup + steps):
        if step == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
            start = time.perf_counter()
        optimizer.zero_grad()
        with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            _, logits = model(images)
            logits = F.interpolate(logits, size=labels.shape[1:], mode="bilinear", align_corners=False)
            loss = F.cross_entropy(logits, labels, reduction="none", ignore_index=255).mean()
        if step == 0:
            first = loss.item()
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(f"{steps * images.shape[0] / seconds} {first} {peak}")


if __name__ == "__main__":
    main()
