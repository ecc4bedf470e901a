"""Independent reference of segrun's evaluator for tests/engine/evaluator_test.cpp: the toy
segmentor's logits, whole or sliding-window inference (mmseg slide_inference), single-scale and
multi-scale + flip averaging of softmaxed scores (mmseg aug_test; with ms_base_image, of the decoded
image as mmseg 1.x's TestTimeAug scales it) and the mmseg IoU metrics.
Usage: reference_ms_eval.py IN.pt OUT.pt (IN: torch::pickle_save dict written by the test)."""
import math
import sys

import numpy as np
import torch
import torch.nn.functional as F


def toy_logits(p, img):
    # logits[k, y, x] = gain * (W[k] . img[:, y, x] + b[k]) + a[k] * ramp[x], ramp over the input width.
    w = img.shape[3]
    ramp = torch.linspace(-1.0, 1.0, w).view(1, 1, 1, w)
    lin = F.conv2d(img, p["W"].view(p["W"].shape[0], 3, 1, 1), p["b"])
    return p["gain"].item() * lin + p["a"].view(1, -1, 1, 1) * ramp


def slide(p, img, crop, stride):
    h, w = img.shape[2:]
    ch, cw = crop
    sh, sw = stride
    hg = max(h - ch + sh - 1, 0) // sh + 1
    wg = max(w - cw + sw - 1, 0) // sw + 1
    k = p["W"].shape[0]
    preds = img.new_zeros((1, k, h, w))
    count = img.new_zeros((1, 1, h, w))
    for hi in range(hg):
        for wi in range(wg):
            y1, x1 = hi * sh, wi * sw
            y2, x2 = min(y1 + ch, h), min(x1 + cw, w)
            y1, x1 = max(y2 - ch, 0), max(x2 - cw, 0)
            out = toy_logits(p, img[:, :, y1:y2, x1:x2])
            preds += F.pad(out, (x1, preds.shape[3] - x2, y1, preds.shape[2] - y2))
            count[:, :, y1:y2, x1:x2] += 1
    return preds / count


def normalized(bgr, mean, std):
    # The decoded BGR bytes [H, W, 3] as the model's input [1, 3, H, W]: RGB, (x - mean) / std.
    rgb = bgr.numpy()[:, :, ::-1].astype(np.float64)
    x = (rgb - mean.numpy()) / std.numpy()
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1))).float().unsqueeze(0)


def infer(p, img):
    if p["slide"].item():
        return slide(p, img, p["crop"].tolist(), p["stride"].tolist())
    return toy_logits(p, img)


def scores(p, img, size, scales, flip):
    total = None
    for s in scales:
        h = max(int(math.floor(img.shape[2] * s + 0.5)), 1)
        w = max(int(math.floor(img.shape[3] * s + 0.5)), 1)
        x = img if s == 1.0 else F.interpolate(img, size=(h, w), mode="bilinear", align_corners=False)
        for f in ([False, True] if flip else [False]):
            xi = torch.flip(x, [3]) if f else x
            out = infer(p, xi)
            if f:
                out = torch.flip(out, [3])
            out = F.interpolate(out, size=size, mode="bilinear", align_corners=False)
            prob = F.softmax(out, dim=1)
            total = prob if total is None else total + prob
    return total


def areas(pred, label, k, ignore=255):
    mask = label != ignore
    pred, label = pred[mask], label[mask]
    inter = pred[pred == label]
    ai = np.bincount(inter, minlength=k)[:k]
    ap = np.bincount(pred, minlength=k)[:k]
    al = np.bincount(label, minlength=k)[:k]
    return ai, ap + al - ai, al


def metrics(all_areas):
    ai = sum(a[0] for a in all_areas)
    au = sum(a[1] for a in all_areas)
    al = sum(a[2] for a in all_areas)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = ai / au
        acc = ai / al
    return np.nanmean(iou) * 100, np.nanmean(acc) * 100, ai.sum() / al.sum() * 100, iou


def main():
    p = torch.load(sys.argv[1])
    torch.set_default_dtype(torch.float32)
    k = p["W"].shape[0]
    n = int(p["n"].item())
    out = {}
    min_gap = float("inf")
    for name, sc, flip in (("ss", [1.0], False), ("ms", p["ms_scales"].tolist(), True)):
        per_image = []
        for i in range(n):
            img, label = p[f"image{i}"], p[f"label{i}"]
            if name == "ms" and p["ms_base_image"].item():
                img = normalized(p[f"original{i}"], p["mean"], p["std"])
            s = scores(p, img, tuple(label.shape), sc, flip)
            top2 = torch.topk(s[0], 2, dim=0).values
            min_gap = min(min_gap, (top2[0] - top2[1]).min().item())
            pred = s[0].argmax(0).numpy()
            per_image.append(areas(pred.astype(np.int64), label.numpy().astype(np.int64), k))
            out[f"{name}_pred{i}"] = torch.from_numpy(pred.astype(np.int64))
        miou, macc, aacc, iou = metrics(per_image)
        out[f"{name}_metrics"] = torch.tensor([miou, macc, aacc], dtype=torch.float64)
        out[f"{name}_iou"] = torch.from_numpy(iou.astype(np.float64))
    out["min_gap"] = torch.tensor([min_gap], dtype=torch.float64)
    torch.save(out, sys.argv[2])


if __name__ == "__main__":
    main()
