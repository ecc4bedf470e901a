#pragma once
// Mixed-precision training, as torch.autocast + torch.cuda.amp.GradScaler do it, for the C++ API.
//   train.precision = "fp32" | "bf16" | "fp16": the forward pass and the loss run under autocast
//   with that dtype on a CUDA device (LibTorch's CPU autocast covers too few ops for the heads;
//   an AutocastScope still works on the CPU for what it covers); parameters, gradients and the
//   optimizer stay float32.
//   fp16 adds dynamic loss scaling (LossScaler): the loss is multiplied by a scale before
//   backward; after the gradients are all-reduced they are divided by it, and a step whose
//   gradients hold inf/nan is skipped and halves the scale; 2000 clean steps in a row double it.
//   Gradients are identical on every rank after the all-reduce, so every rank takes the same
//   decision. The scale and its growth counter are part of the checkpoint (resume is exact).
// set_math_modes() sets the process-wide TF32 and cuDNN-benchmark switches (train.tf32,
// train.cudnn_benchmark); they only matter on NVIDIA GPUs.
// Threading: autocast state is per thread; an AutocastScope covers the calling thread only.

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

namespace segrun::engine {

enum class Precision { kFp32, kBf16, kFp16 };

// "fp32" | "bf16" | "fp16" -> Precision; ConfigError naming train.precision otherwise, and for
// bf16 or fp16 on a CPU device.
Precision parse_precision(const std::string& name, const torch::Device& device);
std::string precision_name(Precision precision);

// RAII: autocast on `device`'s type with the precision's dtype while it lives (nothing for fp32);
// the previous state is restored and autocast's cast cache cleared on exit, as torch.autocast does.
class AutocastScope {
 public:
  AutocastScope(const torch::Device& device, Precision precision);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool active_ = false;
  torch::DeviceType device_type_ = torch::kCPU;
  bool was_enabled_ = false;
  torch::ScalarType previous_dtype_ = torch::kFloat32;
};

struct LossScalerOptions {
  double init_scale = 65536.0;  // 2^16, GradScaler's default
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int64_t growth_interval = 2000;
};

// Dynamic loss scaling for fp16; a disabled scaler (fp32, bf16) passes everything through.
class LossScaler {
 public:
  explicit LossScaler(bool enabled, LossScalerOptions options = {});

  bool enabled() const { return enabled_; }
  // loss * scale (the loss itself when disabled).
  torch::Tensor scale(const torch::Tensor& loss) const;
  // Divides every defined gradient of `parameters` by the scale; returns true when all are
  // finite (take the optimizer step), false when one is not (skip it). Updates the scale either
  // way. Disabled: returns true, touches nothing.
  bool unscale_and_update(const std::vector<torch::Tensor>& parameters);

  double current_scale() const { return scale_; }
  int64_t growth_tracker() const { return growth_tracker_; }
  int64_t skipped_steps() const { return skipped_; }  // since construction or restore
  // From a checkpoint: the scale and the count of clean steps since the last change.
  void restore(double scale, int64_t growth_tracker);

 private:
  bool enabled_;
  LossScalerOptions options_;
  double scale_;
  int64_t growth_tracker_ = 0;
  int64_t skipped_ = 0;
};

// TF32 for float32 matmuls and convolutions (cuBLAS, cuDNN) and cuDNN's autotuner.
void set_math_modes(bool tf32, bool cudnn_benchmark);

}  // namespace segrun::engine
