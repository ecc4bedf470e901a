#include "engine/precision.h"

#include <ATen/autocast_mode.h>

#include "core/error.h"
#include "engine/torch_version.h"  // LibTorch 2.4 replaced the per-device autocast functions

namespace segrun::engine {
namespace {

torch::ScalarType dtype_of(Precision precision) {
  switch (precision) {
    case Precision::kBf16: return torch::kBFloat16;
    case Precision::kFp16: return torch::kFloat16;
    case Precision::kFp32: break;
  }
  return torch::kFloat32;
}

bool autocast_enabled(torch::DeviceType type) {
#if SEGRUN_TORCH_AT_LEAST(2, 4)
  return at::autocast::is_autocast_enabled(type);
#else
  return type == torch::kCUDA ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
#endif
}

void set_autocast_enabled(torch::DeviceType type, bool enabled) {
#if SEGRUN_TORCH_AT_LEAST(2, 4)
  at::autocast::set_autocast_enabled(type, enabled);
#else
  if (type == torch::kCUDA)
    at::autocast::set_enabled(enabled);
  else
    at::autocast::set_cpu_enabled(enabled);
#endif
}

torch::ScalarType autocast_dtype(torch::DeviceType type) {
#if SEGRUN_TORCH_AT_LEAST(2, 4)
  return at::autocast::get_autocast_dtype(type);
#else
  return type == torch::kCUDA ? at::autocast::get_autocast_gpu_dtype() : at::autocast::get_autocast_cpu_dtype();
#endif
}

void set_autocast_dtype(torch::DeviceType type, torch::ScalarType dtype) {
#if SEGRUN_TORCH_AT_LEAST(2, 4)
  at::autocast::set_autocast_dtype(type, dtype);
#else
  if (type == torch::kCUDA)
    at::autocast::set_autocast_gpu_dtype(dtype);
  else
    at::autocast::set_autocast_cpu_dtype(dtype);
#endif
}

}  // namespace

Precision parse_precision(const std::string& name, const torch::Device& device) {
  Precision precision;
  if (name == "fp32")
    precision = Precision::kFp32;
  else if (name == "bf16")
    precision = Precision::kBf16;
  else if (name == "fp16")
    precision = Precision::kFp16;
  else
    throw ConfigError("train.precision: '" + name + "' is not one of fp32, bf16, fp16");
  // LibTorch's CPU autocast (1.13) covers too few ops for the heads (a bf16 input reaches
  // LayerNorm's float32 weights in CLIP-SP's decoder and fails): reduced precision is for GPUs.
  if (precision != Precision::kFp32 && !device.is_cuda())
    throw ConfigError("train.precision = \"" + name + "\" needs a CUDA device (this rank runs on " + device.str() +
                      "); use \"fp32\" on CPUs");
  return precision;
}

std::string precision_name(Precision precision) {
  switch (precision) {
    case Precision::kBf16: return "bf16";
    case Precision::kFp16: return "fp16";
    case Precision::kFp32: break;
  }
  return "fp32";
}

AutocastScope::AutocastScope(const torch::Device& device, Precision precision) {
  if (precision == Precision::kFp32) return;
  active_ = true;
  device_type_ = device.type();
  was_enabled_ = autocast_enabled(device_type_);
  previous_dtype_ = autocast_dtype(device_type_);
  set_autocast_enabled(device_type_, true);
  set_autocast_dtype(device_type_, dtype_of(precision));
  at::autocast::increment_nesting();
}

AutocastScope::~AutocastScope() {
  if (!active_) return;
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  set_autocast_enabled(device_type_, was_enabled_);
  set_autocast_dtype(device_type_, previous_dtype_);
}

LossScaler::LossScaler(bool enabled, LossScalerOptions options)
    : enabled_(enabled), options_(options), scale_(options.init_scale) {}

torch::Tensor LossScaler::scale(const torch::Tensor& loss) const { return enabled_ ? loss * scale_ : loss; }

bool LossScaler::unscale_and_update(const std::vector<torch::Tensor>& parameters) {
  if (!enabled_) return true;
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> grads;
  for (const auto& p : parameters)
    if (p.grad().defined()) grads.push_back(p.grad());
  bool finite = true;
  if (!grads.empty() && grads.front().is_cuda()) {
    // One fused kernel over all gradients, as GradScaler.unscale_ does.
    torch::Tensor found_inf = torch::zeros({1}, grads.front().options().dtype(torch::kFloat32));
    torch::Tensor inv_scale = torch::full({1}, 1.0 / scale_, found_inf.options());
    at::_amp_foreach_non_finite_check_and_unscale_(grads, found_inf, inv_scale);
    finite = found_inf.item<float>() == 0.0f;
  } else {
    for (auto& g : grads) {
      g.mul_(1.0 / scale_);
      finite = finite && g.isfinite().all().item<bool>();
    }
  }
  if (finite) {
    if (++growth_tracker_ >= options_.growth_interval) {
      scale_ *= options_.growth_factor;
      growth_tracker_ = 0;
    }
  } else {
    scale_ *= options_.backoff_factor;
    growth_tracker_ = 0;
    ++skipped_;
  }
  return finite;
}

void LossScaler::restore(double scale, int64_t growth_tracker) {
  if (scale > 0) scale_ = scale;
  growth_tracker_ = growth_tracker;
}

void set_math_modes(bool tf32, bool cudnn_benchmark) {
  at::globalContext().setAllowTF32CuBLAS(tf32);
  at::globalContext().setAllowTF32CuDNN(tf32);
  at::globalContext().setBenchmarkCuDNN(cudnn_benchmark);
}

}  // namespace segrun::engine
