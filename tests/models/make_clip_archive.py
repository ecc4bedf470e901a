"""Writes a tiny OpenAI-CLIP-like TorchScript archive for segrun's weight-import tests.

Like the released RN50.pt: a traced module whose visual tower sits under `visual.*` next to
text-side tensors, with every tensor in float16. The visual tower is the independent reference
in reference_clip_fpn.py (input_resolution 224, so a 7x7 positional grid: 50 rows).

Usage: make_clip_archive.py ARCHIVE EXPECTED WIDTH
EXPECTED (torch.save dict) gets "visual.<key>" = the archive's values in float32 and
"pos_4x4" = the positional embedding with its grid resized bilinearly (align_corners=False)
to 4x4, the class row kept (DenseCLIP's loader).
"""
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference_clip_fpn as ref  # noqa: E402


class TinyClip(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.visual = ref.ModifiedResNet("clip_rn50", width, 224, with_attnpool=True)
        self.token_embedding = nn.Embedding(16, 8)
        self.logit_scale = nn.Parameter(torch.ones([]))

    def forward(self, images):
        return self.visual(images)[4] * self.logit_scale


def main():
    archive, expected, width = sys.argv[1], sys.argv[2], int(sys.argv[3])
    torch.manual_seed(11)
    model = TinyClip(width)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.num_batches_tracked.fill_(1234)
    model.eval()
    traced = torch.jit.trace(model, torch.randn(1, 3, 64, 64)).half()
    traced.save(archive)

    out = {}
    loaded = torch.jit.load(archive)
    for name, value in list(loaded.named_parameters()) + list(loaded.named_buffers()):
        if name.startswith("visual."):
            out[name] = value.float() if value.is_floating_point() else value.clone()
    pos = out["visual.attnpool.positional_embedding"]
    grid = pos[1:].reshape(1, 7, 7, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(4, 4), mode="bilinear", align_corners=False)
    out["pos_4x4"] = torch.cat([pos[:1], grid.permute(0, 2, 3, 1).reshape(16, -1)], dim=0)
    torch.save(out, expected)


if __name__ == "__main__":
    main()
