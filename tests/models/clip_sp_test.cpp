// CLIP-SP head tests: the whole eval-mode forward (multi-label logits, top-k labels, SRM attention,
// segmentation logits) and the loss parts against an independent PyTorch reference
// (reference_clip_sp.py under /usr/bin/python3, same weights), ASL value and gradient, and the
// selection/batch-drop/auxiliary-target rules against hand-computed values.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "core/error.h"
#include "models/clip/clip_checkpoint.h"
#include "models/clip/clip_resnet.h"
#include "models/heads/clip_sp_segmentor.h"
#include "models/clip/clip_text.h"
#include "models/heads/label_decoders.h"
#include "models/losses/seg_losses.h"
#include "models/heads/scene_tokens.h"
#include "models/segmentor.h"
#include "models/clip/text_embeddings.h"
#include "models/clip/tokenizer.h"
#include "torch_test_io.h"

namespace segrun::models {
namespace {

constexpr int kClasses = 12;

BuildOptions tiny_options(const std::string& decoder = "dual_graphformer") {
  BuildOptions options;
  options.config.backbone = "clip_rn50";
  options.config.width = 8;  // embed 128, x4 256 channels
  options.config.head = "clip_sp";
  options.config.norm = "bn";
  options.config.fpn_channels = 16;
  options.config.clip_sp.ml_decoder = decoder;
  options.config.clip_sp.top_k = 5;
  options.config.clip_sp.graph_blocks = 2;
  options.config.clip_sp.graph_nodes = 6;
  options.config.clip_sp.attn_dim = 32;
  options.config.clip_sp.heads = 4;
  options.config.clip_sp.srm_dim = 16;
  options.config.text.width = 32;
  options.config.text.layers = 1;
  options.config.text.heads = 2;
  options.num_classes = kClasses;
  for (int i = 0; i < kClasses; ++i) options.class_names.push_back("thing" + std::to_string(i));
  torch::manual_seed(7);
  torch::Tensor counts = torch::randint(0, 20, {kClasses, kClasses}, torch::kInt64);
  counts = counts + counts.t();
  options.cooccurrence.assign(counts.data_ptr<int64_t>(), counts.data_ptr<int64_t>() + counts.numel());
  return options;
}

void expect_close(const torch::Tensor& actual, const torch::Tensor& expected, const std::string& what,
                  double tolerance = 1e-4) {
  ASSERT_EQ(actual.sizes(), expected.sizes()) << what;
  const double scale = std::max(expected.abs().max().item<double>(), 1e-6);
  const double max_err = (actual.to(torch::kFloat64) - expected.to(torch::kFloat64)).abs().max().item<double>();
  EXPECT_LE(max_err, tolerance * scale) << what << ": max |diff| " << max_err << " vs max |ref| " << scale;
}

// Both readings of the Scene Refinement Module: the paper's Eq. 4 (x4 * T_g) with the cited
// non-local block's output transform W_z (the defaults), and segrun's earlier sigmoid gate without.
TEST(ClipSp, MatchesPytorchReference) {
  for (const bool paper_srm : {true, false}) {
    SCOPED_TRACE(paper_srm ? "Eq. 4 gate + W_z" : "sigmoid gate, no W_z");
    BuildOptions options = tiny_options();
    options.config.clip_sp.srm_gate = paper_srm ? "linear" : "sigmoid";
    options.config.clip_sp.srm_output_proj = paper_srm;
    auto model = std::dynamic_pointer_cast<ClipSpSegmentorImpl>(build_segmentor(options));
    ASSERT_TRUE(model);
    test_io::randomize_norms(*model);
    model->eval();
    torch::manual_seed(11);
    torch::Tensor images = torch::randn({2, 3, 64, 96});  // x4 grid 2 x 3: 7 image tokens
    ClipSpOutputs out;
    {
      torch::NoGradGuard no_grad;
      out = model->run(images);
    }
    ASSERT_EQ(out.label_logits.sizes(), torch::IntArrayRef({2, kClasses}));
    ASSERT_EQ(out.selected.sizes(), torch::IntArrayRef({2, 5}));
    ASSERT_EQ(out.attn_logits.sizes(), torch::IntArrayRef({2, 6, 5}));
    ASSERT_EQ(out.seg_logits.sizes(), torch::IntArrayRef({2, kClasses, 16, 24}));
    // Labels: the upper half uses classes the model selected (so the auxiliary targets are not all
    // ignored), the lower half classes it did not, with an ignored stripe.
    torch::Tensor labels = torch::empty({2, 64, 96}, torch::kLong);
    for (int64_t b = 0; b < 2; ++b) {
      torch::Tensor chosen = out.selected[b];
      labels[b].slice(0, 0, 32).copy_(chosen.index({torch::randint(0, 5, {32, 96}, torch::kLong)}));
      labels[b].slice(0, 32).random_(0, kClasses);
      labels[b].slice(1, 40, 48).fill_(255);
    }

    c10::Dict<std::string, at::Tensor> dict;
    for (const auto& item : model->named_parameters()) dict.insert("seg." + item.key(), item.value().detach().clone());
    for (const auto& item : model->named_buffers()) dict.insert("seg." + item.key(), item.value().detach().clone());
    dict.insert("input", images);
    dict.insert("labels", labels);
    const auto& sp = options.config.clip_sp;
    dict.insert("cfg.width", torch::tensor(options.config.width));
    dict.insert("cfg.num_classes", torch::tensor(kClasses));
    dict.insert("cfg.top_k", torch::tensor(sp.top_k));
    dict.insert("cfg.blocks", torch::tensor(sp.graph_blocks));
    dict.insert("cfg.nodes", torch::tensor(sp.graph_nodes));
    dict.insert("cfg.attn_dim", torch::tensor(sp.attn_dim));
    dict.insert("cfg.heads", torch::tensor(sp.heads));
    dict.insert("cfg.srm_dim", torch::tensor(sp.srm_dim));
    dict.insert("cfg.srm_sigmoid", torch::tensor(sp.srm_gate == "sigmoid" ? 1 : 0));
    dict.insert("cfg.srm_output_proj", torch::tensor(sp.srm_output_proj ? 1 : 0));
    dict.insert("cfg.fpn_channels", torch::tensor(options.config.fpn_channels));
    dict.insert("cfg.lambda_ml", torch::tensor(sp.lambda_ml));
    dict.insert("cfg.lambda_aux", torch::tensor(sp.lambda_aux));
    torch::Tensor asl_logits = torch::randn({3, 7}) * 3;
    torch::Tensor asl_targets = (torch::rand({3, 7}) < 0.3).to(torch::kFloat32);
    dict.insert("asl.logits", asl_logits);
    dict.insert("asl.targets", asl_targets);
    auto ref = test_io::run_tensor_reference("reference_clip_sp.py", dict);

    expect_close(out.label_logits, ref.at("label_logits"), "multi-label logits");
    EXPECT_TRUE(torch::equal(out.selected, ref.at("selected"))) << out.selected << ref.at("selected");
    expect_close(out.attn_logits, ref.at("attn_logits"), "SRM attention logits");
    expect_close(out.seg_logits, ref.at("seg_logits"), "segmentation logits");

    EXPECT_TRUE(torch::equal(present_classes(labels, kClasses), ref.at("present")));
    torch::Tensor aux = scene_aux_targets(labels, out.selected, 2, 3).reshape({2, 6});
    EXPECT_TRUE(torch::equal(aux, ref.at("aux_targets"))) << aux << ref.at("aux_targets");
    EXPECT_GT(aux.ne(255).sum().item<int64_t>(), 0);

    LossTerms loss;
    {
      torch::NoGradGuard no_grad;
      loss = model->loss(images, labels);
    }
    ASSERT_EQ(loss.parts.size(), 3u);
    for (const auto& [name, value] : loss.parts) {
      const double expected = ref.at(name).item<double>();
      EXPECT_NEAR(value.item<double>(), expected, 1e-4 * std::abs(expected) + 1e-6) << name;
    }
    EXPECT_NEAR(
        loss.total.item<double>(),
        ref.at("loss_seg").item<double>() + ref.at("loss_ml").item<double>() + ref.at("loss_aux").item<double>(), 1e-4);

    torch::Tensor x = asl_logits.clone().requires_grad_(true);
    torch::Tensor value = asymmetric_loss(x, asl_targets);
    value.backward();
    EXPECT_NEAR(value.item<double>(), ref.at("asl.value").item<double>(), 1e-6);
    expect_close(x.grad(), ref.at("asl.grad"), "ASL gradient", 1e-5);
  }
}

TEST(ClipSp, BatchDropScheduleDecaysToTheFloor) {
  BatchDropOptions paper;  // 0.9 / 0.1 / 0.9999
  EXPECT_DOUBLE_EQ(batch_drop_ratio(paper, 0), 0.9);
  EXPECT_NEAR(batch_drop_ratio(paper, 10000), 0.9 * std::pow(0.9999, 10000), 1e-12);  // 0.3311
  EXPECT_NEAR(batch_drop_ratio(paper, 10000), 0.33109, 1e-4);
  EXPECT_DOUBLE_EQ(batch_drop_ratio(paper, 30000), 0.1);  // 0.9 * 0.0498 < 0.1
  EXPECT_DOUBLE_EQ(batch_drop_ratio(BatchDropOptions{0.0, 0.0, 0.9999}, 5), 0.0);
  EXPECT_DOUBLE_EQ(batch_drop_ratio(BatchDropOptions{1.0, 0.0, 0.5}, 3), 0.125);
}

TEST(ClipSp, SelectionTakesTopKOrGroundTruthWithBatchDrop) {
  torch::Tensor probs = torch::tensor(
      {{0.9f, 0.1f, 0.8f, 0.2f, 0.7f, 0.3f, 0.6f, 0.05f}, {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f, 0.7f, 0.8f}});
  torch::Tensor top = select_scene_labels(probs, 3);
  EXPECT_TRUE(torch::equal(top, torch::tensor({{0, 2, 4}, {7, 6, 5}}, torch::kLong))) << top;

  // Image 0: 2 present classes (1, 7) -> both plus the best absent one (0), by probability.
  // Image 1: 4 present classes (0, 1, 2, 3) >= k = 3 -> three of them, by probability.
  torch::Tensor present = torch::zeros({2, 8});
  present[0][1] = 1;
  present[0][7] = 1;
  present[1].slice(0, 0, 4).fill_(1);
  torch::manual_seed(3);
  torch::Tensor dropped = select_scene_labels(probs, 3, present, 1.0);
  EXPECT_TRUE(torch::equal(dropped[0], torch::tensor({0, 1, 7}, torch::kLong))) << dropped;
  for (int64_t i = 0; i < 3; ++i) EXPECT_LT(dropped[1][i].item<int64_t>(), 4) << dropped;
  EXPECT_GT(dropped[1][0].item<int64_t>(), dropped[1][1].item<int64_t>());  // descending probability
  EXPECT_GT(dropped[1][1].item<int64_t>(), dropped[1][2].item<int64_t>());
  // Over many draws the 4 present classes of image 1 are chosen uniformly (3/4 each).
  torch::Tensor counts = torch::zeros({8});
  for (int trial = 0; trial < 400; ++trial) {
    torch::Tensor sel = select_scene_labels(probs, 3, present, 1.0)[1];
    counts.index_add_(0, sel, torch::ones({3}));
  }
  for (int64_t c = 0; c < 4; ++c) EXPECT_NEAR(counts[c].item<double>() / 400, 0.75, 0.08) << counts;
  EXPECT_EQ(counts.slice(0, 4).sum().item<double>(), 0.0);
  // Ratio 0.5: about half the images of a large batch follow the ground truth.
  torch::Tensor many = probs.repeat({200, 1});
  torch::Tensor many_present = present.repeat({200, 1});
  torch::Tensor sel = select_scene_labels(many, 3, many_present, 0.5);
  torch::Tensor top_many = select_scene_labels(many, 3);
  const double changed = (sel != top_many).any(1).to(torch::kFloat64).mean().item<double>();
  EXPECT_NEAR(changed, 0.5, 0.07);

  EXPECT_THROW(select_scene_labels(probs, 9), ConfigError);
}

// Slot-wise batch drop (mode "slots"), computed by hand: a slot whose draw u[b, j] < r takes the
// ground-truth class at index floor(u[b, k + j] * n) of the n ground-truth classes not yet among
// the image's labels (ascending class order); other slots keep their top-k label.
TEST(ClipSp, SlotwiseBatchDropReplacesSlotsWithGroundTruthClasses) {
  torch::Tensor probs = torch::tensor(
      {{0.9f, 0.1f, 0.8f, 0.2f, 0.7f, 0.3f, 0.6f, 0.05f}, {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f, 0.7f, 0.8f}});
  torch::Tensor present = torch::zeros({2, 8});
  present[0][1] = 1;
  present[0][7] = 1;
  present[1].slice(0, 0, 4).fill_(1);
  // Image 0, top-3 {0, 2, 4}: slot 0 drops (0.2 < 0.5), candidates {1, 7}, floor(0.6 * 2) = 1 -> 7;
  // slot 1 stays (0.9); slot 2 drops (0.1), candidates {1}, -> 1.
  // Image 1, top-3 {7, 6, 5}: every slot drops; candidates {0,1,2,3} -> 0, then {1,2,3} with
  // floor(0.5 * 3) = 1 -> 2, then {1, 3} with floor(0.99 * 2) = 1 -> 3.
  torch::Tensor draws = torch::tensor({{0.2, 0.9, 0.1, 0.6, 0.3, 0.99}, {0.4, 0.4, 0.4, 0.0, 0.5, 0.99}});
  SceneSelection slots = replace_scene_slots(probs, 3, present, 0.5, draws);
  EXPECT_TRUE(torch::equal(slots.labels, torch::tensor({{7, 2, 1}, {0, 2, 3}}, torch::kLong))) << slots.labels;
  EXPECT_TRUE(torch::equal(slots.from_ground_truth, torch::tensor({{true, false, true}, {true, true, true}})))
      << slots.from_ground_truth;

  // Ratio 0 keeps the top-k; a ground truth already inside the top-k leaves nothing to place.
  SceneSelection kept = replace_scene_slots(probs, 3, present, 0.0, draws);
  EXPECT_TRUE(torch::equal(kept.labels, select_scene_labels(probs, 3)));
  EXPECT_FALSE(kept.from_ground_truth.any().item<bool>());
  torch::Tensor inside = torch::zeros({2, 8});
  inside[0][0] = inside[0][2] = inside[1][7] = 1;
  SceneSelection nothing = replace_scene_slots(probs, 3, inside, 1.0, torch::zeros({2, 6}));
  EXPECT_TRUE(torch::equal(nothing.labels, select_scene_labels(probs, 3)));
  EXPECT_FALSE(nothing.from_ground_truth.any().item<bool>());

  EXPECT_THROW(replace_scene_slots(probs, 3, present, 0.5, torch::zeros({2, 3})), ModelError);
}

TEST(ClipSp, AuxTargetsPointAtTheSlotOfEachCellsClass) {
  // 4 x 4 labels downsampled to 2 x 2 by nearest (rows/cols 0 and 2).
  torch::Tensor labels = torch::tensor({{{3, 1, 5, 5}, {1, 1, 5, 5}, {255, 0, 2, 2}, {7, 7, 2, 2}}}, torch::kLong);
  torch::Tensor selected = torch::tensor({{5, 3, 2}}, torch::kLong);
  torch::Tensor targets = scene_aux_targets(labels, selected, 2, 2);
  EXPECT_TRUE(torch::equal(targets, torch::tensor({{{1, 0}, {255, 2}}}, torch::kLong))) << targets;
  torch::Tensor present = present_classes(labels, 8);
  EXPECT_TRUE(torch::equal(present, torch::tensor({{1, 1, 1, 1, 0, 1, 0, 1}}, torch::kFloat32)));
  EXPECT_THROW(present_classes(torch::full({1, 2, 2}, 9, torch::kLong), 8), DataError);
}

TEST(ClipSp, CooccurrenceAdjacencyIsRowNormalized) {
  // Classes 0 and 1 co-occur in 2 images; class 0 alone in 2 more; class 2 never occurs.
  std::vector<int64_t> counts{4, 2, 0, 2, 2, 0, 0, 0, 0};
  torch::Tensor a = cooccurrence_adjacency(counts, 3);
  torch::Tensor expected = torch::tensor({{4.f / 6, 2.f / 6, 0.f}, {0.5f, 0.5f, 0.f}, {0.f, 0.f, 1.f}});
  EXPECT_TRUE(torch::allclose(a, expected)) << a;
  EXPECT_TRUE(torch::equal(cooccurrence_adjacency({}, 2), torch::eye(2)));
}

TEST(ClipSp, TopKLargerThanTheClassesIsAConfigError) {
  BuildOptions options = tiny_options();
  options.config.clip_sp.top_k = 13;
  try {
    build_segmentor(options);
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("model.clip_sp.top_k: 13 exceeds the 12 classes"), std::string::npos)
        << e.what();
  }
}

TEST(ClipSp, MlpDecoderTrainsEveryBranch) {
  for (const std::string decoder : {"mlp", "dual_graphformer"}) {
    BuildOptions options = tiny_options(decoder);
    auto model = build_segmentor(options);
    model->train();
    model->set_iteration(0);  // batch drop ratio 0.9
    torch::manual_seed(5);
    torch::Tensor images = torch::randn({2, 3, 64, 64});
    torch::Tensor labels = torch::randint(0, 4, {2, 64, 64}, torch::kLong);
    LossTerms loss = model->loss(images, labels);
    ASSERT_TRUE(std::isfinite(loss.total.item<double>())) << decoder;
    loss.total.backward();
    for (const auto& item : model->named_parameters()) {
      if (!item.value().requires_grad()) continue;
      ASSERT_TRUE(item.value().grad().defined()) << decoder << ": no gradient for " << item.key();
    }
    EXPECT_EQ(model->label_scores(images).sizes(), torch::IntArrayRef({2, kClasses}));
    // The text encoder is not part of the model: its embeddings are a buffer.
    for (const auto& item : model->named_parameters()) {
      for (const char* text_part : {"token_embedding", "resblocks", "ln_final", "text_projection"})
        EXPECT_EQ(item.key().find(text_part), std::string::npos) << item.key();
    }
    EXPECT_EQ(model->named_buffers()["text_embeddings"].sizes(), torch::IntArrayRef({kClasses, 128}));
  }
}

TEST(ClipSp, PretrainedArchiveFillsBothTowers) {
  // One OpenAI-like archive gives the visual tower (attention pooling included) and the text
  // encoder whose class embeddings become the `text_embeddings` buffer.
  const std::string archive = test_io::temp_path("clip_full");
  test_io::run_reference("make_clip_full_archive.py", {archive, "8", "32", "2", "1"});
  BuildOptions options = tiny_options();
  options.config.pretrained = archive;
  auto model = build_segmentor(options);

  ClipResNetOptions visual_options;
  visual_options.width = 8;
  visual_options.norm = make_norm_factory("bn", nullptr);
  ClipResNet visual(visual_options);
  WeightImportOptions weights;
  weights.path = archive;
  weights.prefix = "visual.";
  import_torchscript_weights(weights, *visual);
  auto model_params = model->named_parameters();
  for (const auto& item : visual->named_parameters()) {
    ASSERT_TRUE(model_params.contains("backbone." + item.key())) << item.key();
    EXPECT_TRUE(torch::equal(model_params["backbone." + item.key()], item.value())) << item.key();
  }

  ClipTextOptions text = clip_text_options_for("clip_rn50");
  text.width = 32;
  text.heads = 2;
  text.layers = 1;
  text.embed_dim = 128;
  ClipTextEncoder encoder(text);
  import_clip_text_weights(archive, *encoder);
  TextEmbeddings embeddings(encoder, std::make_shared<const ClipTokenizer>());
  torch::Tensor expected = embeddings.get(options.class_names);
  torch::Tensor actual = model->named_buffers()["text_embeddings"];
  EXPECT_TRUE(torch::allclose(actual, expected, 1e-5, 1e-6));
  // Different class names give different rows (the text encoder is really used).
  EXPECT_LT(torch::cosine_similarity(actual[0], actual[1], 0).item<double>(), 0.999);
  std::remove(archive.c_str());
}

}  // namespace
}  // namespace segrun::models
