"""Independent PyTorch reference for segrun's MTA-CLIP mask-to-text contrastive loss over decoder
predictions (Das et al. 2024, Eqs. 5-8; the official code's projections):
  m' = mask_reproject(m),  t' = t0 + gamma * LayerNorm(text_reproject(t_hat)),
  S = cos(m', t') / tau, positive = the best of the K prompts of the matched ground-truth class,
  MixNeg: every other text query is a negative; SeparateNeg: the class's other prompts are left out,
  averaged over the matched queries of the batch, summed over predictions, times lambda.
With "all" = 1, the official code's rule instead (MTA_CLIP mta_clip/mask2former_head_det.py,
_loss_by_feat_single, query_loss_type 2 / 1; train.py appends "none" to the classes): every query
of every image is supervised, a matched one toward its class, the others toward "none" (the last
text class), each weighted by its class weight (1, or "none_weight" for "none"), and the
prediction's loss is sum(weight * loss) / sum(weight).
Written with explicit per-query loops (no shared code with segrun).

Usage: reference_mta_clip.py IN OUT. IN: "w.<name>" weights, "text" [K, C, E], "P" predictions,
"q<p>" [B, N, H] mask query states, "x<p>" [B, K*C, H] text query states, "m<p>_<b>" int64 [R, 2]
(query, class) matches, "tau", "lambda", "separate" (0/1), optionally "all" (0/1) and "none_weight".
OUT: "loss", "grad.<name>" for every weight, "grad.text".
"""
import math
import sys

import torch


def main(in_path, out_path):
    d = torch.load(in_path)
    w = {k[2:]: v.clone().double().requires_grad_(True) for k, v in d.items() if k.startswith("w.")}
    text = d["text"].double().clone().requires_grad_(True)
    k_prompts, classes, e = text.shape
    tau, lam, separate = float(d["tau"]), float(d["lambda"]), bool(int(d["separate"]))
    all_queries = bool(int(d["all"])) if "all" in d else False
    none_weight = float(d["none_weight"]) if "none_weight" in d else 1.0
    total = torch.zeros((), dtype=torch.float64)
    for p in range(int(d["P"])):
        q = d["q%d" % p].double()
        x = d["x%d" % p].double()
        batch = q.shape[0]
        mp = q @ w["mask_reproject.weight"].t() + w["mask_reproject.bias"]
        proj = x @ w["text_reproject.weight"].t() + w["text_reproject.bias"]
        proj = torch.nn.functional.layer_norm(proj, (e,), w["text_reproject_norm.weight"], w["text_reproject_norm.bias"])
        tp = text.reshape(1, k_prompts * classes, e) + w["text_gamma"] * proj  # [B, K*C, E]
        losses, weights = [], []
        for b in range(batch):
            key = "m%d_%d" % (p, b)
            matched = dict(d[key].tolist()) if key in d else {}
            if all_queries:
                supervised = [(query, matched.get(query, classes - 1)) for query in range(q.shape[1])]
            else:
                supervised = sorted(matched.items())
            for query, cls in supervised:
                m = mp[b, query]
                sims = {}
                for kk in range(k_prompts):
                    for c in range(classes):
                        t = tp[b, kk * classes + c]
                        sims[(kk, c)] = torch.dot(m, t) / (m.norm() * t.norm()) / tau
                best = max(range(k_prompts), key=lambda kk: sims[(kk, cls)].item())
                pos = sims[(best, cls)]
                terms = [pos]
                for (kk, c), s in sims.items():
                    if (kk, c) == (best, cls):
                        continue
                    if separate and c == cls:
                        continue
                    terms.append(s)
                losses.append(torch.logsumexp(torch.stack(terms), 0) - pos)
                weights.append(none_weight if all_queries and query not in matched else 1.0)
        if losses:
            wt = torch.tensor(weights, dtype=torch.float64)
            total = total + (wt * torch.stack(losses)).sum() / wt.sum()
    total = lam * total
    total.backward()
    out = {"loss": total.detach()}
    for name, v in w.items():
        out["grad." + name] = v.grad if v.grad is not None else torch.zeros_like(v)
    out["grad.text"] = text.grad
    torch.save(out, out_path)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
