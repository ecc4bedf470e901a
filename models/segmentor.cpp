// Segmentor interface, registry and the Semantic FPN baseline: see segmentor.h.
#include "models/segmentor.h"

#include <sstream>

#include "core/error.h"
#include "core/log.h"
#include "models/clip/clip_checkpoint.h"
#include "models/heads/clip_sp_segmentor.h"
#include "models/losses/seg_losses.h"
#include "models/heads/mask2former_segmentor.h"
#include "models/heads/mta_clip_segmentor.h"

namespace segrun::models {
namespace {

// The registry: one builder per head kind (core/kinds.h lists the names).
std::shared_ptr<SegmentorImpl> make_segmentor(HeadKind kind, const BuildOptions& o) {
  switch (kind) {
    case HeadKind::kFpn: return std::make_shared<FpnSegmentorImpl>(o);
    case HeadKind::kClipSp: return std::make_shared<ClipSpSegmentorImpl>(o);
    case HeadKind::kMask2Former: return std::make_shared<Mask2FormerSegmentorImpl>(o);
    case HeadKind::kMtaClip: return std::make_shared<MtaClipSegmentorImpl>(o);
  }
  throw ModelError("model.head: no builder for head kind " + std::to_string(static_cast<int>(kind)));
}

}  // namespace

torch::Tensor SegmentorImpl::predict_logits(const torch::Tensor& images) {
  namespace F = torch::nn::functional;
  torch::Tensor logits = forward(images);
  if (logits.size(2) == images.size(2) && logits.size(3) == images.size(3)) return logits;
  return F::interpolate(logits, F::InterpolateFuncOptions()
                                    .size(std::vector<int64_t>{images.size(2), images.size(3)})
                                    .mode(torch::kBilinear)
                                    .align_corners(false));
}

torch::Tensor SegmentorImpl::label_scores(const torch::Tensor& /*images*/) { return {}; }

std::shared_ptr<SegmentorImpl> build_segmentor(const BuildOptions& options) {
  const HeadKind kind = head_kind(options.config.head);
  SEGRUN_CHECK(options.num_classes > 0, ConfigError,
               "model: num_classes must be > 0 (got " << options.num_classes << "; it comes from the data layout)");
  SEGRUN_CHECK(options.class_names.empty() || static_cast<int>(options.class_names.size()) == options.num_classes,
               ConfigError,
               "model: " << options.class_names.size() << " class names for " << options.num_classes << " classes");
  SEGRUN_CHECK(options.config.fpn_channels > 0, ConfigError,
               "model.fpn_channels: must be > 0 (got " << options.config.fpn_channels << ")");
  SEGRUN_CHECK(options.config.dropout >= 0.0 && options.config.dropout < 1.0, ConfigError,
               "model.dropout: must be in [0, 1) (got " << options.config.dropout << ")");
  return make_segmentor(kind, options);
}

bool has_pretrained_weights(const ModelConfig& config) {
  return !config.pretrained.empty() && config.pretrained != "none";
}

namespace {

// A built tower and how the archive's visual.* tensors map onto it.
struct VisualTower {
  std::shared_ptr<ClipVisualBackboneImpl> module;
  WeightImportOptions weights;
};

// Its pyramid (fpn1..fpn4) starts from random weights; the transformer blocks have no BatchNorm.
VisualTower make_clip_vit(const BuildOptions& build, const BackboneInfo& backbone, bool with_embeddings,
                          std::shared_ptr<SampleRandom> random) {
  const VitConfig& vit = build.config.vit;
  ClipVitOptions options;
  options.patch_size = backbone.patch_size;
  options.width = vit.width;
  options.layers = vit.layers;
  options.heads = vit.heads;
  options.embed_dim = vit.embed_dim;
  options.out_indices.assign(vit.out_indices.begin(), vit.out_indices.end());
  options.drop_path_rate = vit.drop_path_rate;
  SEGRUN_CHECK(build.crop_size >= backbone.patch_size && build.crop_size % backbone.patch_size == 0, ConfigError,
               "data.crop: " << build.crop_size << " is not a multiple of " << backbone.name << "'s patch size "
                             << backbone.patch_size);
  options.input_resolution = build.crop_size;  // DenseCLIP: input_resolution = the crop
  options.with_embeddings = with_embeddings;
  options.norm = make_new_module_norm_factory(build.config.norm, build.comm);
  options.random = std::move(random);
  VisualTower tower{std::make_shared<ClipVitImpl>(options), {}};
  tower.weights.grid_keys = {"positional_embedding"};
  tower.weights.target_only_prefixes = {"fpn1.", "fpn2.", "fpn3.", "fpn4."};
  if (!with_embeddings) tower.weights.skip_prefixes = {"ln_post.", "proj"};
  return tower;
}

VisualTower make_clip_resnet(const ModelConfig& config, const NormFactory& norm, bool with_embeddings) {
  ClipResNetOptions options;
  options.variant = config.backbone;
  options.width = config.width;
  options.with_attnpool = with_embeddings;  // its positional grid is resized to the input at run time
  options.norm = norm;
  VisualTower tower{std::make_shared<ClipResNetImpl>(options), {}};
  if (!with_embeddings) tower.weights.skip_prefixes = {"attnpool."};
  return tower;
}

}  // namespace

std::shared_ptr<ClipVisualBackboneImpl> make_clip_backbone(const BuildOptions& build, const NormFactory& norm,
                                                           bool with_embeddings, std::shared_ptr<SampleRandom> random) {
  const ModelConfig& config = build.config;
  const BackboneInfo& backbone = backbone_info(config.backbone);  // ConfigError naming model.backbone
  VisualTower tower;
  switch (backbone.family) {
    case BackboneFamily::kResNet: tower = make_clip_resnet(config, norm, with_embeddings); break;
    case BackboneFamily::kVit: tower = make_clip_vit(build, backbone, with_embeddings, std::move(random)); break;
  }
  if (has_pretrained_weights(config)) {
    tower.weights.path = config.pretrained;
    tower.weights.prefix = "visual.";
    WeightImportReport report = import_torchscript_weights(tower.weights, *tower.module);
    log::info("model.pretrained: {} tensors of {} loaded into the backbone ({} skipped, {} left to their init)",
              report.loaded, config.pretrained, report.skipped, report.own_init);
  }
  return tower.module;
}

ClipTextEncoder make_clip_text_encoder(const ModelConfig& config, int64_t embed_dim, bool import_weights) {
  ClipTextOptions text = clip_text_options_for(config.backbone);
  text.width = config.text.width;
  text.layers = config.text.layers;
  text.heads = config.text.heads;
  text.embed_dim = embed_dim;
  validate_clip_text_options(text);
  ClipTextEncoder encoder(text);
  if (import_weights && has_pretrained_weights(config)) {
    WeightImportReport report = import_clip_text_weights(config.pretrained, *encoder);
    log::info("model.pretrained: {} text-encoder tensors loaded from {}", report.loaded, config.pretrained);
  }
  return encoder;
}

// ---- Semantic FPN baseline ---------------------------------------------------------------------

FpnSegmentorImpl::FpnSegmentorImpl(const BuildOptions& options) : num_classes_(options.num_classes) {
  const NormFactory norm = make_norm_factory(options.config.norm, options.comm);
  backbone_ = register_module("backbone", make_clip_backbone(options, norm, /*with_embeddings=*/false, random_));

  FpnNeckOptions neck;
  neck.in_channels = backbone_->visual_spec().stage_channels;
  neck.channels = options.config.fpn_channels;
  neck_ = register_module("neck", FpnNeck(neck));

  FpnHeadOptions head;
  head.channels = options.config.fpn_channels;
  head.num_classes = options.num_classes;
  head.dropout = options.config.dropout;
  head.random = random_;
  head.norm = make_new_module_norm_factory(options.config.norm, options.comm);
  decode_head_ = register_module("decode_head", FpnHead(head));
}

torch::Tensor FpnSegmentorImpl::forward(const torch::Tensor& images) {
  ClipVisualOutput features = backbone_->forward(images);
  return decode_head_->forward(neck_->forward(features.stages));
}

LossTerms FpnSegmentorImpl::loss(const torch::Tensor& images, const torch::Tensor& labels) {
  torch::Tensor seg = seg_cross_entropy(forward(images), labels);
  LossTerms terms;
  terms.add("loss_seg", seg);
  return terms;
}

}  // namespace segrun::models
