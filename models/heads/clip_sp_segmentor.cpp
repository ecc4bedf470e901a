// CLIP-SP segmentor: see clip_sp_segmentor.h.
#include "models/heads/clip_sp_segmentor.h"

#include "core/error.h"
#include "models/clip/clip_text.h"
#include "models/clip/text_embeddings.h"
#include "models/clip/tokenizer.h"

namespace segrun::models {

namespace {

// Class text embeddings [K, C] (L2-normalized rows) from a frozen CLIP text encoder whose
// embedding width matches the visual one; its weights come from `pretrained` when set.
torch::Tensor class_text_embeddings(const BuildOptions& options, int64_t embed_dim) {
  const ModelConfig& m = options.config;
  ClipTextEncoder encoder = make_clip_text_encoder(m, embed_dim, /*import_weights=*/true);
  TextEmbeddingsOptions embeddings_options;
  embeddings_options.prompt_template = m.text.prompt;
  TextEmbeddings embeddings(encoder, std::make_shared<const ClipTokenizer>(), embeddings_options);
  std::vector<std::string> names = options.class_names;
  if (names.empty()) {
    for (int i = 0; i < options.num_classes; ++i) names.push_back("class " + std::to_string(i));
  }
  return embeddings.get(names).detach().clone();
}

}  // namespace

ClipSpSegmentorImpl::ClipSpSegmentorImpl(const BuildOptions& options)
    : num_classes_(options.num_classes), top_k_(options.config.clip_sp.top_k), comm_(options.comm) {
  const ModelConfig& m = options.config;
  const ClipSpConfig& sp = m.clip_sp;
  SEGRUN_CHECK(top_k_ <= num_classes_, ConfigError,
               "model.clip_sp.top_k: " << top_k_ << " exceeds the " << num_classes_ << " classes of the data layout");
  batch_drop_ = BatchDropOptions{sp.drop_r_start, sp.drop_r_end, sp.drop_decay};
  drop_mode_ = sp.drop_mode;
  lambda_ml_ = sp.lambda_ml;
  lambda_aux_ = sp.lambda_aux;
  asl_.gamma_neg = sp.asl_gamma_neg;
  asl_.gamma_pos = sp.asl_gamma_pos;
  asl_.clip = sp.asl_clip;

  const NormFactory norm = make_norm_factory(m.norm, options.comm);
  const NormFactory head_norm = make_new_module_norm_factory(m.norm, options.comm);
  backbone_ = register_module("backbone", make_clip_backbone(options, norm, /*with_embeddings=*/true, random_));
  const ClipVisualSpec spec = backbone_->visual_spec();

  text_embeddings = register_buffer("text_embeddings", options.weights_from_checkpoint
                                                           ? torch::zeros({num_classes_, spec.embed_dim})
                                                           : class_text_embeddings(options, spec.embed_dim));

  LabelDecoderOptions decoder;
  decoder.channels = spec.embed_dim;
  decoder.num_classes = num_classes_;
  decoder.blocks = sp.graph_blocks;
  decoder.nodes = sp.graph_nodes;
  decoder.attn_dim = sp.attn_dim;
  decoder.heads = sp.heads;
  decoder.cooccurrence = options.cooccurrence;
  ml_decoder_ = register_module("ml_decoder", make_label_decoder(sp.ml_decoder, decoder));

  SceneRefinementOptions srm;
  srm.feature_channels = spec.feature_dim;
  srm.token_channels = spec.embed_dim + 1;
  srm.tokens = top_k_;
  srm.hidden = spec.embed_dim;
  srm.attn_dim = sp.srm_dim;
  srm.norm = head_norm;
  srm.sigmoid_gate = sp.srm_gate == "sigmoid";
  srm.output_proj = sp.srm_output_proj;
  srm_ = register_module("srm", SceneRefinement(srm));

  FpnNeckOptions neck;
  neck.in_channels = spec.stage_channels;
  neck.channels = m.fpn_channels;
  neck_ = register_module("neck", FpnNeck(neck));
  FpnHeadOptions head;
  head.channels = m.fpn_channels;
  head.num_classes = num_classes_;
  head.dropout = m.dropout;
  head.norm = head_norm;
  head.random = random_;
  decode_head_ = register_module("decode_head", FpnHead(head));
}

torch::Tensor ClipSpSegmentorImpl::image_tokens(const ClipVisualOutput& features) const {
  return torch::cat({features.global.unsqueeze(1), features.dense.flatten(2).transpose(1, 2)}, 1);
}

double ClipSpSegmentorImpl::current_drop_ratio() const { return batch_drop_ratio(batch_drop_, iteration_); }

ClipSpOutputs ClipSpSegmentorImpl::run(const torch::Tensor& images, const torch::Tensor& present, double drop_ratio) {
  ClipVisualOutput features = backbone_->forward(images);
  ClipSpOutputs out;
  out.label_logits = ml_decoder_->forward(image_tokens(features), text_embeddings);
  torch::Tensor probs = torch::sigmoid(out.label_logits);
  // Batch drop (training): the draws are keyed per sample, so the choices do not depend on the
  // rank layout.
  const bool dropping = present.defined() && drop_ratio > 0;
  torch::Tensor from_ground_truth;
  if (dropping && drop_mode_ == "slots") {
    // Drawn on the host, where the slots are filled (the same draws on every device).
    const torch::Tensor draws = random_->uniform(probs.size(0), stream_id(RandomSite::kBatchDrop), {2 * top_k_},
                                                 torch::TensorOptions().dtype(torch::kFloat32));
    SceneSelection selection = replace_scene_slots(probs, top_k_, present, drop_ratio, draws);
    out.selected = selection.labels;
    from_ground_truth = selection.from_ground_truth;
  } else {
    torch::Tensor draws;
    if (dropping)
      draws = random_->uniform(probs.size(0), stream_id(RandomSite::kBatchDrop), {1 + probs.size(1)},
                               probs.options().dtype(torch::kFloat32));
    out.selected = select_scene_labels(probs, top_k_, present, drop_ratio, draws);
  }
  // Scene tokens T = [S_k, p_k]: the selected text embeddings with their probabilities (1 for a
  // ground-truth class placed by the slot-wise batch drop).
  torch::Tensor s_k = text_embeddings.index_select(0, out.selected.reshape({-1}))
                          .reshape({out.selected.size(0), top_k_, text_embeddings.size(1)});
  torch::Tensor p_k = probs.gather(1, out.selected);
  if (from_ground_truth.defined()) p_k = torch::where(from_ground_truth, torch::ones_like(p_k), p_k);
  p_k = p_k.unsqueeze(2);
  torch::Tensor tokens = torch::cat({s_k, p_k}, 2);
  torch::Tensor x4;
  std::tie(x4, out.attn_logits) = srm_->forward(features.stages[3], tokens);
  out.grid_h = x4.size(2);
  out.grid_w = x4.size(3);
  std::vector<torch::Tensor> stages = features.stages;
  stages[3] = x4;
  out.seg_logits = decode_head_->forward(neck_->forward(stages));
  return out;
}

torch::Tensor ClipSpSegmentorImpl::forward(const torch::Tensor& images) { return run(images).seg_logits; }

torch::Tensor ClipSpSegmentorImpl::label_scores(const torch::Tensor& images) {
  ClipVisualOutput features = backbone_->forward(images);
  return torch::sigmoid(ml_decoder_->forward(image_tokens(features), text_embeddings));
}

LossTerms ClipSpSegmentorImpl::loss(const torch::Tensor& images, const torch::Tensor& labels) {
  torch::Tensor present = present_classes(labels, num_classes_);
  const double ratio = is_training() ? current_drop_ratio() : 0.0;
  ClipSpOutputs out = run(images, present, ratio);
  torch::Tensor seg = seg_cross_entropy(out.seg_logits, labels);
  torch::Tensor ml = lambda_ml_ * asymmetric_loss(out.label_logits, present, asl_);
  torch::Tensor aux_targets = scene_aux_targets(labels, out.selected, out.grid_h, out.grid_w)
                                  .reshape({labels.size(0), out.grid_h * out.grid_w});
  torch::Tensor aux = lambda_aux_ * masked_cross_entropy(out.attn_logits, aux_targets, kIgnoreIndex, comm_.get());
  LossTerms terms;
  terms.add("loss_seg", seg);
  terms.add("loss_ml", ml);
  terms.add("loss_aux", aux);
  return terms;
}

}  // namespace segrun::models
