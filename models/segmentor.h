#pragma once
// The segmentation model interface the trainer and evaluator use, and the registry that builds
// a model from `[model]` config (`model.head` picks the segmentor).
// Contract for every segmentor:
//  - forward(images [B,3,H,W] float) -> logits [B, K, H/4, W/4] (the decoder's native output),
//  - loss(images, labels int64 [B,H,W], 255 = ignore) -> LossTerms (total = sum of weighted parts),
//  - predict_logits(images) -> logits resized to [H, W] (bilinear, align_corners = false); in
//    eval mode each image of the batch gets the logits it would get alone (the evaluator batches
//    sliding-window crops: eval.batch).
// The optimizer groups the parameters by name (engine/optimizer.h).
// Parameter names are mmseg-like: backbone.* (= OpenAI CLIP visual.* keys), neck.*, decode_head.*.
// A segmentor is a torch module: use it from one thread at a time.

#include <torch/torch.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/config.h"
#include "dist/communicator.h"
#include "models/clip/clip_resnet.h"
#include "models/clip/clip_visual.h"
#include "models/clip/clip_vit.h"
#include "models/clip/clip_text.h"
#include "models/heads/fpn_head.h"
#include "models/sample_random.h"

namespace segrun::models {

// A loss and its weighted parts, as the trainer logs them (metrics.jsonl, TensorBoard train/<name>).
// `total` is the sum of the parts in their order; a model gives the same part names in the same
// order at every step and on every rank (the trainer sums a log window's parts by name and
// all-reduces them as one vector). add() keeps total and parts together.
struct LossTerms {
  torch::Tensor total;
  std::vector<std::pair<std::string, torch::Tensor>> parts;  // e.g. {"loss_seg", ...}, weighted

  void add(std::string name, const torch::Tensor& weighted) {
    total = total.defined() ? total + weighted : weighted;
    parts.emplace_back(std::move(name), weighted);
  }
};

class SegmentorImpl : public torch::nn::Module {
 public:
  ~SegmentorImpl() override = default;
  virtual torch::Tensor forward(const torch::Tensor& images) = 0;
  virtual LossTerms loss(const torch::Tensor& images, const torch::Tensor& labels) = 0;
  virtual torch::Tensor predict_logits(const torch::Tensor& images);
  virtual int64_t num_classes() const = 0;
  // The smallest height and width forward() and predict_logits() accept (the backbone's); the
  // evaluator pads smaller images up to it.
  virtual int64_t min_input_side() const = 0;
  // Heads with a multi-label branch return per-class image scores [B, K] in [0, 1] (used for the
  // validation mAP); others return an undefined tensor.
  virtual torch::Tensor label_scores(const torch::Tensor& images);
  virtual bool has_label_scores() const { return false; }
  // The trainer calls this with the current iteration before loss() (schedules inside a model,
  // e.g. CLIP-SP's batch drop); the default ignores it.
  virtual void set_iteration(int64_t /*iteration*/) {}
  // The trainer calls this before loss() with one key per batch row (sample_random.h): every
  // random draw of the model and its loss (dropout, batch drop, point sampling) comes from these,
  // so a sample draws the same numbers whichever rank and batch it is in. Empty: fresh keys from
  // LibTorch's default generator at every draw.
  void set_sample_keys(std::vector<uint64_t> keys) { random_->set_keys(std::move(keys)); }

 protected:
  // Shared with the parts of the model that draw (heads, criteria).
  std::shared_ptr<SampleRandom> random_ = std::make_shared<SampleRandom>();
};

struct BuildOptions {
  ModelConfig config;
  int num_classes = 0;
  std::vector<std::string> class_names;      // size num_classes (used by text-driven heads)
  std::shared_ptr<dist::Communicator> comm;  // may be null (single process)
  int crop_size = 512;                       // training crop: a ViT backbone's positional grid
  std::vector<int64_t> cooccurrence;         // K x K class co-occurrence of the train store (may be empty)
  // Every parameter and buffer will be loaded from a checkpoint: skip work that only initializes
  // them (CLIP-SP then leaves its text embeddings zero instead of running the text encoder).
  bool weights_from_checkpoint = false;
};

// Whether `config.pretrained` names an archive to import ("" and "none" do not).
bool has_pretrained_weights(const ModelConfig& config);

// The CLIP visual tower every segmentor starts from, chosen by model.backbone's family
// (core/kinds.h; ConfigError naming model.backbone for an unknown name): a ModifiedResNet
// (clip_rn50 | clip_rn101, model.width) or a ViT (clip_vit_b16, model.vit.*; its positional grid
// is options.crop_size / the patch size, DenseCLIP's input_resolution = the crop, and its
// stochastic depth draws from `random`), with `norm` in a ResNet (a ViT's pyramid, which starts
// from random weights, takes make_new_module_norm_factory's), with or without its embedding head
// (attention pooling / ln_post + proj). Its weights come from the `visual.*` tensors of
// model.pretrained when set (the embedding head's skipped when the tower has none; the ViT's
// pyramid keeps its own init).
std::shared_ptr<ClipVisualBackboneImpl> make_clip_backbone(const BuildOptions& options, const NormFactory& norm,
                                                           bool with_embeddings, std::shared_ptr<SampleRandom> random);

// The frozen-by-its-user CLIP text transformer for config.backbone with model.text sizes and
// text_projection to `embed_dim`; with import_weights its weights come from the `transformer.*`
// (etc.) tensors of config.pretrained when that is set.
ClipTextEncoder make_clip_text_encoder(const ModelConfig& config, int64_t embed_dim, bool import_weights);

// Builds the segmentor named by config.head. Unknown head -> ConfigError naming model.head and
// listing the heads (core/kinds.h); bad backbone/width/norm -> ConfigError naming that key.
std::shared_ptr<SegmentorImpl> build_segmentor(const BuildOptions& options);

// Semantic FPN baseline (head = "fpn"): the CLIP visual tower without its embedding head (as
// DenseCLIP's CLIPResNet / CLIPVisionTransformer baselines) -> FPN neck -> Semantic FPN head; loss = mmseg CE
// ("loss_seg"). config.pretrained (an OpenAI CLIP TorchScript archive) initializes the backbone from its visual.*
// tensors (clip_checkpoint.h); the neck and head start from their own init.
class FpnSegmentorImpl : public SegmentorImpl {
 public:
  explicit FpnSegmentorImpl(const BuildOptions& options);
  torch::Tensor forward(const torch::Tensor& images) override;
  LossTerms loss(const torch::Tensor& images, const torch::Tensor& labels) override;
  int64_t num_classes() const override { return num_classes_; }
  int64_t min_input_side() const override { return backbone_->min_input_side(); }
  const std::shared_ptr<ClipVisualBackboneImpl>& backbone() { return backbone_; }

 private:
  int64_t num_classes_;
  std::shared_ptr<ClipVisualBackboneImpl> backbone_;
  FpnNeck neck_{nullptr};
  FpnHead decode_head_{nullptr};
};

}  // namespace segrun::models
