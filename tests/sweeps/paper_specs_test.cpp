// The shipped sweep specs (configs/sweeps/**/*.toml), read as `segrun sweep plan` reads them:
// every one plans, each run gets a folder of its own whose name says what it is (the keys that
// tell the runs apart, the seed last), and the MTA-CLIP sweeps' Mask2Former baseline trains
// exactly as the standalone configs/mask2former/ recipe of its dataset and backbone does.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/config_changes.h"
#include "sweeps/spec.h"

namespace segrun::sweeps {
namespace {

namespace fs = std::filesystem;

const fs::path kSource = SEGRUN_TEST_SOURCE_DIR;

std::vector<fs::path> shipped_specs() {
  std::vector<fs::path> specs;
  for (const auto& entry : fs::recursive_directory_iterator(kSource / "configs/sweeps"))
    if (entry.is_regular_file() && entry.path().extension() == ".toml") specs.push_back(entry.path());
  std::sort(specs.begin(), specs.end());
  return specs;
}

std::string slug_of(const PlannedRun& run) { return run.dir_name.substr(run.id.size() + 1); }

TEST(ShippedSpecs, EveryOnePlansIntoRunFoldersOfItsOwnEndingInTheSeed) {
  const auto specs = shipped_specs();
  ASSERT_EQ(specs.size(), 16u);  // 2 generic + 8 CLIP-SP + 6 MTA-CLIP
  for (const auto& path : specs) {
    SCOPED_TRACE(path.string());
    std::vector<PlannedRun> runs;
    ASSERT_NO_THROW(runs = expand_sweep(load_sweep_spec(path.string())));
    ASSERT_FALSE(runs.empty());
    std::set<std::string> dirs, slugs;
    for (const auto& run : runs) {
      dirs.insert(run.dir_name);
      const std::string slug = slug_of(run);
      slugs.insert(slug);
      EXPECT_EQ(run.dir_name, run.id + "-" + slug);
      const std::string seed = "s" + std::to_string(run.seed);
      EXPECT_EQ(slug.substr(slug.size() - seed.size()), seed) << slug;
      EXPECT_LE(slug.size(), 64u) << slug;
    }
    // Two runs in one folder would train into each other: names are unique through their ids,
    // and the readable part alone tells the runs apart too.
    EXPECT_EQ(dirs.size(), runs.size());
    EXPECT_EQ(slugs.size(), runs.size());
  }
}

TEST(ShippedSpecs, ClipSpTable1NamesHeadBackboneAndSeedOfEveryRun) {
  // The ViT-B/16 variant's arrays (crops, scale, stride) made every ViT run's name the same
  // cut-off "crop-640--640-_scale-2048--640-_..."; the RN50 names lost their seed digit.
  const auto runs = expand_sweep(load_sweep_spec((kSource / "configs/sweeps/clip_sp/table1_ade20k.toml").string()));
  std::set<std::string> slugs;
  for (const auto& run : runs) slugs.insert(slug_of(run));
  std::set<std::string> expected;
  for (const std::string seed : {"0", "1", "2"}) {
    for (const std::string head : {"fpn", "clip_sp"}) {
      expected.insert("backboneclip_rn50_head" + head + "_pretrainedRN50.pt_s" + seed);
      expected.insert("backboneclip_rn101_head" + head + "_pretrainedRN101.pt_s" + seed);
    }
    // Too long with all 8 keys: the three that tell the runs apart (the other 5 follow from the
    // backbone; DenseCLIP's FPN baseline has no drop path, CLIP-SP 0.1) and 6 hex digits of
    // FNV-1a + fmix64 of the overrides (computed in Python). CLIP-SP's overrides did not change
    // when the baseline's drop path went to 0: same id and hash, so its runs are found and reused.
    expected.insert("backboneclip_vit_b16_headfpn_drop_path_rate0.0~62d01e_s" + seed);
    expected.insert("backboneclip_vit_b16_headclip_sp_drop_path_rate0.1~947cf9_s" + seed);
  }
  EXPECT_EQ(slugs, expected);
}

// The config a sweep's run trains with, and the one `segrun train STANDALONE` would.
struct Pair {
  std::string spec;        // under configs/sweeps/mta_clip/
  std::string backbone;    // the run's model.backbone
  std::string standalone;  // under configs/mask2former/
};

TEST(ShippedSpecs, MtaClipBaselineIsTheMask2FormerRecipe) {
  const std::vector<Pair> pairs = {
      {"table1_ade20k", "clip_rn50", "ade20k_mask2former_clip_rn50_160k"},
      {"table1_ade20k", "clip_rn101", "ade20k_mask2former_clip_rn101_160k"},
      {"table1_ade20k", "clip_vit_b16", "ade20k_mask2former_clip_vit_b16_160k"},
      {"table2_cityscapes", "clip_rn50", "cityscapes_mask2former_clip_rn50_90k"},
      {"table2_cityscapes", "clip_rn101", "cityscapes_mask2former_clip_rn101_90k"},
      {"table3_components", "clip_rn50", "ade20k_mask2former_clip_rn50_160k"},
      {"table4_attention", "clip_rn50", "ade20k_mask2former_clip_rn50_160k"},
  };
  for (const auto& pair : pairs) {
    SCOPED_TRACE(pair.spec + " " + pair.backbone);
    const SweepSpec spec = load_sweep_spec((kSource / "configs/sweeps/mta_clip" / (pair.spec + ".toml")).string());
    int baselines = 0, mta_clip = 0;
    for (const auto& run : expand_sweep(spec)) {
      const Config config = load_config(spec.base, run.train_args());
      if (config.model.backbone != pair.backbone) continue;
      if (config.model.head == "mta_clip") {
        // MTA-CLIP keeps its code's normalizer (docs/models.md, "Mask and dice normalizer").
        EXPECT_EQ(config.model.mask2former.mask_loss_norm, "class_weight_sum");
        ++mta_clip;
        continue;
      }
      ASSERT_EQ(config.model.head, "mask2former");
      ++baselines;
      // The standalone recipe, with the weights file and seed the run was given.
      const Config standalone = load_config(
          (kSource / "configs/mask2former" / (pair.standalone + ".toml")).string(),
          {"model.pretrained=\"" + config.model.pretrained + "\"", "train.seed=" + std::to_string(run.seed)});
      EXPECT_EQ(config.model.mask2former.mask_loss_norm, "num_masks");
      const auto training = training_changes(standalone, config);
      EXPECT_TRUE(training.empty()) << describe_changes(training,
                                                        spec.path + "'s baseline (the run: " + pair.standalone + ")");
      // Apart from what does not shape training: the name, and the MS figures of Tables 1-2.
      std::set<std::string> other;
      for (const auto& change : config_changes(standalone, config)) other.insert(change.key);
      std::set<std::string> expected{"name"};
      if (pair.spec == "table1_ade20k" || pair.spec == "table2_cityscapes") expected.insert("eval.report_ms");
      EXPECT_EQ(other, expected);
    }
    EXPECT_EQ(baselines, 3);  // 3 seeds
    EXPECT_EQ(mta_clip, pair.spec == "table3_components" ? 9 : pair.spec == "table4_attention" ? 6 : 3);
  }
}

}  // namespace
}  // namespace segrun::sweeps
