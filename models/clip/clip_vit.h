#pragma once
// CLIP's vision transformer (OpenAI CLIP ViT-B/16) as DenseCLIP's and MTA-CLIP's segmentation
// code uses it (`CLIPVisionTransformer`), a ClipVisualBackbone (clip_visual.h):
//  - conv1: patch embedding, a P x P convolution with stride P and no bias (P = 16);
//  - tokens [class_embedding, patches] + positional_embedding, whose spatial grid (S x S,
//    S = input_resolution / P) is resized bilinearly (align_corners = false) to the input's patch
//    grid h x w = floor(H / P) x floor(W / P), the class row kept; then ln_pre;
//  - `layers` residual attention blocks (clip_transformer.h) with stochastic depth rising linearly
//    from 0 (first block) to drop_path_rate (last), drawn per sample from `random`;
//  - the patch tokens after blocks out_indices[0..3], reshaped to [B, width, h, w], go through
//    DenseCLIP's pyramid: fpn1 = GroupNorm(1) -> ConvTranspose 2x2/2 -> BN -> GELU ->
//    ConvTranspose 2x2/2 (1/4), fpn2 = GroupNorm(1) -> ConvTranspose 2x2/2 (1/8), fpn3 =
//    GroupNorm(1) (1/16), fpn4 = GroupNorm(1) -> MaxPool 2x2/2 (1/32): four levels of `width`
//    channels;
//  - with_embeddings: ln_post on every token of the last block, times proj [width, embed_dim]:
//    global = the class token [B, E], dense = the patch tokens [B, E, h, w] (DenseCLIP's
//    get_embeddings).
// One difference from DenseCLIP's code, on purpose: DenseCLIP adds class_embedding to the class
// token twice (once in the token, once in its positional row); this follows OpenAI CLIP, which
// adds it once (docs/models.md).
// Parameter names: the archive's visual keys (conv1.weight, class_embedding, positional_embedding,
// ln_pre.*, transformer.resblocks.N.*, ln_post.*, proj) and DenseCLIP's fpn1.{0,1,2,4}.*,
// fpn2.{0,1}.*, fpn3.*, fpn4.0.* for the pyramid (not in the archive: it starts from its own init).
// Inputs of any size >= 2P work; H and W divisible by 32 give exactly H/4 .. H/32.
// Not thread-safe (a torch module).

#include <torch/torch.h>

#include <memory>
#include <vector>

#include "models/clip/clip_transformer.h"
#include "models/clip/clip_visual.h"
#include "models/norm.h"
#include "models/sample_random.h"

namespace segrun::models {

struct ClipVitOptions {
  int64_t patch_size = 16;
  int64_t width = 768;
  int64_t layers = 12;
  int64_t heads = 12;
  int64_t embed_dim = 512;
  int64_t input_resolution = 224;  // the positional grid: (input_resolution / patch)^2 + 1 rows
  std::vector<int64_t> out_indices{3, 5, 7, 11};
  double drop_path_rate = 0.0;
  bool with_embeddings = true;           // ln_post + proj
  NormFactory norm;                      // the BN inside fpn1 (required)
  std::shared_ptr<SampleRandom> random;  // stochastic depth draws (required when drop_path_rate > 0)
};

// ModelError naming the field for bad sizes (the config layer reports model.vit.* before this).
void validate_clip_vit_options(const ClipVitOptions& options);

class ClipVitImpl : public ClipVisualBackboneImpl {
 public:
  explicit ClipVitImpl(const ClipVitOptions& options);
  ClipVisualOutput forward(const torch::Tensor& images) override;
  ClipVisualSpec visual_spec() const override;
  bool has_embeddings() const override { return options_.with_embeddings; }
  int64_t min_input_side() const override { return 2 * options_.patch_size; }  // a 2x2 grid for the 1/32 stage
  const ClipVitOptions& options() const { return options_; }

  torch::Tensor class_embedding, positional_embedding, proj;

 private:
  // [2 * layers, B] branch scales for stochastic depth (training with drop_path_rate > 0).
  torch::Tensor drop_path_scales(int64_t batch, const torch::TensorOptions& options) const;

  ClipVitOptions options_;
  int64_t grid_;  // S
  torch::nn::Conv2d conv1_{nullptr};
  torch::nn::LayerNorm ln_pre_{nullptr}, ln_post_{nullptr};
  torch::nn::ModuleList resblocks_{nullptr};
  torch::nn::Sequential fpn1_{nullptr}, fpn2_{nullptr}, fpn4_{nullptr};
  torch::nn::GroupNorm fpn3_{nullptr};
};
TORCH_MODULE(ClipVit);

}  // namespace segrun::models
