#pragma once
// CLIP's ModifiedResNet visual tower (OpenAI CLIP RN50 / RN101), as used by DenseCLIP; a
// ClipVisualBackbone (clip_visual.h):
//  - stem: three 3x3 convs (3 -> w/2 stride 2, w/2 -> w/2, w/2 -> w), each BN + ReLU, no conv
//    bias, then AvgPool2d(2): stride 4;
//  - Bottleneck blocks (expansion 4) whose convs all have stride 1; a stride-s block downsamples
//    with AvgPool2d(s) after conv2, and its shortcut is AvgPool2d(s) -> conv1x1 -> norm;
//  - stages c1..c4 with 4w, 8w, 16w, 32w channels at strides 4, 8, 16, 32;
//  - optional attention pooling (DenseCLIP variant): every token queries, the positional
//    embedding's spatial grid is resized bilinearly to the input grid, and it returns a global
//    embedding [B, E] and dense embeddings [B, E, H/32, W/32].
// Parameter names equal the OpenAI checkpoint's `visual.*` keys without the prefix
// (conv1.weight, layer1.0.downsample.0.weight, attnpool.q_proj.weight, ...).
// Width multiplier w (64 = the real model) must be a multiple of 8; attention heads = w/2 (head
// dim 64); blocks per stage and embed dim E per variant from clip_backbones.h (E = 16w for
// clip_rn50, 1024 at w=64; 8w for clip_rn101, 512 at w=64).
// Not thread-safe (a torch module). Inputs of any size >= 32 work; each avg-pool floors, so H and
// W divisible by 32 give exactly H/4 .. H/32.

#include <torch/torch.h>

#include <string>
#include <vector>

#include "models/clip/clip_visual.h"
#include "models/norm.h"

namespace segrun::models {

struct ClipResNetOptions {
  std::string variant = "clip_rn50";  // a ResNet of backbone_kinds() (config key model.backbone)
  int width = 64;                     // stem width (config key model.width)
  int input_resolution = 224;         // sets the positional grid: (input_resolution/32)^2 + 1 rows
  bool with_attnpool = true;
  NormFactory norm;  // required
};

// Derived sizes of a variant; validate_clip_resnet_options() throws ConfigError naming
// model.backbone (an unknown or non-ResNet variant) / model.width for bad values.
struct ClipResNetSpec {
  std::vector<int64_t> layers;  // blocks per stage
  int64_t width = 0;
  int64_t embed_dim = 0;  // attention pooling output
  int64_t heads = 0;
  int64_t feature_dim = 0;  // 32 w, channels of c4
  std::vector<int64_t> stage_channels() const { return {4 * width, 8 * width, 16 * width, 32 * width}; }
};
ClipResNetSpec validate_clip_resnet_options(const ClipResNetOptions& options);

class ClipBottleneckImpl : public torch::nn::Module {
 public:
  ClipBottleneckImpl(int64_t inplanes, int64_t planes, int64_t stride, const NormFactory& norm);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  int64_t stride_;
  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr}, conv3_{nullptr};
  torch::nn::AnyModule bn1_, bn2_, bn3_;
  torch::nn::Sequential downsample_{nullptr};  // "0": conv1x1, "1": norm (the pool has no params)
};
TORCH_MODULE(ClipBottleneck);

class AttentionPool2dImpl : public torch::nn::Module {
 public:
  AttentionPool2dImpl(int64_t spatial_dim, int64_t embed_dim, int64_t heads, int64_t output_dim);
  // x [B, C, H, W] -> {global [B, E], dense [B, E, H, W]}
  std::pair<torch::Tensor, torch::Tensor> forward(const torch::Tensor& x);

  torch::Tensor positional_embedding;

 private:
  int64_t spatial_dim_, embed_dim_, heads_, output_dim_;
  torch::nn::Linear k_proj_{nullptr}, q_proj_{nullptr}, v_proj_{nullptr}, c_proj_{nullptr};
};
TORCH_MODULE(AttentionPool2d);

class ClipResNetImpl : public ClipVisualBackboneImpl {
 public:
  explicit ClipResNetImpl(const ClipResNetOptions& options);
  ClipVisualOutput forward(const torch::Tensor& images) override;
  const ClipResNetSpec& spec() const { return spec_; }
  ClipVisualSpec visual_spec() const override;
  bool has_embeddings() const override { return !attnpool_.is_empty(); }
  int64_t min_input_side() const override { return 32; }  // the stride of c4

 private:
  ClipResNetSpec spec_;
  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr}, conv3_{nullptr};
  torch::nn::AnyModule bn1_, bn2_, bn3_;
  std::vector<torch::nn::Sequential> layers_;
  AttentionPool2d attnpool_{nullptr};
};
TORCH_MODULE(ClipResNet);

}  // namespace segrun::models
