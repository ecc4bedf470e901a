// Tests of the Mask2Former head: the Hungarian solver against scipy's linear_sum_assignment,
// deformable attention (core and module), point losses / costs, point_sample and the sine
// positional encoding against an independent PyTorch reference (tests/models/
// reference_mask2former.py under /usr/bin/python3), importance sampling, targets, semantic
// inference and the criterion against hand-computed values, the segmentor's shapes, parameter
// split and config wiring, and a short training run whose loss decreases.
#include <gtest/gtest.h>

#include <memory>
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/error.h"
#include "dist/communicator.h"
#include "dist/inprocess_communicator.h"
#include "engine/precision.h"
#include "models/losses/hungarian_matcher.h"
#include "models/losses/mask2former_criterion.h"
#include "models/heads/mask2former_segmentor.h"
#include "tiny_mask2former.h"
#include "models/heads/msdeform_pixel_decoder.h"
#include "models/segmentor.h"
#include "tests/models/torch_test_io.h"

namespace segrun::models {
namespace {

using test_io::expect_close;

// ---- Hungarian solver ----------------------------------------------------------------------------

struct CostCase {
  int64_t rows, cols;
  bool ties;  // small integer costs: many optimal assignments
};

TEST(Mask2FormerHungarian, MatchesScipyOnRandomAndTiedRectangularMatrices) {
  const std::vector<CostCase> cases{{1, 1, false},   {5, 5, false},    {7, 3, false},    {3, 9, false},
                                    {20, 20, false}, {100, 12, false}, {12, 100, false}, {6, 6, true},
                                    {10, 4, true},   {4, 10, true},    {30, 30, true},   {8, 8, true}};
  std::mt19937 rng(11);
  std::uniform_real_distribution<double> uniform(-3.0, 5.0);
  std::uniform_int_distribution<int> small(0, 2);
  std::vector<std::vector<double>> costs;
  c10::Dict<std::string, at::Tensor> input;
  for (size_t i = 0; i < cases.size(); ++i) {
    std::vector<double> cost(static_cast<size_t>(cases[i].rows * cases[i].cols));
    for (auto& c : cost) c = cases[i].ties ? small(rng) : uniform(rng);
    if (i + 1 == cases.size()) std::fill(cost.begin(), cost.end(), 1.0);  // all equal
    input.insert("cost_" + std::to_string(i),
                 torch::tensor(cost, torch::kFloat64).view({cases[i].rows, cases[i].cols}));
    costs.push_back(cost);
  }
  auto ref = test_io::run_tensor_reference("reference_mask2former.py", input);
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto [rows, cols, ties] = cases[i];
    SCOPED_TRACE("case " + std::to_string(i) + ": " + std::to_string(rows) + "x" + std::to_string(cols));
    Assignment a = linear_sum_assignment(costs[i], rows, cols);
    ASSERT_EQ(static_cast<int64_t>(a.rows.size()), std::min(rows, cols));
    ASSERT_EQ(a.rows.size(), a.cols.size());
    std::set<int64_t> used_cols(a.cols.begin(), a.cols.end());
    EXPECT_EQ(used_cols.size(), a.cols.size());
    EXPECT_TRUE(std::is_sorted(a.rows.begin(), a.rows.end()));
    EXPECT_EQ(std::set<int64_t>(a.rows.begin(), a.rows.end()).size(), a.rows.size());
    double total = 0;
    for (size_t k = 0; k < a.rows.size(); ++k) total += costs[i][static_cast<size_t>(a.rows[k] * cols + a.cols[k])];
    const double expected = ref["lsa_total_" + std::to_string(i)].item<double>();
    EXPECT_NEAR(total, expected, 1e-9 * (1.0 + std::abs(expected)));
    if (!ties) {  // continuous random costs: the optimum is unique
      EXPECT_TRUE(torch::equal(torch::tensor(a.rows, torch::kLong), ref["lsa_rows_" + std::to_string(i)]));
      EXPECT_TRUE(torch::equal(torch::tensor(a.cols, torch::kLong), ref["lsa_cols_" + std::to_string(i)]));
    }
  }
}

TEST(Mask2FormerHungarian, HandExampleEmptyAndNonFinite) {
  // Greedy would take (0,0)=1 then (1,1)=8; the optimum is (0,1)+(1,0) = 2 + 3.
  Assignment a = linear_sum_assignment({1, 2, 3, 8}, 2, 2);
  EXPECT_EQ(a.rows, (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(a.cols, (std::vector<int64_t>{1, 0}));
  EXPECT_TRUE(linear_sum_assignment({}, 0, 4).rows.empty());
  EXPECT_TRUE(linear_sum_assignment({}, 3, 0).rows.empty());
  EXPECT_THROW(linear_sum_assignment({1, std::nan(""), 3, 4}, 2, 2), ModelError);
  EXPECT_THROW(linear_sum_assignment({1, 2, 3}, 2, 2), ModelError);
}

// ---- deformable attention ------------------------------------------------------------------------

TEST(Mask2FormerDeformAttn, CoreSamplingMatchesPytorchReference) {
  torch::manual_seed(3);
  const std::vector<std::pair<int64_t, int64_t>> shapes{{4, 6}, {2, 3}, {1, 2}};
  const int64_t b = 2, m = 2, d = 4, lq = 5, l = 3, p = 3, s = 24 + 6 + 2;
  torch::Tensor value = torch::randn({b, s, m, d});
  torch::Tensor locations = torch::rand({b, lq, m, l, p, 2}) * 1.2 - 0.1;  // some outside [0, 1]
  torch::Tensor weights = torch::softmax(torch::randn({b, lq, m, l * p}), -1).view({b, lq, m, l, p});
  c10::Dict<std::string, at::Tensor> input;
  input.insert("msda_value", value);
  input.insert("msda_shapes", torch::tensor({4, 6, 2, 3, 1, 2}, torch::kLong).view({3, 2}));
  input.insert("msda_locations", locations);
  input.insert("msda_weights", weights);
  auto ref = test_io::run_tensor_reference("reference_mask2former.py", input);
  expect_close(ms_deform_attn_sample(value, shapes, locations, weights), ref["msda_out"], "ms_deform_attn core", 1e-5);
}

TEST(Mask2FormerDeformAttn, ModuleMatchesPytorchReferenceAndInitIsDirectional) {
  torch::manual_seed(4);
  MSDeformAttnOptions options;
  options.dim = 16;
  options.levels = 3;
  options.heads = 4;
  options.points = 2;
  MSDeformAttn attn(options);
  {
    // Deformable DETR init: offsets bias = per-head unit direction x (point + 1), weights zero.
    auto params = attn->named_parameters();
    torch::Tensor bias = params["sampling_offsets.bias"].view({4, 3, 2, 2});
    EXPECT_NEAR(bias[0][0][0][0].item<double>(), 1.0, 1e-6);  // head 0: direction (1, 0)
    EXPECT_NEAR(bias[0][0][1][0].item<double>(), 2.0, 1e-6);  // second point: x 2
    EXPECT_NEAR(bias[1][2][0][1].item<double>(), 1.0, 1e-6);  // head 1: (cos 90, sin 90) -> (0, 1)
    EXPECT_NEAR(bias[1][2][0][0].item<double>(), 0.0, 1e-6);
    EXPECT_EQ(params["attention_weights.weight"].abs().sum().item<double>(), 0.0);
    torch::NoGradGuard no_grad;
    for (auto& param : attn->parameters()) param.normal_(0.0, 0.3);  // a sharper check than the init
  }
  const std::vector<std::pair<int64_t, int64_t>> shapes{{4, 4}, {2, 2}, {1, 1}};
  const int64_t b = 2, lq = 7, s = 16 + 4 + 1;
  torch::Tensor query = torch::randn({b, lq, 16}), input = torch::randn({b, s, 16});
  torch::Tensor reference = torch::rand({b, lq, 3, 2});
  auto params = attn->named_parameters();
  c10::Dict<std::string, at::Tensor> dict;
  dict.insert("attn_query", query);
  dict.insert("attn_reference", reference);
  dict.insert("attn_input", input);
  dict.insert("attn_shapes", torch::tensor({4, 4, 2, 2, 1, 1}, torch::kLong).view({3, 2}));
  dict.insert("attn_mlp", torch::tensor({4, 3, 2}, torch::kLong));
  for (const std::string name : {"value", "offset", "weight", "out"}) {
    const std::string module = name == "value"    ? "value_proj"
                               : name == "offset" ? "sampling_offsets"
                               : name == "weight" ? "attention_weights"
                                                  : "output_proj";
    dict.insert("attn_" + name + "_w", params[module + ".weight"].detach().clone());
    dict.insert("attn_" + name + "_b", params[module + ".bias"].detach().clone());
  }
  auto ref = test_io::run_tensor_reference("reference_mask2former.py", dict);
  torch::NoGradGuard no_grad;
  expect_close(attn->forward(query, reference, input, shapes), ref["attn_out"], "MSDeformAttn forward", 1e-5);
}

TEST(Mask2FormerDeformAttn, ReferencePointsAreCellCentres) {
  torch::Tensor points = deform_reference_points({{2, 4}, {1, 1}}, torch::kFloat32);
  ASSERT_EQ(points.sizes(), (std::vector<int64_t>{9, 2}));
  EXPECT_FLOAT_EQ(points[0][0].item<float>(), 0.125f);  // (x, y) of row 0, col 0 of a 2x4 grid
  EXPECT_FLOAT_EQ(points[0][1].item<float>(), 0.25f);
  EXPECT_FLOAT_EQ(points[7][0].item<float>(), 0.875f);  // row 1, col 3
  EXPECT_FLOAT_EQ(points[7][1].item<float>(), 0.75f);
  EXPECT_FLOAT_EQ(points[8][0].item<float>(), 0.5f);  // the 1x1 level
}

TEST(Mask2FormerPixelDecoder, MatchesPytorchReference) {
  torch::manual_seed(14);
  PixelDecoderOptions options;
  options.in_channels = {16, 24, 32, 40};
  options.conv_dim = 32;
  options.mask_dim = 24;
  options.encoder_layers = 2;
  options.heads = 4;
  options.points = 2;
  options.ffn_dim = 48;
  options.groups = 8;
  MSDeformPixelDecoder decoder(options);
  decoder->eval();
  {
    torch::NoGradGuard no_grad;  // perturb every tensor (norm affines and zero-initialized ones too)
    for (auto& param : decoder->parameters()) param.add_(torch::randn_like(param) * 0.2);
  }
  const int64_t b = 2;
  std::vector<torch::Tensor> stages{torch::randn({b, 16, 16, 24}), torch::randn({b, 24, 8, 12}),
                                    torch::randn({b, 32, 4, 6}), torch::randn({b, 40, 2, 3})};
  c10::Dict<std::string, at::Tensor> input;
  for (const auto& item : decoder->named_parameters()) input.insert("pix." + item.key(), item.value().detach().clone());
  input.insert("pix_cfg", torch::tensor({32, 4, 2, 2, 8}, torch::kLong));
  for (size_t i = 0; i < 4; ++i) input.insert("pix_c" + std::to_string(i + 1), stages[i]);
  auto ref = test_io::run_tensor_reference("reference_mask2former.py", input);
  torch::NoGradGuard no_grad;
  PixelDecoderOutput out = decoder->forward(stages);
  ASSERT_EQ(out.multi_scale.size(), 3u);
  EXPECT_EQ(out.multi_scale[0].sizes(), (std::vector<int64_t>{b, 32, 2, 3}));
  for (size_t l = 0; l < 3; ++l)
    expect_close(out.multi_scale[l], ref["pix_ms_" + std::to_string(l)], "multi-scale " + std::to_string(l), 1e-4);
  EXPECT_EQ(out.mask_features.sizes(), (std::vector<int64_t>{b, 24, 16, 24}));
  expect_close(out.mask_features, ref["pix_mask_features"], "mask features", 1e-4);
}

// ---- masked-attention decoder -------------------------------------------------------------------

// A 4-layer decoder (levels 1/32, 1/16, 1/8, then 1/32 again) of width 32 with 6 queries.
MaskedDecoderOptions small_decoder_options() {
  MaskedDecoderOptions options;
  options.in_channels = 32;
  options.hidden = 32;
  options.mask_dim = 32;
  options.num_queries = 6;
  options.heads = 4;
  options.ffn_dim = 48;
  options.layers = 4;
  options.num_classes = 3;
  return options;
}

// Random 1/32, 1/16, 1/8 feature maps of a 64x96 image for small_decoder_options().
std::vector<torch::Tensor> small_decoder_levels(int64_t b) {
  return {torch::randn({b, 32, 2, 3}), torch::randn({b, 32, 4, 6}), torch::randn({b, 32, 8, 12})};
}

TEST(Mask2FormerDecoder, MatchesPytorchReferenceWithMaskedAttention) {
  torch::manual_seed(13);
  MaskedTransformerDecoder decoder(small_decoder_options());
  decoder->eval();
  const int64_t b = 2;
  std::vector<torch::Tensor> multi_scale = small_decoder_levels(b);
  // Channel 0 of the mask features is a constant and the mask MLP's output 0 is amplified: each
  // query's mask logits get a large offset of its own sign, so some queries block every location
  // of a level (exercising the reset of fully masked rows) while others block part of it.
  torch::Tensor mask_features = torch::randn({b, 32, 16, 24});
  mask_features.select(1, 0).fill_(4.0);
  {
    torch::NoGradGuard no_grad;
    decoder->named_parameters()["mask_embed.2.weight"][0].mul_(8.0);
  }
  c10::Dict<std::string, at::Tensor> input;
  for (const auto& item : decoder->named_parameters()) input.insert("dec." + item.key(), item.value().detach().clone());
  input.insert("dec_cfg", torch::tensor({32, 4, 4}, torch::kLong));
  for (size_t l = 0; l < 3; ++l) input.insert("dec_ms_" + std::to_string(l), multi_scale[l]);
  input.insert("dec_mask_features", mask_features);
  auto ref = test_io::run_tensor_reference("reference_mask2former.py", input);
  torch::NoGradGuard no_grad;
  MaskedDecoderOutput out = decoder->forward(multi_scale, mask_features);
  ASSERT_EQ(out.class_logits.size(), 5u);
  for (size_t i = 0; i < 5; ++i) {
    expect_close(out.class_logits[i], ref["dec_cls_" + std::to_string(i)], "class logits " + std::to_string(i), 1e-4);
    expect_close(out.mask_logits[i], ref["dec_mask_" + std::to_string(i)], "mask logits " + std::to_string(i), 1e-4);
  }
  // The attention masks are exercised: layer 0 (1/32 level) blocks part of the locations.
  namespace F = torch::nn::functional;
  const double blocked =
      F::interpolate(
          out.mask_logits[0],
          F::InterpolateFuncOptions().size(std::vector<int64_t>{2, 3}).mode(torch::kBilinear).align_corners(false))
          .sigmoid()
          .lt(0.5)
          .to(torch::kFloat32)
          .mean()
          .item<double>();
  EXPECT_GT(blocked, 0.05);
  EXPECT_LT(blocked, 0.95);
  EXPECT_GT(ref["dec_full_rows"].item<int64_t>(), 0) << "no fully masked row: the reset is not exercised";
}

TEST(Mask2FormerDecoder, ExtraQueriesWithSeparateAttentionLeaveTheMaskQueriesUnchanged) {
  // MTA-CLIP's text queries join the mask queries. With block-diagonal self-attention (the paper's
  // "separate attentions") every mask query computes exactly what it computes alone: cross-attention,
  // FFN and norms are per query, and its attention mask comes from its own mask. With joint
  // self-attention the text queries change the mask queries' predictions.
  torch::manual_seed(17);
  MaskedTransformerDecoder decoder(small_decoder_options());
  decoder->eval();
  const int64_t b = 2;
  std::vector<torch::Tensor> multi_scale = small_decoder_levels(b);
  torch::Tensor mask_features = torch::randn({b, 32, 16, 24});
  ExtraQueries text{torch::randn({1, 5, 32}), torch::randn({1, 5, 32}), /*joint_attention=*/false, {}};
  torch::NoGradGuard no_grad;
  MaskedDecoderOutput alone = decoder->forward(multi_scale, mask_features);
  MaskedDecoderOutput separate = decoder->forward(multi_scale, mask_features, &text);
  ASSERT_EQ(separate.class_logits.size(), alone.class_logits.size());
  ASSERT_EQ(separate.extra_states.size(), alone.class_logits.size());
  for (size_t i = 0; i < alone.class_logits.size(); ++i) {
    EXPECT_TRUE(torch::allclose(separate.class_logits[i], alone.class_logits[i], 1e-5, 1e-5)) << i;
    EXPECT_TRUE(torch::allclose(separate.mask_logits[i], alone.mask_logits[i], 1e-5, 1e-4)) << i;
    EXPECT_TRUE(torch::allclose(separate.query_states[i], alone.query_states[i], 1e-5, 1e-5)) << i;
    EXPECT_EQ(separate.extra_states[i].sizes(), torch::IntArrayRef({b, 5, 32}));
  }
  EXPECT_TRUE(alone.extra_states.empty());
  text.joint_attention = true;
  MaskedDecoderOutput joint = decoder->forward(multi_scale, mask_features, &text);
  EXPECT_GT((joint.class_logits.back() - alone.class_logits.back()).abs().max().item<double>(), 1e-3);
  // Only the later predictions can differ: the first one is made before any layer ran.
  EXPECT_TRUE(torch::allclose(joint.class_logits.front(), alone.class_logits.front(), 1e-5, 1e-5));
  EXPECT_THROW(decoder->forward(multi_scale, mask_features,
                                std::make_unique<ExtraQueries>(
                                    ExtraQueries{torch::randn({1, 5, 16}), torch::randn({1, 5, 16}), true, {}})
                                    .get()),
               ModelError);
}

// ---- point sampling, losses, positional encoding -------------------------------------------------

TEST(Mask2FormerPoints, LossesCostsPointSampleAndSineEmbeddingMatchReference) {
  torch::manual_seed(5);
  torch::Tensor logits = torch::randn({6, 40}) * 3.0;
  torch::Tensor targets = (torch::rand({6, 40}) < 0.4).to(torch::kFloat32);
  torch::Tensor cost_targets = (torch::rand({4, 40}) < 0.5).to(torch::kFloat32);
  torch::Tensor ps_input = torch::randn({3, 2, 5, 7});
  torch::Tensor ps_coords = torch::rand({3, 11, 2});
  c10::Dict<std::string, at::Tensor> input;
  input.insert("pl_logits", logits);
  input.insert("pl_targets", targets);
  input.insert("pl_num_masks", torch::tensor({2.5}));
  input.insert("pc_targets", cost_targets);
  input.insert("ps_input", ps_input);
  input.insert("ps_coords", ps_coords);
  input.insert("pe_shape", torch::tensor({2, 5, 7, 8}, torch::kLong));
  auto ref = test_io::run_tensor_reference("reference_mask2former.py", input);
  expect_close(sigmoid_bce_point_loss(logits, targets, torch::tensor(2.5f)).reshape({1}), ref["pl_bce"],
               "BCE point loss", 1e-5);
  expect_close(dice_point_loss(logits, targets, torch::tensor(2.5f)).reshape({1}), ref["pl_dice"], "dice point loss",
               1e-5);
  expect_close(pairwise_sigmoid_bce_cost(logits, cost_targets), ref["pc_bce"], "BCE cost", 1e-5);
  expect_close(pairwise_dice_cost(logits, cost_targets), ref["pc_dice"], "dice cost", 1e-5);
  expect_close(point_sample(ps_input, ps_coords), ref["ps_out"], "point_sample", 1e-5);
  expect_close(sine_position_embedding(2, 5, 7, 8, torch::kFloat32), ref["pe_out"], "sine embedding", 1e-5);
}

TEST(Mask2FormerPoints, ImportanceSamplingKeepsTheMostUncertainPoints) {
  torch::manual_seed(6);
  // Left half: logit 0 (most uncertain); right half: 10. With 60 candidates about 30 fall in
  // the left half, so the 10 most uncertain are there (cells within half a pixel of the border
  // interpolate, so "left" is x < 0.5 - 1/32).
  torch::Tensor logits = torch::full({2, 1, 16, 16}, 10.0);
  logits.narrow(3, 0, 8).fill_(0.0);
  torch::Tensor coords = uncertain_point_coords(logits, 20, 3.0, 0.5);
  ASSERT_EQ(coords.sizes(), (std::vector<int64_t>{2, 20, 2}));
  EXPECT_TRUE(coords.ge(0).all().item<bool>() && coords.le(1).all().item<bool>());
  EXPECT_TRUE(coords.narrow(1, 0, 10).select(2, 0).lt(0.5 - 1.0 / 32).all().item<bool>());
  // importance 0: all random; importance 1: all chosen.
  EXPECT_EQ(uncertain_point_coords(logits, 20, 1.0, 0.0).size(1), 20);
  EXPECT_TRUE(uncertain_point_coords(logits, 8, 6.0, 1.0).select(2, 0).lt(0.5).all().item<bool>());
}

// ---- targets, semantic inference, criterion ------------------------------------------------------

TEST(Mask2FormerTargets, OneMaskPerPresentClassIgnoreInNone) {
  torch::Tensor labels = torch::tensor({3, 3, 255, 0, 0, 3}, torch::kLong).view({2, 3});
  SemanticTargets t = semantic_targets(labels, 4);
  EXPECT_TRUE(torch::equal(t.classes, torch::tensor({0, 3}, torch::kLong)));
  EXPECT_TRUE(
      torch::equal(t.masks, torch::tensor({0, 0, 0, 1, 1, 0, 1, 1, 0, 0, 0, 1}, torch::kFloat32).view({2, 2, 3})));
  EXPECT_EQ(semantic_targets(torch::full({2, 2}, 255, torch::kLong), 4).classes.numel(), 0);
  EXPECT_THROW(semantic_targets(torch::tensor({1, 4}, torch::kLong).view({1, 2}), 4), DataError);
}

TEST(Mask2FormerInference, SoftmaxClassesTimesSigmoidMasks) {
  // Query 0: softmax(ln 3, 0, 0) = (3/5, 1/5 | 1/5 no-object); query 1: softmax(0, ln 2, ln 2) = (1/5, 2/5 | 2/5).
  torch::Tensor classes = torch::tensor({std::log(3.0), 0.0, 0.0, 0.0, std::log(2.0), std::log(2.0)}).view({1, 2, 3});
  // Pixel 0: sigmoid = (0.8, 0.25); pixel 1: (0.5, 0.8).
  torch::Tensor masks = torch::tensor({std::log(4.0), 0.0, -std::log(3.0), std::log(4.0)}).view({1, 2, 1, 2});
  torch::Tensor scores = mask2former_semantic_inference(classes.to(torch::kFloat32), masks.to(torch::kFloat32));
  ASSERT_EQ(scores.sizes(), (std::vector<int64_t>{1, 2, 1, 2}));
  EXPECT_NEAR(scores[0][0][0][0].item<double>(), 0.6 * 0.8 + 0.2 * 0.25, 1e-6);
  EXPECT_NEAR(scores[0][1][0][0].item<double>(), 0.2 * 0.8 + 0.4 * 0.25, 1e-6);
  EXPECT_NEAR(scores[0][0][0][1].item<double>(), 0.6 * 0.5 + 0.2 * 0.8, 1e-6);
  EXPECT_NEAR(scores[0][1][0][1].item<double>(), 0.2 * 0.5 + 0.4 * 0.8, 1e-6);
}

Mask2FormerLossOptions small_loss(int64_t classes, int64_t points) {
  Mask2FormerLossOptions o;
  o.num_classes = classes;
  o.config.num_points = static_cast<int>(points);
  return o;
}

TEST(Mask2FormerCriterionTest, MatchingPairsEachTargetWithItsPerfectQuery) {
  torch::manual_seed(8);
  // Targets: class 1 = top half, class 2 = bottom half of an 8x8 image.
  torch::Tensor labels = torch::ones({8, 8}, torch::kLong);
  labels.narrow(0, 4, 4).fill_(2);
  SemanticTargets t = semantic_targets(labels, 3);
  // Query 2 predicts the top half as class 1, query 0 the bottom half as class 2, query 1 noise.
  torch::Tensor masks = torch::full({3, 4, 4}, -8.0);
  masks[2].narrow(0, 0, 2).fill_(8.0);
  masks[0].narrow(0, 2, 2).fill_(8.0);
  masks[1] = torch::randn({4, 4});
  torch::Tensor classes = torch::zeros({3, 4});
  classes[2][1] = 6.0;
  classes[0][2] = 6.0;
  Assignment a = Mask2FormerCriterion(small_loss(3, 400)).match(classes, masks, t);
  EXPECT_EQ(a.rows, (std::vector<int64_t>{0, 2}));
  EXPECT_EQ(a.cols, (std::vector<int64_t>{1, 0}));
}

// The matching costs ignore autocast, as Mask2Former's HungarianMatcher (`autocast(enabled=False)`):
// under the trainer's autocast scope they are the float32 costs bit for bit. (Under autocast the
// BCE and dice matmuls would sum the points in bf16 here, in fp16 on a GPU: inf past 65504.)
TEST(Mask2FormerCriterionTest, MatchingCostsAreFloat32UnderAutocast) {
  torch::manual_seed(10);
  const SemanticTargets t = semantic_targets(torch::randint(0, 3, {16, 16}, torch::kLong), 3);
  const torch::Tensor masks = torch::randn({5, 8, 8}) * 4, classes = torch::randn({5, 4});
  const torch::Tensor coords = torch::rand({1, 2000, 2});
  const Mask2FormerCriterion criterion(small_loss(3, 2000));
  const torch::Tensor expected = criterion.matching_cost(classes, masks, t, coords);
  ASSERT_EQ(expected.sizes(), (std::vector<int64_t>{5, t.classes.numel()}));
  engine::AutocastScope autocast(torch::kCPU, engine::Precision::kBf16);
  ASSERT_EQ(torch::matmul(masks.flatten(1), masks.flatten(1).t()).scalar_type(), torch::kBFloat16)
      << "the scope turns CPU autocast on";
  const torch::Tensor cost = criterion.matching_cost(classes, masks, t, coords);
  EXPECT_EQ(cost.scalar_type(), torch::kFloat32);
  EXPECT_TRUE(torch::equal(cost, expected));
}

TEST(Mask2FormerCriterionTest, LossValuesMatchHandComputation) {
  torch::manual_seed(9);
  // One image entirely of class 1 (K = 2). Query 0: class logits (0, 5, 0), mask logit 0
  // everywhere; query 1: (0, 0, 5), mask -10. Query 0 is matched to the mask; query 1 -> no object.
  // A zero logit gives BCE = log 2 at any point whatever the target (points near the border see
  // fractional targets: grid_sample pads with zeros, as in Mask2Former), so the BCE is exact; the
  // dice with sigmoid 0.5 is P/2 / (P/2 + T + 1) with the target sum T in [P/4, P].
  torch::Tensor labels = torch::ones({1, 8, 8}, torch::kLong);
  torch::Tensor classes = torch::tensor({0.0f, 5.0f, 0.0f, 0.0f, 0.0f, 5.0f}).view({1, 2, 3}).requires_grad_(true);
  torch::Tensor masks =
      torch::cat({torch::zeros({1, 1, 4, 4}), torch::full({1, 1, 4, 4}, -10.0f)}, 1).requires_grad_(true);
  const int64_t p = 50;
  Mask2FormerCriterion criterion(small_loss(2, p));
  std::vector<SemanticTargets> targets{semantic_targets(labels[0], 2)};
  LossTerms terms = criterion.loss({classes, classes}, {masks, masks}, targets, nullptr);  // two "layers"
  // CE of both queries: -log(e^5 / (e^5 + 2)); weighted mean with weights (1, 0.1) is the same.
  const double ce = std::log1p(2.0 * std::exp(-5.0));
  ASSERT_EQ(terms.parts.size(), 3u);
  EXPECT_EQ(terms.parts[0].first, "loss_cls");
  EXPECT_EQ(terms.parts[1].first, "loss_mask");
  EXPECT_EQ(terms.parts[2].first, "loss_dice");
  EXPECT_NEAR(terms.parts[0].second.item<double>(), 2 * 2.0 * ce, 1e-5);
  EXPECT_NEAR(terms.parts[1].second.item<double>(), 2 * 5.0 * std::log(2.0), 1e-5);
  const double half = 0.5 * static_cast<double>(p);
  const double dice = terms.parts[2].second.item<double>() / 10.0;
  EXPECT_GE(dice, half / (half + p + 1.0) - 1e-6);
  EXPECT_LE(dice, half / (half + 0.25 * p + 1.0) + 1e-6);
  EXPECT_NEAR(terms.total.item<double>(),
              terms.parts[0].second.item<double>() + terms.parts[1].second.item<double>() +
                  terms.parts[2].second.item<double>(),
              1e-5);

  // No-object weighting: with query 1 predicting class 0 instead, its CE counts 0.1 times.
  torch::Tensor classes2 = torch::tensor({0.0f, 5.0f, 0.0f, 5.0f, 0.0f, 0.0f}).view({1, 2, 3});
  LossTerms weighted = criterion.loss({classes2}, {masks}, targets, nullptr);
  const double ce_nobj = std::log(std::exp(5.0) + 2.0);  // -log softmax(5, 0, 0)[2]
  EXPECT_NEAR(weighted.parts[0].second.item<double>(), 2.0 * (1.0 * ce + 0.1 * ce_nobj) / 1.1, 1e-5);

  // MTA-CLIP's code divides the mask and dice losses by the sum of the class weights of all
  // queries (mask2former_head_det.py: num_total_masks = reduce_mean(class_weight[labels].sum())),
  // here 1 + 0.1 = 1.1, instead of by the number of target masks (1).
  Mask2FormerLossOptions by_weights = small_loss(2, p);
  by_weights.config.mask_loss_norm = "class_weight_sum";
  LossTerms mta = Mask2FormerCriterion(by_weights).loss({classes}, {masks}, targets, nullptr);
  EXPECT_NEAR(mta.parts[1].second.item<double>(), 5.0 * std::log(2.0) / 1.1, 1e-5);

  // An image without labels: everything is "no object", mask losses are zero, gradients exist.
  std::vector<SemanticTargets> empty{semantic_targets(torch::full({8, 8}, 255, torch::kLong), 2)};
  LossTerms none = criterion.loss({classes}, {masks}, empty, nullptr);
  EXPECT_EQ(none.parts[1].second.item<double>(), 0.0);
  none.total.backward();
  ASSERT_TRUE(masks.grad().defined());
  ASSERT_TRUE(classes.grad().defined());
}

// loss() matches every (prediction, image) of a batch at once (one copy of all the costs to the
// host, one copy of all the indices back): each matching is the one match() gives that image alone
// with its keyed matching points, and the batch's targets are each image's own.
TEST(Mask2FormerCriterionTest, BatchMatchingIsEachImagesOwnMatching) {
  torch::manual_seed(11);
  const int64_t classes = 4, queries = 6;
  torch::Tensor labels = torch::randint(0, classes, {3, 8, 8}, torch::kLong);
  labels[1].fill_(255);                          // no target at all
  labels[2].masked_fill_(labels[2].eq(1), 255);  // class 1 absent, some pixels ignored
  const std::vector<SemanticTargets> targets = batch_semantic_targets(labels.to(torch::kUInt8), classes);
  ASSERT_EQ(targets.size(), 3u);
  for (int64_t b = 0; b < 3; ++b) {
    const torch::Tensor held = std::get<0>(torch::_unique(labels[b].flatten(), /*sorted=*/true));
    const torch::Tensor expected = held.masked_select(held.ne(255));
    const SemanticTargets& t = targets[static_cast<size_t>(b)];
    EXPECT_TRUE(torch::equal(t.classes, expected)) << "image " << b;
    EXPECT_TRUE(torch::equal(t.masks, labels[b].unsqueeze(0).eq(expected.view({-1, 1, 1})).to(torch::kFloat32)));
  }

  auto random = std::make_shared<SampleRandom>();
  random->set_keys({101, 202, 303});
  Mask2FormerLossOptions options = small_loss(classes, 64);
  options.random = random;
  const Mask2FormerCriterion criterion(options);
  const std::vector<torch::Tensor> class_logits{torch::randn({3, queries, classes + 1}),
                                                torch::randn({3, queries, classes + 1})};
  const std::vector<torch::Tensor> mask_logits{torch::randn({3, queries, 4, 4}) * 3,
                                               torch::randn({3, queries, 4, 4}) * 3};
  std::vector<std::vector<ImageMatch>> matches;
  criterion.loss(class_logits, mask_logits, targets, nullptr, &matches);
  ASSERT_EQ(matches.size(), 2u);
  const std::vector<uint64_t> keys{101, 202, 303};
  for (size_t p = 0; p < 2; ++p) {
    ASSERT_EQ(matches[p].size(), 3u);
    for (size_t b = 0; b < 3; ++b) {
      torch::Generator g = SampleRandom::generator(keys[b], stream_id(RandomSite::kMatchPoints, p), torch::kCPU);
      const Assignment alone =
          criterion.match(class_logits[p][static_cast<int64_t>(b)], mask_logits[p][static_cast<int64_t>(b)], targets[b],
                          torch::rand({1, 64, 2}, g));
      const ImageMatch& m = matches[p][b];
      EXPECT_EQ(m.pairs.rows, alone.rows) << "prediction " << p << ", image " << b;
      EXPECT_EQ(m.pairs.cols, alone.cols) << "prediction " << p << ", image " << b;
      EXPECT_EQ(m.pairs.rows.size(), static_cast<size_t>(targets[b].classes.numel()));
      EXPECT_TRUE(torch::equal(m.rows, torch::tensor(alone.rows, torch::kLong)));
      EXPECT_TRUE(torch::equal(m.cols, torch::tensor(alone.cols, torch::kLong)));
    }
  }
}

TEST(Mask2FormerCriterionTest, MaskCountIsAveragedOverRanks) {
  // Rank 0: one target mask, matched by query 0 with zero mask logits (BCE = log 2 exactly).
  // Rank 1: `peer_images` images with one target mask each. num_masks is the mean over the two
  // ranks, so rank 0's BCE term is 5 log 2 / num_masks.
  auto rank0_bce = [](int64_t peer_images, bool peer_ignores_all) {
    double bce = 0.0;
    uint64_t collectives = 0;
    dist::run_inprocess_world(2, [&](dist::Communicator& comm) {
      const int64_t images = comm.rank() == 0 ? 1 : peer_images;
      const torch::Tensor classes =
          torch::tensor({0.0f, 5.0f, 0.0f, 0.0f, 0.0f, 5.0f}).view({1, 2, 3}).expand({images, 2, 3}).contiguous();
      const torch::Tensor masks = torch::cat({torch::zeros({1, 1, 4, 4}), torch::full({1, 1, 4, 4}, -10.0f)}, 1)
                                      .expand({images, 2, 4, 4})
                                      .contiguous();
      const int64_t label = comm.rank() == 1 && peer_ignores_all ? 255 : 1;
      std::vector<SemanticTargets> targets;
      for (int64_t i = 0; i < images; ++i)
        targets.push_back(semantic_targets(torch::full({8, 8}, label, torch::kLong), 2));
      // A shared_ptr view of this thread's communicator, for the criterion's interface.
      std::shared_ptr<dist::Communicator> view(&comm, [](dist::Communicator*) {});
      LossTerms terms = Mask2FormerCriterion(small_loss(2, 50)).loss({classes}, {masks}, targets, view);
      if (comm.rank() == 0) {
        bce = terms.parts[1].second.item<double>();
        collectives = comm.sequence();
      }
    });
    EXPECT_EQ(collectives, 1u);  // one all-reduce for the normalizers
    return bce;
  };
  EXPECT_NEAR(rank0_bce(3, false), 5.0 * std::log(2.0) / 2.0, 1e-5);  // (1 + 3) / 2 = 2 masks
  // A peer without masks: num_masks = max((1 + 0) / 2, 1) = 1.
  EXPECT_NEAR(rank0_bce(1, true), 5.0 * std::log(2.0), 1e-5);
}

// ---- segmentor -----------------------------------------------------------------------------------

ModelConfig tiny_mask2former() { return test_fixtures::tiny_mask2former_config(); }

BuildOptions build_options(const ModelConfig& config, int classes) {
  BuildOptions options;
  options.config = config;
  options.num_classes = classes;
  options.crop_size = 64;
  return options;
}

TEST(Mask2FormerSegmentor, ShapesPredictionsAndParameterSplit) {
  torch::manual_seed(10);
  auto model =
      std::dynamic_pointer_cast<Mask2FormerSegmentorImpl>(build_segmentor(build_options(tiny_mask2former(), 5)));
  ASSERT_TRUE(model);
  torch::Tensor images = torch::randn({2, 3, 64, 96});
  MaskedDecoderOutput out = model->predictions(images);
  ASSERT_EQ(out.class_logits.size(), 4u);  // before layer 0 + 3 layers
  EXPECT_EQ(out.class_logits[3].sizes(), (std::vector<int64_t>{2, 8, 6}));
  EXPECT_EQ(out.mask_logits[3].sizes(), (std::vector<int64_t>{2, 8, 16, 24}));
  model->eval();
  torch::NoGradGuard no_grad;
  torch::Tensor scores = model->forward(images);
  EXPECT_EQ(scores.sizes(), (std::vector<int64_t>{2, 5, 16, 24}));
  torch::Tensor full = model->predict_logits(images);
  EXPECT_EQ(full.sizes(), (std::vector<int64_t>{2, 5, 64, 96}));
  // Scores are probability-weighted mask sums: in [0, 1] since the class probabilities of each
  // query sum to at most 1 and every sigmoid is <= 1 ... times Q queries at most.
  EXPECT_GE(full.min().item<double>(), 0.0);
  EXPECT_LE(full.max().item<double>(), 8.0);

  std::set<std::string> names;
  for (const auto& item : model->named_parameters()) names.insert(item.key());
  for (const std::string expected :
       {"backbone.conv1.weight", "decode_head.pixel_decoder.level_embed",
        "decode_head.pixel_decoder.encoder.0.self_attn.sampling_offsets.weight",
        "decode_head.pixel_decoder.mask_features.weight", "decode_head.transformer_decoder.query_feat.weight",
        "decode_head.transformer_decoder.transformer_cross_attention_layers.2.multihead_attn.in_proj_weight",
        "decode_head.transformer_decoder.class_embed.weight"})
    EXPECT_EQ(names.count(expected), 1u) << expected;
}

TEST(Mask2FormerSegmentor, ConfigKeysAndErrors) {
  Config config =
      parse_config("[model]\nhead = \"mask2former\"\n[model.mask2former]\nnum_queries = 20\nhidden_dim = 64\n",
                   "m2f.toml", {"model.mask2former.dice_weight=4.5", "model.mask2former.supervise_initial=true"});
  EXPECT_EQ(config.model.head, "mask2former");
  EXPECT_EQ(config.model.mask2former.num_queries, 20);
  EXPECT_EQ(config.model.mask2former.hidden_dim, 64);
  EXPECT_EQ(config.model.mask2former.dec_layers, 9);
  EXPECT_EQ(config.model.mask2former.num_points, 12544);
  EXPECT_DOUBLE_EQ(config.model.mask2former.dice_weight, 4.5);
  EXPECT_TRUE(config.model.mask2former.supervise_initial);
  EXPECT_THROW(parse_config("[model.mask2former]\nimportance = 1.5\n", "bad.toml"), ConfigError);

  ModelConfig bad = tiny_mask2former();
  bad.mask2former.heads = 3;
  try {
    build_segmentor(build_options(bad, 5));
    FAIL() << "hidden_dim 32 with 3 heads was accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("model.mask2former.hidden_dim"), std::string::npos) << e.what();
  }
}

TEST(Mask2FormerSegmentor, ShortTrainingRunDecreasesTheLoss) {
  torch::manual_seed(12);
  auto model = build_segmentor(build_options(tiny_mask2former(), 3));
  model->train();
  torch::optim::AdamW optimizer(model->parameters(), torch::optim::AdamWOptions(1e-3).weight_decay(0.05));
  std::vector<double> losses;
  const auto start = std::chrono::steady_clock::now();
  for (int step = 0; step < 40; ++step) {
    auto [images, labels] = test_fixtures::colour_split_batch(4, 64);
    optimizer.zero_grad();
    LossTerms loss = model->loss(images, labels);
    ASSERT_TRUE(std::isfinite(loss.total.item<double>())) << "step " << step;
    loss.total.backward();
    torch::nn::utils::clip_grad_norm_(model->parameters(), 1.0);
    optimizer.step();
    losses.push_back(loss.total.item<double>());
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double first = std::accumulate(losses.begin(), losses.begin() + 5, 0.0) / 5;
  const double last = std::accumulate(losses.end() - 5, losses.end(), 0.0) / 5;
  std::printf("[mask2former tiny] 40 steps in %.1f s, loss %.3f -> %.3f\n", seconds, first, last);
  EXPECT_LT(last, 0.7 * first);
}

}  // namespace
}  // namespace segrun::models
