#pragma once
// The optimizer of a training run. make_optimizer(): AdamW (betas 0.9/0.999, eps 1e-8,
// train.weight_decay) over two parameter groups, the backbone's parameters (group 0, at
// lr * train.backbone_lr_mult) and the rest (group 1, at lr); set_learning_rates() sets both
// from the schedule's lr every iteration.
// MultiTensorAdamW is torch::optim::AdamW -- the same options, per-parameter state and
// serialization, so checkpoints are interchangeable -- whose step() updates each group with a few
// multi-tensor (_foreach_) kernels instead of about eight kernels per parameter: the same
// arithmetic in the same order, hence the same values. On a GPU that is ~10 kernel launches per
// step instead of ~2400 for CLIP-RN50 + FPN, as torch.optim.AdamW's default foreach path does.
// Sparse gradients and amsgrad fall back to the per-parameter step.

#include <torch/torch.h>

#include <memory>

#include "core/config.h"

namespace segrun::models {
class SegmentorImpl;
}

namespace segrun::engine {

class MultiTensorAdamW : public torch::optim::AdamW {
 public:
  using torch::optim::AdamW::AdamW;
  torch::Tensor step(LossClosure closure = nullptr) override;
};

std::unique_ptr<torch::optim::AdamW> make_optimizer(models::SegmentorImpl& model, const TrainConfig& train);
void set_learning_rates(torch::optim::AdamW& optimizer, double lr, double backbone_lr_mult);

}  // namespace segrun::engine
