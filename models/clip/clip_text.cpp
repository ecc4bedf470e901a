// CLIP text transformer and its weight import: see clip_text.h.
#include "models/clip/clip_text.h"

#include <cmath>
#include <limits>

#include "core/error.h"
#include "models/clip/clip_backbones.h"

namespace segrun::models {

ClipTextOptions clip_text_options_for(const std::string& backbone) {
  const BackboneInfo* info = find_backbone(backbone);
  SEGRUN_CHECK(
      info != nullptr, ConfigError,
      "model.backbone: no CLIP text encoder pairs with '" << backbone << "' (valid: " << backbone_names() << ")");
  ClipTextOptions options;
  options.embed_dim = clip_backbone_facts(info->kind).text_embed_dim;
  return options;
}

void validate_clip_text_options(const ClipTextOptions& options) {
  const std::pair<const char*, int64_t> sizes[] = {{"context_length", options.context_length},
                                                   {"vocab_size", options.vocab_size},
                                                   {"width", options.width},
                                                   {"heads", options.heads},
                                                   {"layers", options.layers},
                                                   {"embed_dim", options.embed_dim}};
  for (const auto& size : sizes) {
    SEGRUN_CHECK(size.second > 0, ModelError,
                 "ClipTextOptions." << size.first << " must be positive (got " << size.second << ")");
  }
  SEGRUN_CHECK(options.width % options.heads == 0, ModelError,
               "ClipTextOptions.width " << options.width << " is not a multiple of heads " << options.heads);
}

// ---- encoder ---------------------------------------------------------------------------------------

ClipTextEncoderImpl::ClipTextEncoderImpl(const ClipTextOptions& options) : options_(options) {
  validate_clip_text_options(options);
  const int64_t width = options.width;
  token_embedding_ = register_module("token_embedding", torch::nn::Embedding(options.vocab_size, width));
  positional_embedding = register_parameter("positional_embedding", torch::empty({options.context_length, width}));
  auto transformer = register_module("transformer", std::make_shared<torch::nn::Module>());
  resblocks_ = torch::nn::ModuleList();
  for (int64_t i = 0; i < options.layers; ++i) resblocks_->push_back(ClipResidualBlock(width, options.heads));
  transformer->register_module("resblocks", resblocks_);
  ln_final_ = register_module("ln_final", torch::nn::LayerNorm(torch::nn::LayerNormOptions({width})));
  text_projection = register_parameter("text_projection", torch::empty({width, options.embed_dim}));

  // OpenAI CLIP's initialize_parameters (text side).
  torch::NoGradGuard no_grad;
  token_embedding_->weight.normal_(0.0, 0.02);
  positional_embedding.normal_(0.0, 0.01);
  init_clip_transformer(*transformer, width, options.layers);
  text_projection.normal_(0.0, std::pow(static_cast<double>(width), -0.5));
}

ClipTextEncoderImpl::PreparedIds ClipTextEncoderImpl::prepare(const torch::Tensor& ids) const {
  SEGRUN_CHECK(ids.dim() == 2 && ids.size(1) >= 1 && ids.scalar_type() == torch::kLong, ModelError,
               "text encoder: expected int64 token ids [N, L], got " << ids.scalar_type() << " " << ids.sizes());
  const torch::Device device = text_projection.device();
  const torch::Tensor host = ids.to(torch::kCPU);  // tokenizers produce host tensors: no copy
  PreparedIds prepared;
  prepared.ids = ids.to(device);
  if (host.size(0) == 0) {
    prepared.eot = torch::empty({0}, torch::TensorOptions().dtype(torch::kLong).device(device));
    return prepared;
  }
  SEGRUN_CHECK(host.min().item<int64_t>() >= 0 && host.max().item<int64_t>() < options_.vocab_size, ModelError,
               "text encoder: token ids outside [0, " << options_.vocab_size << ")");
  const torch::Tensor eot = host.argmax(-1);  // EOT is the largest id
  prepared.positions = eot.max().item<int64_t>() + 1;
  prepared.eot = eot.to(device);
  return prepared;
}

torch::Tensor ClipTextEncoderImpl::forward(const torch::Tensor& ids) {
  SEGRUN_CHECK(ids.dim() == 2 && ids.size(1) == options_.context_length && ids.scalar_type() == torch::kLong,
               ModelError,
               "text encoder: expected int64 token ids [N, " << options_.context_length << "], got "
                                                             << ids.scalar_type() << " " << ids.sizes());
  if (ids.size(0) == 0) return torch::empty({0, options_.embed_dim}, text_projection.options());
  const PreparedIds prepared = prepare(ids);
  return encode(token_embedding_(prepared.ids), prepared.eot, prepared.positions);
}

torch::Tensor ClipTextEncoderImpl::forward_with_context(const torch::Tensor& ids, const torch::Tensor& context) {
  return forward_with_context(prepare(ids), context);
}

torch::Tensor ClipTextEncoderImpl::forward_with_context(const PreparedIds& prepared, const torch::Tensor& context) {
  const torch::Tensor& ids = prepared.ids;
  SEGRUN_CHECK(ids.dim() == 2 && ids.scalar_type() == torch::kLong && context.dim() == 3 &&
                   context.size(2) == options_.width && (context.size(0) == 1 || context.size(0) == ids.size(0)),
               ModelError,
               "text encoder: expected ids [N, L] int64 and context [N or 1, M, "
                   << options_.width << "], got " << ids.sizes() << " and " << context.sizes());
  SEGRUN_CHECK(ids.device() == text_projection.device(), ModelError,
               "text encoder: ids prepared on " << ids.device() << ", but the encoder is now on "
                                                << text_projection.device() << " (prepare them again)");
  const int64_t batch = ids.size(0), prompt = context.size(1);
  SEGRUN_CHECK(ids.size(1) + prompt <= options_.context_length, ModelError,
               "text encoder: " << ids.size(1) << " tokens + " << prompt
                                << " context vectors exceed the context length " << options_.context_length);
  if (batch == 0) return torch::empty({0, options_.embed_dim}, text_projection.options());
  torch::Tensor tokens = token_embedding_(ids);
  torch::Tensor x =
      torch::cat({tokens.slice(1, 0, 1), context.expand({batch, prompt, options_.width}), tokens.slice(1, 1)}, 1);
  return encode(x, prepared.eot + prompt, prepared.positions + prompt);
}

torch::Tensor ClipTextEncoderImpl::encode(const torch::Tensor& embeddings, const torch::Tensor& eot,
                                          int64_t positions) {
  const int64_t batch = embeddings.size(0);
  // Positions after the last EOT cannot reach it (the mask is causal).
  torch::Tensor x = embeddings.slice(1, 0, positions) + positional_embedding.slice(0, 0, positions);
  x = x.permute({1, 0, 2});  // [L, N, width]
  const torch::Tensor mask =
      torch::full({positions, positions}, -std::numeric_limits<float>::infinity(), x.options()).triu_(1);
  for (const auto& block : *resblocks_) x = block->as<ClipResidualBlock>()->forward(x, mask);
  x = ln_final_(x.permute({1, 0, 2}));  // [N, L, width]
  const torch::Tensor rows = torch::arange(batch, torch::TensorOptions().dtype(torch::kLong).device(eot.device()));
  return x.index({rows, eot}).matmul(text_projection);
}

WeightImportReport import_clip_text_weights(const std::string& archive_path, ClipTextEncoderImpl& encoder) {
  WeightImportOptions options;
  options.path = archive_path;
  options.prefix = "";
  options.skip_prefixes = {"visual.", "logit_scale", "input_resolution", "context_length", "vocab_size"};
  return import_torchscript_weights(options, encoder);
}

}  // namespace segrun::models
