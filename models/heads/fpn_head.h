#pragma once
// FPN neck and Semantic FPN decode head, with the semantics of mmsegmentation's `FPN` neck and
// `FPNHead` (Kirillov et al., Panoptic FPN), as used by the DenseCLIP/CLIP FPN baselines:
//  - FpnNeck: per level a 1x1 lateral conv (with bias, no norm/activation), a top-down pass
//    adding the nearest-neighbour upsampled coarser lateral, then a 3x3 output conv (with bias).
//    Convs are Xavier-uniform initialized, biases zero.
//  - FpnHead: level i (stride s_i) runs max(1, log2(s_i) - 2) blocks of [3x3 conv (no bias) +
//    norm + ReLU, then a bilinear x2 upsample (align_corners=false) unless s_i == 4]; the levels
//    are summed at stride 4, then Dropout2d(dropout) and a 1x1 conv to the class logits.
// Parameter names follow mmseg (lateral_convs.0.conv.weight, fpn_convs.0.conv.weight,
// scale_heads.3.2.bn.weight, conv_seg.weight), so a segmentor's state dict reads like mmseg's.
// Not thread-safe (torch modules).

#include <torch/torch.h>

#include <memory>
#include <vector>

#include "models/norm.h"
#include "models/sample_random.h"

namespace segrun::models {

// conv -> [norm "bn"] -> [ReLU], mmcv ConvModule style; the conv has a bias iff there is no norm.
struct ConvModuleOptions {
  int64_t in_channels = 0;
  int64_t out_channels = 0;
  int64_t kernel = 1;
  NormFactory norm;  // empty: no norm
  bool relu = false;
};

class ConvModuleImpl : public torch::nn::Module {
 public:
  explicit ConvModuleImpl(const ConvModuleOptions& options);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Conv2d& conv() { return conv_; }

 private:
  torch::nn::Conv2d conv_{nullptr};
  torch::nn::AnyModule norm_;
  bool relu_;
};
TORCH_MODULE(ConvModule);

struct FpnNeckOptions {
  std::vector<int64_t> in_channels;  // per level, fine to coarse
  int64_t channels = 256;
};

class FpnNeckImpl : public torch::nn::Module {
 public:
  explicit FpnNeckImpl(const FpnNeckOptions& options);
  // One feature map per level (fine to coarse) -> same number of maps with `channels` each.
  std::vector<torch::Tensor> forward(const std::vector<torch::Tensor>& features);

 private:
  torch::nn::ModuleList lateral_convs_, fpn_convs_;
};
TORCH_MODULE(FpnNeck);

struct FpnHeadOptions {
  int64_t channels = 256;                      // input channels per level = head channels
  std::vector<int64_t> strides{4, 8, 16, 32};  // of the input levels; the first must be the finest
  int64_t num_classes = 0;
  double dropout = 0.1;                        // Dropout2d before the classifier, keyed per sample
  NormFactory norm;                            // required
  std::shared_ptr<const SampleRandom> random;  // the segmentor's draws (null: unkeyed)
};

class FpnHeadImpl : public torch::nn::Module {
 public:
  explicit FpnHeadImpl(const FpnHeadOptions& options);
  // Levels fine to coarse -> logits [B, num_classes, H_0, W_0] at the first level's size.
  torch::Tensor forward(const std::vector<torch::Tensor>& features);

 private:
  std::vector<torch::nn::Sequential> scale_heads_;
  double dropout_;
  std::shared_ptr<const SampleRandom> random_;
  torch::nn::Conv2d conv_seg_{nullptr};
};
TORCH_MODULE(FpnHead);

}  // namespace segrun::models
