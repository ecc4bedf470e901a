// Segmentation losses: see losses.h.
#include "models/losses.h"

#include "core/error.h"

namespace segrun::models {

torch::Tensor seg_cross_entropy(const torch::Tensor& logits, const torch::Tensor& labels,
                                int64_t ignore_index) {
  namespace F = torch::nn::functional;
  SEGRUN_CHECK(logits.dim() == 4, ModelError, "cross-entropy: logits must be [B, K, h, w], got " << logits.sizes());
  SEGRUN_CHECK(labels.dim() == 3 && labels.size(0) == logits.size(0), DataError,
               "cross-entropy: labels must be [B, H, W] with B = " << logits.size(0) << ", got " << labels.sizes());
  SEGRUN_CHECK(labels.scalar_type() == torch::kLong, DataError,
               "cross-entropy: labels must be int64, got " << labels.scalar_type());
  const int64_t classes = logits.size(1);
  {
    torch::Tensor valid = labels.ne(ignore_index);
    torch::Tensor bad = valid & (labels.lt(0) | labels.ge(classes));
    SEGRUN_CHECK(!bad.any().item<bool>(), DataError,
                 "cross-entropy: label values must be in [0, " << classes << ") or " << ignore_index
                                                                << "; found " << labels.masked_select(bad)[0].item<int64_t>());
  }
  torch::Tensor resized = logits;
  if (logits.size(2) != labels.size(1) || logits.size(3) != labels.size(2)) {
    resized = F::interpolate(logits, F::InterpolateFuncOptions()
                                         .size(std::vector<int64_t>{labels.size(1), labels.size(2)})
                                         .mode(torch::kBilinear)
                                         .align_corners(false));
  }
  torch::Tensor per_pixel = F::cross_entropy(
      resized, labels, F::CrossEntropyFuncOptions().ignore_index(ignore_index).reduction(torch::kNone));
  return per_pixel.mean();
}

}  // namespace segrun::models
