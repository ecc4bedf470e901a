"""Independent FLOP and parameter reference for segrun's flop counter (models/flop_counter.h).

Traces the PyTorch reference models of reference_clip_fpn.py with torch.jit.trace (eval mode,
no grad), as fvcore's FlopCountAnalysis does, and applies fvcore's default per-op rules
(fvcore/nn/jit_handles.py, _DEFAULT_SUPPORTED_OPS; one multiply-add = one FLOP) to every aten
node of the inlined graph. fvcore itself is not installable here; its rules are short and are
written out below from its published source.

Usage: reference_fvcore_flops.py MODEL VARIANT WIDTH CHANNELS CLASSES H W
  MODEL = fpn      the Semantic FPN segmentor, logits resized to H x W (segrun's predict_logits)
        = clip     the CLIP ModifiedResNet with attention pooling (input resolution H)
Prints one JSON object: {"flops": total, "params": n, "by_op": {op: flops}, "identity_resize": f}.
identity_resize: the part of "flops" from resizes whose output size equals the input size
(mmseg's FPNHead resizes every level to the 1/4 map, even the one already there; segrun's head
skips those no-op calls, so its count is flops - identity_resize).
"""
import json
import math
import os
import sys
import warnings

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference_clip_fpn as ref  # noqa: E402


def shape(value):
    t = value.type()
    if t.kind() != "TensorType":
        return None
    return t.sizes()


def prod(xs):
    return math.prod(xs) if xs else 1


def conv(inputs, outputs):
    x, w, out = shape(inputs[0]), shape(inputs[1]), shape(outputs[0])
    transposed = inputs[6].toIValue()
    spatial = (x if transposed else out)[2:]
    return x[0] * prod(w) * prod(spatial)


def matmul(inputs, outputs):
    a, b = shape(inputs[0]), shape(inputs[1])
    return prod(a) * b[-1]


def addmm(inputs, outputs):
    a, b = shape(inputs[1]), shape(inputs[2])
    return a[0] * a[1] * b[1]


def bmm(inputs, outputs):
    a, b = shape(inputs[0]), shape(inputs[1])
    return a[0] * a[1] * a[2] * b[2]


def linear(inputs, outputs):
    return prod(shape(inputs[0])) * shape(inputs[1])[0]


def batch_norm(inputs, outputs):
    if inputs[5].toIValue():
        return prod(shape(inputs[0])) * (5 if shape(inputs[1]) is not None else 4)
    return prod(shape(inputs[0])) * (2 if shape(inputs[1]) is not None else 1)


def norm(affine_index):
    return lambda inputs, outputs: prod(shape(inputs[0])) * (5 if shape(inputs[affine_index]) is not None else 4)


def elementwise(input_scale, output_scale):
    def count(inputs, outputs):
        total = 0
        if input_scale:
            total += input_scale * prod(shape(inputs[0]))
        if output_scale:
            total += output_scale * prod(shape(outputs[0]))
        return total
    return count


RULES = {
    "aten::addmm": addmm,
    "aten::bmm": bmm,
    "aten::_convolution": conv,
    "aten::matmul": matmul,
    "aten::mm": matmul,
    "aten::linear": linear,
    "aten::batch_norm": batch_norm,
    "aten::group_norm": norm(2),
    "aten::layer_norm": norm(2),
    "aten::instance_norm": norm(1),
    "aten::upsample_nearest2d": elementwise(0, 1),
    "aten::upsample_bilinear2d": elementwise(0, 4),
    "aten::adaptive_avg_pool2d": elementwise(1, 0),
    "aten::grid_sampler": elementwise(0, 4),
}


class Predict(torch.nn.Module):
    def __init__(self, seg):
        super().__init__()
        self.seg = seg

    def forward(self, x):
        logits = self.seg(x)[1]
        return F.interpolate(logits, size=x.shape[2:], mode="bilinear", align_corners=False)


def main():
    warnings.simplefilter("ignore")  # tracer warnings about Python ints in shapes
    model_kind, variant, width, channels, classes, h, w = sys.argv[1:8]
    width, channels, classes, h, w = int(width), int(channels), int(classes), int(h), int(w)
    torch.manual_seed(0)
    if model_kind == "fpn":
        model = Predict(ref.FpnSegmentor(variant, width, channels, classes))
        params = sum(p.numel() for p in model.seg.parameters())
    else:
        model = ref.ModifiedResNet(variant, width, h, with_attnpool=True)
        params = sum(p.numel() for p in model.parameters())
    model.eval()
    x = torch.randn(1, 3, h, w)
    with torch.no_grad():
        graph, _ = torch.jit._get_trace_graph(model, (x,))  # what fvcore traces (shapes complete)
    by_op = {}
    identity_resize = 0
    for node in graph.nodes():
        rule = RULES.get(node.kind())
        if rule is None:
            continue
        inputs, outputs = list(node.inputs()), list(node.outputs())
        flops = int(rule(inputs, outputs))
        by_op[node.kind()] = by_op.get(node.kind(), 0) + flops
        if node.kind().startswith("aten::upsample") and shape(inputs[0]) == shape(outputs[0]):
            identity_resize += flops
    print(json.dumps({"flops": sum(by_op.values()), "params": params, "by_op": by_op,
                      "identity_resize": identity_resize}))


if __name__ == "__main__":
    main()
