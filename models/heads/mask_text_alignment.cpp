// MTA-CLIP mask-text alignment layers: see mask_text_alignment.h.
#include "models/heads/mask_text_alignment.h"

#include "core/error.h"

namespace segrun::models {

MaskTextAlignmentImpl::MaskTextAlignmentImpl(const MaskTextAlignmentOptions& options) : options_(options) {
  SEGRUN_CHECK(options.text_enhanced || options.contrastive, ConfigError,
               "model.mta_clip: text_enhanced and contrastive are both off (that is model.head = \"mask2former\")");
  const int64_t e = options.embed_dim, c = options.hidden;
  if (options.text_enhanced) {
    text_project_ = register_module("text_project", torch::nn::Linear(e, c));
    text_norm_ = register_module("text_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c})));
    text_query_embed_ = register_module("text_query_embed", torch::nn::Embedding(options.prompts * options.classes, c));
  }
  if (options.contrastive) {
    mask_reproject_ = register_module("mask_reproject", torch::nn::Linear(c, e));
    if (options.text_enhanced) {
      text_reproject_ = register_module("text_reproject", torch::nn::Linear(c, e));
      text_reproject_norm_ =
          register_module("text_reproject_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({e})));
      text_gamma_ = register_parameter("text_gamma", torch::full({e}, 1e-4));
    }
  }
}

ExtraQueries MaskTextAlignmentImpl::text_queries(const torch::Tensor& text, bool joint_attention) {
  SEGRUN_CHECK(options_.text_enhanced, ModelError, "mask-text alignment: text queries need text_enhanced");
  SEGRUN_CHECK(text.dim() == 3 && text.size(0) == options_.prompts && text.size(1) == options_.classes &&
                   text.size(2) == options_.embed_dim,
               ModelError,
               "mask-text alignment: text embeddings " << text.sizes() << ", expected [" << options_.prompts << ", "
                                                       << options_.classes << ", " << options_.embed_dim << "]");
  ExtraQueries queries;
  queries.content = text_project_->forward(text.reshape({1, -1, options_.embed_dim}));
  if (options_.joint_query_norm) {
    torch::nn::LayerNorm norm = text_norm_;
    queries.normalize_all = [norm](const torch::Tensor& all) mutable { return norm->forward(all); };
  } else {
    queries.content = text_norm_->forward(queries.content);
  }
  queries.pos = text_query_embed_->weight.unsqueeze(0);
  queries.joint_attention = joint_attention;
  return queries;
}

torch::Tensor MaskTextAlignmentImpl::project_masks(const torch::Tensor& states) {
  SEGRUN_CHECK(options_.contrastive, ModelError, "mask-text alignment: projections need contrastive");
  return mask_reproject_->forward(states);
}

torch::Tensor MaskTextAlignmentImpl::project_texts(const torch::Tensor& text, const torch::Tensor& states) {
  SEGRUN_CHECK(options_.contrastive, ModelError, "mask-text alignment: projections need contrastive");
  torch::Tensor t0 = text.unsqueeze(0);  // [1, K, C, E]
  if (!options_.text_enhanced) return t0;
  SEGRUN_CHECK(states.dim() == 3 && states.size(1) == options_.prompts * options_.classes, ModelError,
               "mask-text alignment: text query states " << states.sizes() << ", expected [B, "
                                                         << options_.prompts * options_.classes << ", hidden]");
  torch::Tensor delta = text_reproject_norm_->forward(text_reproject_->forward(states));  // [B, K*C, E]
  return t0 + (text_gamma_ * delta).view({states.size(0), options_.prompts, options_.classes, options_.embed_dim});
}

}  // namespace segrun::models
