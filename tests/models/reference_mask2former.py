"""Independent references for tests/models/mask2former_test.cpp, run by /usr/bin/python3 (torch 1.13,
scipy). Usage: reference_mask2former.py IN OUT. IN is a torch.save'd dict of tensors (written by
torch::pickle_save); OUT receives a dict of results. What is computed depends on the keys present:
  cost_<i>                 -> lsa_rows_<i>, lsa_cols_<i>, lsa_total_<i>   (scipy linear_sum_assignment)
  msda_value, ...          -> msda_out        (Deformable DETR's ms_deform_attn_core_pytorch)
  attn_query, ...          -> attn_out        (MSDeformAttn.forward written out in PyTorch)
  pl_logits, pl_targets    -> pl_bce, pl_dice, pc_bce, pc_dice (Mask2Former's point losses / costs)
  ps_input, ps_coords      -> ps_out          (detectron2 point_sample)
  pe_shape                 -> pe_out          (Mask2Former PositionEmbeddingSine, normalize=True)
"""
import math
import sys

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment


def ms_deform_attn_core_pytorch(value, value_spatial_shapes, sampling_locations, attention_weights):
    N_, S_, M_, D_ = value.shape
    _, Lq_, M_, L_, P_, _ = sampling_locations.shape
    value_list = value.split([H_ * W_ for H_, W_ in value_spatial_shapes], dim=1)
    sampling_grids = 2 * sampling_locations - 1
    sampling_value_list = []
    for lid_, (H_, W_) in enumerate(value_spatial_shapes):
        value_l_ = value_list[lid_].flatten(2).transpose(1, 2).reshape(N_ * M_, D_, H_, W_)
        sampling_grid_l_ = sampling_grids[:, :, :, lid_].transpose(1, 2).flatten(0, 1)
        sampling_value_l_ = F.grid_sample(value_l_, sampling_grid_l_, mode="bilinear",
                                          padding_mode="zeros", align_corners=False)
        sampling_value_list.append(sampling_value_l_)
    attention_weights = attention_weights.transpose(1, 2).reshape(N_ * M_, 1, Lq_, L_ * P_)
    output = (torch.stack(sampling_value_list, dim=-2).flatten(-2) * attention_weights).sum(-1)
    return output.view(N_, M_ * D_, Lq_).transpose(1, 2).contiguous()


def shapes_of(t):
    return [(int(h), int(w)) for h, w in t.tolist()]


def msdeform_attn(d):
    query, ref, inp = d["attn_query"], d["attn_reference"], d["attn_input"]
    shapes = shapes_of(d["attn_shapes"])
    M, L, P = (int(x) for x in d["attn_mlp"].tolist())
    N, Lq, C = query.shape
    value = F.linear(inp, d["attn_value_w"], d["attn_value_b"]).view(N, inp.shape[1], M, C // M)
    off = F.linear(query, d["attn_offset_w"], d["attn_offset_b"]).view(N, Lq, M, L, P, 2)
    aw = F.linear(query, d["attn_weight_w"], d["attn_weight_b"]).view(N, Lq, M, L * P)
    aw = F.softmax(aw, -1).view(N, Lq, M, L, P)
    normalizer = torch.tensor([[w, h] for h, w in shapes], dtype=query.dtype)
    loc = ref[:, :, None, :, None, :] + off / normalizer[None, None, None, :, None, :]
    out = ms_deform_attn_core_pytorch(value, shapes, loc, aw)
    return F.linear(out, d["attn_out_w"], d["attn_out_b"])


def point_sample(inp, coords):
    return F.grid_sample(inp, (2.0 * coords - 1.0).unsqueeze(2), align_corners=False).squeeze(3)


def sine_pe(b, h, w, num_pos_feats):
    mask = torch.zeros(b, h, w, dtype=torch.bool)
    not_mask = ~mask
    y_embed = not_mask.cumsum(1, dtype=torch.float32)
    x_embed = not_mask.cumsum(2, dtype=torch.float32)
    eps, scale = 1e-6, 2 * math.pi
    y_embed = y_embed / (y_embed[:, -1:, :] + eps) * scale
    x_embed = x_embed / (x_embed[:, :, -1:] + eps) * scale
    dim_t = torch.arange(num_pos_feats, dtype=torch.float32)
    dim_t = 10000 ** (2 * (dim_t // 2) / num_pos_feats)
    pos_x = x_embed[:, :, :, None] / dim_t
    pos_y = y_embed[:, :, :, None] / dim_t
    pos_x = torch.stack((pos_x[:, :, :, 0::2].sin(), pos_x[:, :, :, 1::2].cos()), dim=4).flatten(3)
    pos_y = torch.stack((pos_y[:, :, :, 0::2].sin(), pos_y[:, :, :, 1::2].cos()), dim=4).flatten(3)
    return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)


def main():
    d = torch.load(sys.argv[1])
    out = {}
    i = 0
    while f"cost_{i}" in d:
        c = d[f"cost_{i}"].double().numpy()
        r, cc = linear_sum_assignment(c)
        out[f"lsa_rows_{i}"] = torch.tensor(r, dtype=torch.int64)
        out[f"lsa_cols_{i}"] = torch.tensor(cc, dtype=torch.int64)
        out[f"lsa_total_{i}"] = torch.tensor([c[r, cc].sum()], dtype=torch.float64)
        i += 1
    if "msda_value" in d:
        out["msda_out"] = ms_deform_attn_core_pytorch(d["msda_value"], shapes_of(d["msda_shapes"]),
                                                      d["msda_locations"], d["msda_weights"])
    if "attn_query" in d:
        out["attn_out"] = msdeform_attn(d)
    if "pl_logits" in d:
        x, t, num_masks = d["pl_logits"], d["pl_targets"], float(d["pl_num_masks"].item())
        bce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
        out["pl_bce"] = (bce.mean(1).sum() / num_masks).reshape(1)
        s = x.sigmoid()
        dice = 1 - (2 * (s * t).sum(-1) + 1) / (s.sum(-1) + t.sum(-1) + 1)
        out["pl_dice"] = (dice.sum() / num_masks).reshape(1)
        # Mask2Former's batch_sigmoid_ce_loss / batch_dice_loss against targets pc_targets [T, P].
        pt = d["pc_targets"]
        hw = x.shape[1]
        pos = F.binary_cross_entropy_with_logits(x, torch.ones_like(x), reduction="none")
        neg = F.binary_cross_entropy_with_logits(x, torch.zeros_like(x), reduction="none")
        out["pc_bce"] = (torch.einsum("nc,mc->nm", pos, pt) + torch.einsum("nc,mc->nm", neg, 1 - pt)) / hw
        num = 2 * torch.einsum("nc,mc->nm", s, pt)
        den = s.sum(-1)[:, None] + pt.sum(-1)[None, :]
        out["pc_dice"] = 1 - (num + 1) / (den + 1)
    if "ps_input" in d:
        out["ps_out"] = point_sample(d["ps_input"], d["ps_coords"])
    if "pe_shape" in d:
        b, h, w, f = (int(x) for x in d["pe_shape"].tolist())
        out["pe_out"] = sine_pe(b, h, w, f)
    # LibTorch's unpickler lacks SETITEM (a one-entry dict): always write at least two entries.
    out["count"] = torch.tensor([len(out)])
    torch.save({k: v.contiguous() for k, v in out.items()}, sys.argv[2])


if __name__ == "__main__":
    main()
