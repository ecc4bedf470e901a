// FPN neck and Semantic FPN head: see fpn_head.h.
#include "models/heads/fpn_head.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace segrun::models {
namespace {

namespace F = torch::nn::functional;

torch::Tensor resize_bilinear(const torch::Tensor& x, const std::vector<int64_t>& size) {
  if (x.size(2) == size[0] && x.size(3) == size[1]) return x;
  return F::interpolate(x, F::InterpolateFuncOptions().size(size).mode(torch::kBilinear).align_corners(false));
}

int64_t log2_exact(int64_t stride) {
  int64_t k = 0;
  while ((int64_t{1} << k) < stride) ++k;
  SEGRUN_CHECK((int64_t{1} << k) == stride, ModelError, "FPN head: stride " << stride << " is not a power of two");
  return k;
}

}  // namespace

// ---- ConvModule --------------------------------------------------------------------------------

ConvModuleImpl::ConvModuleImpl(const ConvModuleOptions& options) : relu_(options.relu) {
  const bool has_norm = static_cast<bool>(options.norm);
  conv_ = register_module(
      "conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(options.in_channels, options.out_channels, options.kernel)
                                    .padding(options.kernel / 2)
                                    .bias(!has_norm)));
  if (has_norm) {
    norm_ = options.norm(options.out_channels);
    register_module("bn", norm_.ptr());
  }
}

torch::Tensor ConvModuleImpl::forward(const torch::Tensor& x) {
  torch::Tensor y = conv_->forward(x);
  if (!norm_.is_empty()) y = norm_.forward(y);
  return relu_ ? torch::relu(y) : y;
}

// ---- FPN neck ----------------------------------------------------------------------------------

FpnNeckImpl::FpnNeckImpl(const FpnNeckOptions& options) {
  SEGRUN_CHECK(!options.in_channels.empty() && options.channels > 0, ModelError,
               "FPN neck: needs at least one input level and channels > 0");
  for (int64_t in : options.in_channels) {
    ConvModuleOptions lateral;
    lateral.in_channels = in;
    lateral.out_channels = options.channels;
    lateral.kernel = 1;
    lateral_convs_->push_back(ConvModule(lateral));
    ConvModuleOptions output;
    output.in_channels = options.channels;
    output.out_channels = options.channels;
    output.kernel = 3;
    fpn_convs_->push_back(ConvModule(output));
  }
  register_module("lateral_convs", lateral_convs_);
  register_module("fpn_convs", fpn_convs_);
  torch::NoGradGuard no_grad;
  for (auto& module : modules(/*include_self=*/false)) {
    if (auto* conv = module->as<torch::nn::Conv2d>()) {
      torch::nn::init::xavier_uniform_(conv->weight);
      if (conv->bias.defined()) conv->bias.zero_();
    }
  }
}

std::vector<torch::Tensor> FpnNeckImpl::forward(const std::vector<torch::Tensor>& features) {
  const size_t levels = lateral_convs_->size();
  SEGRUN_CHECK(features.size() == levels, ModelError,
               "FPN neck: expected " << levels << " feature levels, got " << features.size());
  std::vector<torch::Tensor> laterals;
  for (size_t i = 0; i < levels; ++i) laterals.push_back(lateral_convs_[i]->as<ConvModule>()->forward(features[i]));
  for (size_t i = levels - 1; i > 0; --i) {
    laterals[i - 1] =
        laterals[i - 1] +
        F::interpolate(laterals[i], F::InterpolateFuncOptions()
                                        .size(std::vector<int64_t>{laterals[i - 1].size(2), laterals[i - 1].size(3)})
                                        .mode(torch::kNearest));
  }
  std::vector<torch::Tensor> outs;
  for (size_t i = 0; i < levels; ++i) outs.push_back(fpn_convs_[i]->as<ConvModule>()->forward(laterals[i]));
  return outs;
}

// ---- Semantic FPN head ---------------------------------------------------------------------------

FpnHeadImpl::FpnHeadImpl(const FpnHeadOptions& options) {
  SEGRUN_CHECK(options.num_classes > 0, ModelError,
               "FPN head: num_classes must be > 0 (got " << options.num_classes << ")");
  SEGRUN_CHECK(!options.strides.empty() && static_cast<bool>(options.norm), ModelError,
               "FPN head: needs strides and a norm factory");
  SEGRUN_CHECK(options.strides.front() == *std::min_element(options.strides.begin(), options.strides.end()), ModelError,
               "FPN head: the first level must be the finest");
  const int64_t base = log2_exact(options.strides.front());
  torch::nn::ModuleList scale_heads;
  for (int64_t stride : options.strides) {
    const int64_t blocks = std::max<int64_t>(1, log2_exact(stride) - base);
    torch::nn::Sequential head;
    for (int64_t k = 0; k < blocks; ++k) {
      ConvModuleOptions conv;
      conv.in_channels = options.channels;
      conv.out_channels = options.channels;
      conv.kernel = 3;
      conv.norm = options.norm;
      conv.relu = true;
      ConvModule module(conv);
      {
        // mmcv ConvModule init: Kaiming normal (fan_out, ReLU) for the conv.
        torch::NoGradGuard no_grad;
        torch::nn::init::kaiming_normal_(module->conv()->weight, 0.0, torch::kFanOut, torch::kReLU);
      }
      head->push_back(module);
      if (stride != options.strides.front()) {
        head->push_back(torch::nn::Upsample(torch::nn::UpsampleOptions()
                                                .scale_factor(std::vector<double>{2.0, 2.0})
                                                .mode(torch::kBilinear)
                                                .align_corners(false)));
      }
    }
    scale_heads->push_back(head);
    scale_heads_.push_back(head);
  }
  register_module("scale_heads", scale_heads);
  dropout_ = options.dropout;
  random_ = options.random ? options.random : std::make_shared<const SampleRandom>();
  conv_seg_ = register_module("conv_seg",
                              torch::nn::Conv2d(torch::nn::Conv2dOptions(options.channels, options.num_classes, 1)));
  torch::NoGradGuard no_grad;
  conv_seg_->weight.normal_(0.0, 0.01);
  conv_seg_->bias.zero_();
}

torch::Tensor FpnHeadImpl::forward(const std::vector<torch::Tensor>& features) {
  SEGRUN_CHECK(features.size() == scale_heads_.size(), ModelError,
               "FPN head: expected " << scale_heads_.size() << " feature levels, got " << features.size());
  torch::Tensor output = scale_heads_[0]->forward(features[0]);
  const std::vector<int64_t> size{output.size(2), output.size(3)};
  for (size_t i = 1; i < scale_heads_.size(); ++i) {
    output = output + resize_bilinear(scale_heads_[i]->forward(features[i]), size);
  }
  return conv_seg_->forward(keyed_dropout2d(output, dropout_, is_training(), *random_));
}

}  // namespace segrun::models
