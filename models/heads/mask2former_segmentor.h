#pragma once
// Mask2Former for semantic segmentation (model.head = "mask2former"; Cheng et al. 2022, the
// MTA-CLIP paper's baseline): the CLIP visual tower of model.backbone (ResNet or ViT-B/16)
// without its embedding head -> MSDeformAttn pixel
// decoder (msdeform_pixel_decoder.h) -> masked-attention transformer decoder
// (mask2former_decoder.h) -> per-query class and mask logits; trained with Hungarian matching and
// the class / mask-BCE / dice losses of every decoder layer (mask2former_criterion.h).
// Semantic inference (Mask2Former's semantic_inference): scores [B, K, h, w] =
// sum_q softmax(class_q)[:K] * sigmoid(mask_q). forward() returns them at 1/4 of the input;
// predict_logits() first upsamples the mask logits bilinearly to the input size, then combines
// (the "logits" the evaluator takes are these scores in [0, 1]; argmax and averaging over scales
// and flips work on them as on logits).
// Sizes come from config `model.mask2former.*` (core/config.h). Parameter names: backbone.*
// (OpenAI CLIP visual.* keys), decode_head.pixel_decoder.*, decode_head.transformer_decoder.*.
// A torch module: use it from one thread at a time; loss() is a collective over the communicator
// when it has more than one rank (the target mask count is averaged).

#include <torch/torch.h>

#include <memory>

#include "models/clip/clip_resnet.h"
#include "models/losses/mask2former_criterion.h"
#include "models/heads/mask2former_decoder.h"
#include "models/heads/msdeform_pixel_decoder.h"
#include "models/segmentor.h"

namespace segrun::models {

// Pixel decoder + transformer decoder: the mmseg-like "decode_head".
class Mask2FormerHeadImpl : public torch::nn::Module {
 public:
  Mask2FormerHeadImpl(const PixelDecoderOptions& pixel, const MaskedDecoderOptions& decoder);
  // `extra` (may be null): queries joined with the mask queries (MTA-CLIP's text queries).
  MaskedDecoderOutput forward(const std::vector<torch::Tensor>& stages, const ExtraQueries* extra = nullptr);

 private:
  MSDeformPixelDecoder pixel_decoder_{nullptr};
  MaskedTransformerDecoder transformer_decoder_{nullptr};
};
TORCH_MODULE(Mask2FormerHead);

// The head of `model.mask2former` on a backbone with `backbone_channels` stage channels
// (ConfigError naming the key for inconsistent sizes), and the criterion options of that config.
Mask2FormerHead make_mask2former_head(const BuildOptions& options, const std::vector<int64_t>& backbone_channels);
Mask2FormerLossOptions mask2former_loss_options(const BuildOptions& options,
                                                std::shared_ptr<const SampleRandom> random);

// Semantic scores at the input size: mask logits upsampled bilinearly to `size`, then combined.
torch::Tensor mask2former_scores_at(const MaskedDecoderOutput& out, std::vector<int64_t> size);

// class_logits [B, Q, K + 1], mask_logits [B, Q, h, w] -> scores [B, K, h, w].
torch::Tensor mask2former_semantic_inference(const torch::Tensor& class_logits, const torch::Tensor& mask_logits);

class Mask2FormerSegmentorImpl : public SegmentorImpl {
 public:
  explicit Mask2FormerSegmentorImpl(const BuildOptions& options);
  torch::Tensor forward(const torch::Tensor& images) override;
  torch::Tensor predict_logits(const torch::Tensor& images) override;
  LossTerms loss(const torch::Tensor& images, const torch::Tensor& labels) override;
  int64_t num_classes() const override { return num_classes_; }
  int64_t min_input_side() const override { return backbone_->min_input_side(); }
  // Every prediction of the decoder (index 0 = before the first layer, see MaskedDecoderOutput).
  MaskedDecoderOutput predictions(const torch::Tensor& images);
  const Mask2FormerCriterion& criterion() const { return criterion_; }

 private:
  int64_t num_classes_;
  std::shared_ptr<dist::Communicator> comm_;
  std::shared_ptr<ClipVisualBackboneImpl> backbone_;
  Mask2FormerHead decode_head_{nullptr};
  Mask2FormerCriterion criterion_;
  bool supervise_initial_ = false;  // also supervise the prediction made before layer 0
};

}  // namespace segrun::models
