#pragma once
// MTA-CLIP (model.head = "mta_clip"; Das et al., "MTA-CLIP: Language-Guided Semantic Segmentation
// with Mask-Text Alignment", ECCV 2024): the Mask2Former of mask2former_segmentor.h whose decoder
// also carries K x C text queries (mask_text_alignment.h), trained with Mask2Former's losses plus
// the mask-to-text contrastive loss after every decoder layer:
//   L = lambda1 * CE(class) + lambda2 * (mask BCE + dice) + lambda3 * L_sim
// with lambda1 = model.mask2former.class_weight, lambda2 = mask_weight = dice_weight, lambda3 =
// model.mta_clip.lambda_sim. Text: K learnable context prompts (text_prompts.h) with every class
// name through the frozen CLIP text encoder -> [K, C, E] each step (C + 1 with sim_queries =
// "all": a "none" class, as the official code appends). L_sim of a supervised prediction uses
// that prediction's Hungarian matches (the criterion's own): with sim_queries = "all" (the code)
// every mask query's m' against the K x (C + 1) t' of its image, its class that of its match or
// "none", weighted 1 or no_object_weight; with "matched" only the matched queries. Positive = the
// best of its class's K prompts, negatives per model.mta_clip.negatives, S = cos / temperature;
// the weighted sum over the batch's queries divided by the sum of the weights (averaged over
// ranks), summed over predictions (loss part "loss_sim").
// Inference ignores the text queries' outputs (their presence in the decoder still shapes the
// mask queries under joint attention): scores = Mask2Former's semantic inference. In eval mode
// the prompt text embeddings are computed once and reused until the module is switched to
// train() again (or the contexts change).
// Switches (docs/models.md, Tables 3-4): text_enhanced (text queries in the decoder),
// contrastive (L_sim), prompts (K; 1 = without MTPL), joint_attention, negatives.
// Parameters: backbone.*, decode_head.* (Mask2Former), mask_text.* (alignment layers),
// text_prompts.contexts, text_encoder.* (OpenAI CLIP text keys; frozen, saved with the model so a
// checkpoint is self-contained). A torch module: one thread at a time; loss() is a collective
// when the communicator has more than one rank.

#include <torch/torch.h>

#include <memory>
#include <string>

#include "models/clip/clip_resnet.h"
#include "models/clip/clip_text.h"
#include "models/losses/mask2former_criterion.h"
#include "models/heads/mask2former_segmentor.h"
#include "models/heads/mask_text_alignment.h"
#include "models/segmentor.h"
#include "models/clip/text_prompts.h"

namespace segrun::models {

class MtaClipSegmentorImpl : public SegmentorImpl {
 public:
  explicit MtaClipSegmentorImpl(const BuildOptions& options);
  torch::Tensor forward(const torch::Tensor& images) override;
  torch::Tensor predict_logits(const torch::Tensor& images) override;
  LossTerms loss(const torch::Tensor& images, const torch::Tensor& labels) override;
  int64_t num_classes() const override { return num_classes_; }
  int64_t min_input_side() const override { return backbone_->min_input_side(); }
  void train(bool on = true) override;

  // The prompt text embeddings [K, C, E]. In eval mode they are computed once and reused until a
  // weight of the text side (contexts, frozen encoder) changes in place or the mode changes.
  torch::Tensor prompt_text_embeddings();
  // Every decoder prediction for `images` given text embeddings [K, C, E] (undefined when the
  // text queries are off).
  MaskedDecoderOutput predictions(const torch::Tensor& images, const torch::Tensor& text);
  // lambda3-weighted L_sim of the supervised predictions `out` (index offset `first`) given their
  // matches (criterion order) and targets.
  torch::Tensor contrastive_loss(const MaskedDecoderOutput& out, size_t first, const torch::Tensor& text,
                                 const std::vector<std::vector<ImageMatch>>& matches,
                                 const std::vector<SemanticTargets>& targets);

 private:
  // What inference feeds the decoder: the prompt embeddings with text queries, else nothing.
  torch::Tensor inference_text();
  // Sum of the version counters of every parameter and buffer of the text side.
  int64_t text_weights_version() const;

  MtaClipConfig mta_;
  int64_t num_classes_;
  std::shared_ptr<dist::Communicator> comm_;
  std::shared_ptr<ClipVisualBackboneImpl> backbone_;
  Mask2FormerHead decode_head_{nullptr};
  MaskTextAlignment mask_text_{nullptr};
  ClipTextEncoder text_encoder_{nullptr};
  TextPrompts text_prompts_{nullptr};
  Mask2FormerCriterion criterion_;
  bool supervise_initial_ = false;
  torch::Tensor eval_text_;         // cached prompt embeddings in eval mode
  int64_t eval_text_version_ = -1;  // text_weights_version() when cached
};

}  // namespace segrun::models
