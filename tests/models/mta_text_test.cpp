// MTA-CLIP text side: learnable-context prompts through the frozen CLIP text encoder and the
// mask-to-text contrastive loss (MixNeg / SeparateNeg), values and gradients against an independent
// PyTorch reference (reference_mta_text.py under /usr/bin/python3, same weights and inputs).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <string>
#include <vector>

#include "core/error.h"
#include "models/clip/clip_text.h"
#include "models/losses/seg_losses.h"
#include "models/clip/text_prompts.h"
#include "models/clip/tokenizer.h"
#include "torch_test_io.h"

namespace segrun::models {
namespace {

void expect_close(const torch::Tensor& actual, const torch::Tensor& expected, const std::string& what,
                  double tolerance = 1e-4) {
  ASSERT_EQ(actual.sizes(), expected.sizes()) << what;
  const double scale = std::max(expected.abs().max().item<double>(), 1e-8);
  const double err = (actual.to(torch::kFloat64) - expected.to(torch::kFloat64)).abs().max().item<double>();
  EXPECT_LE(err, tolerance * scale) << what << ": max |diff| " << err << " vs max |ref| " << scale;
}

// A small text encoder: width 32, 2 heads.
ClipTextOptions small_text(int64_t layers, int64_t embed_dim) {
  ClipTextOptions text;
  text.width = 32;
  text.heads = 2;
  text.layers = layers;
  text.embed_dim = embed_dim;
  return text;
}

TEST(MtaText, PromptsAndContrastiveLossMatchPytorch) {
  torch::manual_seed(3);
  ClipTextEncoder encoder(small_text(/*layers=*/2, /*embed_dim=*/24));
  {
    torch::NoGradGuard no_grad;
    for (auto& p : encoder->parameters()) p.normal_(0.0, 0.2);
  }
  const std::vector<std::string> names{"wall", "chest of drawers", "sky", "traffic light"};
  ClipTokenizer tokenizer;
  TextPromptsOptions options;  // K = 3 prompts of M = 8 vectors
  TextPrompts prompts(encoder, tokenizer, names, options);
  {
    torch::NoGradGuard no_grad;
    prompts->contexts.normal_(0.0, 0.3);
  }
  torch::Tensor embeddings = prompts->forward();
  ASSERT_EQ(embeddings.sizes(), torch::IntArrayRef({3, 4, 24}));
  embeddings.pow(2).sum().backward();
  for (const auto& p : encoder->parameters()) EXPECT_FALSE(p.grad().defined());  // frozen

  c10::Dict<std::string, at::Tensor> dict;
  for (const auto& item : encoder->named_parameters()) dict.insert("enc." + item.key(), item.value().detach().clone());
  dict.insert("ids", tokenizer.tokenize(names, 77 - 8));
  dict.insert("contexts", prompts->contexts.detach().clone());
  dict.insert("cfg.context_length", torch::tensor(77));
  dict.insert("cfg.vocab_size", torch::tensor(49408));
  dict.insert("cfg.width", torch::tensor(32));
  dict.insert("cfg.heads", torch::tensor(2));
  dict.insert("cfg.layers", torch::tensor(2));
  dict.insert("cfg.embed_dim", torch::tensor(24));
  torch::Tensor masks = torch::randn({6, 24});
  torch::Tensor texts = torch::randn({3, 5, 24});
  torch::Tensor labels = torch::tensor({0, 4, 2, 2, 1, 3}, torch::kLong);
  dict.insert("loss.masks", masks);
  dict.insert("loss.texts", texts);
  dict.insert("loss.labels", labels);
  dict.insert("loss.tau", torch::tensor(0.07));
  auto ref = test_io::run_tensor_reference("reference_mta_text.py", dict);

  expect_close(embeddings.detach(), ref.at("prompt_embeddings"), "prompt embeddings");
  expect_close(prompts->contexts.grad(), ref.at("context_grad"), "context gradient", 1e-3);
  for (const std::string mode : {"mixneg", "separateneg"}) {
    torch::Tensor x = masks.clone().requires_grad_(true);
    torch::Tensor loss = mask_text_contrastive_loss(x, texts, labels, 0.07, mode);
    loss.backward();
    EXPECT_NEAR(loss.item<double>(), ref.at(mode).item<double>(), 1e-4 * ref.at(mode).item<double>()) << mode;
    expect_close(x.grad(), ref.at(mode + "_grad"), mode + " gradient", 1e-3);
  }
  // SeparateNeg leaves the class's other prompts out of the denominator: a smaller loss.
  EXPECT_LT(ref.at("separateneg").item<double>(), ref.at("mixneg").item<double>());
}

// The prepared ids (checked on the host, placed once) give the very embeddings of the plain call,
// and TextPrompts' cached preparation gives the same result step after step.
TEST(MtaText, PreparedIdsAreCheckedOnTheHostAndGiveTheSameEmbeddings) {
  torch::manual_seed(5);
  ClipTextEncoder encoder(small_text(/*layers=*/1, /*embed_dim=*/16));
  ClipTokenizer tokenizer;
  const std::vector<std::string> names{"sky", "chest of drawers", "wall"};
  const torch::Tensor ids = tokenizer.tokenize(names, 77 - 4);
  const ClipTextEncoderImpl::PreparedIds prepared = encoder->prepare(ids);
  // EOT is each row's last non-padding token (padding is 0): the longest row sets the positions.
  const torch::Tensor tokens_per_row = ids.ne(0).sum(1);
  EXPECT_TRUE(torch::equal(prepared.eot, tokens_per_row - 1));
  EXPECT_EQ(prepared.positions, tokens_per_row.max().item<int64_t>());
  const torch::Tensor context = torch::randn({1, 4, 32});
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(
      torch::equal(encoder->forward_with_context(prepared, context), encoder->forward_with_context(ids, context)));

  TextPromptsOptions options;
  options.prompts = 2;
  options.context_length = 4;
  TextPrompts prompts(encoder, tokenizer, names, options);
  const torch::Tensor first = prompts->forward(), second = prompts->forward();
  EXPECT_TRUE(torch::equal(first, second));
  EXPECT_TRUE(torch::equal(first[1], encoder->forward_with_context(ids, prompts->contexts.slice(0, 1, 2))));

  torch::Tensor bad = ids.clone();
  bad[0][1] = 49408;  // one past the vocabulary
  EXPECT_THROW(encoder->prepare(bad), ModelError);
  EXPECT_THROW(encoder->prepare(ids.to(torch::kFloat32)), ModelError);
  const ClipTextEncoderImpl::PreparedIds none = encoder->prepare(ids.slice(0, 0, 0));
  EXPECT_EQ(none.positions, 0);
  EXPECT_EQ(encoder->forward_with_context(none, context).sizes(), torch::IntArrayRef({0, 16}));
}

TEST(MtaText, ContrastiveLossHandExample) {
  // One mask query m = (1, 0) of class 0; K = 2 prompts x C = 2 classes with cosines
  // class 0: prompt 0 -> 1, prompt 1 -> 0; class 1: prompt 0 -> -1, prompt 1 -> 0; tau = 1.
  // Positive = class 0, prompt 0 (S = 1). MixNeg: -log(e / (e + 1 + e^-1 + 1)) = log(e + 2 + e^-1) - 1;
  // SeparateNeg drops class 0's prompt 1: log(e + e^-1 + 1) - 1. Rows are scaled to check the cosine.
  torch::Tensor mask = torch::tensor({{3.0, 0.0}});
  torch::Tensor texts = torch::tensor({2.0, 0.0, -1.0, 0.0, 0.0, 5.0, 0.0, 0.5}).view({2, 2, 2});  // [k][c][d]
  torch::Tensor label = torch::tensor({0}, torch::kLong);
  const double e = std::exp(1.0);
  EXPECT_NEAR(mask_text_contrastive_loss(mask, texts, label, 1.0, "mixneg").item<double>(), std::log(e + 2 + 1 / e) - 1,
              1e-6);
  EXPECT_NEAR(mask_text_contrastive_loss(mask, texts, label, 1.0, "separateneg").item<double>(),
              std::log(e + 1 / e + 1) - 1, 1e-6);
  // tau = 0.5 doubles every S: MixNeg = log(e^2 + 2 + e^-2) - 2.
  EXPECT_NEAR(mask_text_contrastive_loss(mask, texts, label, 0.5, "mixneg").item<double>(),
              std::log(e * e + 2 + 1 / (e * e)) - 2, 1e-6);
}

TEST(MtaText, ContrastiveLossEdgeCases) {
  torch::Tensor texts = torch::randn({2, 3, 8});
  torch::Tensor none =
      mask_text_contrastive_loss(torch::zeros({0, 8}), texts, torch::zeros({0}, torch::kLong), 1.0, "mixneg");
  EXPECT_EQ(none.item<double>(), 0.0);
  EXPECT_THROW(mask_text_contrastive_loss(torch::randn({1, 8}), texts, torch::zeros({1}, torch::kLong), 1.0, "both"),
               ConfigError);
  EXPECT_THROW(mask_text_contrastive_loss(torch::randn({1, 8}), texts, torch::zeros({1}, torch::kLong), 0.0, "mixneg"),
               ConfigError);
  // A mask equal to its class's text query, with a tiny temperature: loss ~ 0.
  torch::Tensor aligned =
      mask_text_contrastive_loss(texts[1][2].unsqueeze(0), torch::eye(8).slice(0, 0, 6).reshape({2, 3, 8}),
                                 torch::tensor({2}, torch::kLong), 1.0, "mixneg");
  EXPECT_TRUE(std::isfinite(aligned.item<double>()));
}

// The contexts start as MTA-CLIP's mta_clip.py:105-106 (and DenseCLIP's) trunc_normal_(std=1):
// N(0, 1) cut at +-2, whose standard deviation is sqrt(1 - 4 phi(2) / (Phi(2) - Phi(-2))) = 0.8796.
TEST(MtaText, ContextsStartAsTheOfficialTruncatedNormal) {
  torch::manual_seed(0);
  ClipTextOptions text;
  text.width = 64;
  text.layers = 1;
  text.heads = 2;
  text.embed_dim = 16;
  ClipTextEncoder encoder(text);
  TextPromptsOptions options;
  options.prompts = 8;
  options.context_length = 8;
  const std::vector<std::string> names{"wall", "sky"};
  TextPrompts prompts(encoder, ClipTokenizer(), names, options);
  const torch::Tensor c = prompts->contexts.detach();
  ASSERT_EQ(c.sizes(), torch::IntArrayRef({8, 8, 64}));
  EXPECT_LE(c.abs().max().item<double>(), 2.0);
  EXPECT_NEAR(c.std().item<double>(), 0.8796, 0.03);  // 4096 draws: standard error ~0.01
  EXPECT_NEAR(c.mean().item<double>(), 0.0, 0.05);
}

}  // namespace
}  // namespace segrun::models
