#pragma once
// MTA-CLIP's Mask-Text Prompt Learning (Sec. 3.2.2): K learnable context prompts, each M vectors
// of the text encoder's width (M = 8, K = 3 by default), shared by all classes. Prompt k and class c
// go through the frozen CLIP text encoder as [SOT, ctx_k,1..ctx_k,M, class-name tokens, EOT]
// (ClipTextEncoderImpl::forward_with_context), giving K x C text embeddings [K, C, E] whose
// gradient reaches the contexts only: the encoder stays frozen (requires_grad false, eval mode)
// and is held, not registered, by TextPrompts: its owner decides whether it is saved (MTA-CLIP
// registers it as text_encoder, so its checkpoints carry it).
// Parameter: `contexts` [K, M, width], init trunc_normal_(std 1, cut at +-2) as MTA-CLIP's
// mta_clip.py:105-106 and DenseCLIP's denseclip.py do (timm's trunc_normal_: inverse CDF of a
// uniform draw), from LibTorch's default generator.
// The class ids are checked and copied to the encoder's device once (ClipTextEncoderImpl::prepare;
// again only after the module moves), so a training step reads nothing back from a GPU for them.
// Not thread-safe (a torch module).
#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "models/clip/clip_text.h"
#include "models/clip/tokenizer.h"

namespace segrun::models {

struct TextPromptsOptions {
  int64_t prompts = 3;         // K
  int64_t context_length = 8;  // M
};

class TextPromptsImpl : public torch::nn::Module {
 public:
  // Tokenizes the class names once (context_length - M tokens at most: ModelError naming a name
  // that does not fit) and freezes `encoder`.
  TextPromptsImpl(ClipTextEncoder encoder, const ClipTokenizer& tokenizer, const std::vector<std::string>& class_names,
                  const TextPromptsOptions& options);
  // [K, C, embed_dim]: every prompt with every class.
  torch::Tensor forward();

  torch::Tensor contexts;  // [K, M, width]

 private:
  ClipTextEncoder encoder_;
  torch::Tensor class_ids_;                        // [C, L] SOT, class tokens, EOT, padding (host)
  ClipTextEncoderImpl::PreparedIds prepared_ids_;  // class_ids_ on the encoder's device
};
TORCH_MODULE(TextPrompts);

}  // namespace segrun::models
