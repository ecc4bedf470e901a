#!/usr/bin/python3
"""Regenerates the committed image/label files of the bad-input corpus (run once, by hand).

Each images/* and labels/* case holds a two-record ADE20K folder (ds/ADEChallengeData2016):
record 1 is valid, record 2 carries the defect the case is about. Images are 24x32, a few
hundred bytes each. Usage: /usr/bin/python3 make_images.py [corpus dir]
"""
import os
import sys

import cv2
import numpy as np

root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "cases")
H, W = 24, 32
rng = np.random.default_rng(9)


def image(h=H, w=W):
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def label(h=H, w=W):
    return rng.integers(0, 151, (h, w), dtype=np.uint8)  # ADE20K raw labels 0..150


def encode(ext, a):
    ok, buf = cv2.imencode(ext, a)
    assert ok
    return buf.tobytes()


def write_case(name, image2=None, label2=None, image2_ext=".jpg"):
    """image2 / label2: bytes of record 2's files (None = valid)."""
    base = os.path.join(root, name, "ds", "ADEChallengeData2016")
    img_dir = os.path.join(base, "images", "training")
    ann_dir = os.path.join(base, "annotations", "training")
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(ann_dir, exist_ok=True)
    files = {
        os.path.join(img_dir, "ADE_train_00000001.jpg"): encode(".jpg", image()),
        os.path.join(ann_dir, "ADE_train_00000001.png"): encode(".png", label()),
        os.path.join(img_dir, "ADE_train_00000002" + image2_ext): image2 if image2 is not None else encode(".jpg", image()),
        os.path.join(ann_dir, "ADE_train_00000002.png"): label2 if label2 is not None else encode(".png", label()),
    }
    for path, data in files.items():
        with open(path, "wb") as f:
            f.write(data)


good_jpg = encode(".jpg", image())
good_png = encode(".png", label())
write_case("images/truncated_jpeg", image2=good_jpg[: len(good_jpg) // 3])
write_case("images/garbage_jpeg", image2=b"this is not a JPEG file\n" * 4)
write_case("images/zero_size_jpeg", image2=b"")
write_case("images/corrupt_png_image", image2=encode(".png", image())[:60], image2_ext=".png")
write_case("images/png_header_only", image2=b"\x89PNG\r\n\x1a\n", image2_ext=".png")
# Accepted inputs: a 1-channel JPEG and a 16-bit PNG image decode to 8-bit BGR as mmseg's imread does.
write_case("images/accepted_gray_jpeg", image2=encode(".jpg", rng.integers(0, 256, (H, W), dtype=np.uint8)))
write_case("images/accepted_16bit_png_image",
           image2=encode(".png", rng.integers(0, 65536, (H, W, 3), dtype=np.uint16)), image2_ext=".png")
# A 300x1 image (with its label): packs, and trains (resized to at least 1 pixel per side; the fuzzer
# found that rescaling rounded it to 0 rows, which cv::resize refused with an OpenCV assertion).
write_case("images/accepted_thin_image", image2=encode(".jpg", image(1, 300)), label2=encode(".png", label(1, 300)))
write_case("labels/corrupt_png_label", label2=good_png[: len(good_png) // 2])
write_case("labels/zero_size_label", label2=b"")
write_case("labels/label_is_jpeg", label2=encode(".jpg", image()))
write_case("labels/rgb_label", label2=encode(".png", np.dstack([label()] * 3)))
write_case("labels/rgba_label", label2=encode(".png", np.dstack([label()] * 3 + [np.full((H, W), 255, np.uint8)])))
write_case("labels/16bit_label", label2=encode(".png", label().astype(np.uint16) * 300))
lab = label()
lab[3, 5] = 151
write_case("labels/value_151", label2=encode(".png", lab))
lab = label()
lab[0, 0] = 255
write_case("labels/accepted_value_255", label2=encode(".png", lab))
write_case("labels/size_mismatch", label2=encode(".png", label(20, 20)))
write_case("labels/transposed_label", label2=encode(".png", label(W, H)))
