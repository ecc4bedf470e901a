// Tests of segrun_models: golden outputs against an independent PyTorch reference
// (tests/models/reference_clip_fpn.py run by /usr/bin/python3), the mmseg loss by hand, the
// OpenAI RN50/RN101 visual key table, the norms, and configuration errors.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <map>
#include <string>

#include "core/error.h"
#include "dist/inprocess_communicator.h"
#include "dist/sync_batch_norm.h"
#include "models/clip/clip_backbones.h"
#include "models/clip/clip_checkpoint.h"
#include "models/clip/clip_resnet.h"
#include "models/clip/clip_text.h"
#include "models/heads/fpn_head.h"
#include "models/losses/seg_losses.h"
#include "models/norm.h"
#include "models/segmentor.h"
#include "torch_test_io.h"

namespace segrun::models {
namespace {

// ---- helpers -------------------------------------------------------------------------------------

using test_io::expect_close;

// Every backbone kind has architecture facts that fit its family, and the ResNet builder takes
// exactly the ResNet-family names.
TEST(ModelsClipBackbones, EveryKindHasFactsOfItsFamily) {
  for (const BackboneInfo& info : backbone_kinds()) {
    SCOPED_TRACE(info.name);
    const ClipBackboneFacts& facts = clip_backbone_facts(info.kind);
    EXPECT_GT(facts.text_embed_dim, 0);
    EXPECT_EQ(clip_text_options_for(info.name).embed_dim, facts.text_embed_dim);
    ClipResNetOptions options;
    options.variant = info.name;
    options.width = 8;
    options.norm = make_norm_factory("bn", nullptr);
    switch (info.family) {
      case BackboneFamily::kResNet: {
        EXPECT_EQ(facts.resnet_layers.size(), 4u);
        EXPECT_GT(facts.embed_per_width, 0);
        const ClipResNetSpec spec = validate_clip_resnet_options(options);
        EXPECT_EQ(spec.layers, facts.resnet_layers);
        EXPECT_EQ(spec.embed_dim, facts.embed_per_width * 8);
        break;
      }
      case BackboneFamily::kVit:
        EXPECT_TRUE(facts.resnet_layers.empty());
        EXPECT_EQ(facts.embed_per_width, 0);
        EXPECT_THROW(validate_clip_resnet_options(options), ConfigError);
        break;
    }
  }
  // OpenAI's numbers at full width.
  EXPECT_EQ(clip_backbone_facts(BackboneKind::kClipRn50).resnet_layers, (std::vector<int64_t>{3, 4, 6, 3}));
  EXPECT_EQ(clip_backbone_facts(BackboneKind::kClipRn101).resnet_layers, (std::vector<int64_t>{3, 4, 23, 3}));
  EXPECT_EQ(clip_backbone_facts(BackboneKind::kClipRn50).embed_per_width * 64, 1024);
  EXPECT_EQ(clip_backbone_facts(BackboneKind::kClipRn101).embed_per_width * 64, 512);
  EXPECT_EQ(clip_text_options_for("clip_rn50").embed_dim, 1024);
  EXPECT_EQ(clip_text_options_for("clip_vit_b16").embed_dim, 512);
  try {
    clip_text_options_for("clip_vit_l14");
    ADD_FAILURE() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(),
                 "model.backbone: no CLIP text encoder pairs with 'clip_vit_l14' (valid: clip_rn50, clip_rn101, "
                 "clip_vit_b16)");
  }
}

void add_state(c10::Dict<std::string, at::Tensor>& dict, torch::nn::Module& model, const std::string& prefix) {
  for (const auto& item : model.named_parameters()) dict.insert(prefix + item.key(), item.value().detach().clone());
  for (const auto& item : model.named_buffers()) dict.insert(prefix + item.key(), item.value().detach().clone());
}

ModelConfig tiny_config() {
  ModelConfig config;
  config.backbone = "clip_rn50";
  config.width = 8;
  config.head = "fpn";
  config.norm = "bn";
  config.fpn_channels = 32;
  config.dropout = 0.1;
  return config;
}

BuildOptions tiny_build(const ModelConfig& config, int num_classes = 5) {
  BuildOptions options;
  options.config = config;
  options.num_classes = num_classes;
  options.crop_size = 64;
  return options;
}

// ---- golden outputs ------------------------------------------------------------------------------

TEST(ModelsGolden, MatchesIndependentPytorchReference) {
  torch::manual_seed(7);
  const int num_classes = 5;
  auto segmentor = std::dynamic_pointer_cast<FpnSegmentorImpl>(build_segmentor(tiny_build(tiny_config(), num_classes)));
  ASSERT_TRUE(segmentor);
  test_io::randomize_norms(*segmentor);
  {
    torch::NoGradGuard no_grad;  // larger classifier weights than the 0.01 init: a sharper check
    for (auto& item : segmentor->named_parameters()) {
      if (item.key() == "decode_head.conv_seg.weight") item.value().normal_(0.0, 0.2);
      if (item.key() == "decode_head.conv_seg.bias") item.value().normal_(0.0, 0.2);
    }
  }
  segmentor->eval();

  ClipResNetOptions clip_options;
  clip_options.variant = "clip_rn101";
  clip_options.width = 16;
  clip_options.input_resolution = 128;  // 4x4 positional grid, resized to the 2x3 input grid
  clip_options.with_attnpool = true;
  clip_options.norm = make_norm_factory("bn", nullptr);
  ClipResNet clip(clip_options);
  test_io::randomize_norms(*clip);
  clip->eval();

  torch::Tensor images = torch::randn({2, 3, 64, 96});
  torch::Tensor labels = torch::randint(0, num_classes, {2, 64, 96}, torch::kLong);
  labels.masked_fill_(torch::rand({2, 64, 96}) < 0.2, kIgnoreIndex);

  c10::Dict<std::string, at::Tensor> dict;
  add_state(dict, *segmentor, "seg.");
  add_state(dict, *clip, "clip.");
  dict.insert("input", images);
  torch::Tensor odd_images = torch::randn({1, 3, 70, 100});  // not multiples of 32: every pool floors
  dict.insert("input_odd", odd_images);
  dict.insert("labels", labels);
  dict.insert("cfg.seg_variant", torch::tensor(0));
  dict.insert("cfg.seg_width", torch::tensor(8));
  dict.insert("cfg.fpn_channels", torch::tensor(32));
  dict.insert("cfg.num_classes", torch::tensor(num_classes));
  dict.insert("cfg.clip_variant", torch::tensor(1));
  dict.insert("cfg.clip_width", torch::tensor(16));
  dict.insert("cfg.clip_resolution", torch::tensor(128));
  const std::map<std::string, torch::Tensor> ref = test_io::run_tensor_reference("reference_clip_fpn.py", dict);

  torch::NoGradGuard no_grad;
  ClipVisualOutput seg_features = segmentor->backbone()->forward(images);
  ASSERT_EQ(seg_features.stages.size(), 4u);
  const std::vector<std::vector<int64_t>> seg_shapes{{2, 32, 16, 24}, {2, 64, 8, 12}, {2, 128, 4, 6}, {2, 256, 2, 3}};
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(seg_features.stages[i].sizes(), torch::IntArrayRef(seg_shapes[i]));
    expect_close(seg_features.stages[i], ref.at("seg.c" + std::to_string(i + 1)), "seg c" + std::to_string(i + 1));
  }
  EXPECT_FALSE(seg_features.global.defined());
  torch::Tensor logits = segmentor->forward(images);
  EXPECT_EQ(logits.sizes(), torch::IntArrayRef({2, num_classes, 16, 24}));
  expect_close(logits, ref.at("seg.logits"), "fpn logits");
  expect_close(segmentor->predict_logits(images), ref.at("seg.pred"), "predict_logits");
  torch::Tensor odd_logits = segmentor->predict_logits(odd_images);
  EXPECT_EQ(odd_logits.sizes(), torch::IntArrayRef({1, num_classes, 70, 100}));
  expect_close(odd_logits, ref.at("seg.pred_odd"), "predict_logits 70x100");
  LossTerms loss = segmentor->loss(images, labels);
  ASSERT_EQ(loss.parts.size(), 1u);
  EXPECT_EQ(loss.parts[0].first, "loss_seg");
  EXPECT_NEAR(loss.total.item<double>(), ref.at("seg.loss").item<double>(), 1e-4 * ref.at("seg.loss").item<double>());

  ClipVisualOutput clip_out = clip->forward(images);
  for (int i = 0; i < 4; ++i) {
    expect_close(clip_out.stages[i], ref.at("clip.c" + std::to_string(i + 1)), "clip c" + std::to_string(i + 1));
  }
  EXPECT_EQ(clip_out.global.sizes(), torch::IntArrayRef({2, 128}));  // embed = 8 * width for rn101
  EXPECT_EQ(clip_out.dense.sizes(), torch::IntArrayRef({2, 128, 2, 3}));
  expect_close(clip_out.global, ref.at("clip.global"), "attnpool global");
  expect_close(clip_out.dense, ref.at("clip.dense"), "attnpool dense");
}

// ---- loss by hand --------------------------------------------------------------------------------

TEST(ModelsLoss, CrossEntropyMeansOverAllPixelsIncludingIgnored) {
  // One image, 2 classes, 2x2 pixels; pixel (1,1) is ignored.
  torch::Tensor logits = torch::tensor({{{1.0f, 0.0f}, {2.0f, 0.5f}},    // class 0
                                        {{0.0f, 1.0f}, {0.0f, -0.5f}}})  // class 1
                             .unsqueeze(0);
  torch::Tensor labels = torch::tensor({{0, 0}, {1, 255}}, torch::kLong).unsqueeze(0);
  // Per pixel: -log softmax(label): (0,0) ln(1+e^-1); (0,1) ln(1+e^1); (1,0) ln(1+e^2); (1,1) 0.
  const double expected = (std::log1p(std::exp(-1.0)) + std::log1p(std::exp(1.0)) + std::log1p(std::exp(2.0))) / 4.0;
  EXPECT_NEAR(seg_cross_entropy(logits, labels).item<double>(), expected, 1e-6);
  EXPECT_NEAR(expected, (0.31326169 + 1.31326169 + 2.12692801) / 4.0, 1e-7);

  // Logits at half resolution are resized bilinearly (align_corners=false): a constant map stays constant.
  torch::Tensor coarse = torch::tensor({2.0f, 0.0f}).view({1, 2, 1, 1});
  const double per_pixel = std::log1p(std::exp(-2.0));
  EXPECT_NEAR(seg_cross_entropy(coarse, labels).item<double>(), 2.0 * per_pixel / 4.0 + std::log1p(std::exp(2.0)) / 4.0,
              1e-6);

  // All pixels ignored: zero loss, zero gradient.
  torch::Tensor all_ignored = torch::full({1, 2, 2}, 255, torch::kLong);
  torch::Tensor x = logits.clone().requires_grad_(true);
  torch::Tensor zero = seg_cross_entropy(x, all_ignored);
  zero.backward();
  EXPECT_EQ(zero.item<double>(), 0.0);
  EXPECT_EQ(x.grad().abs().sum().item<double>(), 0.0);

  EXPECT_THROW(seg_cross_entropy(logits, torch::tensor({{0, 2}, {1, 0}}, torch::kLong).unsqueeze(0)), DataError);
}

// ---- the OpenAI visual key table (research/models.md §1.8) -----------------------------------------

// Expected visual.* parameters of OpenAI CLIP, written from the key table: name -> shape.
std::map<std::string, std::vector<int64_t>> openai_visual_table(const std::vector<int>& blocks, int64_t embed) {
  std::map<std::string, std::vector<int64_t>> table;
  auto bn = [&](const std::string& name, int64_t c) {
    table[name + ".weight"] = {c};
    table[name + ".bias"] = {c};
  };
  table["conv1.weight"] = {32, 3, 3, 3};
  table["conv2.weight"] = {32, 32, 3, 3};
  table["conv3.weight"] = {64, 32, 3, 3};
  bn("bn1", 32);
  bn("bn2", 32);
  bn("bn3", 64);
  const int64_t planes[4] = {64, 128, 256, 512};
  const int64_t block0_in[4] = {64, 256, 512, 1024};
  for (int stage = 0; stage < 4; ++stage) {
    const int64_t p = planes[stage];
    for (int b = 0; b < blocks[stage]; ++b) {
      const std::string prefix = "layer" + std::to_string(stage + 1) + "." + std::to_string(b) + ".";
      table[prefix + "conv1.weight"] = {p, b == 0 ? block0_in[stage] : 4 * p, 1, 1};
      table[prefix + "conv2.weight"] = {p, p, 3, 3};
      table[prefix + "conv3.weight"] = {4 * p, p, 1, 1};
      bn(prefix + "bn1", p);
      bn(prefix + "bn2", p);
      bn(prefix + "bn3", 4 * p);
      if (b == 0) {
        table[prefix + "downsample.0.weight"] = {4 * p, block0_in[stage], 1, 1};
        bn(prefix + "downsample.1", 4 * p);
      }
    }
  }
  if (embed > 0) {
    table["attnpool.positional_embedding"] = {50, 2048};
    for (const char* proj : {"q_proj", "k_proj", "v_proj"}) {
      table[std::string("attnpool.") + proj + ".weight"] = {2048, 2048};
      table[std::string("attnpool.") + proj + ".bias"] = {2048};
    }
    table["attnpool.c_proj.weight"] = {embed, 2048};
    table["attnpool.c_proj.bias"] = {embed};
  }
  return table;
}

void expect_matches_table(torch::nn::Module& model, const std::map<std::string, std::vector<int64_t>>& table) {
  auto params = model.named_parameters();
  EXPECT_EQ(params.size(), table.size());
  for (const auto& item : params) {
    auto it = table.find(item.key());
    ASSERT_NE(it, table.end()) << "unexpected parameter " << item.key();
    EXPECT_EQ(item.value().sizes(), torch::IntArrayRef(it->second)) << item.key();
  }
}

int64_t count(torch::nn::Module& model) {
  int64_t n = 0;
  for (const auto& p : model.parameters()) n += p.numel();
  return n;
}

TEST(ModelsClipResNet, RealSizeRn50MatchesOpenAiKeyTable) {
  ClipResNetOptions options;
  options.variant = "clip_rn50";
  options.width = 64;
  options.with_attnpool = false;
  options.norm = make_norm_factory("bn", nullptr);
  ClipResNet trunk(options);
  expect_matches_table(*trunk, openai_visual_table({3, 4, 6, 3}, 0));
  // Summed by hand from the table: stem 28,768; layer1 215,808; layer2 1,219,584;
  // layer3 7,098,368; layer4 14,964,736.
  EXPECT_EQ(count(*trunk), 23527264);
  // BN buffers per table entry: running_mean, running_var, num_batches_tracked.
  for (const auto& item : trunk->named_buffers()) {
    const std::string& key = item.key();
    EXPECT_TRUE(key.find("running_mean") != std::string::npos || key.find("running_var") != std::string::npos ||
                key.find("num_batches_tracked") != std::string::npos)
        << key;
  }

  options.with_attnpool = true;
  ClipResNet full(options);
  expect_matches_table(*full, openai_visual_table({3, 4, 6, 3}, 1024));
  // + positional 50*2048, q/k/v 3*(2048*2048+2048), c_proj 1024*2048+1024.
  EXPECT_EQ(count(*full), 23527264 + 102400 + 12589056 + 2098176);
}

TEST(ModelsClipResNet, RealSizeRn101MatchesOpenAiKeyTable) {
  ClipResNetOptions options;
  options.variant = "clip_rn101";
  options.width = 64;
  options.with_attnpool = true;
  options.norm = make_norm_factory("frozen_bn", nullptr);
  ClipResNet model(options);
  expect_matches_table(*model, openai_visual_table({3, 4, 23, 3}, 512));
  // Trunk: RN50's plus 17 more layer3 blocks of 1,117,184; attnpool with a 512-d output.
  EXPECT_EQ(count(*model), 23527264 + 17 * 1117184 + 102400 + 12589056 + (512 * 2048 + 512));
}

TEST(ModelsClipResNet, TinyStagesAndAttnpoolShapes) {
  ClipResNetOptions options;
  options.width = 8;
  options.input_resolution = 224;  // 7x7 grid resized to 2x2 below
  options.norm = make_norm_factory("bn", nullptr);
  ClipResNet model(options);
  model->eval();
  auto spec = model->spec();
  EXPECT_EQ(spec.heads, 4);
  EXPECT_EQ(spec.embed_dim, 128);
  ClipVisualOutput out = model->forward(torch::randn({1, 3, 64, 64}));
  EXPECT_EQ(out.stages[0].sizes(), torch::IntArrayRef({1, 32, 16, 16}));
  EXPECT_EQ(out.stages[3].sizes(), torch::IntArrayRef({1, 256, 2, 2}));
  EXPECT_EQ(out.global.sizes(), torch::IntArrayRef({1, 128}));
  EXPECT_EQ(out.dense.sizes(), torch::IntArrayRef({1, 128, 2, 2}));
  // CLIP's init: every residual branch starts at zero.
  for (const auto& item : model->named_parameters()) {
    if (item.key().find("layer") == 0 && item.key().find("bn3.weight") != std::string::npos) {
      EXPECT_EQ(item.value().abs().sum().item<double>(), 0.0) << item.key();
    }
  }
}

// ---- norms ---------------------------------------------------------------------------------------

std::map<std::string, std::vector<int64_t>> state_shapes(torch::nn::Module& model) {
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto& item : model.named_parameters()) shapes[item.key()] = item.value().sizes().vec();
  for (const auto& item : model.named_buffers()) shapes[item.key()] = item.value().sizes().vec();
  return shapes;
}

TEST(ModelsNorm, AllNormsShareParameterNames) {
  ModelConfig config = tiny_config();
  std::map<std::string, std::map<std::string, std::vector<int64_t>>> by_norm;
  for (const std::string norm : {"bn", "frozen_bn", "syncbn"}) {
    config.norm = norm;
    BuildOptions options = tiny_build(config);
    // Rank 0 of a 2-rank in-process world: SyncBN needs a world of more than one (building the
    // model runs no collective).
    if (norm == "syncbn")
      options.comm = std::make_shared<dist::InProcessCommunicator>(0, std::make_shared<dist::InProcessGroup>(2));
    auto model = build_segmentor(options);
    by_norm[norm] = state_shapes(*model);
    if (norm == "syncbn") {
      int sync_layers = 0;
      for (auto& module : model->modules()) sync_layers += module->as<dist::SyncBatchNorm>() != nullptr;
      EXPECT_GT(sync_layers, 0);
    }
  }
  EXPECT_EQ(by_norm["bn"], by_norm["frozen_bn"]);
  EXPECT_EQ(by_norm["bn"], by_norm["syncbn"]);
  EXPECT_TRUE(by_norm["bn"].count("backbone.layer1.0.downsample.1.running_var"));
  EXPECT_TRUE(by_norm["bn"].count("decode_head.scale_heads.3.4.bn.weight"));
  EXPECT_TRUE(by_norm["bn"].count("neck.lateral_convs.0.conv.bias"));
}

TEST(ModelsNorm, FrozenBatchNormUsesRunningStatsInTrainMode) {
  torch::manual_seed(3);
  FrozenBatchNorm2d frozen(4);
  torch::nn::BatchNorm2d reference(4);
  {
    torch::NoGradGuard no_grad;
    frozen->weight.uniform_(0.5, 1.5);
    frozen->bias.normal_();
    frozen->running_mean.normal_();
    frozen->running_var.uniform_(0.5, 2.0);
    reference->weight.copy_(frozen->weight);
    reference->bias.copy_(frozen->bias);
    reference->running_mean.copy_(frozen->running_mean);
    reference->running_var.copy_(frozen->running_var);
  }
  torch::Tensor mean_before = frozen->running_mean.clone(), var_before = frozen->running_var.clone();
  frozen->train();
  reference->eval();
  torch::Tensor x = torch::randn({3, 4, 5, 5}) * 3 + 1;
  torch::Tensor y = frozen->forward(x);
  EXPECT_TRUE(torch::allclose(y, reference->forward(x), 1e-5, 1e-5));
  EXPECT_TRUE(torch::equal(frozen->running_mean, mean_before));
  EXPECT_TRUE(torch::equal(frozen->running_var, var_before));
  EXPECT_EQ(frozen->num_batches_tracked.item<int64_t>(), 0);
  for (const auto& p : frozen->parameters()) EXPECT_FALSE(p.requires_grad());
  // Same names as BatchNorm2d, so checkpoints load across norms.
  EXPECT_EQ(state_shapes(*frozen), state_shapes(*reference));

  // In a segmentor the backbone has no trainable norm parameter; the head's norms train.
  ModelConfig config = tiny_config();
  config.norm = "frozen_bn";
  auto model = build_segmentor(tiny_build(config));
  model->train();
  for (const auto& item : model->named_parameters()) {
    const std::string& key = item.key();
    const bool backbone_norm = key.rfind("backbone.", 0) == 0 &&
                               (key.find(".bn") != std::string::npos || key.find("downsample.1") != std::string::npos);
    if (backbone_norm) {
      EXPECT_FALSE(item.value().requires_grad()) << key;
    }
  }
  std::map<std::string, torch::Tensor> buffers_before;
  for (const auto& item : model->named_buffers()) buffers_before[item.key()] = item.value().clone();
  model->loss(torch::randn({2, 3, 64, 64}), torch::randint(0, 5, {2, 64, 64}, torch::kLong)).total.backward();
  for (const auto& item : model->named_buffers()) {
    if (item.key().rfind("backbone.", 0) == 0) {
      EXPECT_TRUE(torch::equal(item.value(), buffers_before.at(item.key()))) << item.key();
    }
  }
}

// ---- segmentor interface -------------------------------------------------------------------------

// The backbone.* parameters are the CLIP ResNet's, and backbone and head both get gradients.
TEST(ModelsSegmentor, BackboneAndHeadParametersAllLearn) {
  torch::manual_seed(1);
  auto model = build_segmentor(tiny_build(tiny_config()));
  model->train();
  std::vector<torch::Tensor> backbone, head;
  for (const auto& item : model->named_parameters())
    (item.key().rfind("backbone.", 0) == 0 ? backbone : head).push_back(item.value());
  for (const auto& p : model->parameters()) EXPECT_TRUE(p.requires_grad());
  int64_t backbone_numel = 0;
  for (const auto& p : backbone) backbone_numel += p.numel();
  ClipResNetOptions options;
  options.width = 8;
  options.with_attnpool = false;
  options.norm = make_norm_factory("bn", nullptr);
  ClipResNet alone(options);
  EXPECT_EQ(backbone_numel, count(*alone));

  LossTerms loss = model->loss(torch::randn({2, 3, 64, 64}), torch::randint(0, 5, {2, 64, 64}, torch::kLong));
  EXPECT_TRUE(std::isfinite(loss.total.item<double>()));
  loss.total.backward();
  for (const auto& group : {backbone, head}) {
    double norm = 0;
    for (const auto& p : group) {
      ASSERT_TRUE(p.grad().defined());
      norm += p.grad().pow(2).sum().item<double>();
    }
    EXPECT_GT(norm, 0.0);
  }
}

TEST(ModelsSegmentor, ConfigErrorsNameTheKey) {
  auto message_of = [](const ModelConfig& config) -> std::string {
    try {
      build_segmentor(tiny_build(config));
    } catch (const ConfigError& e) {
      return e.what();
    }
    return "(no error)";
  };
  ModelConfig config = tiny_config();
  config.backbone = "clip_vit_l14";
  std::string message = message_of(config);
  EXPECT_NE(message.find("model.backbone"), std::string::npos) << message;
  EXPECT_NE(message.find("clip_vit_l14"), std::string::npos) << message;
  EXPECT_NE(message.find("clip_vit_b16"), std::string::npos) << message;
  EXPECT_NE(message.find("clip_rn50"), std::string::npos) << message;
  EXPECT_NE(message.find("clip_rn101"), std::string::npos) << message;

  for (int width : {4, 12, 0}) {
    config = tiny_config();
    config.width = width;
    message = message_of(config);
    EXPECT_NE(message.find("model.width"), std::string::npos) << message;
    EXPECT_NE(message.find(std::to_string(width)), std::string::npos) << message;
  }

  config = tiny_config();
  config.head = "segformer";
  message = message_of(config);
  EXPECT_NE(message.find("model.head"), std::string::npos) << message;
  EXPECT_NE(message.find("fpn"), std::string::npos) << message;

  config = tiny_config();
  config.norm = "gn";
  message = message_of(config);
  EXPECT_NE(message.find("model.norm"), std::string::npos) << message;
  EXPECT_NE(message.find("frozen_bn"), std::string::npos) << message;
}

// ---- pretrained CLIP weights -------------------------------------------------------------------

class ModelsPretrained : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { reference_ = new test_io::ReferenceArchive("clip", "make_clip_archive.py", {"8"}); }
  static void TearDownTestSuite() { delete reference_; }
  static const std::string& archive() { return reference_->path; }
  static const std::map<std::string, torch::Tensor>& expected() { return reference_->expected; }
  static test_io::ReferenceArchive* reference_;
};
test_io::ReferenceArchive* ModelsPretrained::reference_ = nullptr;

TEST_F(ModelsPretrained, FpnBackboneLoadsVisualTensorsByName) {
  ModelConfig config = tiny_config();
  config.pretrained = archive();
  auto model = std::dynamic_pointer_cast<FpnSegmentorImpl>(build_segmentor(tiny_build(config)));
  ASSERT_TRUE(model);
  int64_t compared = 0;
  for (const auto& item : model->backbone()->named_parameters()) {
    EXPECT_TRUE(torch::equal(item.value(), expected().at("visual." + item.key()))) << item.key();
    ++compared;
  }
  for (const auto& item : model->backbone()->named_buffers()) {
    EXPECT_TRUE(torch::equal(item.value(), expected().at("visual." + item.key()))) << item.key();
    EXPECT_EQ(item.value().scalar_type(), expected().at("visual." + item.key()).scalar_type()) << item.key();
  }
  EXPECT_EQ(compared, static_cast<int64_t>(model->backbone()->parameters().size()));
  EXPECT_GT(compared, 100);
  EXPECT_EQ(model->backbone()->parameters()[0].scalar_type(), torch::kFloat);
}

TEST_F(ModelsPretrained, AttnpoolGridIsResizedToTheModelResolution) {
  ClipResNetOptions options;
  options.width = 8;
  options.input_resolution = 128;  // 4x4 grid; the archive has 7x7
  options.norm = make_norm_factory("bn", nullptr);
  ClipResNet model(options);
  WeightImportOptions weights;
  weights.path = archive();
  WeightImportReport report = import_torchscript_weights(weights, *model);
  EXPECT_EQ(report.resized, std::vector<std::string>{"attnpool.positional_embedding"});
  EXPECT_EQ(report.skipped, 0);
  for (const auto& item : model->named_parameters()) {
    if (item.key() == "attnpool.positional_embedding") {
      EXPECT_EQ(item.value().sizes(), torch::IntArrayRef({17, 256}));
      EXPECT_TRUE(torch::allclose(item.value(), expected().at("pos_4x4"), 1e-5, 1e-6));
    } else {
      EXPECT_TRUE(torch::equal(item.value(), expected().at("visual." + item.key()))) << item.key();
    }
  }
}

TEST_F(ModelsPretrained, MismatchesAreClearErrors) {
  auto message_of = [](const ModelConfig& config) -> std::string {
    try {
      build_segmentor(tiny_build(config));
    } catch (const ModelError& e) {
      return e.what();
    }
    return "(no error)";
  };
  ModelConfig config = tiny_config();
  config.pretrained = archive();
  config.width = 16;
  std::string message = message_of(config);
  EXPECT_NE(message.find("model.pretrained"), std::string::npos) << message;
  EXPECT_NE(message.find("visual.conv1.weight"), std::string::npos) << message;
  EXPECT_NE(message.find("model.width"), std::string::npos) << message;

  config = tiny_config();
  config.pretrained = archive();
  config.backbone = "clip_rn101";
  message = message_of(config);
  EXPECT_NE(message.find("missing visual.layer3.6."), std::string::npos) << message;

  config = tiny_config();
  config.pretrained = archive() + ".nope";
  message = message_of(config);
  EXPECT_NE(message.find("model.pretrained"), std::string::npos) << message;
  EXPECT_NE(message.find("no such file"), std::string::npos) << message;

  const std::string garbage = test_io::temp_path("garbage");
  test_io::write_bytes(garbage, std::vector<char>{'n', 'o', 't', ' ', 'a', ' ', 'z', 'i', 'p'});
  config.pretrained = garbage;
  message = message_of(config);
  std::remove(garbage.c_str());
  EXPECT_NE(message.find("not a TorchScript archive"), std::string::npos) << message;
}

}  // namespace
}  // namespace segrun::models
