"""Peer of bench_train_step: the same CLIP-RN50 Semantic FPN training step in PyTorch (Python),
the way an mmsegmentation user runs it. Model code: tests/models/reference_clip_fpn.py (the
independent reference the golden tests use). Prints "images_per_s first_loss peak_rss_mib"."""
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
    width, channels, classes, steps, warmup, threads = map(int, (width, channels, classes, steps, warmup, threads))
    torch.set_num_threads(threads)
    data = torch.load(path)
    images, labels = data.pop("bench.images"), data.pop("bench.labels")
    model = FpnSegmentor("clip_rn50", width, channels, classes)
    model.load_state_dict(data, strict=True)
    model.decode_head.dropout.p = 0.0
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4)
    first = 0.0
    for step in range(warmup + steps):
        if step == warmup:
            start = time.perf_counter()
        optimizer.zero_grad()
        _, logits = model(images)
        logits = F.interpolate(logits, size=labels.shape[1:], mode="bilinear", align_corners=False)
        loss = F.cross_entropy(logits, labels, reduction="none", ignore_index=255).mean()
        if step == 0:
            first = loss.item()
        loss.backward()
        optimizer.step()
    seconds = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(f"{steps * images.shape[0] / seconds} {first} {rss}")


if __name__ == "__main__":
    main()
