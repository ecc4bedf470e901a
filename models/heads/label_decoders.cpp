// CLIP-SP multi-label decoders: see label_decoders.h.
#include "models/heads/label_decoders.h"

#include <cmath>

#include "core/error.h"

namespace segrun::models {

namespace {
torch::nn::LayerNorm layer_norm(int64_t channels) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({channels}));
}
}  // namespace

// ---- GraphConv ---------------------------------------------------------------------------------

GraphConvImpl::GraphConvImpl(int64_t nodes, int64_t channels) {
  adjacency_ = register_module("adjacency", torch::nn::Conv1d(torch::nn::Conv1dOptions(nodes, nodes, 1)));
  norm_ = register_module("norm", layer_norm(channels));
}

torch::Tensor GraphConvImpl::forward(const torch::Tensor& h) {
  return torch::gelu(norm_->forward(adjacency_->forward(h)));
}

void GraphConvImpl::set_adjacency(const torch::Tensor& adjacency) {
  torch::NoGradGuard no_grad;
  SEGRUN_CHECK(adjacency.sizes() == adjacency_->weight.sizes().slice(0, 2), ModelError,
               "graph conv: adjacency " << adjacency.sizes() << " does not match " << adjacency_->weight.sizes());
  adjacency_->weight.copy_(adjacency.unsqueeze(2));
  adjacency_->bias.zero_();
}

torch::Tensor cooccurrence_adjacency(const std::vector<int64_t>& counts, int64_t num_classes) {
  torch::Tensor adjacency = torch::eye(num_classes, torch::kFloat32);
  if (counts.empty()) return adjacency;
  SEGRUN_CHECK(static_cast<int64_t>(counts.size()) == num_classes * num_classes, ModelError,
               "co-occurrence matrix has " << counts.size() << " entries for " << num_classes << " classes");
  torch::Tensor c = torch::tensor(counts, torch::kInt64).reshape({num_classes, num_classes}).to(torch::kFloat32);
  torch::Tensor row_sum = c.sum(1, /*keepdim=*/true);
  torch::Tensor occurring = row_sum.gt(0);
  return torch::where(occurring, c / row_sum.clamp_min(1), adjacency);
}

// ---- Cross-attention ---------------------------------------------------------------------------

CrossAttentionImpl::CrossAttentionImpl(int64_t query_channels, int64_t kv_channels, int64_t dim, int64_t heads)
    : dim_(dim), heads_(heads) {
  SEGRUN_CHECK(dim % heads == 0, ConfigError,
               "model.clip_sp.attn_dim: " << dim << " is not divisible by " << heads << " heads");
  q_proj_ = register_module("q_proj", torch::nn::Linear(query_channels, dim));
  k_proj_ = register_module("k_proj", torch::nn::Linear(kv_channels, dim));
  v_proj_ = register_module("v_proj", torch::nn::Linear(kv_channels, dim));
  out_proj_ = register_module("out_proj", torch::nn::Linear(dim, query_channels));
}

torch::Tensor CrossAttentionImpl::forward(const torch::Tensor& query, const torch::Tensor& kv) {
  const int64_t batch = query.size(0), lq = query.size(1), lk = kv.size(1), head_dim = dim_ / heads_;
  auto split = [&](const torch::Tensor& t, int64_t length) {
    return t.reshape({batch, length, heads_, head_dim}).transpose(1, 2);  // [B, h, L, d]
  };
  torch::Tensor q = split(q_proj_->forward(query), lq) * (1.0 / std::sqrt(static_cast<double>(head_dim)));
  torch::Tensor k = split(k_proj_->forward(kv), lk);
  torch::Tensor v = split(v_proj_->forward(kv), lk);
  torch::Tensor attention = torch::softmax(torch::matmul(q, k.transpose(-2, -1)), -1);
  torch::Tensor out = torch::matmul(attention, v).transpose(1, 2).reshape({batch, lq, dim_});
  return out_proj_->forward(out);
}

// ---- Dual GraphFormer --------------------------------------------------------------------------

DualGraphFormerBlockImpl::DualGraphFormerBlockImpl(const LabelDecoderOptions& o, bool update_image)
    : update_image_(update_image) {
  const int64_t c = o.channels;
  compress_ = register_module("compress", torch::nn::Conv1d(torch::nn::Conv1dOptions(c, o.nodes, 1)));
  graph_v_ = register_module("graph_v", GraphConv(o.nodes, c));
  graph_s_ = register_module("graph_s", GraphConv(o.num_classes, c));
  graph_s_->set_adjacency(cooccurrence_adjacency(o.cooccurrence, o.num_classes));
  norm_vg_ = register_module("norm_vg", layer_norm(c));
  norm_sg_ = register_module("norm_sg", layer_norm(c));
  if (update_image_) {
    attn_v_ = register_module("attn_v", CrossAttention(c, c, o.attn_dim, o.heads));
    norm_v_ = register_module("norm_v", layer_norm(c));
    w_v = register_parameter("w_v", torch::ones({1}));
  }
  attn_s_ = register_module("attn_s", CrossAttention(c, c, o.attn_dim, o.heads));
  norm_s_ = register_module("norm_s", layer_norm(c));
  w_s = register_parameter("w_s", torch::ones({1}));
}

std::pair<torch::Tensor, torch::Tensor> DualGraphFormerBlockImpl::forward(const torch::Tensor& image,
                                                                          const torch::Tensor& text) {
  // Image path: compress L tokens to N nodes, reason over them, decompress with B^T.
  torch::Tensor compression = compress_->forward(image.transpose(1, 2));    // [B, N, L]
  torch::Tensor nodes = graph_v_->forward(torch::bmm(compression, image));  // [B, N, C]
  torch::Tensor image_g = norm_vg_->forward(image + torch::bmm(compression.transpose(1, 2), nodes));
  // Text path: the K class nodes with the co-occurrence-initialized adjacency.
  torch::Tensor text_g = norm_sg_->forward(text + graph_s_->forward(text));
  torch::Tensor image_out;
  if (update_image_) image_out = norm_v_->forward(w_v * image + attn_v_->forward(image_g, text_g));
  torch::Tensor text_out = norm_s_->forward(w_s * text + attn_s_->forward(text_g, image_g));
  return {image_out, text_out};
}

DualGraphFormerImpl::DualGraphFormerImpl(const LabelDecoderOptions& o) {
  SEGRUN_CHECK(o.blocks >= 1, ConfigError, "model.clip_sp.graph_blocks: must be >= 1 (got " << o.blocks << ")");
  norm_image_ = register_module("norm_image", layer_norm(o.channels));
  norm_text_ = register_module("norm_text", layer_norm(o.channels));
  blocks_ = register_module("blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < o.blocks; ++i) blocks_->push_back(DualGraphFormerBlock(o, /*update_image=*/i + 1 < o.blocks));
  classifier_ = register_module("classifier", torch::nn::Linear(o.channels, 1));
}

torch::Tensor DualGraphFormerImpl::forward(const torch::Tensor& tokens, const torch::Tensor& text) {
  torch::Tensor image = norm_image_->forward(tokens);
  torch::Tensor classes = norm_text_->forward(text).unsqueeze(0).expand({tokens.size(0), -1, -1});
  for (const auto& block : *blocks_) {
    std::tie(image, classes) = block->as<DualGraphFormerBlock>()->forward(image, classes);
  }
  return classifier_->forward(classes).squeeze(2);  // [B, K]
}

// ---- MLP decoder -------------------------------------------------------------------------------

MlpLabelDecoderImpl::MlpLabelDecoderImpl(const LabelDecoderOptions& o) {
  const int64_t c = o.channels;
  mlp_ =
      register_module("mlp", torch::nn::Sequential(torch::nn::Linear(c, c), torch::nn::ReLU(), torch::nn::Linear(c, c),
                                                   torch::nn::ReLU(), torch::nn::Linear(c, c)));
  logit_scale = register_parameter("logit_scale", torch::full({1}, std::log(1.0 / 0.07)));
  logit_bias = register_parameter("logit_bias", torch::zeros({1}));
}

torch::Tensor MlpLabelDecoderImpl::forward(const torch::Tensor& tokens, const torch::Tensor& text) {
  torch::Tensor feature = mlp_->forward(tokens.select(1, 0));
  feature = feature / feature.norm(2, -1, /*keepdim=*/true).clamp_min(1e-6);
  torch::Tensor classes = text / text.norm(2, -1, /*keepdim=*/true).clamp_min(1e-6);
  return logit_scale.exp() * torch::matmul(feature, classes.t()) + logit_bias;
}

std::shared_ptr<LabelDecoderImpl> make_label_decoder(const std::string& kind, const LabelDecoderOptions& options) {
  if (kind == "dual_graphformer") return std::make_shared<DualGraphFormerImpl>(options);
  if (kind == "mlp") return std::make_shared<MlpLabelDecoderImpl>(options);
  SEGRUN_THROW(ConfigError,
               "model.clip_sp.ml_decoder: unknown decoder '" << kind << "' (known: dual_graphformer, mlp)");
}

}  // namespace segrun::models
