"""Writes a tiny OpenAI-CLIP-like TorchScript archive with BOTH towers, for the CLIP-SP
pretrained-weights test: `visual.*` = the ModifiedResNet-50 reference (width W, attention pooling,
input_resolution 224) and the text tower at the top level (reference_clip_text.TextEncoder with
the real 49408-token vocabulary, so any prompt tokenizes), every tensor float16 like RN50.pt.

Usage: make_clip_full_archive.py ARCHIVE WIDTH TEXT_WIDTH TEXT_HEADS TEXT_LAYERS
(the text embedding width is the visual one: 16 * WIDTH).
"""
import os
import sys

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference_clip_fpn as visual_ref  # noqa: E402
import reference_clip_text as text_ref  # noqa: E402


class TinyClip(nn.Module):
    def __init__(self, width, text_width, heads, layers):
        super().__init__()
        self.visual = visual_ref.ModifiedResNet("clip_rn50", width, 224, with_attnpool=True)
        text_ref.attach_text_tower(self, text_width, heads, layers, 16 * width)

    def forward(self, images):
        return self.visual(images)[4] * self.logit_scale


def main():
    archive = sys.argv[1]
    width, text_width, heads, layers = (int(v) for v in sys.argv[2:6])
    torch.manual_seed(13)
    model = TinyClip(width, text_width, heads, layers)
    model.eval()
    torch.jit.trace(model, torch.randn(1, 3, 64, 64)).half().save(archive)


if __name__ == "__main__":
    main()
