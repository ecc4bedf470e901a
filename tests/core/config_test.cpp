// Config parsing: every error names file, line and key; overrides are type-checked; the resolved
// config round-trips.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <unistd.h>

#include "core/config.h"
#include "core/config_changes.h"
#include "core/error.h"

namespace segrun {
namespace {

using ::testing::HasSubstr;

std::string error_of(const std::string& text, const std::vector<std::string>& overrides = {}) {
  try {
    parse_config(text, "exp.toml", overrides);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "<no error>";
}

TEST(Config, DefaultsFollowTheDesignVocabulary) {
  Config c = parse_config("", "empty.toml");
  EXPECT_EQ(c.data.crop, (std::array<int, 2>{512, 512}));
  EXPECT_EQ(c.data.scale, (std::array<int, 2>{2048, 512}));
  EXPECT_DOUBLE_EQ(c.data.cat_max_ratio, 0.75);
  EXPECT_EQ(c.model.norm, "syncbn");
  EXPECT_DOUBLE_EQ(c.train.backbone_lr_mult, 0.1);
  EXPECT_EQ(c.train.warmup_iters, 1500);
  EXPECT_DOUBLE_EQ(c.dist.bucket_mb, 25.0);
}

TEST(Config, ParsesSectionsAndTypes) {
  Config c = parse_config(R"(
name = "x"
[data]
crop = [256, 320]
ratio = [0.5, 1]
batch_per_rank = 2
[model]
width = 16
norm = "bn"
[train]
lr = 2e-4
iters = 100
warmup_iters = 10
seed = 7
[eval]
scales = [0.5, 1, 1.5]
flip = true
)",
                          "exp.toml");
  EXPECT_EQ(c.name, "x");
  EXPECT_EQ(c.data.crop, (std::array<int, 2>{256, 320}));
  EXPECT_DOUBLE_EQ(c.data.ratio[1], 1.0);  // an integer where a float is expected is fine
  EXPECT_EQ(c.model.width, 16);
  EXPECT_EQ(c.model.norm, "bn");
  EXPECT_DOUBLE_EQ(c.train.lr, 2e-4);
  EXPECT_EQ(c.train.seed, 7u);
  EXPECT_EQ(c.eval.scales, (std::vector<double>{0.5, 1.0, 1.5}));
  EXPECT_TRUE(c.eval.flip);
}

TEST(Config, UnknownKeyNamesLineAndSuggestsNearest) {
  std::string e = error_of("[train]\niters = 10\nwarmup_iter = 5\n");
  EXPECT_THAT(e, HasSubstr("exp.toml:3"));
  EXPECT_THAT(e, HasSubstr("train.warmup_iter"));
  EXPECT_THAT(e, HasSubstr("did you mean 'train.warmup_iters'"));
  EXPECT_THAT(error_of("[modle]\nwidth = 8\n"), HasSubstr("did you mean 'model.width'"));
}

TEST(Config, WrongTypeIsReported) {
  std::string e = error_of("[data]\nbatch_per_rank = \"four\"\n");
  EXPECT_THAT(e, HasSubstr("exp.toml:2: data.batch_per_rank: expected an integer, got a string"));
  EXPECT_THAT(error_of("[data]\ncrop = [512]\n"), HasSubstr("data.crop: expected 2 values, got 1"));
  EXPECT_THAT(error_of("[eval]\nflip = 1\n"), HasSubstr("eval.flip: expected true or false"));
}

TEST(Config, OutOfRangeAndChoices) {
  EXPECT_THAT(error_of("[train]\nlr = -1e-4\n"),
              HasSubstr("exp.toml:2: train.lr: value -0.0001 is out of range (0, 10]"));
  EXPECT_THAT(error_of("[data]\nbatch_per_rank = 0\n"),
              HasSubstr("data.batch_per_rank: value 0 is out of range [1, 1024]"));
  EXPECT_THAT(error_of("[model]\nnorm = \"gn\"\n"), HasSubstr("model.norm: 'gn' is not one of: syncbn, bn, frozen_bn"));
  EXPECT_THAT(error_of("[data]\nratio = [2.0, 0.5]\n"), HasSubstr("data.ratio: expected [low, high]"));
  EXPECT_THAT(error_of("[model]\nwidth = 12\n"), HasSubstr("model.width: must be a multiple of 8"));
  EXPECT_THAT(error_of("[train]\niters = 10\nwarmup_iters = 20\n"), HasSubstr("train.warmup_iters"));
}

TEST(Config, VitSizesAndOutputBlocks) {
  Config c = parse_config("[model]\nbackbone = \"clip_vit_b16\"\n[model.vit]\nlayers = 4\nout_indices = [0, 1, 2, 3]\n",
                          "exp.toml");
  EXPECT_EQ(c.model.backbone, "clip_vit_b16");
  EXPECT_EQ(c.model.vit.out_indices, (std::vector<int>{0, 1, 2, 3}));
  EXPECT_EQ(c.model.vit.width, 768);  // ViT-B/16 defaults
  EXPECT_EQ(parse_config("", "exp.toml").model.vit.out_indices, (std::vector<int>{3, 5, 7, 11}));
  EXPECT_THAT(error_of("[model.vit]\nout_indices = [3, 5, 7]\n"),
              HasSubstr("model.vit.out_indices: needs 4 block indices"));
  EXPECT_THAT(error_of("[model.vit]\nout_indices = [3, 5, 7, 12]\n"),
              HasSubstr("model.vit.out_indices: index 12 is not a block"));
  EXPECT_THAT(error_of("[model.vit]\nout_indices = [3, 7, 5, 11]\n"), HasSubstr("indices must increase"));
  EXPECT_THAT(error_of("[model.vit]\nout_indices = [0, 1, 2, 2.5]\n"),
              HasSubstr("model.vit.out_indices: expected an integer"));
  EXPECT_THAT(error_of("[model.vit]\nwidth = 100\n"),
              HasSubstr("model.vit.width: must be divisible by model.vit.heads"));
  EXPECT_THAT(error_of("", {"model.backbone=clip_vit_l14"}), HasSubstr("clip_rn50, clip_rn101, clip_vit_b16"));
  // A check between keys names the override that broke it, else the file.
  EXPECT_EQ(error_of("", {"model.clip_sp.heads=3"}),
            "override 'model.clip_sp.heads=3': model.clip_sp.heads: must divide model.clip_sp.attn_dim = 512");
  EXPECT_EQ(error_of("[model.clip_sp]\nheads = 3\n"),
            "exp.toml: model.clip_sp.attn_dim: must be divisible by model.clip_sp.heads = 3");
  // Crops the backbones cannot take, before any rank starts.
  EXPECT_EQ(error_of("", {"data.crop=[16,16]"}),
            "override 'data.crop=[16,16]': data.crop: a side under 32 pixels leaves the backbone nothing to see");
  EXPECT_EQ(error_of("[data]\ncrop = [72, 64]\n[model]\nbackbone = \"clip_vit_b16\"\n"),
            "exp.toml: data.crop: 72 is not a multiple of clip_vit_b16's patch size 16");
  EXPECT_NO_THROW(parse_config("[data]\ncrop = [72, 64]\n", "exp.toml"));  // a ResNet takes any size
}

TEST(Config, SyntaxErrorNamesLine) {
  std::string e = error_of("[train]\nlr = = 3\n");
  EXPECT_THAT(e, HasSubstr("exp.toml:2: syntax error"));
}

TEST(Config, OverridesAreTypedAndChecked) {
  Config c = parse_config("[train]\nlr = 1e-4\n", "exp.toml",
                          {"train.lr=3e-4", "model.head=fpn", "data.crop=[64, 96]", "eval.flip=true", "train.iters=5",
                           "train.warmup_iters=0"});
  EXPECT_DOUBLE_EQ(c.train.lr, 3e-4);
  EXPECT_EQ(c.model.head, "fpn");
  EXPECT_EQ(c.data.crop, (std::array<int, 2>{64, 96}));
  EXPECT_TRUE(c.eval.flip);
  EXPECT_EQ(c.train.iters, 5);
  EXPECT_THAT(error_of("", {"train.lr=fast"}),
              HasSubstr("override 'train.lr=fast': train.lr: expected a number, got a string"));
  EXPECT_THAT(error_of("", {"train.lrr=1"}), HasSubstr("did you mean 'train.lr'"));
  EXPECT_THAT(error_of("", {"train.lr"}), HasSubstr("expected key=value"));
  // Decimals TOML refuses but Python reads are numbers too (they were strings: "expected a number").
  EXPECT_DOUBLE_EQ(parse_config("", "exp.toml", {"train.lr=.001"}).train.lr, 0.001);
  EXPECT_DOUBLE_EQ(parse_config("", "exp.toml", {"train.lr=1."}).train.lr, 1.0);
  EXPECT_DOUBLE_EQ(parse_config("", "exp.toml", {"train.lr=+.5e-3"}).train.lr, 0.0005);
  EXPECT_EQ(parse_config("", "exp.toml", {"name=.x"}).name, ".x");  // no number: a word
  // A string key takes a number, boolean or date as its text: it can hold nothing else.
  for (const std::string name : {"1", "1.", ".5", "2026-01-01", "true", "1e3"})
    EXPECT_EQ(parse_config("", "exp.toml", {"name=" + name}).name, name);
  EXPECT_EQ(parse_config("", "exp.toml", {"name=\"7\""}).name, "7");
  EXPECT_THAT(error_of("", {"name=[1]"}), HasSubstr("override 'name=[1]': name: expected a string, got an array"));
  EXPECT_THAT(error_of("", {"model.head=1"}), HasSubstr("model.head: '1' is not one of"));
}

// A check made after loading (the device, the model) blames the override that set the key, else the file.
TEST(Config, OriginOfAKeyIsItsOverrideElseTheFile) {
  const Config c = parse_config("", "exp.toml", {"dist.device=cpu", "train.lr=1e-3", "dist.device=cuda"});
  EXPECT_EQ(c.overrides, (std::vector<std::string>{"dist.device=cpu", "train.lr=1e-3", "dist.device=cuda"}));
  EXPECT_EQ(origin_of(c, "dist.device"), "override 'dist.device=cuda'");  // the one in force
  EXPECT_EQ(origin_of(c, "dist.backend"), "config");                      // defaults alone
  EXPECT_EQ(origin_of_message(c, "train.lr: too large"), "override 'train.lr=1e-3'");
  EXPECT_EQ(origin_of_message(c, "model.head: unknown"), "config");
  const auto dir = std::filesystem::temp_directory_path() / ("segrun-origin-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "exp.toml").string();
  std::ofstream(path) << "[train]\nlr = 1e-4\n";
  const Config loaded = load_config(path, {"dist.device=cuda"});
  EXPECT_EQ(origin_of(loaded, "train.lr"), std::filesystem::absolute(path).string());
  EXPECT_EQ(origin_of(loaded, "dist.device"), "override 'dist.device=cuda'");
  std::filesystem::remove_all(dir);
}

TEST(Config, ResolvedConfigRoundTrips) {
  Config c = parse_config(
      "", "exp.toml",
      {"train.lr=3e-4", "data.crop=[64,96]", "name=abc", "eval.scales=[0.75,1.25]", "model.vit.out_indices=[1,2,3,4]"});
  std::string text = to_toml(c);
  Config back = parse_config(text, "resolved.toml");
  EXPECT_EQ(to_toml(back), text);
  EXPECT_THAT(text, HasSubstr("backbone_lr_mult = 0.1"));  // defaults written out
  EXPECT_EQ(back.eval.scales, (std::vector<double>{0.75, 1.25}));
  EXPECT_EQ(back.model.vit.out_indices, (std::vector<int>{1, 2, 3, 4}));
  // Floats as a person writes them (toml++ alone prints 17 digits: 0.10000000000000001), exactly.
  const Config odd = parse_config("", "exp.toml",
                                  {"train.lr=0.005", "train.min_lr=1e-6", "model.dropout=0.1", "eval.scales=[0.1, 2]",
                                   "name=\"a 0.10000000000000001 'b' \\\" 0.3\""});
  const std::string odd_text = to_toml(odd);
  EXPECT_THAT(odd_text, HasSubstr("\nlr = 0.005\n"));
  EXPECT_THAT(odd_text, HasSubstr("\nmin_lr = 1e-06\n"));
  EXPECT_THAT(odd_text, HasSubstr("\ndropout = 0.1\n"));
  EXPECT_THAT(odd_text, HasSubstr("scales = [ 0.1, 2.0 ]"));
  const Config odd_back = parse_config(odd_text, "resolved.toml");
  EXPECT_EQ(odd_back.name, "a 0.10000000000000001 'b' \" 0.3");  // strings untouched
  EXPECT_EQ(odd_back.train.lr, 0.005);
  EXPECT_EQ(odd_back.train.min_lr, 1e-6);
  EXPECT_EQ(odd_back.eval.scales, (std::vector<double>{0.1, 2.0}));
}

TEST(Config, FileErrorsAndRelativePaths) {
  namespace fs = std::filesystem;
  EXPECT_THROW(load_config("/nonexistent/exp.toml"), ConfigError);
  fs::path dir = fs::temp_directory_path() / "segrun_config_test";
  fs::create_directories(dir);
  {
    std::ofstream out(dir / "exp.toml");
    out << "[data]\nstore = \"stores/train\"\nval_store = \"/abs/val\"\n";
  }
  Config c = load_config((dir / "exp.toml").string());
  EXPECT_EQ(c.data.store, (dir / "stores/train").string());
  EXPECT_EQ(c.data.val_store, "/abs/val");
  EXPECT_EQ(c.name, "exp");
  fs::remove_all(dir);
}

// One table (config_changes.cpp kKeyRoles) says which keys a resume may change and which change a finished
// run's result; a key's own entry wins over its section's (eval.batch vs eval.).
TEST(ConfigChanges, KeyRolesDecideWhatAResumeAndASweepCompare) {
  for (const char* key : {"name", "data.store", "data.workers", "data.on_corrupt", "train.tf32", "train.eval_interval",
                          "eval.batch", "dist.backend", "dist.overlap", "log.interval", "cluster.slurm.partition"})
    EXPECT_FALSE(changes_result(key)) << key;
  for (const char* key : {"train.lr", "model.width", "model.pretrained", "train.iters", "train.save_best", "eval.flip",
                          "eval.scales", "data.crop", "model.clip_sp.top_k"})
    EXPECT_TRUE(changes_result(key)) << key;

  const Config run = parse_config("", "run");
  Config now = run;
  now.eval.batch = 8;        // neither
  now.dist.overlap = false;  // neither
  now.eval.flip = true;      // the result, not the training
  now.train.iters = 5000;    // the result, not the training
  now.model.pretrained = "other.pt";
  EXPECT_TRUE(training_changes(run, now).empty());
  std::vector<std::string> keys;
  for (const ConfigChange& change : result_changes(run, now)) keys.push_back(change.key);
  EXPECT_EQ(keys, (std::vector<std::string>{"model.pretrained", "train.iters", "eval.flip"}));
  now.model.width = 16;  // both
  ASSERT_EQ(training_changes(run, now).size(), 1u);
  EXPECT_EQ(training_changes(run, now)[0].key, "model.width");
}

}  // namespace
}  // namespace segrun
