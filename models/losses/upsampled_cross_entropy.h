#pragma once
// mmseg's decode-head loss, fused: bilinear upsampling of low-resolution logits to the label size
// (align_corners = false, PyTorch's upsample_bilinear2d index and weight rules) followed by the
// per-pixel softmax cross-entropy averaged over ALL B*H*W pixels (ignored ones count as 0), as
// seg_cross_entropy (models/losses/seg_losses.h) defines it -- without materialising the [B, K, H, W] upsampled
// logits. The unfused path writes and re-reads that tensor about ten times per step (upsample,
// log-softmax over a channel stride of H*W, NLL, and their backwards: ~0.4 s per 2 x 150 x 256^2
// on one core); here each output row's K-vectors are built from the four source rows of the
// channels-last logits, reduced with a vectorized logsumexp while they are in cache, and the
// gradient (softmax - one-hot, scattered back to the four source pixels with the same weights) is
// accumulated at the logits' own resolution in the same pass.
// CPU float32 only (callers fall back to the unfused ops otherwise). Labels int64 [B, H, W]; a value
// outside [0, K) other than ignore_index throws DataError naming it. Parallel over images with
// at::parallel_for (images never share gradient rows); otherwise a pure function.
#include <torch/torch.h>

#include <cstdint>

namespace segrun::models {

// logits float32 CPU [B, K, h, w], labels int64 [B, H, W] -> scalar mean loss, differentiable
// with respect to logits (the gradient is computed in the forward pass when logits require it).
torch::Tensor upsampled_cross_entropy(const torch::Tensor& logits, const torch::Tensor& labels, int64_t ignore_index);

}  // namespace segrun::models
