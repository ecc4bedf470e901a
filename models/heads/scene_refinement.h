#pragma once
// CLIP-SP's Scene Refinement Module (paper Sec. 3.3, Fig. 5): fuses the scene tokens
// T [B, k, C+1] (k selected class text embeddings, each with its probability appended) into the
// last backbone stage x4 [B, C4, H, W]:
//   T_g = Pool_k(MLP(T))                     MLP: Linear(C+1, hidden) -> ReLU -> Linear(hidden, C4);
//                                            Pool_k: a learnable weighted sum over the k slots
//                                            (the paper's "parameterized global pooling"), init mean;
//   x4' = T_g * x4                           the paper's Eq. 4 (gate = "linear", default), or
//                                            sigmoid(T_g) * x4 (gate = "sigmoid": SENet's gate,
//                                            which the text compares it to);
//   m   = softmax(Q K^T / sqrt(d))           non-local cross-attention, Q = Conv1x1(x4') [HW, d],
//                                            K, V = Linear(T) [k, d] (one head; m is the map the
//                                            auxiliary loss supervises);
//   y   = W_z(m V)                           the output transform of the non-local block the paper
//                                            cites [38], a 1x1 conv d -> d (output_proj; off: y = m V);
//   out = ReLU(Norm(Conv1x1([x4', y])))      concat + 1x1 conv fusion back to C4 channels.
// forward returns {out [B, C4, H, W], attention logits Q K^T / sqrt(d) [B, H*W, k]}.
// Not thread-safe (a torch module).
#include <torch/torch.h>

#include <cstdint>
#include <utility>

#include "models/norm.h"

namespace segrun::models {

struct SceneRefinementOptions {
  int64_t feature_channels = 2048;  // C4
  int64_t token_channels = 1025;    // C + 1
  int64_t tokens = 30;              // k
  int64_t hidden = 1024;            // MLP hidden width
  int64_t attn_dim = 256;           // d
  NormFactory norm;                 // required: the fusion conv's normalization
  bool sigmoid_gate = false;        // sigmoid(T_g) instead of T_g in Eq. 4
  bool output_proj = true;          // W_z after the attention
};

class SceneRefinementImpl : public torch::nn::Module {
 public:
  explicit SceneRefinementImpl(const SceneRefinementOptions& options);
  std::pair<torch::Tensor, torch::Tensor> forward(const torch::Tensor& x4, const torch::Tensor& tokens);

 private:
  int64_t attn_dim_;
  bool sigmoid_gate_;
  torch::nn::Conv2d output_proj_{nullptr};
  torch::nn::Sequential mlp_{nullptr};
  torch::nn::Linear pool_{nullptr};
  torch::nn::Conv2d query_{nullptr};
  torch::nn::Linear key_{nullptr}, value_{nullptr};
  torch::nn::Conv2d fuse_{nullptr};
  torch::nn::AnyModule fuse_norm_;
};
TORCH_MODULE(SceneRefinement);

}  // namespace segrun::models
