#!/usr/bin/python3
"""Peer of bench_data_pipeline: the mmsegmentation (0.x) train data pipeline in Python.

A torch.utils.data.Dataset reads records of a segrun store (docs/store-format.md) with h5py,
decodes them with cv2.imdecode and applies mmseg's train transforms as mmseg/mmcv implement them
(Resize ratio_range + mmcv.imrescale, RandomCrop with cat_max_ratio, RandomFlip,
PhotoMetricDistortion, Normalize (mmcv.imnormalize), Pad (mmcv.impad), DefaultFormatBundle), and a
DataLoader with `--workers` worker processes (shuffle, persistent workers, re-iterated per epoch
like mmseg's IterLoader) collates batches. Worker setup follows mmseg's setup_multi_processes
defaults (cv2.setNumThreads(0) in workers; OMP_NUM_THREADS=1 comes from the caller for --threads 1).

--profile N instead times each step (ms per sample, one process) and prints "step<TAB>ms" lines.
Otherwise prints one line: images/s, CPU seconds of the main process + workers over the timed window, images,
mean normalized pixel value, fraction of ignore labels. Exits non-zero when a batch is malformed.
"""
import argparse
import json
import os
import sys
import time

import cv2
import h5py
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

MEAN = np.array([122.7709383, 116.7460125, 104.09373615], dtype=np.float64).reshape(1, -1)
STD = np.array([68.5005327, 66.6321579, 70.32316305], dtype=np.float64).reshape(1, -1)


def rescale_size(w, h, scale):
    """mmcv.rescale_size with keep_ratio: (long, short) bounds."""
    long_edge, short_edge = max(scale), min(scale)
    factor = min(long_edge / max(h, w), short_edge / min(h, w))
    return int(w * factor + 0.5), int(h * factor + 0.5)


def convert(img, alpha=1.0, beta=0.0):
    img = img.astype(np.float32) * alpha + beta
    return np.clip(img, 0, 255).astype(np.uint8)


def photometric(img):
    """mmseg PhotoMetricDistortion with its defaults (32, (0.5, 1.5), (0.5, 1.5), 18)."""
    rnd = np.random
    if rnd.randint(2):
        img = convert(img, beta=rnd.uniform(-32, 32))
    mode = rnd.randint(2)
    if mode == 1 and rnd.randint(2):
        img = convert(img, alpha=rnd.uniform(0.5, 1.5))
    if rnd.randint(2):
        img = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
        img[:, :, 1] = convert(img[:, :, 1], alpha=rnd.uniform(0.5, 1.5))
        img = cv2.cvtColor(img, cv2.COLOR_HSV2BGR)
    if rnd.randint(2):
        img = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
        img[:, :, 0] = (img[:, :, 0].astype(int) + rnd.randint(-18, 18)) % 180
        img = cv2.cvtColor(img, cv2.COLOR_HSV2BGR)
    if mode == 0 and rnd.randint(2):
        img = convert(img, alpha=rnd.uniform(0.5, 1.5))
    return img


class StoreDataset(Dataset):
    def __init__(self, store, crop, scale=(2048, 512), ratio=(0.5, 2.0), cat_max_ratio=0.75, flip_prob=0.5):
        with open(os.path.join(store, "manifest.json")) as f:
            manifest = json.load(f)
        self.store = store
        self.shards = [s["file"] for s in manifest["shards"]]
        self.bounds = np.cumsum([0] + [s["records"] for s in manifest["shards"]])
        self.crop, self.scale, self.ratio = crop, scale, ratio
        self.cat_max_ratio, self.flip_prob = cat_max_ratio, flip_prob
        self.ignore = manifest["ignore_index"]
        self.files = None  # opened lazily in each worker process (h5py handles do not survive fork)
        self.timings = None  # step -> seconds, set by --profile

    def __len__(self):
        return int(self.bounds[-1])

    def read(self, i):
        if self.files is None:
            self.files = [h5py.File(os.path.join(self.store, s), "r") for s in self.shards]
        s = int(np.searchsorted(self.bounds, i, side="right") - 1)
        f, j = self.files[s], i - int(self.bounds[s])
        io, lo = f["images/offsets"][j:j + 2], f["labels/offsets"][j:j + 2]
        return f["images/bytes"][io[0]:io[1]], f["labels/bytes"][lo[0]:lo[1]]

    def crop_box(self, seg):
        ch = cw = self.crop
        mh, mw = max(seg.shape[0] - ch, 0), max(seg.shape[1] - cw, 0)
        y, x = np.random.randint(0, mh + 1), np.random.randint(0, mw + 1)
        return y, y + ch, x, x + cw

    def __getitem__(self, i):
        timings, clock = self.timings, time.perf_counter
        t = clock()

        def lap(step):  # per-step wall time, only with --profile
            nonlocal t
            if timings is not None:
                now = clock()
                timings[step] = timings.get(step, 0.0) + now - t
                t = now

        image_bytes, label_bytes = self.read(i)
        lap("read")
        img = cv2.imdecode(image_bytes, cv2.IMREAD_COLOR)  # LoadImageFromFile
        lap("decode image")
        seg = cv2.imdecode(label_bytes, cv2.IMREAD_UNCHANGED).astype(np.uint8)  # LoadAnnotations
        lap("decode label")
        # Resize(img_scale, ratio_range, keep_ratio=True)
        r = np.random.random_sample() * (self.ratio[1] - self.ratio[0]) + self.ratio[0]
        size = rescale_size(img.shape[1], img.shape[0], (int(self.scale[0] * r), int(self.scale[1] * r)))
        img = cv2.resize(img, size, interpolation=cv2.INTER_LINEAR)
        seg = cv2.resize(seg, size, interpolation=cv2.INTER_NEAREST)
        lap("resize")
        # RandomCrop(crop, cat_max_ratio)
        box = self.crop_box(seg)
        if self.cat_max_ratio < 1.0:
            for _ in range(10):
                labels, cnt = np.unique(seg[box[0]:box[1], box[2]:box[3]], return_counts=True)
                cnt = cnt[labels != self.ignore]
                if len(cnt) > 1 and np.max(cnt) / np.sum(cnt) < self.cat_max_ratio:
                    break
                box = self.crop_box(seg)
        img, seg = img[box[0]:box[1], box[2]:box[3], ...], seg[box[0]:box[1], box[2]:box[3]]
        lap("crop")
        # RandomFlip(prob)
        if np.random.rand() < self.flip_prob:
            img, seg = np.flip(img, axis=1), np.flip(seg, axis=1).copy()
        lap("flip")
        img = photometric(img)
        lap("photometric")
        # Normalize (mmcv.imnormalize, to_rgb=True)
        img = img.copy().astype(np.float32)
        cv2.cvtColor(img, cv2.COLOR_BGR2RGB, img)
        cv2.subtract(img, MEAN, img)
        cv2.multiply(img, 1 / STD, img)
        lap("normalize")
        # Pad(size=crop, pad_val=0, seg_pad_val=255) (mmcv.impad)
        ph, pw = self.crop - img.shape[0], self.crop - img.shape[1]
        if ph > 0 or pw > 0:
            img = cv2.copyMakeBorder(img, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=0)
            seg = cv2.copyMakeBorder(seg, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=self.ignore)
        lap("pad")
        # DefaultFormatBundle
        img = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
        seg = torch.from_numpy(seg[None, ...].astype(np.int64))
        lap("to tensor")
        return img, seg


def worker_init(_worker_id):
    cv2.setNumThreads(0)  # mmseg setup_multi_processes default (opencv_num_threads=0)
    np.random.seed(torch.initial_seed() % 2**32)  # torch seeds each worker differently


def cpu_seconds(pids):
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--store", required=True)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--crop", type=int, default=512)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--profile", type=int, default=0, help="time each step over N samples in this process")
    a = p.parse_args()
    if a.threads == 1:
        torch.set_num_threads(1)
        cv2.setNumThreads(1)
    dataset = StoreDataset(a.store, a.crop)
    if a.profile:
        worker_init(0)
        np.random.seed(0)
        dataset.timings = {}
        for i in range(a.profile):
            img, seg = dataset[i % len(dataset)]
            t = time.perf_counter()
            torch.stack([img]), torch.stack([seg])  # default_collate's copy, per sample
            dataset.timings["collate"] = dataset.timings.get("collate", 0.0) + time.perf_counter() - t
        for step, seconds in dataset.timings.items():
            print(f"{step}\t{1000 * seconds / a.profile:.3f}")
        return
    loader = DataLoader(dataset, batch_size=a.batch, shuffle=True, num_workers=a.workers,
                        persistent_workers=True, worker_init_fn=worker_init, drop_last=False)
    with h5py.File(os.path.join(a.store, dataset.shards[0]), "r") as f:
        num_classes = int(f.attrs["num_classes"])

    def batches():  # mmseg's IterLoader: re-iterate the DataLoader at each epoch end
        while True:
            for b in loader:
                yield b

    stream = batches()
    pids = [os.getpid()]
    mean_sum = ignore_sum = 0.0
    images = 0
    for step in range(a.warmup + a.batches):
        if step == a.warmup:
            pids = [os.getpid()] + [w.pid for w in loader._iterator._workers]
            cpu0, t0 = cpu_seconds(pids), time.perf_counter()
        img, seg = next(stream)
        seg = seg.squeeze(1)
        if tuple(img.shape) != (a.batch, 3, a.crop, a.crop) or img.dtype != torch.float32:
            sys.exit(f"images batch has shape {tuple(img.shape)} {img.dtype}")
        if tuple(seg.shape) != (a.batch, a.crop, a.crop) or seg.dtype != torch.int64:
            sys.exit(f"labels batch has shape {tuple(seg.shape)} {seg.dtype}")
        if not ((seg >= 0) & (seg < num_classes) | (seg == 255)).all():
            sys.exit("a label outside {0..K-1, 255}")
        if step >= a.warmup:
            images += img.shape[0]
            mean_sum += img.mean().item()
            ignore_sum += (seg == 255).double().mean().item()
    seconds = time.perf_counter() - t0
    cpu = cpu_seconds(pids) - cpu0
    print(f"{images / seconds:.4f} {cpu:.4f} {images} {mean_sum / a.batches:.6f} {ignore_sum / a.batches:.6f}")


if __name__ == "__main__":
    main()
