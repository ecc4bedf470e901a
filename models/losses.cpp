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

torch::Tensor asymmetric_loss(const torch::Tensor& logits, const torch::Tensor& targets,
                              const AsymmetricLossOptions& options) {
  SEGRUN_CHECK(logits.dim() == 2 && logits.sizes() == targets.sizes(), ModelError,
               "asymmetric loss: logits " << logits.sizes() << " and targets " << targets.sizes()
                                          << " must both be [B, K]");
  torch::Tensor y = targets.to(logits.scalar_type());
  torch::Tensor p = torch::sigmoid(logits);
  torch::Tensor p_neg = 1.0 - p;
  if (options.clip > 0) p_neg = (p_neg + options.clip).clamp_max(1.0);  // 1 - p_m
  torch::Tensor log_likelihood =
      y * torch::log(p.clamp_min(options.eps)) + (1.0 - y) * torch::log(p_neg.clamp_min(options.eps));
  if (options.gamma_neg > 0 || options.gamma_pos > 0) {
    torch::Tensor focal;
    {
      torch::NoGradGuard no_grad;
      torch::Tensor pt = p * y + p_neg * (1.0 - y);
      torch::Tensor gamma = y * options.gamma_pos + (1.0 - y) * options.gamma_neg;
      focal = torch::pow(1.0 - pt, gamma);
    }
    log_likelihood = log_likelihood * focal;
  }
  return -log_likelihood.mean();
}

torch::Tensor masked_cross_entropy(const torch::Tensor& logits, const torch::Tensor& targets,
                                   int64_t ignore_index) {
  namespace F = torch::nn::functional;
  SEGRUN_CHECK(logits.dim() == targets.dim() + 1 && logits.sizes().slice(0, targets.dim()) == targets.sizes(),
               ModelError, "cross-entropy: logits " << logits.sizes() << " do not match targets " << targets.sizes());
  torch::Tensor flat_logits = logits.reshape({-1, logits.size(-1)});
  torch::Tensor flat_targets = targets.reshape({-1});
  torch::Tensor valid = flat_targets.ne(ignore_index);
  torch::Tensor per_entry = F::cross_entropy(
      flat_logits, flat_targets.masked_fill(~valid, 0), F::CrossEntropyFuncOptions().reduction(torch::kNone));
  torch::Tensor count = valid.sum().clamp_min(1).to(logits.scalar_type());
  return (per_entry * valid.to(logits.scalar_type())).sum() / count;
}

}  // namespace segrun::models
