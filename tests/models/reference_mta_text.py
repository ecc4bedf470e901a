"""Independent PyTorch reference for segrun's MTA-CLIP text side.

* Learnable-context prompts through the frozen CLIP text encoder, written after DenseCLIP's
  CLIPTextContextEncoder: x = [SOT embedding, context (M vectors), class-token embeddings, EOT, pad],
  + positional embedding, causal transformer, ln_final, the feature at EOT (argmax(ids) + M)
  @ text_projection; gradients w.r.t. the contexts.
* The mask-to-text contrastive loss of MTA-CLIP (Eq. 6-7, Sec. 3.2.2), written per query with
  explicit loops: S = cos / tau, positive = the best of the K prompts of the query's class, MixNeg
  (every other text query negative) or SeparateNeg (the class's other prompts excluded).

Usage: reference_mta_text.py IN OUT; IN has "enc.<param>", "ids" [C, L], "contexts" [K, M, W],
"cfg.*", and "loss.masks" [Q, D], "loss.texts" [K, C, D], "loss.labels" [Q], "loss.tau".
OUT: "prompt_embeddings" [K, C, E], "context_grad" (of the sum of squares of the embeddings),
"mixneg", "separateneg", and their gradients w.r.t. the masks.
"""
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference_clip_text as ref  # noqa: E402


def encode_with_context(enc, ids, context):
    n, m = ids.shape[0], context.shape[1]
    tokens = enc.token_embedding(ids)
    x = torch.cat([tokens[:, :1], context.expand(n, -1, -1), tokens[:, 1:]], dim=1)
    length = x.shape[1]
    x = x + enc.positional_embedding[:length]
    mask = torch.full((length, length), float("-inf")).triu_(1)
    x = enc.transformer(x.permute(1, 0, 2), mask).permute(1, 0, 2)
    x = enc.ln_final(x)
    eot = ids.argmax(dim=-1) + m
    return x[torch.arange(n), eot] @ enc.text_projection


def contrastive(masks, texts, labels, tau, separate):
    k_prompts, classes = texts.shape[0], texts.shape[1]
    total = 0.0
    for i in range(masks.shape[0]):
        m = masks[i] / masks[i].norm()
        s = torch.stack([torch.stack([torch.dot(m, texts[k, c] / texts[k, c].norm()) / tau
                                      for c in range(classes)]) for k in range(k_prompts)])  # [K, C]
        j = int(labels[i])
        k_best = int(s[:, j].argmax())
        terms = []
        for k in range(k_prompts):
            for c in range(classes):
                if separate and c == j and k != k_best:
                    continue
                terms.append(s[k, c])
        total = total - (s[k_best, j] - torch.logsumexp(torch.stack(terms), 0))
    return total / masks.shape[0]


def main():
    src, dst = sys.argv[1], sys.argv[2]
    data = torch.load(src)
    cfg = {k[4:]: v for k, v in data.items() if k.startswith("cfg.")}
    enc = ref.build(cfg)
    enc.load_state_dict({k[4:]: v for k, v in data.items() if k.startswith("enc.")}, strict=True)
    enc.eval()
    for p in enc.parameters():
        p.requires_grad_(False)
    contexts = data["contexts"].clone().requires_grad_(True)
    out = torch.stack([encode_with_context(enc, data["ids"], contexts[k:k + 1]) for k in range(contexts.shape[0])])
    (out ** 2).sum().backward()
    result = {"prompt_embeddings": out.detach(), "context_grad": contexts.grad}
    for name, separate in (("mixneg", False), ("separateneg", True)):
        masks = data["loss.masks"].clone().double().requires_grad_(True)
        value = contrastive(masks, data["loss.texts"].double(), data["loss.labels"], float(data["loss.tau"]), separate)
        value.backward()
        result[name] = value.detach().float()
        result[name + "_grad"] = masks.grad.float()
    torch.save(result, dst)


if __name__ == "__main__":
    main()
