"""Independent PyTorch reference for segrun's CLIP-SP head (Li et al., CVM 2024).

Written from the paper (Sec. 3.2-3.4, Eqs. 2-8) and from segrun's documented reading of it
(docs/models.md), not from the C++: Dual GraphFormer blocks (GloRe-style node compression,
GELU(LayerNorm(Conv1d_k1)) graph convolutions, two-way cross-attention, weighted shortcuts, a
shared linear classifier), the MLP decoder, top-k scene tokens T = [S_k, p_k], the Scene
Refinement Module (MLP + parameterized pooling -> the channel gate of Eq. 4, T_g * x4 as written
or sigmoid(T_g) * x4 ("srm_sigmoid"), single-head non-local cross-attention with or without the
non-local block's output transform W_z ("srm_output_proj"), concat + 1x1 conv + BN + ReLU), Semantic FPN on (x1, x2, x3, x4''), and the
losses: ASL (Ridnik et al., gamma_neg 4, gamma_pos 1, clip 0.05, focal weight without gradient,
mean over elements), the auxiliary CE on the attention map and mmseg's CE.

Usage: reference_clip_sp.py IN OUT. IN: "input", "labels", "seg.<param/buffer>", "cfg.<name>".
OUT: eval-mode label logits, selected labels, attention logits, seg logits, loss parts, and the
ASL value and gradient on "asl.logits"/"asl.targets".
"""
import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_clip_fpn import FPN, FPNHead, ModifiedResNet, load  # noqa: E402


class GraphConv(nn.Module):
    def __init__(self, nodes, channels):
        super().__init__()
        self.adjacency = nn.Conv1d(nodes, nodes, 1)
        self.norm = nn.LayerNorm(channels)

    def forward(self, h):  # h [B, nodes, C]
        return F.gelu(self.norm(self.adjacency(h)))


class CrossAttention(nn.Module):
    def __init__(self, cq, ckv, dim, heads):
        super().__init__()
        self.q_proj, self.k_proj = nn.Linear(cq, dim), nn.Linear(ckv, dim)
        self.v_proj, self.out_proj = nn.Linear(ckv, dim), nn.Linear(dim, cq)
        self.heads, self.dim = heads, dim

    def forward(self, q, kv):
        b, lq, _ = q.shape
        lk, d = kv.shape[1], self.dim // self.heads
        qh = self.q_proj(q).view(b, lq, self.heads, d).transpose(1, 2)
        kh = self.k_proj(kv).view(b, lk, self.heads, d).transpose(1, 2)
        vh = self.v_proj(kv).view(b, lk, self.heads, d).transpose(1, 2)
        att = torch.softmax(qh @ kh.transpose(-1, -2) / math.sqrt(d), dim=-1)
        return self.out_proj((att @ vh).transpose(1, 2).reshape(b, lq, self.dim))


class DualGraphFormerBlock(nn.Module):
    def __init__(self, c, k, nodes, dim, heads, last):
        super().__init__()
        self.compress = nn.Conv1d(c, nodes, 1)
        self.graph_v, self.graph_s = GraphConv(nodes, c), GraphConv(k, c)
        self.norm_vg, self.norm_sg = nn.LayerNorm(c), nn.LayerNorm(c)
        self.last = last  # the last block's image output is unused: it has no image update
        if not last:
            self.attn_v, self.norm_v, self.w_v = CrossAttention(c, c, dim, heads), nn.LayerNorm(c), nn.Parameter(torch.ones(1))
        self.attn_s, self.norm_s, self.w_s = CrossAttention(c, c, dim, heads), nn.LayerNorm(c), nn.Parameter(torch.ones(1))

    def forward(self, v, s):
        b_mat = self.compress(v.transpose(1, 2))           # B: [B, N, L]
        nodes = self.graph_v(b_mat @ v)                     # [B, N, C]
        v_g = self.norm_vg(v + b_mat.transpose(1, 2) @ nodes)
        s_g = self.norm_sg(s + self.graph_s(s))
        v_out = None if self.last else self.norm_v(self.w_v * v + self.attn_v(v_g, s_g))
        s_out = self.norm_s(self.w_s * s + self.attn_s(s_g, v_g))
        return v_out, s_out


class DualGraphFormer(nn.Module):
    def __init__(self, c, k, blocks, nodes, dim, heads):
        super().__init__()
        self.norm_image, self.norm_text = nn.LayerNorm(c), nn.LayerNorm(c)
        self.blocks = nn.ModuleList([DualGraphFormerBlock(c, k, nodes, dim, heads, i == blocks - 1) for i in range(blocks)])
        self.classifier = nn.Linear(c, 1)

    def forward(self, tokens, text):
        v = self.norm_image(tokens)
        s = self.norm_text(text).unsqueeze(0).expand(tokens.shape[0], -1, -1)
        for block in self.blocks:
            v, s = block(v, s)
        return self.classifier(s).squeeze(2)


class SceneRefinement(nn.Module):
    def __init__(self, c4, ct, k, hidden, dim, sigmoid_gate, output_proj):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(ct, hidden), nn.ReLU(), nn.Linear(hidden, c4))
        self.pool = nn.Linear(k, 1)
        self.query = nn.Conv2d(c4, dim, 1)
        self.key, self.value = nn.Linear(ct, dim), nn.Linear(ct, dim)
        # The non-local block's output transform W_z (Wang et al. 2018, Eq. 6), here dim -> dim.
        self.output_proj = nn.Conv2d(dim, dim, 1) if output_proj else None
        self.fuse = nn.Conv2d(c4 + dim, c4, 1, bias=False)
        self.fuse_norm = nn.BatchNorm2d(c4)
        self.dim, self.sigmoid_gate = dim, sigmoid_gate

    def forward(self, x4, t):
        b, _, h, w = x4.shape
        t_g = self.pool(self.mlp(t).transpose(1, 2)).squeeze(2)       # Eq. 3
        gate = torch.sigmoid(t_g) if self.sigmoid_gate else t_g         # Eq. 4 as written: T_g * x4
        x4p = gate[:, :, None, None] * x4
        q = self.query(x4p).flatten(2).transpose(1, 2)
        logits = q @ self.key(t).transpose(1, 2) / math.sqrt(self.dim)  # Eq. 7 before softmax
        att = torch.softmax(logits, -1) @ self.value(t)
        att = att.transpose(1, 2).reshape(b, self.dim, h, w)
        if self.output_proj is not None:
            att = self.output_proj(att)
        return F.relu(self.fuse_norm(self.fuse(torch.cat([x4p, att], 1)))), logits


class ClipSp(nn.Module):
    def __init__(self, cfg, text):
        super().__init__()
        width, k = int(cfg["width"]), int(cfg["num_classes"])
        embed = 16 * width
        self.top_k = int(cfg["top_k"])
        self.backbone = ModifiedResNet("clip_rn50", width, 224, with_attnpool=True)
        self.register_buffer("text_embeddings", text)
        self.ml_decoder = DualGraphFormer(embed, k, int(cfg["blocks"]), int(cfg["nodes"]), int(cfg["attn_dim"]),
                                          int(cfg["heads"]))
        self.srm = SceneRefinement(32 * width, embed + 1, self.top_k, embed, int(cfg["srm_dim"]),
                                   bool(int(cfg["srm_sigmoid"])), bool(int(cfg["srm_output_proj"])))
        self.neck = FPN([4 * width, 8 * width, 16 * width, 32 * width], int(cfg["fpn_channels"]))
        self.decode_head = FPNHead(int(cfg["fpn_channels"]), k)

    def forward(self, x):
        c1, c2, c3, c4, glob, dense = self.backbone(x)
        tokens = torch.cat([glob[:, None, :], dense.flatten(2).transpose(1, 2)], 1)
        label_logits = self.ml_decoder(tokens, self.text_embeddings)
        probs = torch.sigmoid(label_logits)
        p_k, selected = probs.topk(self.top_k, dim=1)
        scene = torch.cat([self.text_embeddings[selected], p_k[..., None]], 2)   # T = [S_k, p_k]
        x4, attn_logits = self.srm(c4, scene)
        seg = self.decode_head(self.neck([c1, c2, c3, x4]))
        return label_logits, selected, attn_logits, seg, x4.shape[2:]


def asl(logits, y, gamma_neg=4.0, gamma_pos=1.0, clip=0.05, eps=1e-8):
    """Alibaba-MIIL/ASL AsymmetricLoss (disable_torch_grad_focal_loss=True), mean reduction."""
    p = torch.sigmoid(logits)
    xs_neg = (1 - p + clip).clamp(max=1)
    los = y * torch.log(p.clamp(min=eps)) + (1 - y) * torch.log(xs_neg.clamp(min=eps))
    with torch.no_grad():
        pt = p * y + xs_neg * (1 - y)
        w = torch.pow(1 - pt, gamma_pos * y + gamma_neg * (1 - y))
    return -(los * w).mean()


def main():
    src, dst = sys.argv[1], sys.argv[2]
    data = torch.load(src)
    cfg = {k[4:]: v for k, v in data.items() if k.startswith("cfg.")}
    out = {}
    images, labels = data["input"], data["labels"]
    num_classes = int(cfg["num_classes"])
    model = ClipSp(cfg, torch.zeros_like(data["seg.text_embeddings"]))
    load(model, data, "seg.")
    with torch.no_grad():
        label_logits, selected, attn_logits, seg, grid = model(images)
    out.update({"label_logits": label_logits, "selected": selected, "attn_logits": attn_logits, "seg_logits": seg})
    # Losses (eval mode: plain top-k, no batch drop).
    valid = labels != 255
    present = torch.zeros(labels.shape[0], num_classes)
    for b in range(labels.shape[0]):
        present[b, labels[b][valid[b]].unique()] = 1
    out["present"] = present
    seg_up = F.interpolate(seg, size=labels.shape[1:], mode="bilinear", align_corners=False)
    out["loss_seg"] = F.cross_entropy(seg_up, labels, ignore_index=255, reduction="none").mean()
    out["loss_ml"] = float(cfg["lambda_ml"]) * asl(label_logits, present)
    h, w = int(grid[0]), int(grid[1])
    H, W = labels.shape[1:]
    rows = [(i * H) // h for i in range(h)]
    cols = [(j * W) // w for j in range(w)]
    small = labels[:, rows][:, :, cols].reshape(labels.shape[0], -1)          # nearest, floor(i*H/h)
    target = torch.full_like(small, 255)
    for b in range(small.shape[0]):
        for p in range(small.shape[1]):
            hits = (selected[b] == small[b, p]).nonzero()
            if len(hits):
                target[b, p] = hits[0, 0]
    out["aux_targets"] = target
    ce = F.cross_entropy(attn_logits.reshape(-1, attn_logits.shape[-1]), target.reshape(-1), ignore_index=255)
    out["loss_aux"] = float(cfg["lambda_aux"]) * ce
    # ASL value and gradient on their own inputs.
    x = data["asl.logits"].clone().requires_grad_(True)
    value = asl(x, data["asl.targets"])
    value.backward()
    out["asl.value"], out["asl.grad"] = value.detach(), x.grad
    torch.save({k: (v.contiguous() if torch.is_tensor(v) else torch.tensor(v)) for k, v in out.items()}, dst)


if __name__ == "__main__":
    main()
