// CLIP vision transformer with DenseCLIP's dense outputs: see clip_vit.h.
#include "models/clip/clip_vit.h"

#include <cmath>

#include "core/error.h"

namespace segrun::models {

void validate_clip_vit_options(const ClipVitOptions& o) {
  SEGRUN_CHECK(o.patch_size > 0 && o.width > 0 && o.layers > 0 && o.heads > 0 && o.embed_dim > 0, ModelError,
               "ClipVitOptions: sizes must be positive (patch " << o.patch_size << ", width " << o.width << ", layers "
                                                                << o.layers << ", heads " << o.heads << ", embed "
                                                                << o.embed_dim << ")");
  SEGRUN_CHECK(o.width % o.heads == 0, ModelError,
               "ClipVitOptions.width " << o.width << " is not a multiple of heads " << o.heads);
  SEGRUN_CHECK(o.input_resolution >= o.patch_size && o.input_resolution % o.patch_size == 0, ModelError,
               "ClipVitOptions.input_resolution " << o.input_resolution << " is not a positive multiple of the patch "
                                                  << o.patch_size);
  SEGRUN_CHECK(o.out_indices.size() == 4, ModelError,
               "ClipVitOptions.out_indices: 4 blocks needed, got " << o.out_indices.size());
  for (size_t i = 0; i < o.out_indices.size(); ++i) {
    SEGRUN_CHECK(
        o.out_indices[i] >= 0 && o.out_indices[i] < o.layers && (i == 0 || o.out_indices[i] > o.out_indices[i - 1]),
        ModelError, "ClipVitOptions.out_indices must increase within [0, " << o.layers << ")");
  }
  SEGRUN_CHECK(o.drop_path_rate >= 0.0 && o.drop_path_rate < 1.0, ModelError,
               "ClipVitOptions.drop_path_rate must be in [0, 1), got " << o.drop_path_rate);
  SEGRUN_CHECK(o.drop_path_rate == 0.0 || o.random, ModelError,
               "ClipVitOptions.random is required for stochastic depth");
  SEGRUN_CHECK(static_cast<bool>(o.norm), ModelError, "ClipVitOptions.norm is not set");
}

ClipVitImpl::ClipVitImpl(const ClipVitOptions& options)
    : options_(options), grid_(options.input_resolution / options.patch_size) {
  validate_clip_vit_options(options);
  const int64_t width = options.width;
  conv1_ = register_module(
      "conv1",
      torch::nn::Conv2d(torch::nn::Conv2dOptions(3, width, options.patch_size).stride(options.patch_size).bias(false)));
  const double scale = std::pow(static_cast<double>(width), -0.5);  // OpenAI CLIP's init
  class_embedding = register_parameter("class_embedding", torch::randn({width}) * scale);
  positional_embedding = register_parameter("positional_embedding", torch::randn({grid_ * grid_ + 1, width}) * scale);
  ln_pre_ = register_module("ln_pre", torch::nn::LayerNorm(torch::nn::LayerNormOptions({width})));
  auto transformer = register_module("transformer", std::make_shared<torch::nn::Module>());
  resblocks_ = torch::nn::ModuleList();
  for (int64_t i = 0; i < options.layers; ++i) resblocks_->push_back(ClipResidualBlock(width, options.heads));
  transformer->register_module("resblocks", resblocks_);
  init_clip_transformer(*transformer, width, options.layers);
  if (options.with_embeddings) {
    ln_post_ = register_module("ln_post", torch::nn::LayerNorm(torch::nn::LayerNormOptions({width})));
    proj = register_parameter("proj", torch::randn({width, options.embed_dim}) * scale);
  }

  // DenseCLIP's pyramid for patch 16 (the Sequential indices are its module names; 3 is the GELU).
  auto group_norm = [width] { return torch::nn::GroupNorm(torch::nn::GroupNormOptions(1, width)); };
  auto up2 = [width] {
    return torch::nn::ConvTranspose2d(torch::nn::ConvTranspose2dOptions(width, width, 2).stride(2));
  };
  torch::nn::AnyModule bn = options.norm(width);
  SEGRUN_CHECK(!bn.is_empty(), ModelError, "norm factory returned an empty module for " << width << " channels");
  fpn1_ = torch::nn::Sequential();
  fpn1_->push_back("0", group_norm());
  fpn1_->push_back("1", up2());
  fpn1_->push_back("2", bn);
  fpn1_->push_back("3", torch::nn::GELU());
  fpn1_->push_back("4", up2());
  register_module("fpn1", fpn1_);
  fpn2_ = torch::nn::Sequential();
  fpn2_->push_back("0", group_norm());
  fpn2_->push_back("1", up2());
  register_module("fpn2", fpn2_);
  fpn3_ = register_module("fpn3", group_norm());
  fpn4_ = torch::nn::Sequential();
  fpn4_->push_back("0", group_norm());
  fpn4_->push_back("1", torch::nn::MaxPool2d(torch::nn::MaxPool2dOptions(2).stride(2)));
  register_module("fpn4", fpn4_);
}

ClipVisualSpec ClipVitImpl::visual_spec() const {
  const int64_t width = options_.width;
  return ClipVisualSpec{{width, width, width, width}, options_.embed_dim, width};
}

torch::Tensor ClipVitImpl::drop_path_scales(int64_t batch, const torch::TensorOptions& options) const {
  const int64_t layers = options_.layers;
  // Row 2i: block i's attention branch, 2i + 1: its MLP branch (DenseCLIP draws one DropPath per
  // branch); the drop probability rises linearly over the blocks (torch.linspace(0, rate, layers)).
  const torch::Tensor u =
      options_.random->uniform(batch, stream_id(RandomSite::kDropPath), {2 * layers}, options.dtype(torch::kFloat32));
  // Made on u's device (no host-to-device copy in the training step): column c is block c / 2.
  const double step = layers > 1 ? options_.drop_path_rate / static_cast<double>(layers - 1) : 0.0;
  const torch::Tensor drop =
      torch::arange(2 * layers, u.options()).div_(2, "floor").mul_(step).unsqueeze(0);  // [1, 2L]
  const torch::Tensor scale = (u >= drop).to(torch::kFloat32) / (1.0 - drop);
  return scale.transpose(0, 1).to(options.dtype());  // [2L, B]
}

ClipVisualOutput ClipVitImpl::forward(const torch::Tensor& images) {
  const int64_t width = options_.width;
  SEGRUN_CHECK(images.dim() == 4 && images.size(1) == 3, ModelError,
               "CLIP ViT: expected images [B, 3, H, W], got " << images.sizes());
  const int64_t min_side = min_input_side();
  SEGRUN_CHECK(images.size(2) >= min_side && images.size(3) >= min_side, ModelError,
               "CLIP ViT: images must be at least " << min_side << "x" << min_side << ", got " << images.sizes());
  torch::Tensor x = conv1_->forward(images);  // [B, width, h, w]
  const int64_t batch = x.size(0), h = x.size(2), w = x.size(3);
  x = x.flatten(2).transpose(1, 2);  // [B, hw, width]
  x = torch::cat({class_embedding.to(x.dtype()).view({1, 1, width}).expand({batch, 1, width}), x}, 1);

  torch::Tensor grid = positional_embedding.slice(0, 1);
  if (h != grid_ || w != grid_) {
    namespace F = torch::nn::functional;
    torch::Tensor map = grid.reshape({1, grid_, grid_, width}).permute({0, 3, 1, 2});
    map = F::interpolate(
        map, F::InterpolateFuncOptions().size(std::vector<int64_t>{h, w}).mode(torch::kBilinear).align_corners(false));
    grid = map.reshape({width, h * w}).transpose(0, 1);
  }
  x = x + torch::cat({positional_embedding.slice(0, 0, 1), grid}, 0).to(x.dtype()).unsqueeze(0);
  x = ln_pre_(x).transpose(0, 1);  // [L, B, width]

  const bool dropping = is_training() && options_.drop_path_rate > 0.0;
  const torch::Tensor scales = dropping ? drop_path_scales(batch, x.options()) : torch::Tensor();
  std::vector<torch::Tensor> levels;
  size_t next = 0;
  for (int64_t i = 0; i < options_.layers; ++i) {
    x = resblocks_[i]->as<ClipResidualBlock>()->forward(x, torch::Tensor(),
                                                        dropping ? scales.slice(0, 2 * i, 2 * i + 2) : torch::Tensor());
    if (next < options_.out_indices.size() && options_.out_indices[next] == i) {
      levels.push_back(x.slice(0, 1).permute({1, 2, 0}).reshape({batch, width, h, w}));
      ++next;
    }
  }
  ClipVisualOutput out;
  out.stages = {fpn1_->forward(levels[0]), fpn2_->forward(levels[1]), fpn3_->forward(levels[2]),
                fpn4_->forward(levels[3])};
  if (options_.with_embeddings) {
    torch::Tensor y = ln_post_(x.transpose(0, 1)).matmul(proj.to(x.dtype()));  // [B, L, E]
    out.global = y.select(1, 0);
    out.dense = y.slice(1, 1).transpose(1, 2).reshape({batch, options_.embed_dim, h, w});
  }
  return out;
}

}  // namespace segrun::models
