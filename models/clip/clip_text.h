#pragma once
// CLIP's text transformer (OpenAI CLIP `encode_text`, DenseCLIP `CLIPTextEncoder`):
//  x = token_embedding(ids) + positional_embedding; `layers` pre-LN residual blocks
//  (x += attn(ln_1(x)) with an additive causal mask, -inf above the diagonal;
//   x += mlp.c_proj(QuickGELU(mlp.c_fc(ln_2(x)))), QuickGELU(x) = x * sigmoid(1.702 x));
//  ln_final; the feature at each text's end-of-text token (the argmax of its ids, EOT being the
//  largest id) times text_projection [width, embed_dim].
// The blocks are clip_transformer.h's. Parameter names equal the OpenAI archive's text keys:
// token_embedding.weight, positional_embedding, transformer.resblocks.N.{attn.in_proj_weight,
// attn.in_proj_bias, attn.out_proj.weight/bias, ln_1.*, mlp.c_fc.*, mlp.c_proj.*, ln_2.*},
// ln_final.*, text_projection; `attn` is a torch::nn::MultiheadAttention.
// Because the mask is causal, the EOT feature depends only on the positions up to it: forward()
// runs the transformer on the first max(EOT index) + 1 positions only, which gives the same
// result as the full context (up to float rounding) several times faster for short prompts.
// Not thread-safe (a torch module).

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "models/clip/clip_checkpoint.h"
#include "models/clip/clip_transformer.h"

namespace segrun::models {

struct ClipTextOptions {
  int64_t context_length = 77;
  int64_t vocab_size = 49408;
  int64_t width = 512;
  int64_t heads = 8;
  int64_t layers = 12;
  int64_t embed_dim = 1024;  // 1024 pairs with clip_rn50, 512 with clip_rn101
};
// The real encoder paired with a visual variant: embed_dim is the variant's text_embed_dim
// (clip_backbones.h: "clip_rn50" -> 1024, "clip_rn101" and "clip_vit_b16" -> 512); ConfigError
// naming model.backbone for names not in backbone_kinds().
ClipTextOptions clip_text_options_for(const std::string& backbone);
// ModelError naming the field for non-positive sizes or width % heads != 0.
void validate_clip_text_options(const ClipTextOptions& options);

class ClipTextEncoderImpl : public torch::nn::Module {
 public:
  explicit ClipTextEncoderImpl(const ClipTextOptions& options);
  // ids int64 [N, context_length] (ClipTokenizer::tokenize), on any device -> [N, embed_dim] on
  // the encoder's device.
  torch::Tensor forward(const torch::Tensor& ids);
  // Learnable-context prompts (CoOp / DenseCLIP's CLIPTextContextEncoder): the token embeddings of
  // `ids` [N, L] (SOT, class tokens, EOT, padding; L + M <= context_length) with `context`
  // [N or 1, M, width] inserted right after SOT: [SOT, ctx_1..ctx_M, class tokens, EOT] -> the
  // EOT feature times text_projection, [N, embed_dim]. Gradients flow to `context` (and to the
  // encoder's parameters only if they require grad).
  torch::Tensor forward_with_context(const torch::Tensor& ids, const torch::Tensor& context);

  // Token ids checked and placed once: forward_with_context(ids, ...) checks `ids` on the host,
  // finds each text's end-of-text position there and copies both to the encoder's device, which
  // on a GPU costs host reads or blocking copies every call. A caller that encodes the same ids
  // every step (TextPrompts) prepares them once and then reads nothing back and copies nothing.
  struct PreparedIds {
    torch::Tensor ids;      // int64 [N, L] on the encoder's device (as of prepare())
    torch::Tensor eot;      // int64 [N] on the same device: each row's EOT position (argmax of its ids)
    int64_t positions = 0;  // max(eot) + 1: the positions the causal transformer needs (0 when N = 0)
  };
  // ModelError unless `ids` is int64 [N, L] with every id in [0, vocab_size); ids on a GPU are
  // read back once for the check.
  PreparedIds prepare(const torch::Tensor& ids) const;
  torch::Tensor forward_with_context(const PreparedIds& ids, const torch::Tensor& context);
  const ClipTextOptions& options() const { return options_; }

  torch::Tensor positional_embedding;  // [context_length, width]
  torch::Tensor text_projection;       // [width, embed_dim]

 private:
  // Embeddings [N, L, width] (positional embedding not yet added) -> [N, embed_dim] at `eot`,
  // running the transformer on the first `positions` (> every eot) positions only.
  torch::Tensor encode(const torch::Tensor& embeddings, const torch::Tensor& eot, int64_t positions);
  ClipTextOptions options_;
  torch::nn::Embedding token_embedding_{nullptr};
  torch::nn::ModuleList resblocks_{nullptr};
  torch::nn::LayerNorm ln_final_{nullptr};
};
TORCH_MODULE(ClipTextEncoder);

// Imports token_embedding.weight, positional_embedding (its first context_length rows when the
// archive has more, as DenseCLIP does), transformer.*, ln_final.*, text_projection from an
// OpenAI CLIP TorchScript archive into `encoder`; `visual.*` and the scalars logit_scale,
// input_resolution, context_length, vocab_size are skipped. Shape mismatches and missing or
// unexpected keys throw ModelError naming the archive and the key (import_torchscript_weights).
WeightImportReport import_clip_text_weights(const std::string& archive_path, ClipTextEncoderImpl& encoder);

}  // namespace segrun::models
