// Normalization layers: see norm.h.
#include "models/norm.h"

#include <sstream>

#include "core/error.h"
#include "dist/sync_batch_norm.h"

namespace segrun::models {

FrozenBatchNorm2dImpl::FrozenBatchNorm2dImpl(int64_t channels, double eps) : channels_(channels), eps_(eps) {
  SEGRUN_CHECK(channels > 0, ModelError, "FrozenBatchNorm2d: channels must be > 0 (got " << channels << ")");
  // Same registration order and names as torch::nn::BatchNorm2d.
  weight = register_parameter("weight", torch::ones({channels}), /*requires_grad=*/false);
  bias = register_parameter("bias", torch::zeros({channels}), /*requires_grad=*/false);
  running_mean = register_buffer("running_mean", torch::zeros({channels}));
  running_var = register_buffer("running_var", torch::ones({channels}));
  num_batches_tracked = register_buffer("num_batches_tracked", torch::tensor(0, torch::kLong));
}

torch::Tensor FrozenBatchNorm2dImpl::forward(const torch::Tensor& x) {
  SEGRUN_CHECK(x.dim() == 4 && x.size(1) == channels_, ModelError,
               "FrozenBatchNorm2d: expected input [B, " << channels_ << ", H, W], got " << x.sizes());
  // Folded into one scale and shift; detached so nothing can flow into the frozen statistics; in
  // the input's dtype, as detectron2's, so that under autocast the activations stay bf16/fp16
  // (float32 ones would promote every activation back to float32).
  torch::Tensor scale = weight.detach() * torch::rsqrt(running_var.detach() + eps_);
  torch::Tensor shift = bias.detach() - running_mean.detach() * scale;
  return x * scale.to(x.scalar_type()).view({1, -1, 1, 1}) + shift.to(x.scalar_type()).view({1, -1, 1, 1});
}

const std::vector<std::string>& norm_kinds() {
  static const std::vector<std::string> kinds{"syncbn", "bn", "frozen_bn"};
  return kinds;
}

torch::nn::AnyModule make_sync_norm(int64_t channels, const std::shared_ptr<dist::Communicator>& comm) {
  // A world of one (or no communicator) computes exactly BatchNorm2d: skip the collectives.
  if (!comm || comm->size() <= 1) return torch::nn::AnyModule(torch::nn::BatchNorm2d(channels));
  return torch::nn::AnyModule(dist::SyncBatchNorm(channels, comm));
}

NormFactory make_norm_factory(const std::string& kind, std::shared_ptr<dist::Communicator> comm) {
  if (kind == "bn") {
    return [](int64_t channels) { return torch::nn::AnyModule(torch::nn::BatchNorm2d(channels)); };
  }
  if (kind == "frozen_bn") {
    return [](int64_t channels) { return torch::nn::AnyModule(FrozenBatchNorm2d(channels)); };
  }
  if (kind == "syncbn") {
    return [comm](int64_t channels) { return make_sync_norm(channels, comm); };
  }
  std::ostringstream known;
  for (size_t i = 0; i < norm_kinds().size(); ++i) known << (i ? ", " : "") << norm_kinds()[i];
  SEGRUN_THROW(ConfigError, "model.norm: unknown norm '" << kind << "' (valid: " << known.str() << ")");
}

NormFactory make_new_module_norm_factory(const std::string& kind, std::shared_ptr<dist::Communicator> comm) {
  return make_norm_factory(kind == "frozen_bn" ? "syncbn" : kind, std::move(comm));
}

}  // namespace segrun::models
