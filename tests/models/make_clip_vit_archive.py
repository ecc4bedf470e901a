"""Writes a tiny OpenAI-CLIP-like ViT-B/16 TorchScript archive for segrun's weight-import tests.

Like the released ViT-B-16.pt: a traced module with the vision transformer under `visual.*`
(conv1, class_embedding, positional_embedding for input_resolution 224 = a 14x14 grid, ln_pre,
transformer.resblocks.N.*, ln_post, proj) next to the text tower at the top level, every tensor
float16. The visual tower is reference_clip_vit.VisionTransformer without DenseCLIP's pyramid
(the archive has none); the text tower is reference_clip_text.TextEncoder with the real vocabulary.

Usage: make_clip_vit_archive.py ARCHIVE EXPECTED WIDTH LAYERS HEADS EMBED TEXT_WIDTH TEXT_HEADS TEXT_LAYERS GRID
EXPECTED (torch.save dict) gets "visual.<key>" = the archive's visual values in float32 and
"pos_resized" = the positional embedding with its grid resized bilinearly (align_corners=False)
to GRID x GRID, the class row kept (DenseCLIP's loader).
"""
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference_clip_text as text_ref  # noqa: E402
import reference_clip_vit as vit_ref  # noqa: E402


class OpenAiVisual(vit_ref.VisionTransformer):
    """The archive's visual tower: no pyramid modules (they are DenseCLIP's, trained from scratch)."""

    def __init__(self, width, layers, heads, embed):
        super().__init__(224, 16, width, layers, heads, embed, [layers - 1], get_embeddings=True)
        del self.fpn1, self.fpn2, self.fpn3, self.fpn4

    def forward(self, x):
        x = self.conv1(x)
        b, c, h, w = x.shape
        x = torch.cat([self.class_embedding + torch.zeros(b, 1, c), x.reshape(b, c, h * w).permute(0, 2, 1)], 1)
        x = self.ln_pre(x + self.positional_embedding[None]).permute(1, 0, 2)
        x = self.transformer(x, None)
        return self.ln_post(x[0]) @ self.proj


class TinyClip(nn.Module):
    def __init__(self, width, layers, heads, embed, text_width, text_heads, text_layers):
        super().__init__()
        self.visual = OpenAiVisual(width, layers, heads, embed)
        text_ref.attach_text_tower(self, text_width, text_heads, text_layers, embed)

    def forward(self, images):
        return self.visual(images) * self.logit_scale


def main():
    archive, expected = sys.argv[1], sys.argv[2]
    width, layers, heads, embed, text_width, text_heads, text_layers, grid = map(int, sys.argv[3:11])
    torch.manual_seed(13)
    model = TinyClip(width, layers, heads, embed, text_width, text_heads, text_layers).eval()
    traced = torch.jit.trace(model, torch.randn(1, 3, 224, 224)).half()
    traced.save(archive)

    out = {}
    loaded = torch.jit.load(archive)
    for name, value in list(loaded.named_parameters()) + list(loaded.named_buffers()):
        if name.startswith("visual."):
            out[name] = value.float()
    pos = out["visual.positional_embedding"]
    spatial = pos[1:].reshape(1, 14, 14, -1).permute(0, 3, 1, 2)
    spatial = F.interpolate(spatial, size=(grid, grid), mode="bilinear", align_corners=False)
    out["pos_resized"] = torch.cat([pos[:1], spatial.permute(0, 2, 3, 1).reshape(grid * grid, -1)], dim=0)
    torch.save(out, expected)


if __name__ == "__main__":
    main()
