#!/usr/bin/python3
"""Checks a run's checkpoint folder after a crash, independently of segrun's own loader:
every file under a final name (iter_<n>.pt) is a complete PyTorch zip archive (every member's
CRC verified) whose stored meta.next_iter is n, and `latest` names one of them. Prints the newest
iteration; exits 1 naming the first bad file.
Usage: check_checkpoints.py CKPT_DIR
"""
import os
import re
import sys
import zipfile

import torch

d = sys.argv[1]
iters = []
for name in sorted(os.listdir(d)):
    m = re.fullmatch(r"iter_(\d+)\.pt", name)
    if not m:
        continue
    path = os.path.join(d, name)
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
        if bad is not None:
            sys.exit("%s: member %s fails its CRC" % (path, bad))
        module = torch.jit.load(path)
        stored = int(getattr(module, "meta.next_iter"))
    except Exception as e:  # noqa: BLE001 -- any failure means a broken file under a final name
        sys.exit("%s: not a complete checkpoint (%s)" % (path, str(e).splitlines()[0] if str(e) else type(e).__name__))
    if stored != int(m.group(1)):
        sys.exit("%s: meta.next_iter is %d" % (path, stored))
    iters.append(stored)
if not iters:
    sys.exit("%s: no checkpoint" % d)
latest = open(os.path.join(d, "latest")).read().strip()
if not re.fullmatch(r"iter_\d+\.pt", latest) or not os.path.exists(os.path.join(d, latest)):
    sys.exit("%s/latest names %r, which is not a checkpoint here" % (d, latest))
print(max(iters))
