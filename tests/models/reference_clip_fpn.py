"""Independent PyTorch reference for segrun's CLIP ModifiedResNet + Semantic FPN models.

Written from the published designs, not from segrun's C++:
  * OpenAI CLIP `ModifiedResNet` (3-conv stem, anti-aliased Bottleneck with AvgPool2d(stride),
    downsample = AvgPool -> conv1x1 -> BN) and `AttentionPool2d`, with DenseCLIP's changes
    (every token is a query; the spatial positional grid is bilinearly resized to the input
    grid; returns the global token and the dense map);
  * mmsegmentation `FPN` neck (1x1 laterals with bias, nearest top-down, 3x3 outputs) and
    `FPNHead` (per-level conv-BN-ReLU [+ bilinear x2] stacks summed at 1/4, dropout, conv_seg);
  * mmseg CrossEntropyLoss (ignore 255, mean over all pixels).

Usage: reference_clip_fpn.py IN OUT  (IN: torch.save-compatible dict written by the C++ test)
IN holds "input", "input_odd" (a size that is not a multiple of 32), "labels", "seg.<param>", "clip.<param>" and config entries "cfg.<name>".
OUT gets the eval-mode outputs (float32, computed in float64 would hide nothing here).
"""
import collections
import math
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

LAYERS = {"clip_rn50": (3, 4, 6, 3), "clip_rn101": (3, 4, 23, 3)}
EMBED_PER_WIDTH = {"clip_rn50": 16, "clip_rn101": 8}  # 1024 / 64 and 512 / 64


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.avgpool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = None
        if stride > 1 or inplanes != planes * 4:
            self.downsample = nn.Sequential(collections.OrderedDict([
                ("-1", nn.AvgPool2d(stride)),
                ("0", nn.Conv2d(inplanes, planes * 4, 1, bias=False)),
                ("1", nn.BatchNorm2d(planes * 4)),
            ]))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(self.avgpool(out)))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


class AttentionPool2d(nn.Module):
    def __init__(self, spacial_dim, embed_dim, num_heads, output_dim):
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.randn(spacial_dim ** 2 + 1, embed_dim))
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.c_proj = nn.Linear(embed_dim, output_dim)
        self.num_heads = num_heads
        self.spacial_dim = spacial_dim
        self.embed_dim = embed_dim

    def forward(self, x):
        b, c, h, w = x.shape
        x = x.reshape(b, c, h * w).permute(2, 0, 1)  # (HW, B, C)
        x = torch.cat([x.mean(dim=0, keepdim=True), x], dim=0)
        cls_pos = self.positional_embedding[:1]
        grid = self.positional_embedding[1:].reshape(1, self.spacial_dim, self.spacial_dim, c)
        grid = F.interpolate(grid.permute(0, 3, 1, 2), size=(h, w), mode="bilinear", align_corners=False)
        spatial_pos = grid.reshape(c, h * w).permute(1, 0)
        x = x + torch.cat([cls_pos, spatial_pos], dim=0)[:, None, :]
        x, _ = F.multi_head_attention_forward(
            query=x, key=x, value=x, embed_dim_to_check=c, num_heads=self.num_heads,
            q_proj_weight=self.q_proj.weight, k_proj_weight=self.k_proj.weight,
            v_proj_weight=self.v_proj.weight, in_proj_weight=None,
            in_proj_bias=torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias]),
            bias_k=None, bias_v=None, add_zero_attn=False, dropout_p=0.0,
            out_proj_weight=self.c_proj.weight, out_proj_bias=self.c_proj.bias,
            use_separate_proj_weight=True, training=False, need_weights=False)
        x = x.permute(1, 2, 0)  # (B, E, HW+1)
        return x[:, :, 0], x[:, :, 1:].reshape(b, -1, h, w)


class ModifiedResNet(nn.Module):
    def __init__(self, variant, width, input_resolution, with_attnpool):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width // 2, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width // 2)
        self.conv2 = nn.Conv2d(width // 2, width // 2, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width // 2)
        self.conv3 = nn.Conv2d(width // 2, width, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.avgpool = nn.AvgPool2d(2)
        self._inplanes = width
        layers = LAYERS[variant]
        self.layer1 = self._make_layer(width, layers[0], 1)
        self.layer2 = self._make_layer(width * 2, layers[1], 2)
        self.layer3 = self._make_layer(width * 4, layers[2], 2)
        self.layer4 = self._make_layer(width * 8, layers[3], 2)
        self.attnpool = None
        if with_attnpool:
            self.attnpool = AttentionPool2d(input_resolution // 32, width * 32, width * 32 // 64,
                                            EMBED_PER_WIDTH[variant] * width)

    def _make_layer(self, planes, blocks, stride):
        mods = [Bottleneck(self._inplanes, planes, stride)]
        self._inplanes = planes * 4
        mods += [Bottleneck(self._inplanes, planes, 1) for _ in range(1, blocks)]
        return nn.Sequential(*mods)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = F.relu(self.bn3(self.conv3(x)))
        x = self.avgpool(x)
        outs = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            outs.append(x)
        if self.attnpool is not None:
            outs += list(self.attnpool(x))
        return outs


class ConvModule(nn.Module):
    """mmcv ConvModule: conv (bias only without norm) -> optional 'bn' -> optional ReLU."""

    def __init__(self, cin, cout, k, norm, relu):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, padding=k // 2, bias=not norm)
        if norm:
            self.bn = nn.BatchNorm2d(cout)
        self.norm, self.relu = norm, relu

    def forward(self, x):
        x = self.conv(x)
        if self.norm:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


class Upsample2x(nn.Module):
    """mmseg ops.Upsample(scale_factor=2, bilinear, align_corners=False): resize to int(2*size)."""

    def forward(self, x):
        size = [int(t * 2) for t in x.shape[-2:]]
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class FPN(nn.Module):
    def __init__(self, in_channels, channels):
        super().__init__()
        self.lateral_convs = nn.ModuleList([ConvModule(c, channels, 1, False, False) for c in in_channels])
        self.fpn_convs = nn.ModuleList([ConvModule(channels, channels, 3, False, False) for _ in in_channels])

    def forward(self, feats):
        lat = [conv(f) for conv, f in zip(self.lateral_convs, feats)]
        for i in range(len(lat) - 1, 0, -1):
            lat[i - 1] = lat[i - 1] + F.interpolate(lat[i], size=lat[i - 1].shape[2:], mode="nearest")
        return [conv(l) for conv, l in zip(self.fpn_convs, lat)]


class FPNHead(nn.Module):
    def __init__(self, channels, num_classes, strides=(4, 8, 16, 32)):
        super().__init__()
        self.scale_heads = nn.ModuleList()
        for s in strides:
            n = max(1, int(math.log2(s) - math.log2(strides[0])))
            mods = []
            for _ in range(n):
                mods.append(ConvModule(channels, channels, 3, True, True))
                if s != strides[0]:
                    mods.append(Upsample2x())
            self.scale_heads.append(nn.Sequential(*mods))
        self.dropout = nn.Dropout2d(0.1)
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)

    def forward(self, feats):
        out = self.scale_heads[0](feats[0])
        for i in range(1, len(feats)):
            out = out + F.interpolate(self.scale_heads[i](feats[i]), size=out.shape[2:],
                                      mode="bilinear", align_corners=False)
        return self.conv_seg(self.dropout(out))


class FpnSegmentor(nn.Module):
    def __init__(self, variant, width, channels, num_classes):
        super().__init__()
        self.backbone = ModifiedResNet(variant, width, 224, with_attnpool=False)
        self.neck = FPN([4 * width, 8 * width, 16 * width, 32 * width], channels)
        self.decode_head = FPNHead(channels, num_classes)

    def forward(self, x):
        stages = self.backbone(x)
        return stages, self.decode_head(self.neck(stages))


def load(module, tensors, prefix):
    state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    module.load_state_dict(state, strict=True)
    module.eval()


def main():
    src, dst = sys.argv[1], sys.argv[2]
    data = torch.load(src)
    cfg = {k[4:]: v for k, v in data.items() if k.startswith("cfg.")}
    variants = ["clip_rn50", "clip_rn101"]
    images, labels = data["input"], data["labels"]
    out = {}
    with torch.no_grad():
        seg = FpnSegmentor(variants[int(cfg["seg_variant"])], int(cfg["seg_width"]),
                           int(cfg["fpn_channels"]), int(cfg["num_classes"]))
        load(seg, data, "seg.")
        stages, logits = seg(images)
        for i, s in enumerate(stages):
            out[f"seg.c{i + 1}"] = s
        out["seg.logits"] = logits
        pred = F.interpolate(logits, size=images.shape[2:], mode="bilinear", align_corners=False)
        out["seg.pred"] = pred
        odd = data["input_odd"]
        out["seg.pred_odd"] = F.interpolate(seg(odd)[1], size=odd.shape[2:], mode="bilinear", align_corners=False)
        ce = F.cross_entropy(F.interpolate(logits, size=labels.shape[1:], mode="bilinear", align_corners=False),
                             labels, reduction="none", ignore_index=255)
        out["seg.loss"] = ce.mean()

        clip = ModifiedResNet(variants[int(cfg["clip_variant"])], int(cfg["clip_width"]),
                              int(cfg["clip_resolution"]), with_attnpool=True)
        load(clip, data, "clip.")
        c1, c2, c3, c4, glob, dense = clip(images)
        for i, s in enumerate((c1, c2, c3, c4)):
            out[f"clip.c{i + 1}"] = s
        out["clip.global"] = glob
        out["clip.dense"] = dense
    torch.save({k: v.contiguous() for k, v in out.items()}, dst)


if __name__ == "__main__":
    main()
