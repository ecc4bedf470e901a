#pragma once
// Segmentation losses with mmsegmentation semantics.
// Pure functions of their tensors; thread-safe as far as LibTorch ops are.

#include <torch/torch.h>

#include <string>

#include "dist/communicator.h"

namespace segrun::models {

constexpr int64_t kIgnoreIndex = 255;

// Pixel-wise softmax cross-entropy, mmseg `CrossEntropyLoss` (avg_non_ignore = false):
// logits [B, K, h, w] are resized bilinearly (align_corners = false) to the labels' [H, W] when
// the sizes differ; labels int64 [B, H, W] with `ignore_index` for "no label"; the per-pixel loss
// (0 at ignored pixels) is averaged over ALL B*H*W pixels, ignored ones included.
// A label outside [0, K) other than ignore_index throws DataError on the CPU; on a GPU it is not
// checked here (that would stall the device queue every step; the training loader checks labels
// on the host) and trips CUDA's device-side assert in the kernel.
torch::Tensor seg_cross_entropy(const torch::Tensor& logits, const torch::Tensor& labels,
                                int64_t ignore_index = kIgnoreIndex);

// 0, attached to x's graph (every parameter behind x gets a zero gradient, so a step without a
// target still reaches the same parameters on every rank), summed in float32 when x is fp16 or
// bf16 (autocast): a half sum of many elements can overflow to inf, and inf * 0 is NaN.
torch::Tensor zero_attached(const torch::Tensor& x);

// Asymmetric loss for multi-label classification (Ridnik et al. 2021, Alibaba-MIIL/ASL
// `AsymmetricLoss`): p = sigmoid(logits); negatives use the shifted probability
// p_m = max(p - clip, 0); per element
//   L = -[ y * (1-p)^gamma_pos * log(max(p, eps)) + (1-y) * p_m^gamma_neg * log(max(1-p_m, eps)) ],
// the focal factor computed without gradient (the reference's disable_torch_grad_focal_loss).
// Reduction: the MEAN over all B*K elements (the reference sums; CLIP-SP's lambda1 = 10 balances
// a per-element mean against the pixel-mean CE, see docs/models.md).
// logits float [B, K] (fp16 / bf16 logits are computed in float32: eps = 1e-8 is 0 in half, and
// log(0) would make the loss NaN), targets {0,1} float [B, K].
struct AsymmetricLossOptions {
  double gamma_neg = 4.0;
  double gamma_pos = 1.0;
  double clip = 0.05;
  double eps = 1e-8;
};
torch::Tensor asymmetric_loss(const torch::Tensor& logits, const torch::Tensor& targets,
                              const AsymmetricLossOptions& options = {});

// MTA-CLIP's mask-to-text contrastive loss (Eqs. 6-7 and Sec. 3.2.2) for the mask queries that
// were matched to a ground-truth segment: masks [Q, D] (projected mask queries), texts [K, C, D]
// (projected text queries: K prompts x C classes), labels int64 [Q] (each query's class).
// S(m, t) = cos(m, t) / tau. The positive of query i is its class's prompt with the highest S;
// MixNeg: the other K*C - 1 text queries are the negatives; SeparateNeg: only the K*(C-1) queries
// of other classes are (the class's other prompts leave the denominator). Returns the mean over
// the Q queries of -log(exp S_pos / (exp S_pos + sum over negatives exp S)); 0 (attached to the
// graph) when Q = 0. Undefined negatives mode -> ConfigError naming model.mta_clip.negatives.
torch::Tensor mask_text_contrastive_loss(const torch::Tensor& masks, const torch::Tensor& texts,
                                         const torch::Tensor& labels, double tau, const std::string& negatives);
// The same per query: [Q] (for a weighted sum, as MTA-CLIP's code takes over all queries).
torch::Tensor mask_text_contrastive_losses(const torch::Tensor& masks, const torch::Tensor& texts,
                                           const torch::Tensor& labels, double tau, const std::string& negatives);

// Cross-entropy over the last dimension of `logits` [..., C] against int64 `targets` [...]
// (`ignore_index` entries skipped): the sum over the non-ignored entries divided by their count --
// with `comm`, by the mean over the ranks of their counts (one all-reduce, a collective), so that
// the gradients averaged over ranks are those of the global batch; 0 (still attached to the graph)
// when every entry is ignored.
torch::Tensor masked_cross_entropy(const torch::Tensor& logits, const torch::Tensor& targets,
                                   int64_t ignore_index = kIgnoreIndex, dist::Communicator* comm = nullptr);

}  // namespace segrun::models
