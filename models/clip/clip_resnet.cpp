// CLIP ModifiedResNet and DenseCLIP-style attention pooling: see clip_resnet.h.
#include "models/clip/clip_resnet.h"

#include <cmath>

#include "core/error.h"
#include "models/clip/clip_backbones.h"

namespace segrun::models {
namespace {

torch::nn::Conv2d conv_no_bias(int64_t in, int64_t out, int64_t kernel, int64_t stride = 1) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, kernel).stride(stride).padding(kernel / 2).bias(false));
}

torch::Tensor avg_pool(const torch::Tensor& x, int64_t k) { return k > 1 ? torch::avg_pool2d(x, {k, k}) : x; }

torch::nn::AnyModule make_norm(const NormFactory& norm, int64_t channels) {
  torch::nn::AnyModule module = norm(channels);
  SEGRUN_CHECK(!module.is_empty(), ModelError, "norm factory returned an empty module for " << channels << " channels");
  return module;
}

}  // namespace

ClipResNetSpec validate_clip_resnet_options(const ClipResNetOptions& options) {
  const BackboneInfo& backbone = backbone_info(options.variant);  // ConfigError for an unknown name
  SEGRUN_CHECK(backbone.family == BackboneFamily::kResNet, ConfigError,
               "model.backbone: '" << options.variant << "' is not a ResNet backbone (clip_vit.h builds it)");
  const ClipBackboneFacts& facts = clip_backbone_facts(backbone.kind);
  ClipResNetSpec spec;
  spec.layers = facts.resnet_layers;
  SEGRUN_CHECK(options.width >= 8 && options.width % 8 == 0, ConfigError,
               "model.width: must be a multiple of 8 and at least 8 (got " << options.width << ")");
  SEGRUN_CHECK(options.input_resolution >= 32 && options.input_resolution % 32 == 0, ConfigError,
               "input resolution of the CLIP backbone must be a positive multiple of 32 (got "
                   << options.input_resolution << ")");
  SEGRUN_CHECK(static_cast<bool>(options.norm), ModelError, "ClipResNetOptions.norm is not set");
  spec.width = options.width;
  spec.feature_dim = 32 * spec.width;
  spec.heads = std::max<int64_t>(1, spec.feature_dim / 64);
  spec.embed_dim = facts.embed_per_width * spec.width;
  return spec;
}

// ---- Bottleneck ------------------------------------------------------------------------------

ClipBottleneckImpl::ClipBottleneckImpl(int64_t inplanes, int64_t planes, int64_t stride, const NormFactory& norm)
    : stride_(stride) {
  constexpr int64_t kExpansion = 4;
  conv1_ = register_module("conv1", conv_no_bias(inplanes, planes, 1));
  bn1_ = make_norm(norm, planes);
  register_module("bn1", bn1_.ptr());
  conv2_ = register_module("conv2", conv_no_bias(planes, planes, 3));
  bn2_ = make_norm(norm, planes);
  register_module("bn2", bn2_.ptr());
  conv3_ = register_module("conv3", conv_no_bias(planes, planes * kExpansion, 1));
  bn3_ = make_norm(norm, planes * kExpansion);
  register_module("bn3", bn3_.ptr());
  if (stride > 1 || inplanes != planes * kExpansion) {
    downsample_ = torch::nn::Sequential();
    downsample_->push_back("0", conv_no_bias(inplanes, planes * kExpansion, 1));
    downsample_->push_back("1", make_norm(norm, planes * kExpansion));
    register_module("downsample", downsample_);
  }
}

torch::Tensor ClipBottleneckImpl::forward(const torch::Tensor& x) {
  torch::Tensor out = torch::relu(bn1_.forward(conv1_->forward(x)));
  out = torch::relu(bn2_.forward(conv2_->forward(out)));
  out = avg_pool(out, stride_);
  out = bn3_.forward(conv3_->forward(out));
  torch::Tensor identity = downsample_ ? downsample_->forward(avg_pool(x, stride_)) : x;
  return torch::relu(out + identity);
}

// ---- Attention pooling -------------------------------------------------------------------------

AttentionPool2dImpl::AttentionPool2dImpl(int64_t spatial_dim, int64_t embed_dim, int64_t heads, int64_t output_dim)
    : spatial_dim_(spatial_dim), embed_dim_(embed_dim), heads_(heads), output_dim_(output_dim) {
  SEGRUN_CHECK(embed_dim % heads == 0, ModelError,
               "attnpool: embed dim " << embed_dim << " is not divisible by " << heads << " heads");
  positional_embedding =
      register_parameter("positional_embedding", torch::randn({spatial_dim * spatial_dim + 1, embed_dim}) /
                                                     std::sqrt(static_cast<double>(embed_dim)));
  k_proj_ = register_module("k_proj", torch::nn::Linear(embed_dim, embed_dim));
  q_proj_ = register_module("q_proj", torch::nn::Linear(embed_dim, embed_dim));
  v_proj_ = register_module("v_proj", torch::nn::Linear(embed_dim, embed_dim));
  c_proj_ = register_module("c_proj", torch::nn::Linear(embed_dim, output_dim));
  // CLIP's initialize_parameters: projection weights ~ N(0, in_features^-1/2).
  torch::NoGradGuard no_grad;
  const double std = 1.0 / std::sqrt(static_cast<double>(embed_dim));
  for (auto* linear : {&q_proj_, &k_proj_, &v_proj_, &c_proj_}) (*linear)->weight.normal_(0.0, std);
}

std::pair<torch::Tensor, torch::Tensor> AttentionPool2dImpl::forward(const torch::Tensor& x) {
  SEGRUN_CHECK(x.dim() == 4 && x.size(1) == embed_dim_, ModelError,
               "attnpool: expected [B, " << embed_dim_ << ", H, W], got " << x.sizes());
  const int64_t batch = x.size(0), height = x.size(2), width = x.size(3);
  const int64_t length = height * width + 1;
  // Tokens [B, HW+1, C]: the mean token first, then the grid in row-major order.
  torch::Tensor tokens = x.flatten(2).transpose(1, 2);
  tokens = torch::cat({tokens.mean(1, /*keepdim=*/true), tokens}, 1);

  // Positional embedding: the class row as is, the spatial grid resized to H x W.
  torch::Tensor grid =
      positional_embedding.slice(0, 1).reshape({1, spatial_dim_, spatial_dim_, embed_dim_}).permute({0, 3, 1, 2});
  grid = torch::nn::functional::interpolate(grid, torch::nn::functional::InterpolateFuncOptions()
                                                      .size(std::vector<int64_t>{height, width})
                                                      .mode(torch::kBilinear)
                                                      .align_corners(false));
  torch::Tensor pos =
      torch::cat({positional_embedding.slice(0, 0, 1), grid.reshape({embed_dim_, height * width}).transpose(0, 1)}, 0);
  tokens = tokens + pos.unsqueeze(0);

  // Multi-head attention in which every token is a query.
  const int64_t head_dim = embed_dim_ / heads_;
  auto split = [&](const torch::Tensor& t) {
    return t.reshape({batch, length, heads_, head_dim}).transpose(1, 2);  // [B, h, L, d]
  };
  torch::Tensor q = split(q_proj_->forward(tokens) * (1.0 / std::sqrt(static_cast<double>(head_dim))));
  torch::Tensor k = split(k_proj_->forward(tokens));
  torch::Tensor v = split(v_proj_->forward(tokens));
  torch::Tensor attention = torch::softmax(torch::matmul(q, k.transpose(-2, -1)), -1);
  torch::Tensor out = torch::matmul(attention, v).transpose(1, 2).reshape({batch, length, embed_dim_});
  out = c_proj_->forward(out);  // [B, L, E]

  torch::Tensor global = out.select(1, 0);
  torch::Tensor dense = out.slice(1, 1).transpose(1, 2).reshape({batch, output_dim_, height, width});
  return {global, dense};
}

// ---- ModifiedResNet ----------------------------------------------------------------------------

ClipResNetImpl::ClipResNetImpl(const ClipResNetOptions& options) : spec_(validate_clip_resnet_options(options)) {
  const int64_t w = spec_.width;
  conv1_ = register_module("conv1", conv_no_bias(3, w / 2, 3, /*stride=*/2));
  bn1_ = make_norm(options.norm, w / 2);
  register_module("bn1", bn1_.ptr());
  conv2_ = register_module("conv2", conv_no_bias(w / 2, w / 2, 3));
  bn2_ = make_norm(options.norm, w / 2);
  register_module("bn2", bn2_.ptr());
  conv3_ = register_module("conv3", conv_no_bias(w / 2, w, 3));
  bn3_ = make_norm(options.norm, w);
  register_module("bn3", bn3_.ptr());

  int64_t inplanes = w;
  for (size_t stage = 0; stage < spec_.layers.size(); ++stage) {
    const int64_t planes = w << stage;
    const int64_t stride = stage == 0 ? 1 : 2;
    torch::nn::Sequential layer;
    for (int64_t block = 0; block < spec_.layers[stage]; ++block) {
      layer->push_back(ClipBottleneck(inplanes, planes, block == 0 ? stride : 1, options.norm));
      inplanes = planes * 4;
    }
    layers_.push_back(register_module("layer" + std::to_string(stage + 1), layer));
  }

  // CLIP's initialize_parameters: each residual branch starts at zero (bn3.weight = 0).
  torch::NoGradGuard no_grad;
  for (auto& item : named_parameters()) {
    const std::string& name = item.key();
    const std::string suffix = "bn3.weight";
    if (name.rfind("layer", 0) == 0 && name.size() > suffix.size() &&
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
      item.value().zero_();
    }
  }

  if (options.with_attnpool) {
    attnpool_ = register_module(
        "attnpool", AttentionPool2d(options.input_resolution / 32, spec_.feature_dim, spec_.heads, spec_.embed_dim));
  }
}

ClipVisualSpec ClipResNetImpl::visual_spec() const {
  return ClipVisualSpec{spec_.stage_channels(), spec_.embed_dim, spec_.feature_dim};
}

ClipVisualOutput ClipResNetImpl::forward(const torch::Tensor& images) {
  SEGRUN_CHECK(images.dim() == 4 && images.size(1) == 3, ModelError,
               "CLIP ResNet: expected images [B, 3, H, W], got " << images.sizes());
  const int64_t min_side = min_input_side();
  SEGRUN_CHECK(images.size(2) >= min_side && images.size(3) >= min_side, ModelError,
               "CLIP ResNet: images must be at least " << min_side << "x" << min_side << ", got " << images.sizes());
  torch::Tensor x = torch::relu(bn1_.forward(conv1_->forward(images)));
  x = torch::relu(bn2_.forward(conv2_->forward(x)));
  x = torch::relu(bn3_.forward(conv3_->forward(x)));
  x = avg_pool(x, 2);
  ClipVisualOutput out;
  for (auto& layer : layers_) {
    x = layer->forward(x);
    out.stages.push_back(x);
  }
  if (attnpool_) std::tie(out.global, out.dense) = attnpool_->forward(x);
  return out;
}

}  // namespace segrun::models
