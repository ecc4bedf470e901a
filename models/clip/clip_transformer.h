#pragma once
// The residual attention block of OpenAI CLIP's transformers, shared by the text encoder
// (clip_text.h, causal mask) and the vision transformer (clip_vit.h, no mask):
//   x += attn(ln_1(x), mask);  x += mlp.c_proj(QuickGELU(mlp.c_fc(ln_2(x))))
// with QuickGELU(x) = x * sigmoid(1.702 x) and `attn` a torch::nn::MultiheadAttention (so the
// parameter names are the OpenAI archive's: attn.in_proj_weight, attn.in_proj_bias,
// attn.out_proj.*, ln_1.*, mlp.c_fc.*, mlp.c_proj.*, ln_2.*).
// Stochastic depth (DenseCLIP's DropPath): `branch_scale` [2, N] scales each sample's attention
// (row 0) and MLP (row 1) branch; 0 drops the branch, 1 / keep_prob keeps it. The caller draws it
// (keyed per sample, sample_random.h); undefined = both branches as they are (evaluation).
// Not thread-safe (a torch module).

#include <torch/torch.h>

#include <cstdint>

namespace segrun::models {

class ClipResidualBlockImpl : public torch::nn::Module {
 public:
  ClipResidualBlockImpl(int64_t width, int64_t heads);
  // x [L, N, width] (sequence first); mask [L, L] additive or undefined.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask,
                        const torch::Tensor& branch_scale = torch::Tensor());

 private:
  torch::nn::MultiheadAttention attn_{nullptr};
  torch::nn::LayerNorm ln_1_{nullptr}, ln_2_{nullptr};
  torch::nn::Sequential mlp_{nullptr};  // "c_fc", "c_proj" (QuickGELU applied between them)
};
TORCH_MODULE(ClipResidualBlock);

// OpenAI CLIP's initialize_parameters for a transformer of `layers` blocks of `width` whose
// parameters are named "...resblocks.N.attn.in_proj_weight" etc. (every tensor of `module` whose
// name ends in one of those keys): in_proj ~ N(0, width^-1/2), out_proj and c_proj ~
// N(0, width^-1/2 (2 layers)^-1/2), c_fc ~ N(0, (2 width)^-1/2).
void init_clip_transformer(torch::nn::Module& module, int64_t width, int64_t layers);

}  // namespace segrun::models
