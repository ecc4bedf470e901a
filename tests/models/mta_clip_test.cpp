// MTA-CLIP segmentor: the switches reduce exactly to Mask2Former where the paper says they should,
// the mask-to-text contrastive loss over the decoder's matched queries equals an independent
// PyTorch reference (reference_mta_clip.py: values and gradients), the frozen text encoder gets no
// gradient while the prompt contexts do, the eval-mode text cache follows the contexts, and a
// short training run lowers every loss part.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/error.h"
#include "models/heads/mask2former_segmentor.h"
#include "models/heads/mta_clip_segmentor.h"
#include "tiny_mask2former.h"
#include "torch_test_io.h"

namespace segrun::models {
namespace {

ModelConfig tiny_mta(const std::string& head = "mta_clip") {
  ModelConfig config = test_fixtures::tiny_mask2former_config(head);
  config.text.width = 32;
  config.text.layers = 1;
  config.text.heads = 2;
  config.mta_clip.prompts = 2;
  config.mta_clip.context_length = 4;
  return config;
}

BuildOptions build_options(const ModelConfig& config, int classes) {
  BuildOptions options;
  options.config = config;
  options.num_classes = classes;
  options.class_names = {"road", "sky", "car"};
  options.class_names.resize(static_cast<size_t>(classes), "thing");
  options.crop_size = 64;
  return options;
}

std::shared_ptr<MtaClipSegmentorImpl> build_mta(const ModelConfig& config, int classes) {
  auto model = std::dynamic_pointer_cast<MtaClipSegmentorImpl>(build_segmentor(build_options(config, classes)));
  if (!model) throw std::runtime_error("model.head = mta_clip did not build an MtaClipSegmentorImpl");
  return model;
}

// Copies every parameter and buffer of `to` that `from` has under the same name.
void copy_shared_state(torch::nn::Module& from, torch::nn::Module& to) {
  torch::NoGradGuard no_grad;
  auto source = from.named_parameters();
  auto buffers = from.named_buffers();
  for (auto& item : to.named_parameters())
    if (const torch::Tensor* value = source.find(item.key())) item.value().copy_(*value);
  for (auto& item : to.named_buffers())
    if (const torch::Tensor* value = buffers.find(item.key())) item.value().copy_(*value);
}

TEST(MtaClip, SeparateAttentionWithoutContrastiveIsExactlyMask2Former) {
  torch::manual_seed(1);
  ModelConfig config = tiny_mta();
  config.mta_clip.joint_attention = false;
  config.mta_clip.contrastive = false;
  config.mta_clip.joint_query_norm = false;  // the code's joint LayerNorm would touch the mask queries
  auto mta = build_mta(config, 3);
  auto m2f = build_segmentor(build_options(tiny_mta("mask2former"), 3));
  copy_shared_state(*mta, *m2f);
  mta->eval();
  m2f->eval();
  torch::NoGradGuard no_grad;
  torch::Tensor images = torch::randn({2, 3, 64, 64});
  const torch::Tensor expected = m2f->predict_logits(images);
  EXPECT_TRUE(torch::allclose(mta->predict_logits(images), expected, 1e-5, 1e-6))
      << "separate attention: the text queries must not change the mask queries";

  // Joint attention with the same weights: the mask queries now see the text queries.
  ModelConfig joint = tiny_mta();
  joint.mta_clip.contrastive = false;
  joint.mta_clip.joint_query_norm = false;
  auto mixed = build_mta(joint, 3);
  copy_shared_state(*mta, *mixed);
  mixed->eval();
  EXPECT_GT((mixed->predict_logits(images) - expected).abs().max().item<double>(), 1e-4);

  // Without text queries there is nothing in the decoder but the mask queries.
  ModelConfig no_text = tiny_mta();
  no_text.mta_clip.text_enhanced = false;
  auto plain = build_mta(no_text, 3);
  copy_shared_state(*mta, *plain);
  plain->eval();
  EXPECT_TRUE(torch::allclose(plain->predict_logits(images), expected, 1e-5, 1e-6));

  // The official code's LayerNorm over mask and text queries together changes the mask queries
  // even under separate attention.
  ModelConfig joint_norm = config;
  joint_norm.mta_clip.joint_query_norm = true;
  auto normed = build_mta(joint_norm, 3);
  copy_shared_state(*mta, *normed);
  normed->eval();
  EXPECT_GT((normed->predict_logits(images) - expected).abs().max().item<double>(), 1e-4);
}

TEST(MtaClip, ParametersFollowTheSwitches) {
  torch::manual_seed(2);
  auto names_of = [](const std::shared_ptr<MtaClipSegmentorImpl>& model) {
    std::set<std::string> names;
    for (const auto& item : model->named_parameters()) names.insert(item.key());
    return names;
  };
  auto full = build_mta(tiny_mta(), 3);
  const std::set<std::string> names = names_of(full);
  for (const std::string expected :
       {"backbone.conv1.weight", "decode_head.transformer_decoder.query_feat.weight", "mask_text.text_project.weight",
        "mask_text.text_query_embed.weight", "mask_text.mask_reproject.weight", "mask_text.text_reproject.weight",
        "mask_text.text_gamma", "text_prompts.contexts", "text_encoder.token_embedding.weight",
        "text_encoder.text_projection"})
    EXPECT_EQ(names.count(expected), 1u) << expected;
  // K x (C + 1): the official code's "none" text class (train.py) for sim_queries = "all".
  EXPECT_EQ(full->named_parameters()["mask_text.text_query_embed.weight"].size(0), 2 * 4);
  ModelConfig matched_only = tiny_mta();
  matched_only.mta_clip.sim_queries = "matched";
  EXPECT_EQ(build_mta(matched_only, 3)->named_parameters()["mask_text.text_query_embed.weight"].size(0), 2 * 3);
  // The text encoder is frozen: not in either optimizer group.
  for (const auto& item : full->named_parameters()) {
    if (item.key().rfind("text_encoder.", 0) == 0) {
      EXPECT_FALSE(item.value().requires_grad()) << item.key();
    }
  }

  ModelConfig te_only = tiny_mta();
  te_only.mta_clip.contrastive = false;
  const std::set<std::string> te = names_of(build_mta(te_only, 3));
  EXPECT_EQ(te.count("mask_text.mask_reproject.weight"), 0u);
  EXPECT_EQ(te.count("mask_text.text_project.weight"), 1u);

  ModelConfig neither = tiny_mta();
  neither.mta_clip.contrastive = false;
  neither.mta_clip.text_enhanced = false;
  EXPECT_THROW(build_mta(neither, 3), ConfigError);
  EXPECT_THROW(
      parse_config("[model]\nhead = \"mta_clip\"\n[model.mta_clip]\ntext_enhanced = false\ncontrastive = false\n",
                   "mta.toml"),
      ConfigError);
  EXPECT_THROW(parse_config("[model.mta_clip]\nnegatives = \"allneg\"\n", "mta.toml"), ConfigError);
  Config parsed = parse_config("[model]\nhead = \"mta_clip\"\n", "mta.toml",
                               {"model.mta_clip.prompts=4", "model.mta_clip.negatives=separateneg",
                                "model.mta_clip.joint_attention=false", "model.mta_clip.temperature=0.07"});
  EXPECT_EQ(parsed.model.mta_clip.prompts, 4);
  EXPECT_EQ(parsed.model.mta_clip.negatives, "separateneg");
  EXPECT_FALSE(parsed.model.mta_clip.joint_attention);
  EXPECT_DOUBLE_EQ(parsed.model.mta_clip.temperature, 0.07);
  EXPECT_EQ(parsed.model.mta_clip.context_length, 8);
}

// sim_queries = "matched" (segrun's earlier reading) and "all" (the official code's: every query,
// unmatched ones toward "none" with weight no_object_weight 0.1, sum(w * loss) / sum(w)).
TEST(MtaClip, ContrastiveLossMatchesPytorchForMatchedAndAllQueries) {
  for (const std::string sim : {"matched", "all"})
    for (const std::string negatives : {"mixneg", "separateneg"}) {
      SCOPED_TRACE(sim + " " + negatives);
      torch::manual_seed(3);
      ModelConfig config = tiny_mta();
      config.mta_clip.sim_queries = sim;
      config.mta_clip.negatives = negatives;
      config.mta_clip.temperature = 0.5;
      config.mta_clip.lambda_sim = 1.5;
      auto model = build_mta(config, 3);
      {
        torch::NoGradGuard no_grad;  // a gamma far from its 1e-4 init so the text branch matters
        model->named_parameters()["mask_text.text_gamma"].uniform_(0.2, 0.6);
      }
      const int64_t text_classes = sim == "all" ? 4 : 3;  // + "none"
      const int64_t batch = 2, queries = 8, hidden = 32, text_queries = 2 * text_classes;
      MaskedDecoderOutput out;
      for (int p = 0; p < 3; ++p) {  // index 0 = the unsupervised initial prediction
        out.query_states.push_back(torch::randn({batch, queries, hidden}));
        out.extra_states.push_back(torch::randn({batch, text_queries, hidden}));
      }
      torch::Tensor text =
          torch::randn({2, text_classes, model->named_parameters()["text_encoder.text_projection"].size(1)})
              .requires_grad_(true);
      std::vector<SemanticTargets> targets(2);
      targets[0].classes = torch::tensor({0, 2}, torch::kLong);
      targets[1].classes = torch::tensor({1}, torch::kLong);
      // Prediction 1: image 0 has two matches, image 1 one; prediction 2: image 1 has none.
      const auto match = [](Assignment pairs) {
        return ImageMatch{pairs, torch::tensor(pairs.rows, torch::kLong), torch::tensor(pairs.cols, torch::kLong)};
      };
      std::vector<std::vector<ImageMatch>> matches{{match({{1, 5}, {1, 0}}), match({{3}, {0}})},
                                                   {match({{0, 7}, {0, 1}}), match({})}};
      torch::Tensor loss = model->contrastive_loss(out, 1, text, matches, targets);
      loss.backward();

      c10::Dict<std::string, at::Tensor> dict;
      for (const auto& item : model->named_parameters())
        if (item.key().rfind("mask_text.", 0) == 0 && item.key().find("reproject") != std::string::npos)
          dict.insert("w." + item.key().substr(10), item.value().detach().clone());
      dict.insert("w.text_gamma", model->named_parameters()["mask_text.text_gamma"].detach().clone());
      dict.insert("text", text.detach().clone());
      dict.insert("P", torch::tensor(2));
      for (int p = 0; p < 2; ++p) {
        dict.insert("q" + std::to_string(p), out.query_states[static_cast<size_t>(p) + 1]);
        dict.insert("x" + std::to_string(p), out.extra_states[static_cast<size_t>(p) + 1]);
        for (int b = 0; b < 2; ++b) {
          const Assignment& a = matches[static_cast<size_t>(p)][static_cast<size_t>(b)].pairs;
          if (a.rows.empty()) continue;
          std::vector<int64_t> pairs;
          for (size_t i = 0; i < a.rows.size(); ++i) {
            pairs.push_back(a.rows[i]);
            pairs.push_back(targets[static_cast<size_t>(b)].classes[a.cols[i]].item<int64_t>());
          }
          dict.insert("m" + std::to_string(p) + "_" + std::to_string(b), torch::tensor(pairs).view({-1, 2}));
        }
      }
      dict.insert("tau", torch::tensor(0.5));
      dict.insert("lambda", torch::tensor(1.5));
      dict.insert("separate", torch::tensor(negatives == "separateneg" ? 1 : 0));
      dict.insert("all", torch::tensor(sim == "all" ? 1 : 0));
      dict.insert("none_weight", torch::tensor(config.mask2former.no_object_weight));
      auto ref = test_io::run_tensor_reference("reference_mta_clip.py", dict);
      EXPECT_NEAR(loss.item<double>(), ref.at("loss").item<double>(), 1e-5 * std::abs(ref.at("loss").item<double>()))
          << negatives;
      for (const std::string name :
           {"mask_reproject.weight", "text_reproject.weight", "text_reproject_norm.weight", "text_gamma"}) {
        torch::Tensor grad = model->named_parameters()["mask_text." + name].grad();
        ASSERT_TRUE(grad.defined()) << name;
        test_io::expect_close(grad, ref.at("grad." + name).to(torch::kFloat32), negatives + " grad " + name, 1e-3);
      }
      test_io::expect_close(text.grad(), ref.at("grad.text").to(torch::kFloat32), negatives + " grad text", 1e-3);
    }
}

TEST(MtaClip, TrainingStepGradientsAndEvalTextCache) {
  torch::manual_seed(4);
  auto model = build_mta(tiny_mta(), 3);
  model->train();
  torch::Tensor images = torch::randn({2, 3, 64, 64});
  torch::Tensor labels = torch::zeros({2, 64, 64}, torch::kLong);
  labels.narrow(2, 32, 32).fill_(2);
  labels[1].narrow(0, 0, 8).fill_(255);
  LossTerms terms = model->loss(images, labels);
  std::vector<std::string> parts;
  double sum = 0;
  for (const auto& [name, value] : terms.parts) {
    parts.push_back(name);
    sum += value.item<double>();
  }
  EXPECT_EQ(parts, (std::vector<std::string>{"loss_cls", "loss_mask", "loss_dice", "loss_sim"}));
  EXPECT_NEAR(terms.total.item<double>(), sum, 1e-4 * sum);
  EXPECT_GT(terms.parts.back().second.item<double>(), 0.0);
  terms.total.backward();
  for (const auto& item : model->named_parameters()) {
    if (item.key().rfind("text_encoder.", 0) == 0) {
      EXPECT_FALSE(item.value().grad().defined()) << item.key();
    } else if (item.key().rfind("mask_text.", 0) == 0 || item.key() == "text_prompts.contexts") {
      ASSERT_TRUE(item.value().grad().defined()) << item.key();
      EXPECT_GT(item.value().grad().abs().sum().item<double>(), 0.0) << item.key();
    }
  }

  // Eval: the prompt embeddings are computed once, then follow in-place changes of the contexts...
  model->eval();
  torch::NoGradGuard no_grad;
  torch::Tensor first = model->prompt_text_embeddings();
  EXPECT_TRUE(model->prompt_text_embeddings().is_same(first));
  const torch::Tensor before = model->predict_logits(images);
  torch::Tensor contexts = model->named_parameters()["text_prompts.contexts"];
  contexts.add_(torch::randn_like(contexts));  // (a constant shift would vanish in LayerNorm)
  torch::Tensor second = model->prompt_text_embeddings();
  EXPECT_FALSE(second.is_same(first));
  EXPECT_GT((second - first).abs().max().item<double>(), 1e-4);
  EXPECT_GT((model->predict_logits(images) - before).abs().max().item<double>(), 0.0);
  // ... and of the frozen encoder's weights (a checkpoint loaded in eval mode copies into them).
  EXPECT_TRUE(model->prompt_text_embeddings().is_same(second));
  torch::Tensor projection = model->named_parameters()["text_encoder.text_projection"];
  projection.copy_(torch::randn_like(projection));
  torch::Tensor third = model->prompt_text_embeddings();
  EXPECT_FALSE(third.is_same(second));
  EXPECT_GT((third - second).abs().max().item<double>(), 1e-4);
  // The frozen encoder is part of the state: a checkpoint restores the text side on its own.
  std::set<std::string> state;
  for (const auto& item : model->named_parameters()) state.insert(item.key());
  EXPECT_EQ(state.count("text_encoder.transformer.resblocks.0.attn.in_proj_weight"), 1u);
}

TEST(MtaClip, ABatchWithoutLabelsStillGivesEveryTrainableParameterAGradient) {
  // All pixels ignored: no target masks, no matches. Every rank must still produce the same set of
  // gradients (zeros where nothing was matched) for the bucketed all-reduce.
  torch::manual_seed(6);
  auto model = build_mta(tiny_mta(), 3);
  model->train();
  LossTerms terms = model->loss(torch::randn({2, 3, 64, 64}), torch::full({2, 64, 64}, 255, torch::kLong));
  EXPECT_EQ(terms.parts.back().first, "loss_sim");
  EXPECT_GT(terms.parts.back().second.item<double>(), 0.0);  // "all": every query toward "none"
  terms.total.backward();
  for (const auto& item : model->named_parameters()) {
    if (!item.value().requires_grad()) continue;
    EXPECT_TRUE(item.value().grad().defined()) << item.key();
  }
  ModelConfig matched_only = tiny_mta();
  matched_only.mta_clip.sim_queries = "matched";
  auto matched_model = build_mta(matched_only, 3);
  matched_model->train();
  LossTerms none = matched_model->loss(torch::randn({2, 3, 64, 64}), torch::full({2, 64, 64}, 255, torch::kLong));
  EXPECT_EQ(none.parts.back().second.item<double>(), 0.0);  // "matched": nothing to supervise
  none.total.backward();
  for (const auto& item : matched_model->named_parameters()) {
    if (!item.value().requires_grad()) continue;
    EXPECT_TRUE(item.value().grad().defined()) << item.key();
  }
}

TEST(MtaClip, ShortTrainingRunLowersEveryLossPart) {
  torch::manual_seed(5);
  auto model = build_mta(tiny_mta(), 3);
  model->train();
  std::vector<torch::Tensor> trainable;
  for (const auto& p : model->parameters())
    if (p.requires_grad()) trainable.push_back(p);
  torch::optim::AdamW optimizer(trainable, torch::optim::AdamWOptions(1e-3).weight_decay(0.05));
  std::vector<std::vector<double>> parts(4);
  const auto start = std::chrono::steady_clock::now();
  for (int step = 0; step < 40; ++step) {
    auto [images, labels] = test_fixtures::colour_split_batch(4, 64);
    optimizer.zero_grad();
    LossTerms loss = model->loss(images, labels);
    ASSERT_TRUE(std::isfinite(loss.total.item<double>())) << "step " << step;
    loss.total.backward();
    torch::nn::utils::clip_grad_norm_(trainable, 1.0);
    optimizer.step();
    for (size_t i = 0; i < 4; ++i) parts[i].push_back(loss.parts[i].second.item<double>());
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const char* names[] = {"cls", "mask", "dice", "sim"};
  for (size_t i = 0; i < 4; ++i) {
    const double first = std::accumulate(parts[i].begin(), parts[i].begin() + 5, 0.0) / 5;
    const double last = std::accumulate(parts[i].end() - 5, parts[i].end(), 0.0) / 5;
    std::printf("[mta_clip tiny] loss_%s %.3f -> %.3f\n", names[i], first, last);
    EXPECT_LT(last, first) << "loss_" << names[i];
  }
  std::printf("[mta_clip tiny] 40 steps in %.1f s\n", seconds);
}

}  // namespace
}  // namespace segrun::models
