#pragma once
// CLIP-SP's multi-label decoders (paper Sec. 3.2, Fig. 4): from the CLIP image tokens
// V = [global; dense] [B, L, C] (L = h * w + 1 on the tower's grid: H/32 for ResNets, H/16 for
// ViT-B/16) and the frozen class text embeddings
// S [K, C], predict one logit per class, S_l = sigmoid(logits) [B, K].
//  - DualGraphFormer (ml_decoder = "dual_graphformer"): `blocks` DualGraphFormerBlocks, then a
//    shared Linear(C, 1) classifier on each class token of the text path's output S'.
//  - MlpLabelDecoder (ml_decoder = "mlp"): three linear layers on the global token and the fixed
//    classifier S (cosine similarity, learnable scale and bias).
// DualGraphFormerBlock, per block (our reading of Fig. 4 and Eqs. 1-2; docs/models.md):
//   image path (GloRe-style): B = Conv1d_k1(C -> N)(V) [B, N, L] compresses the L tokens to N
//     nodes, nodes = B V; GraphConv(nodes); decompression by B^T; V_g = LN(V + B^T nodes);
//   text path: S_g = LN(S + GraphConv(S)) over the K class nodes, whose adjacency (a
//     Conv1d(K, K, 1)) starts as the row-normalized class co-occurrence matrix of the train store;
//   two-way cross-attention and weighted shortcuts:
//     V' = LN(w_v V + Attn(q = V_g, kv = S_g)),  S' = LN(w_s S + Attn(q = S_g, kv = V_g))
//   (the last block computes S' only: nothing reads its V').
//   GraphConv(H) = GELU(LayerNorm_C(A H)), A a Conv1d(nodes, nodes, 1) (paper Eq. 2).
// Parameter names: ml_decoder.blocks.i.{compress, graph_v, graph_s, attn_v, attn_s, ...}.
// Not thread-safe (torch modules).
#include <torch/torch.h>

#include <cstdint>
#include <vector>

namespace segrun::models {

// GELU(LayerNorm(Conv1d_k1(H))) over `nodes` nodes of `channels` features: H [B, nodes, channels].
class GraphConvImpl : public torch::nn::Module {
 public:
  GraphConvImpl(int64_t nodes, int64_t channels);
  torch::Tensor forward(const torch::Tensor& h);
  // Sets the adjacency A (weight [nodes, nodes, 1]) to `adjacency` [nodes, nodes], bias to 0.
  void set_adjacency(const torch::Tensor& adjacency);

 private:
  torch::nn::Conv1d adjacency_{nullptr};
  torch::nn::LayerNorm norm_{nullptr};
};
TORCH_MODULE(GraphConv);

// Multi-head cross-attention: queries [B, Lq, C] over keys/values [B, Lk, Ckv] -> [B, Lq, C]
// through `dim` internal channels (q, k, v projections to dim, output projection back to C).
class CrossAttentionImpl : public torch::nn::Module {
 public:
  CrossAttentionImpl(int64_t query_channels, int64_t kv_channels, int64_t dim, int64_t heads);
  torch::Tensor forward(const torch::Tensor& query, const torch::Tensor& kv);

 private:
  int64_t dim_, heads_;
  torch::nn::Linear q_proj_{nullptr}, k_proj_{nullptr}, v_proj_{nullptr}, out_proj_{nullptr};
};
TORCH_MODULE(CrossAttention);

struct LabelDecoderOptions {
  int64_t channels = 1024;    // C: CLIP embedding width (image tokens and text embeddings)
  int64_t num_classes = 150;  // K
  int64_t blocks = 3;         // Dual GraphFormer blocks
  int64_t nodes = 64;         // N: image graph nodes after compression
  int64_t attn_dim = 512;     // cross-attention internal width
  int64_t heads = 8;
  // Row-major K x K class co-occurrence counts (manifest.json); empty = identity adjacency.
  std::vector<int64_t> cooccurrence;
};

// Row-normalized adjacency from co-occurrence counts: A[i, j] = C[i, j] / sum_j C[i, j]; rows of
// classes that never occur are the identity row. [K, K] float32.
torch::Tensor cooccurrence_adjacency(const std::vector<int64_t>& counts, int64_t num_classes);

class LabelDecoderImpl : public torch::nn::Module {
 public:
  ~LabelDecoderImpl() override = default;
  // tokens [B, L, C] (row 0 = global token), text [K, C] -> logits [B, K].
  virtual torch::Tensor forward(const torch::Tensor& tokens, const torch::Tensor& text) = 0;
};

class DualGraphFormerBlockImpl : public torch::nn::Module {
 public:
  // The last block's image output feeds nothing (the classifier reads the text path), so it is
  // built with update_image = false: no attn_v / norm_v / w_v, and image' is returned undefined.
  DualGraphFormerBlockImpl(const LabelDecoderOptions& options, bool update_image);
  // image [B, L, C], text [B, K, C] -> {image', text'} of the same shapes.
  std::pair<torch::Tensor, torch::Tensor> forward(const torch::Tensor& image, const torch::Tensor& text);

  torch::Tensor w_v, w_s;  // shortcut weights, init 1 (w_v undefined without update_image)

 private:
  bool update_image_;
  torch::nn::Conv1d compress_{nullptr};
  GraphConv graph_v_{nullptr}, graph_s_{nullptr};
  torch::nn::LayerNorm norm_vg_{nullptr}, norm_sg_{nullptr}, norm_v_{nullptr}, norm_s_{nullptr};
  CrossAttention attn_v_{nullptr}, attn_s_{nullptr};
};
TORCH_MODULE(DualGraphFormerBlock);

class DualGraphFormerImpl : public LabelDecoderImpl {
 public:
  explicit DualGraphFormerImpl(const LabelDecoderOptions& options);
  torch::Tensor forward(const torch::Tensor& tokens, const torch::Tensor& text) override;

 private:
  torch::nn::LayerNorm norm_image_{nullptr}, norm_text_{nullptr};
  torch::nn::ModuleList blocks_{nullptr};
  torch::nn::Linear classifier_{nullptr};
};

class MlpLabelDecoderImpl : public LabelDecoderImpl {
 public:
  explicit MlpLabelDecoderImpl(const LabelDecoderOptions& options);
  torch::Tensor forward(const torch::Tensor& tokens, const torch::Tensor& text) override;

  torch::Tensor logit_scale, logit_bias;  // logits = exp(logit_scale) * cos(f, S) + logit_bias

 private:
  torch::nn::Sequential mlp_{nullptr};
};

// "dual_graphformer" | "mlp"; ConfigError naming model.clip_sp.ml_decoder otherwise.
std::shared_ptr<LabelDecoderImpl> make_label_decoder(const std::string& kind, const LabelDecoderOptions& options);

}  // namespace segrun::models
