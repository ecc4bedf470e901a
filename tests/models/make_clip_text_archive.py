"""Writes a tiny OpenAI-CLIP-like TorchScript archive for segrun's text weight-import test.

Like the released RN50.pt: a traced float16 module with the text tower's tensors at the top level
(token_embedding.weight, positional_embedding [77, W], transformer.resblocks.N.*, ln_final.*,
text_projection), next to `visual.*` tensors and logit_scale, which the text import skips.
The text tower is the independent reference in reference_clip_text.py.

Usage: make_clip_text_archive.py ARCHIVE EXPECTED VOCAB WIDTH HEADS LAYERS EMBED
EXPECTED (torch.save dict): "<key>" = the archive's text tensors in float32.
"""
import os
import sys

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference_clip_text as ref  # noqa: E402


class TinyClip(nn.Module):
    def __init__(self, vocab, width, heads, layers, embed):
        super().__init__()
        text = ref.TextEncoder(77, vocab, width, heads, layers, embed)
        # The text tower lives at the top level of OpenAI's CLIP module.
        self.token_embedding = text.token_embedding
        self.positional_embedding = text.positional_embedding
        self.transformer = text.transformer
        self.ln_final = text.ln_final
        self.text_projection = text.text_projection
        self.visual = nn.Conv2d(3, embed, 4, bias=False)
        self.logit_scale = nn.Parameter(torch.ones([]) * 4.6052)
        self._text = [text]  # not registered: forward only

    def forward(self, ids):
        return self._text[0](ids) * self.logit_scale.exp()


def main():
    archive, expected = sys.argv[1], sys.argv[2]
    vocab, width, heads, layers, embed = (int(v) for v in sys.argv[3:8])
    torch.manual_seed(5)
    model = TinyClip(vocab, width, heads, layers, embed)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.5)
    model.eval()
    ids = torch.zeros(2, 77, dtype=torch.long)
    ids[:, 0] = vocab - 2
    ids[:, 1:4] = torch.randint(1, vocab - 2, (2, 3))
    ids[:, 4] = vocab - 1
    traced = torch.jit.trace(model, ids).half()
    traced.save(archive)

    loaded = torch.jit.load(archive)
    out = {}
    for name, value in list(loaded.named_parameters()) + list(loaded.named_buffers()):
        if not name.startswith("visual.") and name != "logit_scale":
            out[name] = value.float()
    torch.save(out, expected)


if __name__ == "__main__":
    main()
