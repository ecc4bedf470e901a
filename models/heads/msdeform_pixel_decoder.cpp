// Multi-scale deformable attention pixel decoder: see msdeform_pixel_decoder.h.
#include "models/heads/msdeform_pixel_decoder.h"

#include <cmath>

#include "core/error.h"
#include "dist/device.h"

namespace segrun::models {
namespace {

namespace F = torch::nn::functional;

constexpr double kPi = 3.14159265358979323846;

void xavier_conv(torch::nn::Conv2d& conv) {
  torch::nn::init::xavier_uniform_(conv->weight);
  if (conv->bias.defined()) torch::nn::init::zeros_(conv->bias);
}

}  // namespace

torch::Tensor ms_deform_attn_sample(const torch::Tensor& value, const std::vector<std::pair<int64_t, int64_t>>& shapes,
                                    const torch::Tensor& locations, const torch::Tensor& weights) {
  SEGRUN_CHECK(value.dim() == 4 && locations.dim() == 6 && weights.dim() == 5, ModelError,
               "ms_deform_attn_sample: expected value [B,S,M,D], locations [B,Lq,M,L,P,2], weights [B,Lq,M,L,P]; got "
                   << value.sizes() << ", " << locations.sizes() << ", " << weights.sizes());
  const int64_t batch = value.size(0), heads = value.size(2), dim = value.size(3);
  const int64_t queries = locations.size(1), levels = locations.size(3), points = locations.size(4);
  SEGRUN_CHECK(static_cast<int64_t>(shapes.size()) == levels, ModelError,
               "ms_deform_attn_sample: " << shapes.size() << " level shapes for " << levels << " levels");
  int64_t total = 0;
  for (const auto& [h, w] : shapes) total += h * w;
  SEGRUN_CHECK(total == value.size(1), ModelError,
               "ms_deform_attn_sample: value has " << value.size(1) << " locations, the shapes " << total);
  // grid_sample works on [B*M, D, H, W] maps with grids [B*M, Lq, P, 2] in [-1, 1].
  const torch::Tensor grids = locations * 2.0 - 1.0;
  std::vector<torch::Tensor> sampled;
  int64_t start = 0;
  for (int64_t l = 0; l < levels; ++l) {
    const auto [h, w] = shapes[static_cast<size_t>(l)];
    torch::Tensor level_value = value
                                    .narrow(1, start, h * w)  // [B, HW, M, D]
                                    .permute({0, 2, 3, 1})    // [B, M, D, HW]
                                    .reshape({batch * heads, dim, h, w});
    torch::Tensor grid = grids
                             .select(3, l)     // [B, Lq, M, P, 2]
                             .transpose(1, 2)  // [B, M, Lq, P, 2]
                             .reshape({batch * heads, queries, points, 2});
    sampled.push_back(F::grid_sample(level_value, grid,
                                     F::GridSampleFuncOptions()
                                         .mode(torch::kBilinear)
                                         .padding_mode(torch::kZeros)
                                         .align_corners(false)));  // [B*M, D, Lq, P]
    start += h * w;
  }
  torch::Tensor stacked = torch::stack(sampled, -2).flatten(-2);  // [B*M, D, Lq, L*P]
  torch::Tensor w = weights.transpose(1, 2).reshape({batch * heads, 1, queries, levels * points});
  torch::Tensor out = (stacked * w).sum(-1).view({batch, heads * dim, queries});
  return out.transpose(1, 2).contiguous();
}

torch::Tensor sine_position_embedding(int64_t batch, int64_t height, int64_t width, int64_t num_pos_feats,
                                      const torch::TensorOptions& options) {
  const double eps = 1e-6, scale = 2.0 * kPi, temperature = 10000.0;
  const auto fopts = options.dtype(torch::kFloat32);
  torch::Tensor y = torch::arange(1, height + 1, fopts).view({height, 1}).expand({height, width});
  torch::Tensor x = torch::arange(1, width + 1, fopts).view({1, width}).expand({height, width});
  y = y / (static_cast<double>(height) + eps) * scale;
  x = x / (static_cast<double>(width) + eps) * scale;
  torch::Tensor dim_t = torch::arange(num_pos_feats, fopts);
  dim_t = torch::pow(temperature, 2.0 * torch::floor(dim_t / 2.0) / static_cast<double>(num_pos_feats));
  auto encode = [&](const torch::Tensor& e) {
    torch::Tensor pos = e.unsqueeze(-1) / dim_t;  // [H, W, F]
    using torch::indexing::Slice;
    torch::Tensor sin = pos.index({Slice(), Slice(), Slice(0, torch::indexing::None, 2)}).sin();
    torch::Tensor cos = pos.index({Slice(), Slice(), Slice(1, torch::indexing::None, 2)}).cos();
    return torch::stack({sin, cos}, 3).flatten(2);  // interleaved sin, cos
  };
  torch::Tensor pos = torch::cat({encode(y), encode(x)}, 2).permute({2, 0, 1});  // [2F, H, W]
  return pos.unsqueeze(0).expand({batch, 2 * num_pos_feats, height, width}).to(options.dtype());
}

torch::Tensor deform_reference_points(const std::vector<std::pair<int64_t, int64_t>>& shapes,
                                      const torch::TensorOptions& options) {
  std::vector<torch::Tensor> levels;
  for (const auto& [h, w] : shapes) {
    torch::Tensor ys = (torch::arange(h, options) + 0.5) / static_cast<double>(h);
    torch::Tensor xs = (torch::arange(w, options) + 0.5) / static_cast<double>(w);
    torch::Tensor gx = xs.view({1, w}).expand({h, w}).reshape({-1});
    torch::Tensor gy = ys.view({h, 1}).expand({h, w}).reshape({-1});
    levels.push_back(torch::stack({gx, gy}, -1));
  }
  return torch::cat(levels, 0);
}

// ---- MSDeformAttn ------------------------------------------------------------------------------

MSDeformAttnImpl::MSDeformAttnImpl(const MSDeformAttnOptions& options) : options_(options) {
  SEGRUN_CHECK(options.dim > 0 && options.heads > 0 && options.dim % options.heads == 0, ModelError,
               "MSDeformAttn: dim " << options.dim << " is not divisible by heads " << options.heads);
  const int64_t c = options.dim, m = options.heads, l = options.levels, p = options.points;
  sampling_offsets_ = register_module("sampling_offsets", torch::nn::Linear(c, m * l * p * 2));
  attention_weights_ = register_module("attention_weights", torch::nn::Linear(c, m * l * p));
  value_proj_ = register_module("value_proj", torch::nn::Linear(c, c));
  output_proj_ = register_module("output_proj", torch::nn::Linear(c, c));
  reset_parameters();
}

void MSDeformAttnImpl::reset_parameters() {
  torch::NoGradGuard no_grad;
  const int64_t m = options_.heads, l = options_.levels, p = options_.points;
  torch::nn::init::zeros_(sampling_offsets_->weight);
  torch::Tensor thetas = torch::arange(m, torch::kFloat32) * (2.0 * kPi / static_cast<double>(m));
  torch::Tensor grid = torch::stack({thetas.cos(), thetas.sin()}, -1);  // [M, 2]
  grid = grid / std::get<0>(grid.abs().max(-1, /*keepdim=*/true));
  grid = grid.view({m, 1, 1, 2}).repeat({1, l, p, 1}).clone();
  for (int64_t i = 0; i < p; ++i) grid.select(2, i).mul_(static_cast<double>(i + 1));
  sampling_offsets_->bias.copy_(grid.view({-1}));
  torch::nn::init::zeros_(attention_weights_->weight);
  torch::nn::init::zeros_(attention_weights_->bias);
  torch::nn::init::xavier_uniform_(value_proj_->weight);
  torch::nn::init::zeros_(value_proj_->bias);
  torch::nn::init::xavier_uniform_(output_proj_->weight);
  torch::nn::init::zeros_(output_proj_->bias);
}

torch::Tensor MSDeformAttnImpl::forward(const torch::Tensor& query, const torch::Tensor& reference,
                                        const torch::Tensor& input,
                                        const std::vector<std::pair<int64_t, int64_t>>& shapes) {
  const int64_t batch = query.size(0), queries = query.size(1), s = input.size(1);
  const int64_t m = options_.heads, l = options_.levels, p = options_.points, c = options_.dim;
  SEGRUN_CHECK(static_cast<int64_t>(shapes.size()) == l, ModelError,
               "MSDeformAttn: built for " << l << " levels, got " << shapes.size());
  torch::Tensor value = value_proj_->forward(input).view({batch, s, m, c / m});
  torch::Tensor offsets = sampling_offsets_->forward(query).view({batch, queries, m, l, p, 2});
  torch::Tensor weights = torch::softmax(attention_weights_->forward(query).view({batch, queries, m, l * p}), -1)
                              .view({batch, queries, m, l, p});
  std::vector<float> normalizer;  // (W, H) per level
  for (const auto& [h, w] : shapes) {
    normalizer.push_back(static_cast<float>(w));
    normalizer.push_back(static_cast<float>(h));
  }
  // Copied without waiting: a blocking copy would make the host wait for the device's whole queue
  // at every attention layer.
  torch::Tensor norm = dist::to_device_async(torch::tensor(normalizer, torch::kFloat32), query.device())
                           .to(query.scalar_type())
                           .view({1, 1, 1, l, 1, 2});
  torch::Tensor locations = reference.view({batch, queries, 1, l, 1, 2}) + offsets / norm;
  return output_proj_->forward(ms_deform_attn_sample(value, shapes, locations, weights));
}

// ---- encoder layer -----------------------------------------------------------------------------

MSDeformEncoderLayerImpl::MSDeformEncoderLayerImpl(const MSDeformAttnOptions& attention, int64_t ffn_dim) {
  self_attn_ = register_module("self_attn", MSDeformAttn(attention));
  norm1_ = register_module("norm1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({attention.dim})));
  linear1_ = register_module("linear1", torch::nn::Linear(attention.dim, ffn_dim));
  linear2_ = register_module("linear2", torch::nn::Linear(ffn_dim, attention.dim));
  norm2_ = register_module("norm2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({attention.dim})));
}

torch::Tensor MSDeformEncoderLayerImpl::forward(const torch::Tensor& src, const torch::Tensor& pos,
                                                const torch::Tensor& reference,
                                                const std::vector<std::pair<int64_t, int64_t>>& shapes) {
  torch::Tensor x = norm1_->forward(src + self_attn_->forward(src + pos, reference, src, shapes));
  return norm2_->forward(x + linear2_->forward(torch::relu(linear1_->forward(x))));
}

// ---- pixel decoder -----------------------------------------------------------------------------

MSDeformPixelDecoderImpl::MSDeformPixelDecoderImpl(const PixelDecoderOptions& options) : options_(options) {
  SEGRUN_CHECK(options.in_channels.size() == 4, ModelError,
               "pixel decoder: expects 4 backbone stages, got " << options.in_channels.size());
  SEGRUN_CHECK(options.groups > 0 && options.conv_dim % options.groups == 0, ModelError,
               "pixel decoder: GroupNorm groups " << options.groups << " do not divide conv_dim " << options.conv_dim);
  const int64_t c = options.conv_dim;
  auto group_norm = [&] { return torch::nn::GroupNorm(torch::nn::GroupNormOptions(options.groups, c)); };
  input_proj_ = register_module("input_proj", torch::nn::ModuleList());
  for (int level = 3; level >= 1; --level) {
    torch::nn::Conv2d conv(torch::nn::Conv2dOptions(options.in_channels[static_cast<size_t>(level)], c, 1));
    xavier_conv(conv);
    input_proj_->push_back(torch::nn::Sequential(conv, group_norm()));
  }
  level_embed_ = register_parameter("level_embed", torch::randn({3, c}));

  MSDeformAttnOptions attention;
  attention.dim = c;
  attention.levels = 3;
  attention.heads = options.heads;
  attention.points = options.points;
  encoder_ = register_module("encoder", torch::nn::ModuleList());
  for (int64_t i = 0; i < options.encoder_layers; ++i) {
    MSDeformEncoderLayer layer(attention, options.ffn_dim);
    {
      // Deformable DETR: xavier for every matrix, then the attention's own init.
      torch::NoGradGuard no_grad;
      for (auto& param : layer->parameters())
        if (param.dim() > 1) torch::nn::init::xavier_uniform_(param);
    }
    layer->self_attn()->reset_parameters();
    encoder_->push_back(layer);
  }

  torch::nn::Conv2d lateral(torch::nn::Conv2dOptions(options.in_channels[0], c, 1).bias(false));
  torch::nn::Conv2d output(torch::nn::Conv2dOptions(c, c, 3).padding(1).bias(false));
  {
    torch::NoGradGuard no_grad;
    // detectron2 c2_xavier_fill: kaiming_uniform with a = 1.
    torch::nn::init::kaiming_uniform_(lateral->weight, 1.0);
    torch::nn::init::kaiming_uniform_(output->weight, 1.0);
  }
  adapter_ = register_module("adapter_1", torch::nn::Sequential(lateral, group_norm()));
  layer_ = register_module("layer_1", torch::nn::Sequential(output, group_norm(), torch::nn::ReLU()));
  mask_features_ =
      register_module("mask_features", torch::nn::Conv2d(torch::nn::Conv2dOptions(c, options.mask_dim, 1)));
  {
    torch::NoGradGuard no_grad;
    torch::nn::init::kaiming_uniform_(mask_features_->weight, 1.0);
    torch::nn::init::zeros_(mask_features_->bias);
  }
}

PixelDecoderOutput MSDeformPixelDecoderImpl::forward(const std::vector<torch::Tensor>& stages) {
  SEGRUN_CHECK(stages.size() == 4, ModelError, "pixel decoder: expects 4 stages, got " << stages.size());
  const int64_t batch = stages[0].size(0), c = options_.conv_dim;
  std::vector<std::pair<int64_t, int64_t>> shapes;
  std::vector<torch::Tensor> srcs, pos;
  for (int64_t i = 0; i < 3; ++i) {
    const torch::Tensor& x = stages[static_cast<size_t>(3 - i)];  // c4, c3, c2
    torch::Tensor projected = input_proj_[static_cast<size_t>(i)]->as<torch::nn::Sequential>()->forward(x);
    const int64_t h = projected.size(2), w = projected.size(3);
    shapes.emplace_back(h, w);
    srcs.push_back(projected.flatten(2).transpose(1, 2));  // [B, HW, C]
    torch::Tensor p = sine_position_embedding(batch, h, w, c / 2, projected.options()).flatten(2).transpose(1, 2);
    pos.push_back(p + level_embed_[i].view({1, 1, c}));
  }
  torch::Tensor src = torch::cat(srcs, 1), pos_all = torch::cat(pos, 1);
  torch::Tensor reference =
      deform_reference_points(shapes, src.options()).view({1, -1, 1, 2}).expand({batch, src.size(1), 3, 2});
  for (const auto& module : *encoder_)
    src = module->as<MSDeformEncoderLayerImpl>()->forward(src, pos_all, reference, shapes);

  PixelDecoderOutput out;
  int64_t start = 0;
  for (const auto& [h, w] : shapes) {
    out.multi_scale.push_back(src.narrow(1, start, h * w).transpose(1, 2).reshape({batch, c, h, w}));
    start += h * w;
  }
  torch::Tensor lateral = adapter_->forward(stages[0]);
  torch::Tensor y =
      lateral + F::interpolate(out.multi_scale.back(), F::InterpolateFuncOptions()
                                                           .size(std::vector<int64_t>{lateral.size(2), lateral.size(3)})
                                                           .mode(torch::kBilinear)
                                                           .align_corners(false));
  out.mask_features = mask_features_->forward(layer_->forward(y));
  return out;
}

}  // namespace segrun::models
