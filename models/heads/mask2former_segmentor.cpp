// Mask2Former semantic segmentor: see mask2former_segmentor.h.
#include "models/heads/mask2former_segmentor.h"

#include "core/error.h"

namespace segrun::models {
namespace F = torch::nn::functional;

namespace {

void check_mask2former_config(const Mask2FormerConfig& c) {
  SEGRUN_CHECK(c.hidden_dim % c.heads == 0, ConfigError,
               "model.mask2former.hidden_dim: " << c.hidden_dim << " is not divisible by model.mask2former.heads ("
                                                << c.heads << ")");
  SEGRUN_CHECK(c.hidden_dim % 32 == 0, ConfigError,
               "model.mask2former.hidden_dim: must be a multiple of 32 (GroupNorm(32) in the pixel decoder), got "
                   << c.hidden_dim);
  SEGRUN_CHECK(static_cast<int64_t>(c.importance * c.num_points) <= static_cast<int64_t>(c.oversample * c.num_points),
               ConfigError, "model.mask2former.importance: more important points than oversampled candidates");
}

}  // namespace

Mask2FormerLossOptions mask2former_loss_options(const BuildOptions& options,
                                                std::shared_ptr<const SampleRandom> random) {
  return Mask2FormerLossOptions{options.num_classes, options.config.mask2former, std::move(random)};
}

Mask2FormerHead make_mask2former_head(const BuildOptions& options, const std::vector<int64_t>& backbone_channels) {
  const Mask2FormerConfig& c = options.config.mask2former;
  check_mask2former_config(c);
  PixelDecoderOptions pixel;
  pixel.in_channels = backbone_channels;
  pixel.conv_dim = c.hidden_dim;
  pixel.mask_dim = c.hidden_dim;
  pixel.encoder_layers = c.enc_layers;
  pixel.heads = c.heads;
  pixel.points = c.enc_points;
  pixel.ffn_dim = c.enc_ffn;
  MaskedDecoderOptions decoder;
  decoder.in_channels = c.hidden_dim;
  decoder.hidden = c.hidden_dim;
  decoder.mask_dim = c.hidden_dim;
  decoder.num_queries = c.num_queries;
  decoder.heads = c.heads;
  decoder.ffn_dim = c.dec_ffn;
  decoder.layers = c.dec_layers;
  decoder.num_classes = options.num_classes;
  return Mask2FormerHead(pixel, decoder);
}

torch::Tensor mask2former_scores_at(const MaskedDecoderOutput& out, std::vector<int64_t> size) {
  torch::Tensor masks = F::interpolate(
      out.mask_logits.back(), F::InterpolateFuncOptions().size(size).mode(torch::kBilinear).align_corners(false));
  return mask2former_semantic_inference(out.class_logits.back(), masks);
}

Mask2FormerHeadImpl::Mask2FormerHeadImpl(const PixelDecoderOptions& pixel, const MaskedDecoderOptions& decoder) {
  pixel_decoder_ = register_module("pixel_decoder", MSDeformPixelDecoder(pixel));
  transformer_decoder_ = register_module("transformer_decoder", MaskedTransformerDecoder(decoder));
}

MaskedDecoderOutput Mask2FormerHeadImpl::forward(const std::vector<torch::Tensor>& stages, const ExtraQueries* extra) {
  PixelDecoderOutput pixels = pixel_decoder_->forward(stages);
  return transformer_decoder_->forward(pixels.multi_scale, pixels.mask_features, extra);
}

torch::Tensor mask2former_semantic_inference(const torch::Tensor& class_logits, const torch::Tensor& mask_logits) {
  const int64_t k = class_logits.size(2) - 1;
  torch::Tensor probs = class_logits.softmax(-1).narrow(2, 0, k);  // drop "no object"
  return torch::einsum("bqc,bqhw->bchw", {probs, mask_logits.sigmoid()});
}

Mask2FormerSegmentorImpl::Mask2FormerSegmentorImpl(const BuildOptions& options)
    : num_classes_(options.num_classes), comm_(options.comm), criterion_(mask2former_loss_options(options, random_)) {
  const NormFactory norm = make_norm_factory(options.config.norm, options.comm);
  backbone_ = register_module("backbone", make_clip_backbone(options, norm, /*with_embeddings=*/false, random_));
  decode_head_ =
      register_module("decode_head", make_mask2former_head(options, backbone_->visual_spec().stage_channels));
  supervise_initial_ = options.config.mask2former.supervise_initial;
}

MaskedDecoderOutput Mask2FormerSegmentorImpl::predictions(const torch::Tensor& images) {
  return decode_head_->forward(backbone_->forward(images).stages);
}

torch::Tensor Mask2FormerSegmentorImpl::forward(const torch::Tensor& images) {
  MaskedDecoderOutput out = predictions(images);
  return mask2former_semantic_inference(out.class_logits.back(), out.mask_logits.back());
}

torch::Tensor Mask2FormerSegmentorImpl::predict_logits(const torch::Tensor& images) {
  return mask2former_scores_at(predictions(images), {images.size(2), images.size(3)});
}

LossTerms Mask2FormerSegmentorImpl::loss(const torch::Tensor& images, const torch::Tensor& labels) {
  SEGRUN_CHECK(labels.dim() == 3 && labels.size(0) == images.size(0), DataError,
               "Mask2Former loss: labels must be [B, H, W] with B = " << images.size(0) << ", got " << labels.sizes());
  std::vector<SemanticTargets> targets = batch_semantic_targets(labels, num_classes_);
  MaskedDecoderOutput out = predictions(images);
  const size_t first = supervise_initial_ ? 0 : 1;
  std::vector<torch::Tensor> classes(out.class_logits.begin() + static_cast<std::ptrdiff_t>(first),
                                     out.class_logits.end());
  std::vector<torch::Tensor> masks(out.mask_logits.begin() + static_cast<std::ptrdiff_t>(first), out.mask_logits.end());
  return criterion_.loss(classes, masks, targets, comm_);
}

}  // namespace segrun::models
