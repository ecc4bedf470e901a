#pragma once
// The optimizer of a training run: AdamW (betas 0.9/0.999, eps 1e-8) over parameter groups formed
// the way mmcv's and mmengine's optimizer constructors form them from a paper's paramwise config:
//   - custom keys, matched as substrings of the parameter's name, the longest key first:
//     "backbone" (lr * train.backbone_lr_mult, full weight decay) and each of
//     train.no_decay_keys (lr, no weight decay) -- e.g. DenseCLIP's {'norm': decay_mult 0},
//     MTA-CLIP's query_embed / query_feat / level_embed;
//   - parameters of normalization layers (BatchNorm, SyncBatchNorm, GroupNorm, LayerNorm, by
//     type) that no key matched: weight_decay * train.norm_decay_mult (mmengine norm_decay_mult;
//     a group of their own only when it is not 1);
//   - the rest ("head"): lr and train.weight_decay.
// Groups are ordered backbone, head, the keys' groups, norm layers; empty ones are left out, so the
// defaults (no keys, norm_decay_mult 1) give the two groups of earlier checkpoints.
// set_learning_rates() sets every group's lr from its own schedule (lr_schedule.h: train.lr times the
// group's multiplier, decaying to the absolute train.min_lr).
// MultiTensorAdamW is torch::optim::AdamW -- the same options, per-parameter state and
// serialization, so checkpoints are interchangeable -- whose step() updates each group with a few
// multi-tensor (_foreach_) kernels instead of about eight kernels per parameter: the same
// arithmetic in the same order, hence the same values. On a GPU that is ~10 kernel launches per
// step instead of ~2400 for CLIP-RN50 + FPN, as torch.optim.AdamW's default foreach path does.
// Sparse gradients and amsgrad fall back to the per-parameter step.

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "core/config.h"

namespace segrun::engine {

class MultiTensorAdamW : public torch::optim::AdamW {
 public:
  using torch::optim::AdamW::AdamW;
  torch::Tensor step(LossClosure closure = nullptr) override;
  // The state of one of the optimizer's parameters (step, exp_avg, exp_avg_sq); nullptr before its
  // first step.
  const torch::optim::AdamWParamState* state_of(const torch::Tensor& parameter) const;
  // Each group's learning-rate multiplier (set_learning_rates); 1 for groups without one.
  std::vector<double> lr_multipliers;
};

struct ParameterGroup {
  std::string name;  // "backbone", "head", "no_decay:<key>", "norm_layers"
  double lr_mult = 1.0;
  double weight_decay = 0.0;
  std::vector<std::string> parameter_names;
  std::vector<torch::Tensor> parameters;
};
// The trainable parameters of `model` (requires_grad) grouped as above.
std::vector<ParameterGroup> parameter_groups(torch::nn::Module& model, const TrainConfig& train);

std::unique_ptr<MultiTensorAdamW> make_optimizer(torch::nn::Module& model, const TrainConfig& train);
void set_learning_rates(MultiTensorAdamW& optimizer, const TrainConfig& train, int64_t iter);

// train.grad_clip: scales the gradients of `parameters` by min(1, max_norm / (norm + 1e-6)), where
// norm is their global 2-norm, and returns that norm (before scaling) as a 0-dim tensor on the
// gradients' device -- torch.nn.utils.clip_grad_norm_'s arithmetic, with the same values as
// LibTorch's torch::nn::utils::clip_grad_norm_ on the CPU. Unlike that function, which in 1.13
// launches a norm kernel per parameter and reads the total back to the host (a GPU queue stall
// every step), the norms are one multi-tensor kernel and nothing waits for the device, as in
// PyTorch 2.x's foreach path. Parameters without a gradient are skipped (norm 0 if none has one).
torch::Tensor clip_grad_norm(const std::vector<torch::Tensor>& parameters, double max_norm);

}  // namespace segrun::engine
