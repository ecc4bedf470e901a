#pragma once
// The CLIP visual tower as every segmentor sees it, whatever the architecture (clip_resnet.h,
// clip_vit.h); make_clip_backbone() in segmentor.h picks one from model.backbone.
// Contract of forward(images [B, 3, H, W]):
//  - stages: four feature maps at strides 4, 8, 16, 32 (each size floors: H / 4 .. H / 32 for H
//    divisible by 32), with spec().stage_channels channels;
//  - global [B, E] and dense [B, E, h, w]: the image embedding and the per-location embeddings in
//    CLIP's joint space (E = spec().embed_dim, the text encoder's width), present only when the
//    tower was built with its embedding head (attention pooling / ln_post + proj); h x w is the
//    tower's own grid (H/32 for a ResNet, H/16 for ViT-B/16).
// Parameter names are the OpenAI archive's `visual.*` keys without the prefix, plus (ViT) the
// randomly initialized pyramid. Not thread-safe (a torch module).

#include <torch/torch.h>

#include <vector>

namespace segrun::models {

struct ClipVisualOutput {
  std::vector<torch::Tensor> stages;  // c1..c4 (1/4 .. 1/32)
  torch::Tensor global;               // [B, E] (undefined without the embedding head)
  torch::Tensor dense;                // [B, E, h, w] (undefined without the embedding head)
};

struct ClipVisualSpec {
  std::vector<int64_t> stage_channels;  // channels of c1..c4
  int64_t embed_dim = 0;                // E of global / dense
  int64_t feature_dim = 0;              // channels of c4 (what CLIP-SP's SRM refines)
};

class ClipVisualBackboneImpl : public torch::nn::Module {
 public:
  ~ClipVisualBackboneImpl() override = default;
  virtual ClipVisualOutput forward(const torch::Tensor& images) = 0;
  virtual ClipVisualSpec visual_spec() const = 0;
  virtual bool has_embeddings() const = 0;
  // The smallest height and width forward() accepts (smaller images leave a stage empty).
  virtual int64_t min_input_side() const = 0;
};

}  // namespace segrun::models
