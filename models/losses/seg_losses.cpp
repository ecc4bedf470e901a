// Segmentation losses: see losses.h.
#include "models/losses/seg_losses.h"

#include <limits>

#include "core/error.h"
#include "models/losses/upsampled_cross_entropy.h"

namespace segrun::models {

torch::Tensor seg_cross_entropy(const torch::Tensor& logits, const torch::Tensor& labels, int64_t ignore_index) {
  namespace F = torch::nn::functional;
  SEGRUN_CHECK(logits.dim() == 4, ModelError, "cross-entropy: logits must be [B, K, h, w], got " << logits.sizes());
  SEGRUN_CHECK(labels.dim() == 3 && labels.size(0) == logits.size(0), DataError,
               "cross-entropy: labels must be [B, H, W] with B = " << logits.size(0) << ", got " << labels.sizes());
  SEGRUN_CHECK(labels.scalar_type() == torch::kLong, DataError,
               "cross-entropy: labels must be int64, got " << labels.scalar_type());
  const bool resize = logits.size(2) != labels.size(1) || logits.size(3) != labels.size(2);
  if (resize && logits.device().is_cpu() && logits.scalar_type() == torch::kFloat32)
    return upsampled_cross_entropy(logits, labels, ignore_index);  // same value, one pass (see its header)
  const int64_t classes = logits.size(1);
  // On a GPU this check would read a flag back to the host every step (a queue stall); there the
  // labels are the loader's, which checks every label map it reads (data/loader.h), and any other
  // out-of-range label stops the cross-entropy kernel with CUDA's device-side assert.
  if (!labels.is_cuda()) {
    torch::Tensor valid = labels.ne(ignore_index);
    torch::Tensor bad = valid & (labels.lt(0) | labels.ge(classes));
    SEGRUN_CHECK(!bad.any().item<bool>(), DataError,
                 "cross-entropy: label values must be in [0, " << classes << ") or " << ignore_index << "; found "
                                                               << labels.masked_select(bad)[0].item<int64_t>());
  }
  torch::Tensor resized = logits;
  if (resize) {
    resized = F::interpolate(logits, F::InterpolateFuncOptions()
                                         .size(std::vector<int64_t>{labels.size(1), labels.size(2)})
                                         .mode(torch::kBilinear)
                                         .align_corners(false));
  }
  torch::Tensor per_pixel = F::cross_entropy(
      resized, labels, F::CrossEntropyFuncOptions().ignore_index(ignore_index).reduction(torch::kNone));
  return per_pixel.mean();
}

namespace {
bool is_half(const torch::Tensor& x) { return x.scalar_type() == torch::kHalf || x.scalar_type() == torch::kBFloat16; }
}  // namespace

torch::Tensor zero_attached(const torch::Tensor& x) {
  return x.sum(is_half(x) ? torch::kFloat32 : x.scalar_type()) * 0.0;
}

torch::Tensor asymmetric_loss(const torch::Tensor& half_or_float_logits, const torch::Tensor& targets,
                              const AsymmetricLossOptions& options) {
  const torch::Tensor logits =
      is_half(half_or_float_logits) ? half_or_float_logits.to(torch::kFloat32) : half_or_float_logits;
  SEGRUN_CHECK(
      logits.dim() == 2 && logits.sizes() == targets.sizes(), ModelError,
      "asymmetric loss: logits " << logits.sizes() << " and targets " << targets.sizes() << " must both be [B, K]");
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

torch::Tensor mask_text_contrastive_loss(const torch::Tensor& masks, const torch::Tensor& texts,
                                         const torch::Tensor& labels, double tau, const std::string& negatives) {
  if (masks.dim() == 2 && masks.size(0) == 0) return zero_attached(masks);
  return mask_text_contrastive_losses(masks, texts, labels, tau, negatives).mean();
}

torch::Tensor mask_text_contrastive_losses(const torch::Tensor& masks, const torch::Tensor& texts,
                                           const torch::Tensor& labels, double tau, const std::string& negatives) {
  SEGRUN_CHECK(negatives == "mixneg" || negatives == "separateneg", ConfigError,
               "model.mta_clip.negatives: unknown strategy '" << negatives << "' (known: mixneg, separateneg)");
  SEGRUN_CHECK(masks.dim() == 2 && texts.dim() == 3 && masks.size(1) == texts.size(2) && labels.dim() == 1 &&
                   labels.size(0) == masks.size(0),
               ModelError,
               "mask-text loss: masks " << masks.sizes() << ", texts " << texts.sizes() << ", labels " << labels.sizes()
                                        << " must be [Q, D], [K, C, D], [Q]");
  SEGRUN_CHECK(tau > 0, ConfigError, "model.mta_clip.temperature: must be > 0 (got " << tau << ")");
  const int64_t prompts = texts.size(0), classes = texts.size(1);
  torch::Tensor m = masks / masks.norm(2, -1, /*keepdim=*/true).clamp_min(1e-6);
  torch::Tensor t = texts / texts.norm(2, -1, /*keepdim=*/true).clamp_min(1e-6);
  // S [Q, K, C] -> the positive prompt of each query's class.
  torch::Tensor scores = torch::einsum("qd,kcd->qkc", {m, t}) / tau;
  torch::Tensor own = scores.gather(2, labels.view({-1, 1, 1}).expand({-1, prompts, 1})).squeeze(2);  // [Q, K]
  torch::Tensor best = std::get<1>(own.detach().max(1));                                              // k~
  torch::Tensor positive = own.gather(1, best.view({-1, 1})).squeeze(1);                              // [Q]
  torch::Tensor logits = scores.reshape({scores.size(0), prompts * classes});
  if (negatives == "separateneg") {
    // The class's other prompts are neither positive nor negative.
    const auto flags = scores.options().dtype(torch::kBool);  // on the scores' device
    torch::Tensor same_class = torch::zeros({scores.size(0), prompts, classes}, flags);
    same_class.scatter_(2, labels.view({-1, 1, 1}).expand({-1, prompts, 1}), true);
    torch::Tensor is_positive = torch::zeros({scores.size(0), prompts}, flags);
    is_positive.scatter_(1, best.view({-1, 1}), true);
    torch::Tensor excluded = same_class & ~is_positive.unsqueeze(2).expand_as(same_class);
    logits = logits.masked_fill(excluded.reshape_as(logits), -std::numeric_limits<double>::infinity());
  }
  return torch::logsumexp(logits, 1) - positive;
}

torch::Tensor masked_cross_entropy(const torch::Tensor& logits, const torch::Tensor& targets, int64_t ignore_index,
                                   dist::Communicator* comm) {
  namespace F = torch::nn::functional;
  SEGRUN_CHECK(logits.dim() == targets.dim() + 1 && logits.sizes().slice(0, targets.dim()) == targets.sizes(),
               ModelError, "cross-entropy: logits " << logits.sizes() << " do not match targets " << targets.sizes());
  torch::Tensor flat_logits = logits.reshape({-1, logits.size(-1)});
  torch::Tensor flat_targets = targets.reshape({-1});
  torch::Tensor valid = flat_targets.ne(ignore_index);
  torch::Tensor per_entry = F::cross_entropy(flat_logits, flat_targets.masked_fill(~valid, 0),
                                             F::CrossEntropyFuncOptions().reduction(torch::kNone));
  torch::Tensor count = valid.sum().to(torch::kFloat64).reshape({1});  // stays on the device
  if (comm && comm->size() > 1) {
    comm->allreduce(count);
    count.div_(comm->size());
  }
  return (per_entry * valid.to(per_entry.scalar_type())).sum() /
         count.clamp_min(1).to(per_entry.scalar_type()).squeeze();
}

}  // namespace segrun::models
