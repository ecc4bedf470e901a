#pragma once
// Segmentation losses with mmsegmentation semantics.
// Pure functions of their tensors; thread-safe as far as LibTorch ops are.

#include <torch/torch.h>

namespace segrun::models {

constexpr int64_t kIgnoreIndex = 255;

// Pixel-wise softmax cross-entropy, mmseg `CrossEntropyLoss` (avg_non_ignore = false):
// logits [B, K, h, w] are resized bilinearly (align_corners = false) to the labels' [H, W] when
// the sizes differ; labels int64 [B, H, W] with `ignore_index` for "no label"; the per-pixel loss
// (0 at ignored pixels) is averaged over ALL B*H*W pixels, ignored ones included.
// A label outside [0, K) other than ignore_index throws DataError.
torch::Tensor seg_cross_entropy(const torch::Tensor& logits, const torch::Tensor& labels,
                                int64_t ignore_index = kIgnoreIndex);

}  // namespace segrun::models
