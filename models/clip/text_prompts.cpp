// MTA-CLIP learnable context prompts: see text_prompts.h.
#include "models/clip/text_prompts.h"

#include <cmath>

#include "core/error.h"

namespace segrun::models {
namespace {

// N(0, std) truncated to [-bound, bound], by the inverse CDF of a uniform draw between the bounds'
// CDF values (timm's trunc_normal_, which DenseCLIP and MTA-CLIP call with std 1, bounds +-2).
torch::Tensor truncated_normal(c10::IntArrayRef shape, double std, double bound) {
  auto cdf = [](double x) { return 0.5 * (1.0 + std::erf(x / std::sqrt(2.0))); };
  const double low = cdf(-bound / std), high = cdf(bound / std);
  torch::Tensor t = torch::empty(shape).uniform_(2 * low - 1, 2 * high - 1);
  return t.erfinv_().mul_(std * std::sqrt(2.0)).clamp_(-bound, bound);
}

}  // namespace

TextPromptsImpl::TextPromptsImpl(ClipTextEncoder encoder, const ClipTokenizer& tokenizer,
                                 const std::vector<std::string>& class_names, const TextPromptsOptions& options)
    : encoder_(std::move(encoder)) {
  SEGRUN_CHECK(options.prompts >= 1 && options.context_length >= 1, ConfigError,
               "text prompts: need >= 1 prompt of >= 1 context vector (got " << options.prompts << " x "
                                                                             << options.context_length << ")");
  const int64_t width = encoder_->options().width;
  const int64_t class_tokens = encoder_->options().context_length - options.context_length;
  SEGRUN_CHECK(class_tokens >= 3, ConfigError,
               "text prompts: a context of " << options.context_length << " leaves no room for class names in "
                                             << encoder_->options().context_length << " positions");
  class_ids_ = tokenizer.tokenize(class_names, class_tokens);
  for (auto& parameter : encoder_->parameters()) parameter.set_requires_grad(false);
  encoder_->eval();
  contexts =
      register_parameter("contexts", truncated_normal({options.prompts, options.context_length, width}, 1.0, 2.0));
}

torch::Tensor TextPromptsImpl::forward() {
  // Prepared once per device: every later step reads nothing back and copies nothing.
  if (!prepared_ids_.ids.defined() || prepared_ids_.ids.device() != encoder_->text_projection.device())
    prepared_ids_ = encoder_->prepare(class_ids_);
  std::vector<torch::Tensor> per_prompt;
  for (int64_t k = 0; k < contexts.size(0); ++k)
    per_prompt.push_back(encoder_->forward_with_context(prepared_ids_, contexts.slice(0, k, k + 1)));
  return torch::stack(per_prompt);  // [K, C, E]
}

}  // namespace segrun::models
