// CLIP-SP Scene Refinement Module: see scene_refinement.h.
#include "models/heads/scene_refinement.h"

#include <cmath>

#include "core/error.h"

namespace segrun::models {

SceneRefinementImpl::SceneRefinementImpl(const SceneRefinementOptions& o)
    : attn_dim_(o.attn_dim), sigmoid_gate_(o.sigmoid_gate) {
  SEGRUN_CHECK(o.norm, ModelError, "scene refinement: a norm factory is required");
  mlp_ = register_module("mlp", torch::nn::Sequential(torch::nn::Linear(o.token_channels, o.hidden), torch::nn::ReLU(),
                                                      torch::nn::Linear(o.hidden, o.feature_channels)));
  pool_ = register_module("pool", torch::nn::Linear(o.tokens, 1));
  {
    torch::NoGradGuard no_grad;
    pool_->weight.fill_(1.0 / static_cast<double>(o.tokens));
    pool_->bias.zero_();
  }
  query_ = register_module("query", torch::nn::Conv2d(torch::nn::Conv2dOptions(o.feature_channels, o.attn_dim, 1)));
  key_ = register_module("key", torch::nn::Linear(o.token_channels, o.attn_dim));
  value_ = register_module("value", torch::nn::Linear(o.token_channels, o.attn_dim));
  if (o.output_proj)
    output_proj_ =
        register_module("output_proj", torch::nn::Conv2d(torch::nn::Conv2dOptions(o.attn_dim, o.attn_dim, 1)));
  fuse_ = register_module(
      "fuse",
      torch::nn::Conv2d(torch::nn::Conv2dOptions(o.feature_channels + o.attn_dim, o.feature_channels, 1).bias(false)));
  fuse_norm_ = o.norm(o.feature_channels);
  register_module("fuse_norm", fuse_norm_.ptr());
}

std::pair<torch::Tensor, torch::Tensor> SceneRefinementImpl::forward(const torch::Tensor& x4,
                                                                     const torch::Tensor& tokens) {
  const int64_t batch = x4.size(0), height = x4.size(2), width = x4.size(3);
  // Channel gate from the scene tokens: [B, k, C4] -> pooled over k -> [B, C4].
  torch::Tensor gate = pool_->forward(mlp_->forward(tokens).transpose(1, 2)).squeeze(2);
  torch::Tensor gated = x4 * (sigmoid_gate_ ? torch::sigmoid(gate) : gate).unsqueeze(2).unsqueeze(3);
  // Non-local cross-attention: every cell of x4' queries the k scene tokens.
  torch::Tensor q = query_->forward(gated).flatten(2).transpose(1, 2);  // [B, HW, d]
  torch::Tensor k = key_->forward(tokens);                              // [B, k, d]
  torch::Tensor v = value_->forward(tokens);
  torch::Tensor logits = torch::matmul(q, k.transpose(1, 2)) * (1.0 / std::sqrt(static_cast<double>(attn_dim_)));
  torch::Tensor attended = torch::matmul(torch::softmax(logits, -1), v);  // [B, HW, d]
  attended = attended.transpose(1, 2).reshape({batch, attn_dim_, height, width});
  if (output_proj_) attended = output_proj_->forward(attended);
  torch::Tensor fused = torch::relu(fuse_norm_.forward(fuse_->forward(torch::cat({gated, attended}, 1))));
  return {fused, logits};
}

}  // namespace segrun::models
