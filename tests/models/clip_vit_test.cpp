// Tests of the CLIP ViT-B/16 backbone (models/clip/clip_vit.h): golden outputs of the tower and of the
// Semantic FPN model on it against an independent PyTorch reference (reference_clip_vit.py), the
// OpenAI ViT-B/16 key table and parameter count, keyed stochastic depth, the weight import from a
// generated archive in ViT-B-16.pt's key layout (make_clip_vit_archive.py), and every head
// (fpn, clip_sp, mask2former, mta_clip) training on it.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "core/error.h"
#include "models/clip/clip_checkpoint.h"
#include "models/clip/clip_vit.h"
#include "models/losses/seg_losses.h"
#include "models/norm.h"
#include "models/segmentor.h"
#include "tiny_mask2former.h"
#include "torch_test_io.h"

namespace segrun::models {
namespace {

// A 4-block ViT of width 32 (2 heads), embed 24, every block an output level.
ClipVitOptions tiny_vit_options(int64_t input_resolution = 64) {
  ClipVitOptions options;
  options.width = 32;
  options.layers = 4;
  options.heads = 2;
  options.embed_dim = 24;
  options.out_indices = {0, 1, 2, 3};
  options.input_resolution = input_resolution;
  options.norm = make_norm_factory("bn", nullptr);
  return options;
}

ModelConfig tiny_vit_config(const std::string& head) {
  ModelConfig config = test_fixtures::tiny_mask2former_config(head);
  config.backbone = "clip_vit_b16";
  config.vit.width = 32;
  config.vit.layers = 4;
  config.vit.heads = 2;
  config.vit.embed_dim = 24;
  config.vit.out_indices = {0, 1, 2, 3};
  config.fpn_channels = 16;
  config.text.width = 32;
  config.text.layers = 1;
  config.text.heads = 2;
  config.clip_sp.top_k = 3;
  config.clip_sp.graph_blocks = 1;
  config.clip_sp.graph_nodes = 4;
  config.clip_sp.attn_dim = 16;
  config.clip_sp.heads = 2;
  config.clip_sp.srm_dim = 8;
  config.mta_clip.prompts = 2;
  config.mta_clip.context_length = 4;
  return config;
}

BuildOptions tiny_vit_build(const ModelConfig& config, int classes = 5) {
  BuildOptions options;
  options.config = config;
  options.num_classes = classes;
  for (int i = 0; i < classes; ++i) options.class_names.push_back("thing" + std::to_string(i));
  options.crop_size = 64;
  return options;
}

void add_state(c10::Dict<std::string, at::Tensor>& dict, torch::nn::Module& model, const std::string& prefix) {
  for (const auto& item : model.named_parameters()) dict.insert(prefix + item.key(), item.value().detach().clone());
  for (const auto& item : model.named_buffers()) dict.insert(prefix + item.key(), item.value().detach().clone());
}

// LayerNorm / GroupNorm affine parameters away from (1, 0), so the reference checks them too.
void randomize_affine(torch::nn::Module& model) {
  torch::NoGradGuard no_grad;
  for (auto& item : model.named_parameters()) {
    const std::string& key = item.key();
    if (item.value().dim() != 1 || key.find("attn") != std::string::npos || key.find("mlp") != std::string::npos)
      continue;
    if (key.find("ln_") != std::string::npos || key.find("fpn") != std::string::npos)
      item.value().add_(torch::randn_like(item.value()) * 0.2);
  }
}

// ---- golden outputs --------------------------------------------------------------------------------

TEST(ClipVit, MatchesIndependentPytorchReference) {
  torch::manual_seed(5);
  ClipVit vit(tiny_vit_options());  // 4x4 positional grid, resized to each input's patch grid
  test_io::randomize_norms(*vit);
  randomize_affine(*vit);
  vit->eval();

  const int classes = 5;
  ModelConfig config = tiny_vit_config("fpn");
  auto segmentor = std::dynamic_pointer_cast<FpnSegmentorImpl>(build_segmentor(tiny_vit_build(config, classes)));
  ASSERT_TRUE(segmentor);
  test_io::randomize_norms(*segmentor);
  randomize_affine(*segmentor);
  segmentor->eval();

  const torch::Tensor images = torch::randn({2, 3, 64, 96});  // 4x6 patches
  const torch::Tensor odd = torch::randn({1, 3, 70, 100});    // floors to 4x6 patches
  c10::Dict<std::string, at::Tensor> dict;
  add_state(dict, *vit, "vit.");
  add_state(dict, *segmentor, "seg.");
  dict.insert("input", images);
  dict.insert("input_odd", odd);
  const std::map<std::string, int64_t> cfg{
      {"resolution", 64}, {"width", 32}, {"layers", 4}, {"heads", 2},         {"embed", 24},           {"out0", 0},
      {"out1", 1},        {"out2", 2},   {"out3", 3},   {"fpn_channels", 16}, {"num_classes", classes}};
  for (const auto& item : cfg) dict.insert("cfg." + item.first, torch::tensor(item.second));
  const std::map<std::string, torch::Tensor> ref = test_io::run_tensor_reference("reference_clip_vit.py", dict);

  torch::NoGradGuard no_grad;
  const std::vector<std::vector<int64_t>> shapes{{2, 32, 16, 24}, {2, 32, 8, 12}, {2, 32, 4, 6}, {2, 32, 2, 3}};
  for (const std::string name : {"input", "input_odd"}) {
    const torch::Tensor& x = name == "input" ? images : odd;
    ClipVisualOutput out = vit->forward(x);
    ASSERT_EQ(out.stages.size(), 4u);
    for (int i = 0; i < 4; ++i) {
      std::vector<int64_t> shape = shapes[static_cast<size_t>(i)];
      shape[0] = x.size(0);
      EXPECT_EQ(out.stages[i].sizes(), torch::IntArrayRef(shape)) << name << " c" << i + 1;
      test_io::expect_close(out.stages[i], ref.at(name + ".c" + std::to_string(i + 1)),
                            name + " c" + std::to_string(i + 1));
    }
    EXPECT_EQ(out.global.sizes(), torch::IntArrayRef({x.size(0), 24}));
    EXPECT_EQ(out.dense.sizes(), torch::IntArrayRef({x.size(0), 24, 4, 6}));
    test_io::expect_close(out.global, ref.at(name + ".global"), name + " global");
    test_io::expect_close(out.dense, ref.at(name + ".dense"), name + " dense");
  }
  const torch::Tensor logits = segmentor->forward(images);
  EXPECT_EQ(logits.sizes(), torch::IntArrayRef({2, classes, 16, 24}));
  test_io::expect_close(logits, ref.at("seg.logits"), "fpn logits");
  test_io::expect_close(segmentor->predict_logits(images), ref.at("seg.pred"), "fpn predict_logits");
  EXPECT_FALSE(segmentor->backbone()->has_embeddings());
}

// ---- the real ViT-B/16 --------------------------------------------------------------------------------

TEST(ClipVit, RealSizeMatchesOpenAiKeyTableAndCount) {
  ClipVitOptions options;  // ViT-B/16 defaults
  options.norm = make_norm_factory("bn", nullptr);
  ClipVit vit(options);
  std::map<std::string, std::vector<int64_t>> table{{"conv1.weight", {768, 3, 16, 16}},
                                                    {"class_embedding", {768}},
                                                    {"positional_embedding", {197, 768}},
                                                    {"ln_pre.weight", {768}},
                                                    {"ln_pre.bias", {768}},
                                                    {"ln_post.weight", {768}},
                                                    {"ln_post.bias", {768}},
                                                    {"proj", {768, 512}}};
  for (int block = 0; block < 12; ++block) {
    const std::string p = "transformer.resblocks." + std::to_string(block) + ".";
    table[p + "attn.in_proj_weight"] = {2304, 768};
    table[p + "attn.in_proj_bias"] = {2304};
    table[p + "attn.out_proj.weight"] = {768, 768};
    table[p + "attn.out_proj.bias"] = {768};
    for (const char* ln : {"ln_1", "ln_2"}) {
      table[p + ln + ".weight"] = {768};
      table[p + ln + ".bias"] = {768};
    }
    table[p + "mlp.c_fc.weight"] = {3072, 768};
    table[p + "mlp.c_fc.bias"] = {3072};
    table[p + "mlp.c_proj.weight"] = {768, 3072};
    table[p + "mlp.c_proj.bias"] = {768};
  }
  int64_t openai = 0, pyramid = 0;
  for (const auto& item : vit->named_parameters()) {
    const std::string& key = item.key();
    if (key.rfind("fpn", 0) == 0) {
      pyramid += item.value().numel();
      continue;
    }
    auto it = table.find(key);
    ASSERT_NE(it, table.end()) << "unexpected parameter " << key;
    EXPECT_EQ(item.value().sizes(), torch::IntArrayRef(it->second)) << key;
    openai += item.value().numel();
    table.erase(it);
  }
  EXPECT_TRUE(table.empty()) << table.size() << " OpenAI keys missing, e.g. " << table.begin()->first;
  // By hand: conv1 589,824 + class 768 + positional 151,296 + ln_pre 1,536 + 12 blocks x 7,087,872
  // (in_proj 1,771,776, out_proj 590,592, c_fc 2,362,368, c_proj 2,360,064, two LNs 3,072) +
  // ln_post 1,536 + proj 393,216: OpenAI's 86.19 M image encoder.
  EXPECT_EQ(openai, 86192640);
  // fpn1: GN 1,536 + 2 transposed convs 2 x 2,360,064 + BN 1,536; fpn2: GN + one transposed conv;
  // fpn3, fpn4: one GN each.
  EXPECT_EQ(pyramid, 4723200 + 2361600 + 1536 + 1536);
  EXPECT_EQ(vit->visual_spec().stage_channels, std::vector<int64_t>(4, 768));
  EXPECT_EQ(vit->visual_spec().embed_dim, 512);
}

// ---- stochastic depth ----------------------------------------------------------------------------------

TEST(ClipVit, StochasticDepthIsKeyedPerSample) {
  torch::manual_seed(3);
  ClipVitOptions options = tiny_vit_options();
  options.drop_path_rate = 0.6;
  options.norm = make_norm_factory("frozen_bn", nullptr);  // per-sample in train mode too
  options.random = std::make_shared<SampleRandom>();
  ClipVit vit(options);
  vit->train();
  const torch::Tensor images = torch::randn({4, 3, 32, 48});
  const std::vector<uint64_t> keys{11, 22, 33, 44};

  torch::NoGradGuard no_grad;
  options.random->set_keys(keys);
  const torch::Tensor whole = vit->forward(images).global;
  // The same samples split 1 + 3: identical per-sample results (world-size invariance).
  options.random->set_keys({keys[0]});
  const torch::Tensor first = vit->forward(images.slice(0, 0, 1)).global;
  options.random->set_keys({keys[1], keys[2], keys[3]});
  const torch::Tensor rest = vit->forward(images.slice(0, 1)).global;
  EXPECT_TRUE(torch::allclose(whole, torch::cat({first, rest}, 0), 1e-5, 1e-6));
  // Same keys, same draws; other keys, other draws; evaluation drops nothing.
  options.random->set_keys(keys);
  EXPECT_TRUE(torch::equal(whole, vit->forward(images).global));
  options.random->set_keys({55, 66, 77, 88});
  EXPECT_FALSE(torch::allclose(whole, vit->forward(images).global));
  vit->eval();
  const torch::Tensor eval_out = vit->forward(images).global;
  int dropped_somewhere = 0;
  for (int64_t b = 0; b < 4; ++b) dropped_somewhere += torch::allclose(eval_out[b], whole[b]) ? 0 : 1;
  EXPECT_GT(dropped_somewhere, 0);
  EXPECT_TRUE(torch::isfinite(whole).all().item<bool>());
}

// ---- pretrained weights --------------------------------------------------------------------------------

class ClipVitPretrained : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // Visual width 32, 4 blocks, 2 heads, embed 24; text width 32, 2 heads, 1 block; resized to 4x4.
    reference_ =
        new test_io::ReferenceArchive("vit", "make_clip_vit_archive.py", {"32", "4", "2", "24", "32", "2", "1", "4"});
  }
  static void TearDownTestSuite() { delete reference_; }
  static const std::string& archive() { return reference_->path; }
  static const std::map<std::string, torch::Tensor>& expected() { return reference_->expected; }
  static test_io::ReferenceArchive* reference_;
};
test_io::ReferenceArchive* ClipVitPretrained::reference_ = nullptr;

TEST_F(ClipVitPretrained, ImportsTheVisualTowerAndResizesTheGrid) {
  ClipVit vit(tiny_vit_options(64));  // 4x4 grid; the archive has 14x14 (224 / 16)
  const torch::Tensor fpn_before = vit->named_parameters()["fpn1.1.weight"].clone();
  WeightImportOptions weights;
  weights.path = archive();
  weights.grid_keys = {"positional_embedding"};
  weights.target_only_prefixes = {"fpn1.", "fpn2.", "fpn3.", "fpn4."};
  const WeightImportReport report = import_torchscript_weights(weights, *vit);
  EXPECT_EQ(report.resized, std::vector<std::string>{"positional_embedding"});
  EXPECT_EQ(report.skipped, 0);
  EXPECT_GT(report.own_init, 0);
  int64_t compared = 0;
  for (const auto& item : vit->named_parameters()) {
    if (item.key().rfind("fpn", 0) == 0) continue;
    if (item.key() == "positional_embedding") {
      EXPECT_EQ(item.value().sizes(), torch::IntArrayRef({17, 32}));
      EXPECT_TRUE(torch::allclose(item.value(), expected().at("pos_resized"), 1e-5, 1e-6));
    } else {
      EXPECT_TRUE(torch::equal(item.value(), expected().at("visual." + item.key()))) << item.key();
    }
    ++compared;
  }
  EXPECT_EQ(compared, 8 + 4 * 12);  // conv1, class, pos, ln_pre x2, ln_post x2, proj + 12 per block
  EXPECT_TRUE(torch::equal(vit->named_parameters()["fpn1.1.weight"], fpn_before));
}

TEST_F(ClipVitPretrained, EveryHeadBuildsFromTheArchive) {
  for (const std::string head : {"fpn", "clip_sp", "mask2former", "mta_clip"}) {
    ModelConfig config = tiny_vit_config(head);
    config.pretrained = archive();
    std::shared_ptr<SegmentorImpl> model = build_segmentor(tiny_vit_build(config));
    for (const auto& item : model->named_parameters()) {
      const std::string& key = item.key();
      if (key.rfind("backbone.", 0) != 0 || key.rfind("backbone.fpn", 0) == 0 || key == "backbone.positional_embedding")
        continue;
      EXPECT_TRUE(torch::equal(item.value(), expected().at("visual." + key.substr(9)))) << head << ": " << key;
    }
  }
}

TEST_F(ClipVitPretrained, AResNetArchiveIsAClearError) {
  ModelConfig config = tiny_vit_config("fpn");
  config.pretrained = archive();
  config.backbone = "clip_rn50";
  config.width = 8;
  try {
    build_segmentor(tiny_vit_build(config));
    FAIL() << "a ViT archive loaded into a ResNet";
  } catch (const ModelError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("model.pretrained"), std::string::npos) << message;
    EXPECT_NE(message.find("check model.backbone"), std::string::npos) << message;
  }
}

// ---- every head trains on it ----------------------------------------------------------------------------

TEST(ClipVitHeads, EveryHeadTrainsAndEveryTrainableParameterGetsAGradient) {
  for (const std::string head : {"fpn", "clip_sp", "mask2former", "mta_clip"}) {
    torch::manual_seed(1);
    ModelConfig config = tiny_vit_config(head);
    config.vit.drop_path_rate = 0.1;
    std::shared_ptr<SegmentorImpl> model = build_segmentor(tiny_vit_build(config, 3));
    model->train();
    auto batch = test_fixtures::colour_split_batch(2, 64);
    model->set_sample_keys({1, 2});
    LossTerms loss = model->loss(batch.first, batch.second);
    ASSERT_TRUE(torch::isfinite(loss.total).item<bool>()) << head;
    loss.total.backward();
    for (const auto& item : model->named_parameters()) {
      if (!item.value().requires_grad()) continue;
      ASSERT_TRUE(item.value().grad().defined()) << head << ": no gradient for " << item.key();
    }
    model->eval();
    torch::NoGradGuard no_grad;
    EXPECT_EQ(model->predict_logits(batch.first).sizes(), torch::IntArrayRef({2, 3, 64, 64})) << head;
  }
}

TEST(ClipVitHeads, ACropThatIsNotAMultipleOfThePatchNamesDataCrop) {
  BuildOptions options = tiny_vit_build(tiny_vit_config("fpn"));
  options.crop_size = 72;
  try {
    build_segmentor(options);
    FAIL() << "crop 72 accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("data.crop"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace segrun::models
