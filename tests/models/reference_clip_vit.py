"""Independent PyTorch reference for segrun's CLIP ViT-B/16 backbone (and its Semantic FPN model).

Written from the published designs, not from segrun's C++:
  * OpenAI CLIP `VisionTransformer` (model.py): conv1 patch embedding without bias, the class
    token `class_embedding` prepended, `positional_embedding` added, ln_pre, `Transformer` of
    `ResidualAttentionBlock`s (reference_clip_text.py's, without a mask), ln_post and the `proj`
    matrix;
  * DenseCLIP's `CLIPVisionTransformer` changes for dense prediction: the positional grid resized
    bilinearly to the input's patch grid, the patch tokens of blocks `out_indices` reshaped to
    maps and sent through fpn1 (GN, ConvT, BN, GELU, ConvT), fpn2 (GN, ConvT), fpn3 (GN) and fpn4
    (GN, MaxPool 2), and with `get_embeddings` the ln_post + proj of all tokens split into the
    global (class) embedding and the dense map. The class embedding is added once, as in OpenAI
    CLIP (DenseCLIP's code adds it a second time through the positional row).
  * mmseg FPN neck + FPNHead: reference_clip_fpn.py.

Usage: reference_clip_vit.py IN OUT  (IN: torch.save-compatible dict written by the C++ test)
IN holds "input", "input_odd", "vit.<param>" (a ViT with embeddings), "seg.<param>" (the FPN
segmentor with a ViT backbone without embeddings) and "cfg.<name>" sizes.
"""
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference_clip_fpn as fpn_ref  # noqa: E402
import reference_clip_text as text_ref  # noqa: E402  (OpenAI's Transformer / ResidualAttentionBlock)


class VisionTransformer(nn.Module):
    def __init__(self, input_resolution, patch_size, width, layers, heads, output_dim, out_indices,
                 get_embeddings):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size, bias=False)
        scale = width ** -0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.spatial_size = input_resolution // patch_size
        self.positional_embedding = nn.Parameter(scale * torch.randn(self.spatial_size ** 2 + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = text_ref.Transformer(width, layers, heads)
        self.out_indices = list(out_indices)
        self.get_embeddings = get_embeddings
        if get_embeddings:
            self.ln_post = nn.LayerNorm(width)
            self.proj = nn.Parameter(scale * torch.randn(width, output_dim))
        self.fpn1 = nn.Sequential(nn.GroupNorm(1, width), nn.ConvTranspose2d(width, width, 2, 2),
                                  nn.BatchNorm2d(width), nn.GELU(), nn.ConvTranspose2d(width, width, 2, 2))
        self.fpn2 = nn.Sequential(nn.GroupNorm(1, width), nn.ConvTranspose2d(width, width, 2, 2))
        self.fpn3 = nn.GroupNorm(1, width)
        self.fpn4 = nn.Sequential(nn.GroupNorm(1, width), nn.MaxPool2d(2, 2))

    def forward(self, x):
        x = self.conv1(x)
        b, c, h, w = x.shape
        x = x.reshape(b, c, h * w).permute(0, 2, 1)
        cls = self.class_embedding + torch.zeros(b, 1, c, dtype=x.dtype)
        x = torch.cat([cls, x], dim=1)
        pos = self.positional_embedding
        grid = pos[1:].reshape(1, self.spatial_size, self.spatial_size, c).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(h, w), mode="bilinear", align_corners=False)
        pos = torch.cat([pos[:1], grid.reshape(c, h * w).permute(1, 0)], dim=0)
        x = self.ln_pre(x + pos[None])
        x = x.permute(1, 0, 2)  # LND
        levels = []
        for i, block in enumerate(self.transformer.resblocks):
            x = block(x, None)  # no mask: every token sees every token
            if i in self.out_indices:
                levels.append(x[1:].permute(1, 2, 0).reshape(b, c, h, w))
        outs = [op(f) for op, f in zip((self.fpn1, self.fpn2, self.fpn3, self.fpn4), levels)]
        if self.get_embeddings:
            y = self.ln_post(x.permute(1, 0, 2)) @ self.proj
            outs.append(y[:, 0])
            outs.append(y[:, 1:].reshape(b, h, w, -1).permute(0, 3, 1, 2))
        return outs


class VitFpnSegmentor(nn.Module):
    def __init__(self, vit_args, channels, num_classes):
        super().__init__()
        self.backbone = VisionTransformer(*vit_args, get_embeddings=False)
        width = vit_args[2]
        self.neck = fpn_ref.FPN([width] * 4, channels)
        self.decode_head = fpn_ref.FPNHead(channels, num_classes)

    def forward(self, x):
        return self.decode_head(self.neck(self.backbone(x)))


def main():
    src, dst = sys.argv[1], sys.argv[2]
    data = torch.load(src)
    cfg = {k[4:]: int(v) for k, v in data.items() if k.startswith("cfg.")}
    vit_args = (cfg["resolution"], 16, cfg["width"], cfg["layers"], cfg["heads"], cfg["embed"],
                [cfg[f"out{i}"] for i in range(4)])
    out = {}
    with torch.no_grad():
        vit = VisionTransformer(*vit_args, get_embeddings=True)
        fpn_ref.load(vit, data, "vit.")
        for name in ("input", "input_odd"):
            c1, c2, c3, c4, glob, dense = vit(data[name])
            for i, s in enumerate((c1, c2, c3, c4)):
                out[f"{name}.c{i + 1}"] = s
            out[f"{name}.global"] = glob
            out[f"{name}.dense"] = dense
        seg = VitFpnSegmentor(vit_args, cfg["fpn_channels"], cfg["num_classes"])
        fpn_ref.load(seg, data, "seg.")
        images = data["input"]
        logits = seg(images)
        out["seg.logits"] = logits
        out["seg.pred"] = F.interpolate(logits, size=images.shape[2:], mode="bilinear", align_corners=False)
    torch.save({k: v.contiguous() for k, v in out.items()}, dst)


if __name__ == "__main__":
    main()
