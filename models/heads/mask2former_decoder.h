#pragma once
// Mask2Former's transformer decoder (MultiScaleMaskedTransformerDecoder, Cheng et al. 2022):
// N learned queries (query_feat = content, query_embed = positional) refined by `layers` post-norm
// layers of [masked cross-attention to one pixel-decoder level -> self-attention -> FFN], the
// level cycling 1/32, 1/16, 1/8 (layer i uses level i % 3). Before layer 0 and after every layer
// the prediction heads run on LayerNorm(queries): class logits (K + 1, the last = "no object")
// and mask logits = MLP(queries) . mask_features. The mask predicted before layer i, resized
// bilinearly to layer i's level and passed through sigmoid, masks the cross-attention where it
// is < 0.5 (detached); a query whose mask would block every location attends everywhere.
// Attention layers and the FFN have no dropout (Mask2Former's 0.0).
// Parameter names follow Mask2Former (query_feat.weight, query_embed.weight, level_embed.weight,
// transformer_cross_attention_layers.0.multihead_attn.in_proj_weight, decoder_norm.weight,
// class_embed.weight, mask_embed.0.weight). Torch modules: not thread-safe.

#include <torch/torch.h>

#include <functional>

#include <vector>

namespace segrun::models {

struct MaskedDecoderOptions {
  int64_t in_channels = 256;  // pixel decoder width; a 1x1 projection is added when != hidden
  int64_t hidden = 256;
  int64_t mask_dim = 256;  // mask feature channels
  int64_t num_queries = 100;
  int64_t heads = 8;
  int64_t ffn_dim = 2048;
  int64_t layers = 9;
  int64_t num_classes = 150;  // K; the class head has K + 1 outputs
};

// MTA-CLIP's Text-Enhanced Mask Feature Learning: T extra queries (the reduced text embeddings)
// joined after the N mask queries and run through the same layers: each predicts a mask that sets
// its own attention mask, and the self-attention is joint (every query sees every query) or,
// without joint_attention, block-diagonal (the paper's "separate attentions" ablation: the mask
// queries then compute exactly what they compute without extra queries). Class and mask outputs
// cover the N mask queries only.
struct ExtraQueries {
  torch::Tensor content;  // [B or 1, T, hidden]
  torch::Tensor pos;      // [B or 1, T, hidden] positional part (added to q/k like query_embed)
  bool joint_attention = true;
  // When set, applied to the mask queries and `content` together, [B, N + T, hidden], before the
  // first layer (MTA-CLIP's code LayerNorms them jointly); when empty, `content` is used as is.
  std::function<torch::Tensor(const torch::Tensor&)> normalize_all;
};

struct MaskedDecoderOutput {
  // One entry per prediction: index 0 is the prediction from the initial queries (it seeds the
  // first attention mask), index i >= 1 is the prediction after layer i - 1.
  std::vector<torch::Tensor> class_logits;  // [B, N, K + 1]
  std::vector<torch::Tensor> mask_logits;   // [B, N, H/4, W/4]
  std::vector<torch::Tensor> query_states;  // decoder_norm(mask queries) [B, N, hidden], per prediction
  std::vector<torch::Tensor> extra_states;  // decoder_norm(extra queries) [B, T, hidden] (with extra queries)
};

class MaskedTransformerDecoderImpl : public torch::nn::Module {
 public:
  explicit MaskedTransformerDecoderImpl(const MaskedDecoderOptions& options);
  // multi_scale: 3 maps [B, in_channels, h_l, w_l] coarse first; mask_features [B, mask_dim, H, W].
  MaskedDecoderOutput forward(const std::vector<torch::Tensor>& multi_scale, const torch::Tensor& mask_features,
                              const ExtraQueries* extra = nullptr);
  const MaskedDecoderOptions& options() const { return options_; }

 private:
  // decoder_norm -> class and mask heads appended to `out`; with `attn_mask` non-null also the
  // next layer's attention mask at `size` (h, w of its level).
  void predict(const torch::Tensor& queries, const torch::Tensor& mask_features, std::vector<int64_t> size,
               MaskedDecoderOutput& out, torch::Tensor* attn_mask);

  MaskedDecoderOptions options_;
  torch::nn::ModuleList input_proj_{nullptr};  // empty when in_channels == hidden
  torch::nn::Embedding level_embed_{nullptr}, query_feat_{nullptr}, query_embed_{nullptr};
  torch::nn::ModuleList cross_layers_{nullptr}, self_layers_{nullptr}, ffn_layers_{nullptr};
  torch::nn::LayerNorm decoder_norm_{nullptr};
  torch::nn::Linear class_embed_{nullptr};
  torch::nn::ModuleList mask_embed_{nullptr};  // 3 linear layers, ReLU between
};
TORCH_MODULE(MaskedTransformerDecoder);

}  // namespace segrun::models
