// CLIP's residual attention block: see clip_transformer.h.
#include "models/clip/clip_transformer.h"

#include <cmath>
#include <string>

#include "core/error.h"

namespace segrun::models {

ClipResidualBlockImpl::ClipResidualBlockImpl(int64_t width, int64_t heads) {
  attn_ = register_module("attn", torch::nn::MultiheadAttention(torch::nn::MultiheadAttentionOptions(width, heads)));
  ln_1_ = register_module("ln_1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({width})));
  mlp_ = torch::nn::Sequential();
  mlp_->push_back("c_fc", torch::nn::Linear(width, 4 * width));
  mlp_->push_back("c_proj", torch::nn::Linear(4 * width, width));
  register_module("mlp", mlp_);
  ln_2_ = register_module("ln_2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({width})));
}

torch::Tensor ClipResidualBlockImpl::forward(const torch::Tensor& x, const torch::Tensor& mask,
                                             const torch::Tensor& branch_scale) {
  const bool scaled = branch_scale.defined();
  SEGRUN_CHECK(!scaled || (branch_scale.dim() == 2 && branch_scale.size(0) == 2 && branch_scale.size(1) == x.size(1)),
               ModelError,
               "residual block: branch_scale must be [2, " << x.size(1) << "], got " << branch_scale.sizes());
  torch::Tensor h = ln_1_(x);
  torch::Tensor attended =
      std::get<0>(attn_->forward(h, h, h, /*key_padding_mask=*/torch::Tensor(), /*need_weights=*/false, mask));
  if (scaled) attended = attended * branch_scale[0].view({1, -1, 1});
  torch::Tensor y = x + attended;
  torch::Tensor hidden = mlp_[0]->as<torch::nn::Linear>()->forward(ln_2_(y));
  hidden = hidden * torch::sigmoid(1.702 * hidden);  // QuickGELU
  torch::Tensor out = mlp_[1]->as<torch::nn::Linear>()->forward(hidden);
  if (scaled) out = out * branch_scale[1].view({1, -1, 1});
  return y + out;
}

void init_clip_transformer(torch::nn::Module& module, int64_t width, int64_t layers) {
  torch::NoGradGuard no_grad;
  const double w = static_cast<double>(width);
  const double proj_std = std::pow(w, -0.5) * std::pow(2.0 * static_cast<double>(layers), -0.5);
  const double attn_std = std::pow(w, -0.5);
  const double fc_std = std::pow(2.0 * w, -0.5);
  for (auto& item : module.named_parameters()) {
    const std::string& key = item.key();
    const auto ends_with = [&key](const std::string& suffix) {
      return key.size() >= suffix.size() && key.compare(key.size() - suffix.size(), suffix.size(), suffix) == 0;
    };
    if (ends_with("attn.in_proj_weight")) item.value().normal_(0.0, attn_std);
    if (ends_with("attn.out_proj.weight") || ends_with("mlp.c_proj.weight")) item.value().normal_(0.0, proj_std);
    if (ends_with("mlp.c_fc.weight")) item.value().normal_(0.0, fc_std);
  }
}

}  // namespace segrun::models
