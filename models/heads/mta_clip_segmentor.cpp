// MTA-CLIP segmentor: see mta_clip_segmentor.h.
#include "models/heads/mta_clip_segmentor.h"

#include "core/error.h"
#include "models/losses/seg_losses.h"
#include "models/clip/tokenizer.h"

namespace segrun::models {

MtaClipSegmentorImpl::MtaClipSegmentorImpl(const BuildOptions& options)
    : mta_(options.config.mta_clip),
      num_classes_(options.num_classes),
      comm_(options.comm),
      criterion_(mask2former_loss_options(options, random_)) {
  const ModelConfig& m = options.config;
  const NormFactory norm = make_norm_factory(m.norm, options.comm);
  backbone_ = register_module("backbone", make_clip_backbone(options, norm, /*with_embeddings=*/false, random_));
  decode_head_ =
      register_module("decode_head", make_mask2former_head(options, backbone_->visual_spec().stage_channels));
  supervise_initial_ = m.mask2former.supervise_initial;

  const int64_t embed_dim = backbone_->visual_spec().embed_dim;
  MaskTextAlignmentOptions alignment;
  alignment.embed_dim = embed_dim;
  alignment.hidden = m.mask2former.hidden_dim;
  alignment.prompts = mta_.prompts;
  // MTA-CLIP's code appends a "none" class to the text classes (train.py), the target of the
  // queries that match no segment.
  const bool none_class = mta_.sim_queries == "all";
  alignment.classes = num_classes_ + (none_class ? 1 : 0);
  alignment.text_enhanced = mta_.text_enhanced;
  alignment.contrastive = mta_.contrastive;
  alignment.joint_query_norm = mta_.joint_query_norm;
  mask_text_ = register_module("mask_text", MaskTextAlignment(alignment));

  text_encoder_ =
      register_module("text_encoder", make_clip_text_encoder(m, embed_dim, !options.weights_from_checkpoint));
  std::vector<std::string> names = options.class_names;
  for (auto i = static_cast<int64_t>(names.size()); i < num_classes_; ++i)
    names.push_back("class " + std::to_string(i));
  if (none_class) names.push_back("none");
  TextPromptsOptions prompts;
  prompts.prompts = mta_.prompts;
  prompts.context_length = mta_.context_length;
  text_prompts_ = register_module("text_prompts", TextPrompts(text_encoder_, ClipTokenizer(), names, prompts));
}

void MtaClipSegmentorImpl::train(bool on) {
  eval_text_ = torch::Tensor();
  eval_text_version_ = -1;
  SegmentorImpl::train(on);
  text_encoder_->eval();  // frozen: no mode of its own
}

int64_t MtaClipSegmentorImpl::text_weights_version() const {
  // Version counters only grow, so their sum changes whenever one of the tensors changes in place
  // (an optimizer step, a checkpoint load, a copy_).
  int64_t sum = 0;
  const std::vector<const torch::nn::Module*> text_side{text_prompts_.get(), text_encoder_.get()};
  for (const torch::nn::Module* module : text_side) {
    for (const auto& p : module->parameters()) sum += p._version();
    for (const auto& b : module->buffers()) sum += b._version();
  }
  return sum;
}

torch::Tensor MtaClipSegmentorImpl::prompt_text_embeddings() {
  if (is_training()) return text_prompts_->forward();
  const int64_t version = text_weights_version();
  if (!eval_text_.defined() || version != eval_text_version_) {
    torch::NoGradGuard no_grad;
    eval_text_ = text_prompts_->forward();
    eval_text_version_ = version;
  }
  return eval_text_;
}

MaskedDecoderOutput MtaClipSegmentorImpl::predictions(const torch::Tensor& images, const torch::Tensor& text) {
  std::vector<torch::Tensor> stages = backbone_->forward(images).stages;
  if (!mta_.text_enhanced) return decode_head_->forward(stages);
  ExtraQueries queries = mask_text_->text_queries(text, mta_.joint_attention);
  return decode_head_->forward(stages, &queries);
}

torch::Tensor MtaClipSegmentorImpl::inference_text() {
  return mta_.text_enhanced ? prompt_text_embeddings() : torch::Tensor();
}

torch::Tensor MtaClipSegmentorImpl::forward(const torch::Tensor& images) {
  MaskedDecoderOutput out = predictions(images, inference_text());
  return mask2former_semantic_inference(out.class_logits.back(), out.mask_logits.back());
}

torch::Tensor MtaClipSegmentorImpl::predict_logits(const torch::Tensor& images) {
  return mask2former_scores_at(predictions(images, inference_text()), {images.size(2), images.size(3)});
}

torch::Tensor MtaClipSegmentorImpl::contrastive_loss(const MaskedDecoderOutput& out, size_t first,
                                                     const torch::Tensor& text,
                                                     const std::vector<std::vector<ImageMatch>>& matches,
                                                     const std::vector<SemanticTargets>& targets) {
  SEGRUN_CHECK(
      matches.size() + first == out.query_states.size(), ModelError,
      "MTA-CLIP: " << matches.size() << " matchings for " << out.query_states.size() - first << " predictions");
  const bool all_queries = mta_.sim_queries == "all";
  const double none_weight = criterion_.options().config.no_object_weight;
  // Each prediction's loss: the weighted sum over its supervised queries divided by the mean over
  // ranks of the sum of their weights (one all-reduce for every prediction), so N ranks x b
  // average to 1 rank x N*b. "all": every query, weight 1 for a class, no_object_weight for "none"
  // (MTA-CLIP's code, query_loss_type 2 / 1: sum(w * loss) / sum(w)); "matched": the matched
  // queries, weight 1.
  std::vector<double> weight_sums;
  for (const auto& per_image : matches) {
    double matched = 0;
    for (const ImageMatch& m : per_image) matched += static_cast<double>(m.pairs.rows.size());
    const double queries = static_cast<double>(per_image.size()) * static_cast<double>(out.query_states[first].size(1));
    weight_sums.push_back(all_queries ? matched + none_weight * (queries - matched) : matched);
  }
  // On the loss's device and never read back: no wait for the GPU, whatever the number of ranks.
  const torch::Tensor weight_means =
      dist::mean_over_ranks(weight_sums, comm_.get(), out.query_states[first].device()).to(torch::kFloat32);
  torch::Tensor total = zero_attached(out.query_states[first]);  // attached even without matches
  for (size_t p = 0; p < matches.size(); ++p) {
    const torch::Tensor masks = mask_text_->project_masks(out.query_states[first + p]);  // [B, N, E]
    const torch::Tensor texts =
        mask_text_->project_texts(text, mta_.text_enhanced ? out.extra_states[first + p] : torch::Tensor());
    // Every projection stays in the graph even without matches, so every rank produces the same
    // set of gradients (zeros here).
    torch::Tensor weighted = zero_attached(masks) + zero_attached(texts);
    const int64_t queries = masks.size(1);
    for (size_t b = 0; b < matches[p].size(); ++b) {
      const ImageMatch& m = matches[p][b];
      const auto image = static_cast<int64_t>(b);
      torch::Tensor image_texts = texts.size(0) == 1 ? texts[0] : texts[image];
      const bool matched = !m.pairs.rows.empty();
      torch::Tensor matched_labels = matched ? targets[b].classes.index_select(0, m.cols) : torch::Tensor();
      if (all_queries) {
        // Every query: its matched class, else "none" (the last text class).
        torch::Tensor labels = torch::full({queries}, num_classes_, masks.options().dtype(torch::kLong));
        torch::Tensor weights = torch::full({queries}, none_weight, masks.options());
        if (matched) {
          labels.index_put_({m.rows}, matched_labels);
          weights.index_fill_(0, m.rows, 1.0);
        }
        weighted = weighted + (weights * mask_text_contrastive_losses(masks[image], image_texts, labels,
                                                                      mta_.temperature, mta_.negatives))
                                  .sum();
      } else if (matched) {
        weighted = weighted + mask_text_contrastive_losses(masks[image].index_select(0, m.rows), image_texts,
                                                           matched_labels, mta_.temperature, mta_.negatives)
                                  .sum();
      }
    }
    const torch::Tensor mean = weight_means[static_cast<int64_t>(p)];
    total = total + weighted / torch::where(mean > 0, mean, torch::ones_like(mean));
  }
  return mta_.lambda_sim * total;
}

LossTerms MtaClipSegmentorImpl::loss(const torch::Tensor& images, const torch::Tensor& labels) {
  SEGRUN_CHECK(labels.dim() == 3 && labels.size(0) == images.size(0), DataError,
               "MTA-CLIP loss: labels must be [B, H, W] with B = " << images.size(0) << ", got " << labels.sizes());
  std::vector<SemanticTargets> targets = batch_semantic_targets(labels, num_classes_);
  torch::Tensor text = prompt_text_embeddings();
  MaskedDecoderOutput out = predictions(images, text);
  const size_t first = supervise_initial_ ? 0 : 1;
  std::vector<torch::Tensor> classes(out.class_logits.begin() + static_cast<std::ptrdiff_t>(first),
                                     out.class_logits.end());
  std::vector<torch::Tensor> masks(out.mask_logits.begin() + static_cast<std::ptrdiff_t>(first), out.mask_logits.end());
  std::vector<std::vector<ImageMatch>> matches;
  LossTerms terms = criterion_.loss(classes, masks, targets, comm_, mta_.contrastive ? &matches : nullptr);
  if (mta_.contrastive) terms.add("loss_sim", contrastive_loss(out, first, text, matches, targets));
  return terms;
}

}  // namespace segrun::models
