"""PyTorch peer of bench_seg_loss: mmseg's decode-head loss as mmsegmentation computes it
(F.interpolate bilinear, align_corners=False, to the label size, then F.cross_entropy with
ignore_index=255, mean over all pixels), forward + backward, on one thread; prints the median
seconds over `reps` (after one warm-up). Same shapes and seed rule as the C++ side (values differ:
only the time is compared). Usage: seg_loss_peer.py B K h H reps
"""
import sys
import time

import torch
import torch.nn.functional as F


def main(b, k, h, big, reps):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    logits = (torch.randn(b, k, h, h) * 3).requires_grad_(True)
    labels = torch.randint(0, k, (b, big, big))
    labels[torch.rand(b, big, big) < 0.1] = 255
    times = []
    for i in range(reps + 1):
        logits.grad = None
        t = time.perf_counter()
        up = F.interpolate(logits, size=(big, big), mode="bilinear", align_corners=False)
        F.cross_entropy(up, labels, ignore_index=255, reduction="none").mean().backward()
        if i:
            times.append(time.perf_counter() - t)
    print(sorted(times)[len(times) // 2])


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:6]))
