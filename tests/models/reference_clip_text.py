"""Independent PyTorch reference for segrun's CLIP text encoder (models/clip/clip_text.cpp).

Written from OpenAI CLIP's text tower design (research/models.md sections 1.3 and 1.8), not from
segrun's C++: token_embedding + positional_embedding, pre-LN residual blocks with
nn.MultiheadAttention over the FULL context and an additive causal mask (-inf above the
diagonal), MLP c_fc -> QuickGELU -> c_proj, ln_final, the feature at argmax(ids) (EOT), then
@ text_projection. Parameter names are the OpenAI archive's.

Usage: reference_clip_text.py IN OUT
IN (dict written by the C++ test with torch::pickle_save): "text.<param>", "ids" [N, ctx],
"cfg.{context_length,vocab_size,width,heads,layers,embed_dim}".
OUT gets "features" [N, embed_dim] and "ids" (echoed).
"""
import collections
import sys

import torch
import torch.nn as nn


class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(collections.OrderedDict([
            ("c_fc", nn.Linear(width, 4 * width)), ("gelu", QuickGELU()), ("c_proj", nn.Linear(4 * width, width))]))
        self.ln_2 = nn.LayerNorm(width)

    def forward(self, x, mask):
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width, layers, heads):
        super().__init__()
        self.resblocks = nn.ModuleList([ResidualAttentionBlock(width, heads) for _ in range(layers)])

    def forward(self, x, mask):
        for block in self.resblocks:
            x = block(x, mask)
        return x


class TextEncoder(nn.Module):
    def __init__(self, context_length, vocab_size, width, heads, layers, embed_dim):
        super().__init__()
        self.context_length = context_length
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.positional_embedding = nn.Parameter(torch.empty(context_length, width))
        self.transformer = Transformer(width, layers, heads)
        self.ln_final = nn.LayerNorm(width)
        self.text_projection = nn.Parameter(torch.empty(width, embed_dim))

    def forward(self, ids):
        n = self.context_length
        mask = torch.full((n, n), float("-inf")).triu_(1)
        x = self.token_embedding(ids) + self.positional_embedding
        x = self.transformer(x.permute(1, 0, 2), mask).permute(1, 0, 2)
        x = self.ln_final(x)
        return x[torch.arange(x.shape[0]), ids.argmax(dim=-1)] @ self.text_projection


def attach_text_tower(clip, width, heads, layers, embed_dim):
    """Gives `clip` (an OpenAI-CLIP-like module holding `visual`) the text tower at the top level
    as the released archives have it (token_embedding, positional_embedding, transformer.*,
    ln_final, text_projection, logit_scale; the real 49408-token vocabulary), every text tensor
    drawn from N(0, 0.5) (TextEncoder leaves them uninitialized)."""
    text = TextEncoder(77, 49408, width, heads, layers, embed_dim)
    clip.token_embedding = text.token_embedding
    clip.positional_embedding = text.positional_embedding
    clip.transformer = text.transformer
    clip.ln_final = text.ln_final
    clip.text_projection = text.text_projection
    clip.logit_scale = nn.Parameter(torch.ones([]) * 4.6052)
    with torch.no_grad():
        for name, p in clip.named_parameters():
            if not name.startswith("visual."):
                p.normal_(0.0, 0.5)


def build(cfg):
    keys = ("context_length", "vocab_size", "width", "heads", "layers", "embed_dim")
    return TextEncoder(*(int(cfg[k]) for k in keys))


def main():
    src, dst = sys.argv[1], sys.argv[2]
    data = torch.load(src)
    cfg = {k[4:]: v for k, v in data.items() if k.startswith("cfg.")}
    model = build(cfg)
    state = {k[5:]: v for k, v in data.items() if k.startswith("text.")}
    model.load_state_dict(state, strict=True)
    model.eval()
    with torch.no_grad():
        features = model(data["ids"]).contiguous()
    # Two entries: LibTorch's unpickler lacks SETITEM, which pickle emits for one-item dicts.
    out = {"features": features, "ids": data["ids"]}
    torch.save(out, dst)


if __name__ == "__main__":
    main()
