#pragma once
// Normalization layers for segrun's models, chosen by config `model.norm`:
//   "bn"        torch::nn::BatchNorm2d (per-rank batch statistics),
//   "syncbn"    synchronized BatchNorm over the world's communicator (batch statistics of the
//               global batch; with no communicator or a world of one it is plain BatchNorm2d,
//               which computes the same thing),
//   "frozen_bn" FrozenBatchNorm2d: always normalizes with the running statistics, never updates
//               them, and its affine weight/bias do not require gradients.
// Contract: all three expose exactly the parameter/buffer names of torch::nn::BatchNorm2d
// (weight, bias, running_mean, running_var, num_batches_tracked) with the same shapes, so a
// checkpoint written with one norm loads into a model built with another.
// A NormFactory is called once per normalization layer while a model is built (single thread).

#include <torch/torch.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "dist/communicator.h"

namespace segrun::models {

// Makes one normalization layer over `channels` feature maps (input [B, channels, H, W]).
using NormFactory = std::function<torch::nn::AnyModule(int64_t channels)>;

// BatchNorm2d with eval-mode semantics in train() too: y = (x - mean) / sqrt(var + eps) * w + b
// with the running statistics. Running stats are never updated; weight/bias are registered as
// parameters with requires_grad = false.
class FrozenBatchNorm2dImpl : public torch::nn::Module {
 public:
  explicit FrozenBatchNorm2dImpl(int64_t channels, double eps = 1e-5);
  torch::Tensor forward(const torch::Tensor& x);
  int64_t channels() const { return channels_; }

  torch::Tensor weight, bias, running_mean, running_var, num_batches_tracked;

 private:
  int64_t channels_;
  double eps_;
};
TORCH_MODULE(FrozenBatchNorm2d);

// The names accepted by make_norm_factory, in the order listed in error messages.
const std::vector<std::string>& norm_kinds();

// Builds the factory for `kind` (the value of `model.norm`). `comm` may be null (single
// process). Unknown kinds throw ConfigError naming `model.norm` and listing norm_kinds().
NormFactory make_norm_factory(const std::string& kind, std::shared_ptr<dist::Communicator> comm);

// The factory for modules that start from random weights (decoders, a ViT's pyramid): as
// make_norm_factory, except that "frozen_bn" gives "syncbn" there, since a frozen norm only suits
// pretrained statistics and would never learn (DenseCLIP's decoders use SyncBN).
NormFactory make_new_module_norm_factory(const std::string& kind, std::shared_ptr<dist::Communicator> comm);

// The layer behind "syncbn": dist::SyncBatchNorm over `comm` when it has more than one rank,
// otherwise torch::nn::BatchNorm2d (the same computation without collectives).
torch::nn::AnyModule make_sync_norm(int64_t channels, const std::shared_ptr<dist::Communicator>& comm);

}  // namespace segrun::models
