#pragma once
// SyncBatchNorm: BatchNorm2d whose training-mode statistics are those of the whole global batch.
// Forward all-reduces per-channel (sum, sum of squares, count) in float64, so ranks may hold
// different batch sizes (the uneven last batch, even an empty one). Backward all-reduces
// (sum dy, sum dy*xhat) to form the input gradient of the global computation; weight and bias
// gradients stay local, like every other parameter, and are averaged by gradient sync.
// With the same seed, N ranks x batch b therefore match 1 rank x batch N*b. Eval mode uses the
// running statistics, updated as BatchNorm does (momentum, unbiased variance of the global batch).
// Parameter and buffer names equal torch::nn::BatchNorm2d's, so checkpoints move between norms.
// Collectives go through the Communicator given at construction (null: a world of one, which
// runs LibTorch's own batch_norm -- the same statistics, cuDNN's kernel on a GPU). Every rank must
// run forward/backward of the same SyncBatchNorm layers in the same order. On a GPU the
// statistics stay on the device (no host synchronization); under autocast a bf16/fp16 input is
// normalized in float32 and returned in its own dtype.

#include <torch/torch.h>

#include <memory>

#include "dist/communicator.h"

namespace segrun::dist {

class SyncBatchNormImpl : public torch::nn::Module {
 public:
  SyncBatchNormImpl(int64_t channels, std::shared_ptr<Communicator> comm, double eps = 1e-5, double momentum = 0.1);
  torch::Tensor forward(const torch::Tensor& input);
  void reset_parameters();

  torch::Tensor weight, bias, running_mean, running_var, num_batches_tracked;

 private:
  std::shared_ptr<Communicator> comm_;
  double eps_;
  double momentum_;
};
TORCH_MODULE(SyncBatchNorm);

}  // namespace segrun::dist
