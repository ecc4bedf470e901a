"""Independent references for tests/models/mask2former_test.cpp, run by /usr/bin/python3 (torch 1.13,
scipy). Usage: reference_mask2former.py IN OUT. IN is a torch.save'd dict of tensors (written by
torch::pickle_save); OUT receives a dict of results. What is computed depends on the keys present:
  cost_<i>                 -> lsa_rows_<i>, lsa_cols_<i>, lsa_total_<i>   (scipy linear_sum_assignment)
  msda_value, ...          -> msda_out        (Deformable DETR's ms_deform_attn_core_pytorch)
  attn_query, ...          -> attn_out        (MSDeformAttn.forward written out in PyTorch)
  pl_logits, pl_targets    -> pl_bce, pl_dice, pc_bce, pc_dice (Mask2Former's point losses / costs)
  ps_input, ps_coords      -> ps_out          (detectron2 point_sample)
  pe_shape                 -> pe_out          (Mask2Former PositionEmbeddingSine, normalize=True)
  dec_cfg, dec.<param>, ...-> dec_cls_<i>, dec_mask_<i> (MultiScaleMaskedTransformerDecoder.forward
                              written out with F.multi_head_attention_forward and a 3-D bool mask),
                              dec_full_rows (fully masked rows reset to "attend everywhere")
  pix_cfg, pix.<param>, ...-> pix_mask_features, pix_ms_<l> (MSDeformAttnPixelDecoder.forward)
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
    names = {"value": "value_proj", "offset": "sampling_offsets", "weight": "attention_weights", "out": "output_proj"}
    W = {}
    for short, module in names.items():
        W[module + ".weight"], W[module + ".bias"] = d[f"attn_{short}_w"], d[f"attn_{short}_b"]
    M, L, P = (int(x) for x in d["attn_mlp"].tolist())
    return msda_forward(W, "", d["attn_query"], d["attn_reference"], d["attn_input"], shapes_of(d["attn_shapes"]),
                        M, L, P)


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


def msda_forward(W, prefix, query, ref, inp, shapes, M, L, P):
    N, Lq, C = query.shape
    value = F.linear(inp, W[prefix + "value_proj.weight"], W[prefix + "value_proj.bias"]).view(N, inp.shape[1], M, C // M)
    off = F.linear(query, W[prefix + "sampling_offsets.weight"], W[prefix + "sampling_offsets.bias"])
    off = off.view(N, Lq, M, L, P, 2)
    aw = F.linear(query, W[prefix + "attention_weights.weight"], W[prefix + "attention_weights.bias"])
    aw = F.softmax(aw.view(N, Lq, M, L * P), -1).view(N, Lq, M, L, P)
    normalizer = torch.tensor([[w, h] for h, w in shapes], dtype=query.dtype)
    loc = ref[:, :, None, :, None, :] + off / normalizer[None, None, None, :, None, :]
    out = ms_deform_attn_core_pytorch(value, shapes, loc, aw)
    return F.linear(out, W[prefix + "output_proj.weight"], W[prefix + "output_proj.bias"])


def pixel_decoder(d):
    C, M, layers, points, groups = (int(x) for x in d["pix_cfg"].tolist())
    W = {k[4:]: v for k, v in d.items() if k.startswith("pix.")}
    feats = [d[f"pix_c{i}"] for i in range(1, 5)]
    srcs, pos, shapes = [], [], []
    for i, f in enumerate([feats[3], feats[2], feats[1]]):
        x = F.conv2d(f, W[f"input_proj.{i}.0.weight"], W[f"input_proj.{i}.0.bias"])
        x = F.group_norm(x, groups, W[f"input_proj.{i}.1.weight"], W[f"input_proj.{i}.1.bias"])
        B, _, h, w = x.shape
        shapes.append((h, w))
        srcs.append(x.flatten(2).transpose(1, 2))
        pos.append(sine_pe(B, h, w, C // 2).flatten(2).transpose(1, 2) + W["level_embed"][i].view(1, 1, -1))
    src, pos = torch.cat(srcs, 1), torch.cat(pos, 1)
    refs = []
    for h, w in shapes:  # Deformable DETR get_reference_points with all valid ratios 1
        ref_y, ref_x = torch.meshgrid(torch.linspace(0.5, h - 0.5, h), torch.linspace(0.5, w - 0.5, w), indexing="ij")
        refs.append(torch.stack((ref_x.reshape(-1) / w, ref_y.reshape(-1) / h), -1))
    ref = torch.cat(refs, 0)[None, :, None, :].expand(src.shape[0], -1, 3, 2)
    for l in range(layers):
        p = f"encoder.{l}."
        attn = msda_forward(W, p + "self_attn.", src + pos, ref, src, shapes, M, 3, points)
        src = F.layer_norm(src + attn, (C,), W[p + "norm1.weight"], W[p + "norm1.bias"])
        hidden = F.relu(F.linear(src, W[p + "linear1.weight"], W[p + "linear1.bias"]))
        src = F.layer_norm(src + F.linear(hidden, W[p + "linear2.weight"], W[p + "linear2.bias"]), (C,),
                           W[p + "norm2.weight"], W[p + "norm2.bias"])
    out, start = {}, 0
    B = src.shape[0]
    for i, (h, w) in enumerate(shapes):
        out[f"pix_ms_{i}"] = src[:, start:start + h * w].transpose(1, 2).reshape(B, C, h, w)
        start += h * w
    lateral = F.group_norm(F.conv2d(feats[0], W["adapter_1.0.weight"]), groups, W["adapter_1.1.weight"],
                           W["adapter_1.1.bias"])
    y = lateral + F.interpolate(out["pix_ms_2"], size=lateral.shape[-2:], mode="bilinear", align_corners=False)
    y = F.relu(F.group_norm(F.conv2d(y, W["layer_1.0.weight"], padding=1), groups, W["layer_1.1.weight"],
                            W["layer_1.1.bias"]))
    out["pix_mask_features"] = F.conv2d(y, W["mask_features.weight"], W["mask_features.bias"])
    return out


def masked_decoder(d):
    C, heads, L = (int(x) for x in d["dec_cfg"].tolist())
    P = {k[4:]: v for k, v in d.items() if k.startswith("dec.")}
    x = [d["dec_ms_0"], d["dec_ms_1"], d["dec_ms_2"]]
    mf = d["dec_mask_features"]
    B = mf.shape[0]

    def ln(t, prefix):
        return F.layer_norm(t, (C,), P[prefix + ".weight"], P[prefix + ".bias"])

    def mha(prefix, q, k, v, mask=None):
        out, _ = F.multi_head_attention_forward(
            q, k, v, C, heads, P[prefix + ".in_proj_weight"], P[prefix + ".in_proj_bias"], None, None,
            False, 0.0, P[prefix + ".out_proj.weight"], P[prefix + ".out_proj.bias"], training=False,
            attn_mask=mask, need_weights=False)
        return out

    def predict(output, size):
        dec = ln(output, "decoder_norm").transpose(0, 1)
        cls = F.linear(dec, P["class_embed.weight"], P["class_embed.bias"])
        e = dec
        for j in range(3):
            e = F.linear(e, P[f"mask_embed.{j}.weight"], P[f"mask_embed.{j}.bias"])
            if j < 2:
                e = F.relu(e)
        masks = torch.einsum("bqc,bchw->bqhw", e, mf)
        am = F.interpolate(masks, size=size, mode="bilinear", align_corners=False)
        am = (am.sigmoid().flatten(2).unsqueeze(1).repeat(1, heads, 1, 1).flatten(0, 1) < 0.5).bool()
        return cls, masks, am

    src, pos, sizes = [], [], []
    for i in range(3):
        h, w = x[i].shape[-2:]
        sizes.append((h, w))
        pos.append(sine_pe(B, h, w, C // 2).flatten(2).permute(2, 0, 1))
        src.append((x[i].flatten(2) + P["level_embed.weight"][i][None, :, None]).permute(2, 0, 1))
    query_embed = P["query_embed.weight"].unsqueeze(1).repeat(1, B, 1)
    output = P["query_feat.weight"].unsqueeze(1).repeat(1, B, 1)
    out = {}
    full_rows = 0
    cls, masks, am = predict(output, sizes[0])
    out["dec_cls_0"], out["dec_mask_0"] = cls, masks
    for i in range(L):
        lvl = i % 3
        full_rows += int((am.sum(-1) == am.shape[-1]).sum())
        am[torch.where(am.sum(-1) == am.shape[-1])] = False
        p = f"transformer_cross_attention_layers.{i}"
        output = ln(output + mha(p + ".multihead_attn", output + query_embed, src[lvl] + pos[lvl], src[lvl], am),
                    p + ".norm")
        p = f"transformer_self_attention_layers.{i}"
        qk = output + query_embed
        output = ln(output + mha(p + ".self_attn", qk, qk, output), p + ".norm")
        p = f"transformer_ffn_layers.{i}"
        hidden = F.relu(F.linear(output, P[p + ".linear1.weight"], P[p + ".linear1.bias"]))
        output = ln(output + F.linear(hidden, P[p + ".linear2.weight"], P[p + ".linear2.bias"]), p + ".norm")
        cls, masks, am = predict(output, sizes[(i + 1) % 3])
        out[f"dec_cls_{i + 1}"], out[f"dec_mask_{i + 1}"] = cls, masks
    out["dec_full_rows"] = torch.tensor([full_rows])
    return out


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
    if "dec_cfg" in d:
        out.update(masked_decoder(d))
    if "pix_cfg" in d:
        out.update(pixel_decoder(d))
    # LibTorch's unpickler lacks SETITEM (a one-entry dict): always write at least two entries.
    out["count"] = torch.tensor([len(out)])
    torch.save({k: v.contiguous() for k, v in out.items()}, sys.argv[2])


if __name__ == "__main__":
    main()
