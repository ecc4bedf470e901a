#pragma once
// The CLIP-SP segmentor (model.head = "clip_sp"; Li et al., CVM 2024, docs/models.md):
//   the CLIP visual tower of model.backbone with its embedding head (a ResNet's attention
//   pooling, or the ViT's ln_post + proj) -> stages x1..x4, global token, dense tokens;
//   V = [global; dense] -> multi-label decoder (Dual GraphFormer | MLP) with the frozen class text
//   embeddings S -> logits, S_l = sigmoid(logits);
//   k labels (top-k of S_l; in training a decaying ratio of the batch takes ground-truth labels:
//   batch drop) -> scene tokens T = [S_k, p_k] [B, k, C+1];
//   Scene Refinement Module(x4, T) -> x4''; Semantic FPN on (x1, x2, x3, x4'').
// Loss: loss_seg (mmseg CE) + lambda_ml * ASL(logits, present classes) + lambda_aux * CE of the
// SRM attention map against the slot of each 1/32 cell's class (scene_tokens.h).
// S is computed once at construction by a frozen CLIP text encoder (model.text, weights from
// model.pretrained when set) and kept as the buffer `text_embeddings` [K, C] (it travels with
// checkpoints; the text encoder itself is not a submodule: it is neither trained nor saved). With
// BuildOptions::weights_from_checkpoint the buffer starts as zeros: the checkpoint brings it.
// Evaluation's label_scores() runs the backbone once more per image (for the multi-label mAP).
// Batch drop needs the training iteration: set_iteration() before loss().
// Not thread-safe (a torch module).
#include <torch/torch.h>

#include <memory>

#include "models/heads/label_decoders.h"
#include "models/losses/seg_losses.h"
#include "models/heads/scene_refinement.h"
#include "models/heads/scene_tokens.h"
#include "models/segmentor.h"

namespace segrun::models {

// What one CLIP-SP forward pass produces (for the loss and for tests).
struct ClipSpOutputs {
  torch::Tensor seg_logits;        // [B, K, H/4, W/4]
  torch::Tensor label_logits;      // [B, K] (S_l = sigmoid)
  torch::Tensor selected;          // [B, k] int64 label of each scene-token slot
  torch::Tensor attn_logits;       // [B, h * w, k] SRM attention logits over x4's h x w grid
  int64_t grid_h = 0, grid_w = 0;  // x4's grid (H/32, W/32 rounded down)
};

class ClipSpSegmentorImpl : public SegmentorImpl {
 public:
  explicit ClipSpSegmentorImpl(const BuildOptions& options);
  torch::Tensor forward(const torch::Tensor& images) override;
  LossTerms loss(const torch::Tensor& images, const torch::Tensor& labels) override;
  torch::Tensor label_scores(const torch::Tensor& images) override;
  bool has_label_scores() const override { return true; }
  void set_iteration(int64_t iteration) override { iteration_ = iteration; }
  int64_t num_classes() const override { return num_classes_; }
  int64_t min_input_side() const override { return backbone_->min_input_side(); }

  // Full forward. `present` ([B, K] multi-hot of the ground truth) enables batch drop with ratio
  // `drop_ratio` (training only); undefined -> plain top-k.
  ClipSpOutputs run(const torch::Tensor& images, const torch::Tensor& present = {}, double drop_ratio = 0.0);
  double current_drop_ratio() const;

  torch::Tensor text_embeddings;  // buffer [K, C]

 private:
  torch::Tensor image_tokens(const ClipVisualOutput& features) const;  // [B, L, C]

  int64_t num_classes_;
  int64_t top_k_;
  std::shared_ptr<dist::Communicator> comm_;  // global normalizer of the auxiliary loss (may be null)
  BatchDropOptions batch_drop_;
  std::string drop_mode_;  // model.clip_sp.batch_drop.mode: "slots" | "images"
  double lambda_ml_, lambda_aux_;
  AsymmetricLossOptions asl_;
  int64_t iteration_ = 0;
  std::shared_ptr<ClipVisualBackboneImpl> backbone_;
  std::shared_ptr<LabelDecoderImpl> ml_decoder_;
  SceneRefinement srm_{nullptr};
  FpnNeck neck_{nullptr};
  FpnHead decode_head_{nullptr};
};

}  // namespace segrun::models
