// Mask2Former's masked-attention transformer decoder: see mask2former_decoder.h.
#include "models/heads/mask2former_decoder.h"

#include <cmath>

#include "core/error.h"
#include "models/heads/msdeform_pixel_decoder.h"

namespace segrun::models {
namespace m2f_decoder {

namespace F = torch::nn::functional;

// torch.nn.MultiheadAttention's parameters (in_proj_weight [3C, C], in_proj_bias, out_proj) on
// batch-first inputs, with a boolean [B * heads, Lq, Lk] mask (true = may not attend), which
// LibTorch 1.13's C++ MultiheadAttention does not take.
class AttentionImpl : public torch::nn::Module {
 public:
  AttentionImpl(int64_t dim, int64_t heads) : dim_(dim), heads_(heads) {
    SEGRUN_CHECK(dim % heads == 0, ModelError,
                 "Mask2Former decoder: hidden " << dim << " not divisible by heads " << heads);
    in_proj_weight = register_parameter("in_proj_weight", torch::empty({3 * dim, dim}));
    in_proj_bias = register_parameter("in_proj_bias", torch::zeros({3 * dim}));
    out_proj_ = register_module("out_proj", torch::nn::Linear(dim, dim));
    torch::NoGradGuard no_grad;
    torch::nn::init::xavier_uniform_(in_proj_weight);
    torch::nn::init::xavier_uniform_(out_proj_->weight);
    torch::nn::init::zeros_(out_proj_->bias);
  }
  // query [B, Lq, C], key/value [B, Lk, C] -> [B, Lq, C].
  torch::Tensor forward(const torch::Tensor& query, const torch::Tensor& key, const torch::Tensor& value,
                        const torch::Tensor& mask = {}) {
    const int64_t b = query.size(0), lq = query.size(1), lk = key.size(1), d = dim_ / heads_;
    auto w = in_proj_weight.chunk(3, 0);
    auto bias = in_proj_bias.chunk(3, 0);
    auto split = [&](const torch::Tensor& x, int64_t len) {
      return x.view({b, len, heads_, d}).transpose(1, 2).reshape({b * heads_, len, d});
    };
    torch::Tensor q = split(F::linear(query, w[0], bias[0]), lq) / std::sqrt(static_cast<double>(d));
    torch::Tensor k = split(F::linear(key, w[1], bias[1]), lk);
    torch::Tensor v = split(F::linear(value, w[2], bias[2]), lk);
    torch::Tensor scores = torch::bmm(q, k.transpose(1, 2));
    if (mask.defined()) scores = scores.masked_fill(mask, -std::numeric_limits<float>::infinity());
    torch::Tensor out = torch::bmm(torch::softmax(scores, -1), v);
    out = out.view({b, heads_, lq, d}).transpose(1, 2).reshape({b, lq, dim_});
    return out_proj_->forward(out);
  }
  torch::Tensor in_proj_weight, in_proj_bias;

 private:
  int64_t dim_, heads_;
  torch::nn::Linear out_proj_{nullptr};
};
TORCH_MODULE(Attention);

// norm(tgt + attn(tgt + query_pos, memory + pos, memory, mask)), Mask2Former's post-norm layers.
class CrossAttentionLayerImpl : public torch::nn::Module {
 public:
  CrossAttentionLayerImpl(int64_t dim, int64_t heads) {
    attn_ = register_module("multihead_attn", Attention(dim, heads));
    norm_ = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim})));
  }
  torch::Tensor forward(const torch::Tensor& tgt, const torch::Tensor& memory, const torch::Tensor& mask,
                        const torch::Tensor& pos, const torch::Tensor& query_pos) {
    return norm_->forward(tgt + attn_->forward(tgt + query_pos, memory + pos, memory, mask));
  }

 private:
  Attention attn_{nullptr};
  torch::nn::LayerNorm norm_{nullptr};
};
TORCH_MODULE(CrossAttentionLayer);

class SelfAttentionLayerImpl : public torch::nn::Module {
 public:
  SelfAttentionLayerImpl(int64_t dim, int64_t heads) {
    attn_ = register_module("self_attn", Attention(dim, heads));
    norm_ = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim})));
  }
  // mask: optional boolean [B * heads, L, L], true = may not attend.
  torch::Tensor forward(const torch::Tensor& tgt, const torch::Tensor& query_pos, const torch::Tensor& mask = {}) {
    torch::Tensor q = tgt + query_pos;
    return norm_->forward(tgt + attn_->forward(q, q, tgt, mask));
  }

 private:
  Attention attn_{nullptr};
  torch::nn::LayerNorm norm_{nullptr};
};
TORCH_MODULE(SelfAttentionLayer);

class FfnLayerImpl : public torch::nn::Module {
 public:
  FfnLayerImpl(int64_t dim, int64_t ffn_dim) {
    linear1_ = register_module("linear1", torch::nn::Linear(dim, ffn_dim));
    linear2_ = register_module("linear2", torch::nn::Linear(ffn_dim, dim));
    norm_ = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim})));
    torch::NoGradGuard no_grad;
    torch::nn::init::xavier_uniform_(linear1_->weight);
    torch::nn::init::xavier_uniform_(linear2_->weight);
  }
  torch::Tensor forward(const torch::Tensor& tgt) {
    return norm_->forward(tgt + linear2_->forward(torch::relu(linear1_->forward(tgt))));
  }

 private:
  torch::nn::Linear linear1_{nullptr}, linear2_{nullptr};
  torch::nn::LayerNorm norm_{nullptr};
};
TORCH_MODULE(FfnLayer);

}  // namespace m2f_decoder

MaskedTransformerDecoderImpl::MaskedTransformerDecoderImpl(const MaskedDecoderOptions& options) : options_(options) {
  SEGRUN_CHECK(options.num_queries > 0 && options.layers > 0 && options.num_classes > 0, ModelError,
               "Mask2Former decoder: num_queries, layers and num_classes must be > 0");
  SEGRUN_CHECK(options.hidden % 2 == 0, ModelError,
               "Mask2Former decoder: hidden " << options.hidden << " must be even");
  const int64_t c = options.hidden;
  input_proj_ = register_module("input_proj", torch::nn::ModuleList());
  if (options.in_channels != c) {
    for (int i = 0; i < 3; ++i) {
      torch::nn::Conv2d conv(torch::nn::Conv2dOptions(options.in_channels, c, 1));
      torch::NoGradGuard no_grad;
      torch::nn::init::kaiming_uniform_(conv->weight, 1.0);
      torch::nn::init::zeros_(conv->bias);
      input_proj_->push_back(conv);
    }
  }
  level_embed_ = register_module("level_embed", torch::nn::Embedding(3, c));
  query_feat_ = register_module("query_feat", torch::nn::Embedding(options.num_queries, c));
  query_embed_ = register_module("query_embed", torch::nn::Embedding(options.num_queries, c));
  cross_layers_ = register_module("transformer_cross_attention_layers", torch::nn::ModuleList());
  self_layers_ = register_module("transformer_self_attention_layers", torch::nn::ModuleList());
  ffn_layers_ = register_module("transformer_ffn_layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < options.layers; ++i) {
    cross_layers_->push_back(m2f_decoder::CrossAttentionLayer(c, options.heads));
    self_layers_->push_back(m2f_decoder::SelfAttentionLayer(c, options.heads));
    ffn_layers_->push_back(m2f_decoder::FfnLayer(c, options.ffn_dim));
  }
  decoder_norm_ = register_module("decoder_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c})));
  class_embed_ = register_module("class_embed", torch::nn::Linear(c, options.num_classes + 1));
  mask_embed_ = register_module("mask_embed", torch::nn::ModuleList(torch::nn::Linear(c, c), torch::nn::Linear(c, c),
                                                                    torch::nn::Linear(c, options.mask_dim)));
}

void MaskedTransformerDecoderImpl::predict(const torch::Tensor& queries, const torch::Tensor& mask_features,
                                           std::vector<int64_t> size, MaskedDecoderOutput& out,
                                           torch::Tensor* attn_mask) {
  namespace F = torch::nn::functional;
  torch::Tensor normed = decoder_norm_->forward(queries);  // [B, N (+ T), C]
  const int64_t n_mask = options_.num_queries;
  out.query_states.push_back(normed.slice(1, 0, n_mask));
  if (normed.size(1) > n_mask) out.extra_states.push_back(normed.slice(1, n_mask));
  out.class_logits.push_back(class_embed_->forward(normed.slice(1, 0, n_mask)));
  torch::Tensor embed = normed;
  for (size_t i = 0; i < mask_embed_->size(); ++i) {
    embed = mask_embed_[i]->as<torch::nn::Linear>()->forward(embed);
    if (i + 1 < mask_embed_->size()) embed = torch::relu(embed);
  }
  // Every query (extra ones too) predicts a mask: it sets that query's next attention mask.
  torch::Tensor masks = torch::einsum("bqc,bchw->bqhw", {embed, mask_features});
  out.mask_logits.push_back(masks.slice(1, 0, n_mask));
  if (attn_mask == nullptr) return;
  torch::NoGradGuard no_grad;
  torch::Tensor resized = F::interpolate(
      masks.detach(), F::InterpolateFuncOptions().size(size).mode(torch::kBilinear).align_corners(false));
  const int64_t b = masks.size(0), n = masks.size(1);
  torch::Tensor blocked = resized.sigmoid().flatten(2).lt(0.5);  // [B, N, hw]
  // A query whose mask blocks everything attends everywhere instead.
  blocked = blocked.logical_and(blocked.logical_not().any(-1, /*keepdim=*/true));
  *attn_mask =
      blocked.unsqueeze(1).expand({b, options_.heads, n, blocked.size(2)}).reshape({b * options_.heads, n, -1});
}

MaskedDecoderOutput MaskedTransformerDecoderImpl::forward(const std::vector<torch::Tensor>& multi_scale,
                                                          const torch::Tensor& mask_features,
                                                          const ExtraQueries* extra) {
  SEGRUN_CHECK(multi_scale.size() == 3, ModelError,
               "Mask2Former decoder: expects 3 feature levels, got " << multi_scale.size());
  const int64_t b = mask_features.size(0), c = options_.hidden;
  std::vector<torch::Tensor> memory, pos;
  std::vector<std::vector<int64_t>> sizes;
  for (size_t l = 0; l < 3; ++l) {
    const torch::Tensor& x = multi_scale[l];
    sizes.push_back({x.size(2), x.size(3)});
    pos.push_back(sine_position_embedding(b, x.size(2), x.size(3), c / 2, x.options()).flatten(2).transpose(1, 2));
    const torch::Tensor projected = input_proj_->is_empty() ? x : input_proj_[l]->as<torch::nn::Conv2d>()->forward(x);
    memory.push_back(projected.flatten(2).transpose(1, 2) +
                     level_embed_->weight[static_cast<int64_t>(l)].view({1, 1, c}));
  }
  torch::Tensor query_pos = query_embed_->weight.unsqueeze(0).expand({b, options_.num_queries, c});
  torch::Tensor queries = query_feat_->weight.unsqueeze(0).expand({b, options_.num_queries, c});
  torch::Tensor self_mask;
  if (extra != nullptr) {
    SEGRUN_CHECK(
        extra->content.dim() == 3 && extra->content.size(2) == c && extra->pos.sizes() == extra->content.sizes(),
        ModelError,
        "Mask2Former decoder: extra queries must be [B or 1, T, " << c << "] with positions of the same shape, got "
                                                                  << extra->content.sizes() << " and "
                                                                  << extra->pos.sizes());
    const int64_t t = extra->content.size(1);
    queries = torch::cat({queries, extra->content.expand({b, t, c})}, 1);
    if (extra->normalize_all) queries = extra->normalize_all(queries);
    query_pos = torch::cat({query_pos, extra->pos.expand({b, t, c})}, 1);
    if (!extra->joint_attention) {
      // Block-diagonal self-attention: mask queries among themselves, extra queries among themselves.
      torch::Tensor is_extra =
          torch::arange(options_.num_queries + t, queries.options().dtype(torch::kLong)).ge(options_.num_queries);
      torch::Tensor blocked = is_extra.unsqueeze(1).ne(is_extra.unsqueeze(0));
      self_mask = blocked.unsqueeze(0).expand({b * options_.heads, -1, -1});
    }
  }

  MaskedDecoderOutput out;
  torch::Tensor attn_mask;
  predict(queries, mask_features, sizes[0], out, &attn_mask);
  for (int64_t i = 0; i < options_.layers; ++i) {
    const size_t level = static_cast<size_t>(i % 3);
    queries = cross_layers_[static_cast<size_t>(i)]->as<m2f_decoder::CrossAttentionLayerImpl>()->forward(
        queries, memory[level], attn_mask, pos[level], query_pos);
    queries = self_layers_[static_cast<size_t>(i)]->as<m2f_decoder::SelfAttentionLayerImpl>()->forward(
        queries, query_pos, self_mask);
    queries = ffn_layers_[static_cast<size_t>(i)]->as<m2f_decoder::FfnLayerImpl>()->forward(queries);
    const bool last = i + 1 == options_.layers;
    predict(queries, mask_features, sizes[static_cast<size_t>((i + 1) % 3)], out, last ? nullptr : &attn_mask);
  }
  return out;
}

}  // namespace segrun::models
