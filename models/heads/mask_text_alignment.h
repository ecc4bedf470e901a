#pragma once
// MTA-CLIP's mask-text alignment layers (Das et al. 2024, Sec. 3.2.1; shapes as in the official
// code's Mask2FormerHead_lang), independent of the decoder they feed:
//  - text queries (Text-Enhanced Mask Feature Learning, Eqs. 1-2): t_hat = LN(Linear(t)) of the
//    K x C prompt text embeddings t [K, C, E] (E = CLIP embedding width, 1024 for RN50) ->
//    [1, K*C, hidden] content, with a learned positional embedding per text query (Mask2Former's
//    query_embed for the mask queries); with joint_query_norm the LayerNorm is applied by the
//    decoder to the mask and text queries together, as MTA-CLIP's code does
//    (mask2former_head_det.py: norm_project over cat[query_feat, text queries]);
//  - projections back to the CLIP space after a decoder layer (Eq. 5): m' = Linear(m),
//    t' = t0 + gamma * LN(Linear(t_hat)) with gamma a learned per-channel scale initialised to
//    1e-4, so t' starts at the frozen encoder's embedding t0 ("preserves the original textual
//    space"); the contrastive loss (models/losses/seg_losses.h,
//    mask_text_contrastive_losses) compares them by cosine.
// Modules exist only for the enabled parts: without text_enhanced there are no text queries and
// t' = t0; without contrastive there are no projections. Parameter names: text_project,
// text_norm, text_query_embed, mask_reproject, text_reproject, text_reproject_norm, text_gamma.
// Not thread-safe (a torch module).
#include <torch/torch.h>

#include <cstdint>

#include "models/heads/mask2former_decoder.h"

namespace segrun::models {

struct MaskTextAlignmentOptions {
  int64_t embed_dim = 1024;  // E
  int64_t hidden = 256;      // decoder width
  int64_t prompts = 3;       // K
  int64_t classes = 150;     // C
  bool text_enhanced = true;
  bool contrastive = true;
  bool joint_query_norm = true;  // text_norm covers the mask queries too (MTA-CLIP's code)
};

class MaskTextAlignmentImpl : public torch::nn::Module {
 public:
  explicit MaskTextAlignmentImpl(const MaskTextAlignmentOptions& options);

  // text [K, C, E] -> the decoder's extra queries [1, K*C, hidden] (requires text_enhanced).
  ExtraQueries text_queries(const torch::Tensor& text, bool joint_attention);
  // Decoder-normed mask query states [B, N, hidden] -> m' [B, N, E] (requires contrastive).
  torch::Tensor project_masks(const torch::Tensor& states);
  // t' [B, K, C, E] from the frozen-encoder embeddings text [K, C, E] and the decoder-normed text
  // query states [B, K*C, hidden]; without text_enhanced `states` is ignored and t' = text
  // broadcast to [1, K, C, E] (requires contrastive).
  torch::Tensor project_texts(const torch::Tensor& text, const torch::Tensor& states);

  const MaskTextAlignmentOptions& options() const { return options_; }

 private:
  MaskTextAlignmentOptions options_;
  torch::nn::Linear text_project_{nullptr}, mask_reproject_{nullptr}, text_reproject_{nullptr};
  torch::nn::LayerNorm text_norm_{nullptr}, text_reproject_norm_{nullptr};
  torch::nn::Embedding text_query_embed_{nullptr};
  torch::Tensor text_gamma_;
};
TORCH_MODULE(MaskTextAlignment);

}  // namespace segrun::models
