// CLIP-SP label selection, batch drop and auxiliary targets: see scene_tokens.h.
#include "models/heads/scene_tokens.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "dist/device.h"

namespace segrun::models {

double batch_drop_ratio(const BatchDropOptions& options, int64_t iter) {
  const double decayed = options.r_start * std::pow(options.decay, static_cast<double>(std::max<int64_t>(iter, 0)));
  return std::max(options.r_end, decayed);
}

torch::Tensor present_classes(const torch::Tensor& labels, int64_t num_classes) {
  SEGRUN_CHECK(labels.dim() == 3 && labels.scalar_type() == torch::kLong, DataError,
               "labels must be int64 [B, H, W], got " << labels.scalar_type() << " " << labels.sizes());
  const int64_t batch = labels.size(0);
  torch::Tensor flat = labels.reshape({batch, -1});
  torch::Tensor valid = flat.ne(255);
  // On a GPU this check would read a flag back every step; there the labels are the loader's,
  // which checks every label map it reads (data/loader.h), and an out-of-range label stops the
  // scatter below with CUDA's device-side assert (as in seg_cross_entropy).
  if (!labels.is_cuda()) {
    torch::Tensor bad = valid & (flat.lt(0) | flat.ge(num_classes));
    SEGRUN_CHECK(!bad.any().item<bool>(), DataError,
                 "label values must be in [0, " << num_classes << ") or 255; found "
                                                << flat.masked_select(bad)[0].item<int64_t>());
  }
  // One extra column collects the ignored pixels and is dropped.
  torch::Tensor index = flat.masked_fill(~valid, num_classes);
  torch::Tensor present = torch::zeros({batch, num_classes + 1}, labels.options().dtype(torch::kFloat32));
  present.scatter_(1, index, 1.0f);
  return present.slice(1, 0, num_classes).contiguous();
}

torch::Tensor select_scene_labels(const torch::Tensor& probs, int64_t k, const torch::Tensor& present,
                                  double drop_ratio, const torch::Tensor& draws) {
  SEGRUN_CHECK(probs.dim() == 2, ModelError, "scene labels: probs must be [B, K], got " << probs.sizes());
  SEGRUN_CHECK(k >= 1 && k <= probs.size(1), ConfigError,
               "model.clip_sp.top_k: " << k << " must be in [1, " << probs.size(1) << "] (the number of classes)");
  torch::NoGradGuard no_grad;
  torch::Tensor scores = probs.detach().to(torch::kFloat32);
  if (!present.defined() || drop_ratio <= 0) return std::get<1>(scores.topk(k, 1, /*largest=*/true, /*sorted=*/true));

  const int64_t batch = scores.size(0);
  torch::Tensor u = draws.defined()
                        ? draws.to(scores.options())
                        : torch::cat({torch::rand({batch, 1}, scores.options()), torch::rand_like(scores)}, 1);
  SEGRUN_CHECK(u.dim() == 2 && u.size(0) == batch && u.size(1) == 1 + scores.size(1), ModelError,
               "scene labels: draws must be [B, 1 + K], got " << u.sizes());
  torch::Tensor dropped = u.slice(1, 0, 1) < drop_ratio;  // [B, 1]
  // Present classes rank above every absent one (keys in [2, 3) vs [0, 1]), in random order among
  // themselves; absent ones keep their probability as the key.
  torch::Tensor gt = present.to(scores.options());
  torch::Tensor gt_keys = gt * (2.0 + u.slice(1, 1)) + (1.0 - gt) * scores;
  torch::Tensor keys = torch::where(dropped, gt_keys, scores);
  torch::Tensor chosen = std::get<1>(keys.topk(k, 1, /*largest=*/true, /*sorted=*/true));
  // Order every image's k labels by descending probability (the slot order the scene-token
  // pooling weights see), whichever way they were chosen.
  torch::Tensor order = std::get<1>(scores.gather(1, chosen).sort(1, /*descending=*/true));
  return chosen.gather(1, order);
}

SceneSelection replace_scene_slots(const torch::Tensor& probs, int64_t k, const torch::Tensor& present,
                                   double drop_ratio, const torch::Tensor& draws) {
  SEGRUN_CHECK(probs.dim() == 2 && present.sizes() == probs.sizes(), ModelError,
               "scene slots: probs " << probs.sizes() << " and present " << present.sizes() << " must both be [B, K]");
  SEGRUN_CHECK(k >= 1 && k <= probs.size(1), ConfigError,
               "model.clip_sp.top_k: " << k << " must be in [1, " << probs.size(1) << "] (the number of classes)");
  SEGRUN_CHECK(draws.dim() == 2 && draws.size(0) == probs.size(0) && draws.size(1) == 2 * k, ModelError,
               "scene slots: draws must be [B, 2k], got " << draws.sizes());
  torch::NoGradGuard no_grad;
  const int64_t batch = probs.size(0), classes = probs.size(1);
  // Small host work (B x k), slot by slot. The top-k labels and the present classes come to the
  // host in one copy (the draws are best made there: see the header); the result goes back in one.
  const torch::Tensor top = std::get<1>(probs.detach().to(torch::kFloat32).topk(k, 1, true, true));
  torch::Tensor host = torch::cat({top, present.gt(0).to(torch::kLong)}, 1).to(torch::kCPU).contiguous();
  const torch::Tensor u = draws.to(torch::kCPU, torch::kFloat64).contiguous();
  torch::Tensor chosen = torch::zeros({batch, 2 * k}, torch::kLong);  // labels, then 1 = from the ground truth
  const auto given = host.accessor<int64_t, 2>();
  auto out = chosen.accessor<int64_t, 2>();
  const auto uniform = u.accessor<double, 2>();
  for (int64_t b = 0; b < batch; ++b) {
    std::vector<char> used(static_cast<size_t>(classes), 0);
    for (int64_t j = 0; j < k; ++j) {
      out[b][j] = given[b][j];
      used[static_cast<size_t>(given[b][j])] = 1;
    }
    for (int64_t j = 0; j < k; ++j) {
      if (uniform[b][j] >= drop_ratio) continue;
      std::vector<int64_t> candidates;
      for (int64_t c = 0; c < classes; ++c)
        if (given[b][k + c] != 0 && !used[static_cast<size_t>(c)]) candidates.push_back(c);
      if (candidates.empty()) continue;
      const auto pick = std::min(candidates.size() - 1,
                                 static_cast<size_t>(uniform[b][k + j] * static_cast<double>(candidates.size())));
      used[static_cast<size_t>(out[b][j])] = 0;
      out[b][j] = candidates[pick];
      used[static_cast<size_t>(out[b][j])] = 1;
      out[b][k + j] = 1;
    }
  }
  const torch::Tensor on_device = dist::to_device_async(chosen, probs.device());
  return {on_device.slice(1, 0, k).contiguous(), on_device.slice(1, k, 2 * k).to(torch::kBool)};
}

torch::Tensor scene_aux_targets(const torch::Tensor& labels, const torch::Tensor& selected, int64_t h, int64_t w) {
  SEGRUN_CHECK(labels.dim() == 3 && selected.dim() == 2 && labels.size(0) == selected.size(0), ModelError,
               "aux targets: labels " << labels.sizes() << " and selected labels " << selected.sizes()
                                      << " must be [B, H, W] and [B, k]");
  torch::NoGradGuard no_grad;
  const int64_t height = labels.size(1), width = labels.size(2);
  torch::Tensor rows = (torch::arange(h, labels.options()) * height).div(h, "floor");
  torch::Tensor cols = (torch::arange(w, labels.options()) * width).div(w, "floor");
  torch::Tensor small = labels.index_select(1, rows).index_select(2, cols);                  // [B, h, w]
  torch::Tensor match = small.reshape({small.size(0), h * w, 1}).eq(selected.unsqueeze(1));  // [B, hw, k]
  torch::Tensor slot = match.to(torch::kLong).argmax(2);
  torch::Tensor target = torch::where(match.any(2), slot, torch::full_like(slot, 255));
  return target.reshape({small.size(0), h, w});
}

}  // namespace segrun::models
