#pragma once
// Gradient synchronization for data-parallel training (first cut: after backward, not yet
// overlapped with it). Parameters are grouped once into buckets of at most `bucket_mb` MiB, in
// reverse registration order (the order backward produces gradients), one dtype per bucket.
// synchronize() packs each bucket's gradients into one flat buffer, all-reduces it, divides by
// the world size and unpacks — one collective per bucket, never one per parameter. A parameter
// that received no gradient this step contributes zeros (its grad is created), so ranks whose
// graphs differ never hang. Every rank must call synchronize() once per optimizer step.
// broadcast_module_state() copies rank `root`'s parameters and buffers to every rank.

#include <torch/torch.h>

#include <memory>
#include <vector>

#include "dist/communicator.h"

namespace segrun::dist {

class GradientSync {
 public:
  GradientSync(std::vector<torch::Tensor> parameters, std::shared_ptr<Communicator> comm,
               double bucket_mb = 25.0);

  void synchronize();
  size_t bucket_count() const { return buckets_.size(); }
  // Indices into the constructor's parameter list, per bucket (for tests and diagnostics).
  const std::vector<std::vector<size_t>>& buckets() const { return buckets_; }

 private:
  std::vector<torch::Tensor> parameters_;
  std::shared_ptr<Communicator> comm_;
  std::vector<std::vector<size_t>> buckets_;
};

void broadcast_module_state(torch::nn::Module& module, Communicator& comm, int root = 0);

}  // namespace segrun::dist
