// Sweep specs: expansion (grid x variants x seeds), filters, canonical values, stable ids,
// validation errors with file:line, and planning against run directories on disk.
#include "sweeps/spec.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <set>

#include "core/config.h"
#include "core/error.h"
#include "sweeps/registry.h"
#include "sweeps/runner.h"
#include "sweeps_test_util.h"

namespace segrun::sweeps {
namespace {

using testing::ScratchDir;
using testing::write_text;

class SpecTest : public ::testing::Test {
 protected:
  SpecTest() : dir_("spec") {
    write_text(dir_.path() / "configs/base.toml", "[train]\niters = 40\nwarmup_iters = 4\nseed = 7\n");
  }
  SweepSpec parse(const std::string& text) {
    write_text(dir_.path() / "sweep.toml", text);
    return load_sweep_spec(dir_.str("sweep.toml"));
  }
  // The error message of a spec that must not load.
  std::string error_of(const std::string& text) {
    try {
      parse(text);
    } catch (const ConfigError& e) {
      return e.what();
    }
    ADD_FAILURE() << "spec loaded:\n" << text;
    return "";
  }
  ScratchDir dir_;
};

std::set<std::string> ids_of(const std::vector<PlannedRun>& runs) {
  std::set<std::string> ids;
  for (const auto& r : runs) ids.insert(r.id);
  return ids;
}

TEST_F(SpecTest, GridTimesSeedsInOrderWithCanonicalValues) {
  SweepSpec spec = parse(
      "name = \"abl\"\nbase = \"configs/base.toml\"\nseeds = [0, 1]\n"
      "[grid]\n\"model.dropout\" = [0.0, 0.1]\n\"train.lr\" = [1e-4, 2e-4, 0.0003]\n");
  EXPECT_EQ(spec.name, "abl");
  EXPECT_EQ(spec.base, (dir_.path() / "configs/base.toml").string());
  EXPECT_EQ(spec.swept_keys, (std::vector<std::string>{"model.dropout", "train.lr"}));
  auto runs = expand_sweep(spec);
  ASSERT_EQ(runs.size(), 12u);
  // First grid key slowest, seeds innermost.
  EXPECT_EQ(runs[0].overrides, (Overrides{{"model.dropout", "0.0"}, {"train.lr", "0.0001"}}));
  EXPECT_EQ(runs[0].seed, 0u);
  EXPECT_EQ(runs[1].seed, 1u);
  EXPECT_EQ(runs[2].overrides.at("train.lr"), "0.0002");
  EXPECT_EQ(runs[11].overrides, (Overrides{{"model.dropout", "0.1"}, {"train.lr", "0.0003"}}));
  EXPECT_EQ(ids_of(runs).size(), 12u);
  EXPECT_EQ(runs[0].iters, 40);
  EXPECT_EQ(runs[0].train_args(), (std::vector<std::string>{"model.dropout=0.0", "train.lr=0.0001", "train.seed=0"}));
  // Directory: id + readable slug.
  EXPECT_EQ(runs[3].dir_name, runs[3].id + "-dropout0.0_lr0.0002_s1");
}

TEST_F(SpecTest, RunIdIsFnv1aOfSortedOverridesAndSeed) {
  // Reference values computed independently in Python (FNV-1a 64 + fmix64 of the same text).
  EXPECT_EQ(run_id({{"train.lr", "0.0002"}, {"model.dropout", "0.1"}}, 0), "886150441f");
  EXPECT_EQ(run_id({}, 3), "ea23f55238");
  EXPECT_EQ(run_id({{"model.norm", "\"bn\""}}, 1), "8a3af04c5b");
}

TEST_F(SpecTest, IdsStableUnderReorderingAndSpelling) {
  auto a =
      expand_sweep(parse("base = \"configs/base.toml\"\n[grid]\n\"model.dropout\" = [0.0, 0.1]\n"
                         "\"model.norm\" = [\"bn\", \"syncbn\"]\n"));
  auto b =
      expand_sweep(parse("base = \"configs/base.toml\"\n[grid]\n\"model.norm\" = [\"syncbn\", \"bn\"]\n"
                         "model.dropout = [1e-1, 0.00]\n"));  // dotted, other spelling
  EXPECT_EQ(ids_of(a), ids_of(b));
  // Seeds default to the base config's train.seed.
  EXPECT_EQ(a[0].seed, 7u);
  // Adding a grid value keeps the old ids and adds new ones.
  auto c =
      expand_sweep(parse("base = \"configs/base.toml\"\n[grid]\n\"model.dropout\" = [0.0, 0.1, 0.2]\n"
                         "\"model.norm\" = [\"bn\", \"syncbn\"]\n"));
  auto ic = ids_of(c);
  EXPECT_EQ(ic.size(), 6u);
  for (const auto& id : ids_of(a)) EXPECT_TRUE(ic.count(id)) << id;
}

TEST_F(SpecTest, SlugsNameTheKeysThatTellRunsApartFirstAndTheSeedLast) {
  // Three weights files, one with a ViT-like recipe of four arrays; data.crop and eval.crop share
  // their last component, so both are named in full. The weights file (3 values) and the dropout
  // tell the runs apart; the arrays follow from the weights file and come after them.
  SweepSpec spec = parse(
      "base = \"configs/base.toml\"\nseeds = [0, 12]\n"
      "[grid]\n\"model.dropout\" = [0.0, 0.1]\n"
      "[[variants]]\n\"model.pretrained\" = \"weights/a.pt\"\n"
      "[[variants]]\n\"model.pretrained\" = \"weights/b.pt\"\n"
      "[[variants]]\n\"model.pretrained\" = \"weights/c.pt\"\n\"data.crop\" = [64, 64]\n");
  std::vector<std::string> names;
  for (const auto& run : expand_sweep(spec)) names.push_back(run.dir_name.substr(run.id.size() + 1));
  EXPECT_EQ(names, (std::vector<std::string>{
                       "dropout0.0_pretraineda.pt_s0", "dropout0.0_pretraineda.pt_s12", "dropout0.0_pretrainedb.pt_s0",
                       "dropout0.0_pretrainedb.pt_s12", "dropout0.0_pretrainedc.pt_crop64x64_s0",
                       "dropout0.0_pretrainedc.pt_crop64x64_s12", "dropout0.1_pretraineda.pt_s0",
                       "dropout0.1_pretraineda.pt_s12", "dropout0.1_pretrainedb.pt_s0", "dropout0.1_pretrainedb.pt_s12",
                       "dropout0.1_pretrainedc.pt_crop64x64_s0", "dropout0.1_pretrainedc.pt_crop64x64_s12"}));

  // Longer than 64 characters: the distinguishing keys only, then "~" and 6 hex digits of
  // FNV-1a + fmix64 of the configuration's sorted overrides (computed independently in Python),
  // so that names that would be cut alike stay apart; the seed stays last.
  spec = parse(
      "base = \"configs/base.toml\"\nseeds = [0, 12]\n"
      "[grid]\n\"model.dropout\" = [0.0, 0.1]\n"
      "[[variants]]\n\"model.pretrained\" = \"weights/a.pt\"\n"
      "[[variants]]\n\"model.pretrained\" = \"weights/b.pt\"\n"
      "[[variants]]\n\"model.pretrained\" = \"weights/c.pt\"\n\"data.crop\" = [640, 640]\n"
      "\"data.scale\" = [2048, 640]\n\"eval.crop\" = [640, 640]\n\"eval.stride\" = [426, 426]\n");
  names.clear();
  for (const auto& run : expand_sweep(spec)) names.push_back(run.dir_name.substr(run.id.size() + 1));
  ASSERT_EQ(names.size(), 12u);
  EXPECT_EQ(names[0], "dropout0.0_pretraineda.pt_s0");
  EXPECT_EQ(names[4], "dropout0.0_pretrainedc.pt~9d2cd0_s0");
  EXPECT_EQ(names[5], "dropout0.0_pretrainedc.pt~9d2cd0_s12");
  EXPECT_EQ(names[11], "dropout0.1_pretrainedc.pt~cd1d8c_s12");
  // Where it fits, every key is named: the two crops apart.
  EXPECT_EQ(
      configuration_slugs({{{"data.crop", "[640, 640]"}, {"eval.crop", "[512, 512]"}}}, {"data.crop", "eval.crop"}),
      (std::vector<std::string>{"data.crop640x640_eval.crop512x512"}));
  // A single configuration has no key that tells it apart: its whole name, cut.
  EXPECT_EQ(configuration_slugs({{{"data.crop", "[640, 640]"},
                                  {"data.scale", "[2048, 640]"},
                                  {"eval.crop", "[640, 640]"},
                                  {"eval.stride", "[426, 426]"},
                                  {"model.pretrained", "\"weights/ViT-B-16.pt\""}}},
                                {"data.crop", "data.scale", "eval.crop", "eval.stride", "model.pretrained"}),
            (std::vector<std::string>{"data.crop640x640_scale2048x640_eval.crop640x640_stride~c3f2ff"}));
  EXPECT_EQ(run_slug("", 3), "s3");  // a sweep of seeds alone
}

// A string key's number is refused in a spec, as in a config file (on a command line it is the
// text): name = [1, "1"] would be two runs of one config.
TEST_F(SpecTest, AStringKeysNumberIsRefused) {
  EXPECT_EQ(error_of("base = \"configs/base.toml\"\n[grid]\nname = [1, \"1\"]\n"),
            dir_.str("sweep.toml") + ":3: grid name: expected a string, got an integer (quote it)");
  EXPECT_EQ(error_of("base = \"configs/base.toml\"\n[fixed]\n\"data.store\" = 2026\n"),
            dir_.str("sweep.toml") + ":3: fixed data.store: expected a string, got an integer (quote it)");
}

TEST_F(SpecTest, AFloatKeysIntegersAreItsFloats) {
  // 0 and 0.0 of a float key are one value: listed twice is an error, not two identical runs.
  const std::string twice = error_of("base = \"configs/base.toml\"\n[grid]\n\"model.dropout\" = [0, 0.0]\n");
  EXPECT_NE(twice.find("sweep.toml:3: grid model.dropout: value 0.0 is listed twice"), std::string::npos) << twice;
  // [0, 0.3] is the sweep [0.0, 0.3] was: same ids, folders and slugs, and a baseline of 0.0 matches.
  auto spelled_float = expand_sweep(parse("base = \"configs/base.toml\"\n[grid]\n\"model.dropout\" = [0.0, 0.3]\n"));
  SweepSpec spec = parse(
      "base = \"configs/base.toml\"\n[grid]\n\"model.dropout\" = [0, 0.3]\n"
      "[table]\nbaseline = { \"model.dropout\" = 0.0 }\n");
  auto spelled_int = expand_sweep(spec);
  ASSERT_EQ(spelled_int.size(), 2u);
  EXPECT_EQ(spelled_int[0].overrides.at("model.dropout"), "0.0");
  EXPECT_EQ(spelled_int[0].dir_name, spelled_float[0].dir_name);
  EXPECT_EQ(ids_of(spelled_int), ids_of(spelled_float));
  EXPECT_EQ(spec.table.baseline, (Overrides{{"model.dropout", "0.0"}}));
  // Float lists too; integer keys keep their integers.
  auto lists = expand_sweep(
      parse("base = \"configs/base.toml\"\n[fixed]\n\"data.ratio\" = [1, 2]\n[grid]\n\"train.iters\" = [40]\n"));
  EXPECT_EQ(lists[0].overrides, (Overrides{{"data.ratio", "[1.0, 2.0]"}, {"train.iters", "40"}}));
  EXPECT_EQ(parse_override_args({"model.dropout=0", "train.iters=30"}, "--where"),
            (Overrides{{"model.dropout", "0.0"}, {"train.iters", "30"}}));
  EXPECT_EQ(canonical_for_key("train.lr", "1"), "1.0");
  EXPECT_EQ(canonical_for_key("train.iters", "1"), "1");
}

TEST_F(SpecTest, ClusterKeysAreNotSweptAndTopLevelKeysComeFirst) {
  const std::string grid =
      error_of("base = \"configs/base.toml\"\n[grid]\n\"cluster.slurm.partition\" = [\"a\", \"b\"]\n");
  EXPECT_NE(grid.find("sweep.toml:3: grid cluster.slurm.partition: cluster.* keys cannot be swept: they say where a "
                      "run executes, not what it computes (set them in [fixed])"),
            std::string::npos)
      << grid;
  const std::string variant = error_of(
      "base = \"configs/base.toml\"\n[[variants]]\n\"cluster.slurm.time\" = \"1:00:00\"\n"
      "\"model.dropout\" = 0.1\n");
  EXPECT_NE(variant.find("sweep.toml:3: variants cluster.slurm.time: cluster.* keys cannot be swept"),
            std::string::npos)
      << variant;
  const std::string seeds =
      error_of("base = \"configs/base.toml\"\n[grid]\n\"model.dropout\" = [0.1]\nseeds = [1, 2]\n");
  EXPECT_NE(seeds.find("sweep.toml:4: grid seeds: 'seeds' is a top-level key: move it above the first [section] "
                       "header (TOML puts the keys after a header into that table)"),
            std::string::npos)
      << seeds;
  const std::string exclude =
      error_of("base = \"configs/base.toml\"\n[table]\nmetric = \"mIoU\"\nexclude = [{ \"model.dropout\" = 0.1 }]\n");
  EXPECT_NE(exclude.find("sweep.toml:4: table exclude: 'exclude' is a top-level key"), std::string::npos) << exclude;
  // `name` is a config key as well: in [fixed] it is the runs' name, as before.
  EXPECT_EQ(expand_sweep(parse("base = \"configs/base.toml\"\n[fixed]\nname = \"x\"\n"))[0].overrides.at("name"),
            "\"x\"");
}

TEST_F(SpecTest, RunsOfAFloatKeySpelledAsIntegerAreStillFound) {
  // A folder made when "model.dropout" = [0] gave the id of "model.dropout=0" (overrides.json
  // holds "0"): the plan reuses it rather than training the run again.
  SweepSpec spec = parse("base = \"configs/base.toml\"\nseeds = [0]\n[grid]\n\"model.dropout\" = [0, 0.3]\n");
  const std::filesystem::path runs = dir_.path() / "runs";
  const std::string old_id = run_id({{"model.dropout", "0"}}, 0);
  testing::fabricate_run(runs / (old_id + "-dropout0_s0"), {{"model.dropout", "0"}}, 0, "done", 40.0);
  auto plan = plan_sweep(spec, runs.string());
  ASSERT_EQ(plan.size(), 2u);
  EXPECT_EQ(plan[0].dir, (runs / (old_id + "-dropout0_s0")).string());
  EXPECT_EQ(plan[0].action, PlanAction::kReuse);
  EXPECT_EQ(plan[0].record.overrides.at("model.dropout"), "0.0");
  EXPECT_EQ(plan[1].action, PlanAction::kNew);
}

TEST_F(SpecTest, FixedKeysAreValidatedTogetherAndUnderTheGrid) {
  // base: iters 40, warmup 4. [fixed] iters 3 + warmup 2 is valid only as a pair.
  auto runs =
      expand_sweep(parse("base = \"configs/base.toml\"\n[fixed]\n\"train.iters\" = 3\n"
                         "\"train.warmup_iters\" = 2\n[grid]\n\"model.dropout\" = [0.0, 0.1]\n"));
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[0].iters, 3);
  // A grid value is checked with [fixed] applied: warmup 5 > the fixed 3 iterations.
  const std::string error = error_of(
      "base = \"configs/base.toml\"\n[fixed]\n\"train.iters\" = 3\n"
      "\"train.warmup_iters\" = 2\n[grid]\n\"train.warmup_iters\" = [5]\n");
  EXPECT_NE(error.find("also set in [fixed]"), std::string::npos) << error;
  const std::string grid_error = error_of(
      "base = \"configs/base.toml\"\n[fixed]\n\"train.iters\" = 3\n"
      "\"train.warmup_iters\" = 2\n[grid]\n\"train.lr\" = [1e-4]\n"
      "\"train.min_lr\" = [1e-3]\n");
  EXPECT_NE(grid_error.find("min_lr"), std::string::npos) << grid_error;
}

TEST_F(SpecTest, AVariantsKeysAreValidatedTogether) {
  // Fewer ViT blocks and output blocks within them: valid only as a pair (the default out_indices
  // reach block 11).
  auto runs =
      expand_sweep(parse("base = \"configs/base.toml\"\n[[variants]]\n\"model.vit.layers\" = 4\n"
                         "\"model.vit.out_indices\" = [0, 1, 2, 3]\n[[variants]]\n\"model.dropout\" = 0.2\n"));
  ASSERT_EQ(runs.size(), 2u);
  // A variant that is wrong as a whole still names the key.
  const std::string error = error_of(
      "base = \"configs/base.toml\"\n[[variants]]\n\"model.vit.layers\" = 4\n"
      "\"model.vit.out_indices\" = [0, 1, 2, 4]\n");
  EXPECT_NE(error.find("model.vit.out_indices"), std::string::npos) << error;
}

TEST_F(SpecTest, WholeFloatsStayDecimal) {
  // 10.0 must not become "1e+01" (run folder "lambda_ml1e-01", tables "1e+01").
  auto runs =
      expand_sweep(parse("base = \"configs/base.toml\"\n[grid]\n\"model.dropout\" = [0.5]\n"
                         "\"model.clip_sp.lambda_ml\" = [10.0, 150.0, 2.5e-4]\n"));
  ASSERT_EQ(runs.size(), 3u);
  EXPECT_EQ(runs[0].overrides.at("model.clip_sp.lambda_ml"), "10.0");
  EXPECT_EQ(runs[1].overrides.at("model.clip_sp.lambda_ml"), "150.0");
  EXPECT_EQ(runs[2].overrides.at("model.clip_sp.lambda_ml"), "0.00025");
}

TEST_F(SpecTest, SchedulingKeysLeaveIdsAndFingerprintsAlone) {
  // Moving a sweep to another partition or time limit must reuse its finished runs.
  auto a = expand_sweep(parse("base = \"configs/base.toml\"\n[grid]\n\"model.dropout\" = [0.0, 0.1]\n"));
  auto b =
      expand_sweep(parse("base = \"configs/base.toml\"\n[fixed]\n\"cluster.slurm.partition\" = \"gpu\"\n"
                         "\"cluster.slurm.time\" = \"02:00:00\"\n[grid]\n\"model.dropout\" = [0.0, 0.1]\n"));
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].id, b[i].id);
    EXPECT_EQ(a[i].fingerprint, b[i].fingerprint);
    EXPECT_EQ(b[i].overrides.count("cluster.slurm.partition"), 1u);  // still passed to the run
  }
  EXPECT_TRUE(is_scheduling_key("cluster.slurm.partition"));
  EXPECT_FALSE(is_scheduling_key("model.clip_sp.top_k"));
}

TEST_F(SpecTest, FingerprintsOfExistingRunsSurviveNewSchedulingKeys) {
  // Run folders written before cluster.slurm.signal existed hold the FNV-1a of the resolved
  // config as to_toml wrote it then: without that key. A fingerprint that changed would mark
  // every finished run "base config changed".
  auto runs =
      expand_sweep(parse("base = \"configs/base.toml\"\n[fixed]\n\"cluster.slurm.signal\" = \"USR2\"\n"
                         "[grid]\n\"model.dropout\" = [0.0, 0.1]\n"));
  ASSERT_EQ(runs.size(), 2u);
  for (const auto& run : runs) {
    Config config = load_config(dir_.str("configs/base.toml"), run.train_args());
    config.cluster = ClusterConfig{};
    std::string text = to_toml(config);
    const std::string added = "signal = 'USR1'\n";
    ASSERT_NE(text.find(added), std::string::npos);
    text.erase(text.find(added), added.size());
    uint64_t hash = 1469598103934665603ull;  // FNV-1a 64, written out here as the reference
    for (unsigned char c : text) hash = (hash ^ c) * 1099511628211ull;
    hash ^= hash >> 33;  // fmix64, as spec.cpp finishes its FNV-1a
    hash *= 0xff51afd7ed558ccdull;
    hash ^= hash >> 33;
    hash *= 0xc4ceb9fe1a85ec53ull;
    hash ^= hash >> 33;
    char expected[32];
    std::snprintf(expected, sizeof(expected), "%016llx", static_cast<unsigned long long>(hash));
    EXPECT_EQ(run.fingerprint, expected);
  }
}

TEST_F(SpecTest, VariantsCrossTheGridAndFiltersSelect) {
  SweepSpec spec = parse(
      "base = \"configs/base.toml\"\n"
      "[grid]\n\"model.norm\" = [\"bn\", \"syncbn\"]\n"
      "[[variants]]\n\"model.dropout\" = 0.0\n\"train.lr\" = 2e-4\n"
      "[[variants]]\n\"model.dropout\" = 0.1\n"
      "[[variants]]\n\"model.dropout\" = 0.2\n\"train.lr\" = 1e-4\n");
  ASSERT_EQ(spec.configurations.size(), 6u);
  EXPECT_EQ(spec.configurations[0],
            (Overrides{{"model.norm", "\"bn\""}, {"model.dropout", "0.0"}, {"train.lr", "0.0002"}}));
  EXPECT_EQ(spec.configurations[1], (Overrides{{"model.norm", "\"bn\""}, {"model.dropout", "0.1"}}));
  EXPECT_EQ(spec.swept_keys, (std::vector<std::string>{"model.norm", "model.dropout", "train.lr"}));

  SweepSpec filtered = parse(
      "base = \"configs/base.toml\"\n"
      "include = [{ \"model.norm\" = \"bn\" }, { \"model.dropout\" = 0.2 }]\n"
      "exclude = [{ \"model.dropout\" = 0.1 }]\n"
      "[grid]\n\"model.norm\" = [\"bn\", \"syncbn\"]\n\"model.dropout\" = [0.0, 0.1, 0.2]\n");
  // bn: 0.0, 0.2 (0.1 excluded); syncbn: only 0.2 (included by the second filter).
  ASSERT_EQ(filtered.configurations.size(), 3u);
  EXPECT_EQ(filtered.configurations[0], (Overrides{{"model.norm", "\"bn\""}, {"model.dropout", "0.0"}}));
  EXPECT_EQ(filtered.configurations[1], (Overrides{{"model.norm", "\"bn\""}, {"model.dropout", "0.2"}}));
  EXPECT_EQ(filtered.configurations[2], (Overrides{{"model.norm", "\"syncbn\""}, {"model.dropout", "0.2"}}));
}

// [paper]: the paper's numbers per configuration; keys with a dot are swept keys, the others
// metrics; each entry needs the table metric and must match a run.
TEST_F(SpecTest, PaperValuesPerConfiguration) {
  const std::string head = "base = \"configs/base.toml\"\n[grid]\n\"model.dropout\" = [0.0, 0.1]\n";
  SweepSpec spec = parse(head +
                         "[paper]\nsource = \"Table 9\"\nvalues = [\n"
                         "  { \"model.dropout\" = 0.1, mIoU = 44.5, mIoU_ms = 45.25 },\n]\n");
  EXPECT_EQ(spec.table.paper_source, "Table 9");
  ASSERT_EQ(spec.table.paper.size(), 1u);
  EXPECT_EQ(spec.table.paper[0].config, (Overrides{{"model.dropout", "0.1"}}));
  EXPECT_DOUBLE_EQ(spec.table.paper[0].values.at("mIoU"), 44.5);
  EXPECT_DOUBLE_EQ(spec.table.paper[0].values.at("mIoU_ms"), 45.25);
  EXPECT_NE(error_of(head + "[paper]\nvalues = [{ \"model.dropout\" = 0.1, mIoU_ms = 45.0 }]\n")
                .find("each entry needs the table metric: mIoU"),
            std::string::npos);
  EXPECT_NE(error_of(head + "[paper]\nvalues = [{ \"model.dropout\" = 0.3, mIoU = 45.0 }]\n").find("matches no run"),
            std::string::npos);
  EXPECT_NE(error_of(head + "[paper]\nvalues = [{ \"train.lr\" = 0.1, mIoU = 45.0 }]\n").find("is not a swept key"),
            std::string::npos);
  EXPECT_NE(error_of(head + "[paper]\nvalues = [{ \"model.dropout\" = 0.1, mIoU = \"high\" }]\n")
                .find("a metric's value must be a number"),
            std::string::npos);
  EXPECT_NE(error_of(head + "[paper]\ntable = 9\n").find("paper.table: unknown key (known: source, values)"),
            std::string::npos);
}

TEST_F(SpecTest, FixedOverridesJoinEveryRun) {
  SweepSpec spec = parse(
      "base = \"configs/base.toml\"\n[fixed]\n\"train.iters\" = 20\n"
      "[grid]\n\"model.dropout\" = [0.0, 0.1]\n");
  ASSERT_EQ(spec.configurations.size(), 2u);
  EXPECT_EQ(spec.configurations[1], (Overrides{{"model.dropout", "0.1"}, {"train.iters", "20"}}));
  EXPECT_EQ(spec.swept_keys, (std::vector<std::string>{"model.dropout"}));
  EXPECT_EQ(expand_sweep(spec)[0].iters, 20);
  const std::string e = error_of(
      "base = \"configs/base.toml\"\n[fixed]\n\"train.lr\" = 1e-4\n"
      "[grid]\n\"train.lr\" = [1e-4]\n");
  EXPECT_NE(e.find(dir_.str("sweep.toml") + ":5: grid train.lr: also set in [fixed]"), std::string::npos) << e;
}

TEST_F(SpecTest, ResourcesAndTableHints) {
  SweepSpec spec = parse(
      "base = \"configs/base.toml\"\nruns_dir = \"out\"\n[resources]\nranks = 2\n"
      "[grid]\n\"model.dropout\" = [0.0, 0.1]\n\"train.lr\" = [1e-4]\n"
      "[table]\nrows = \"model.dropout\"\ncols = [\"train.lr\"]\nmetric = \"mAcc\"\n"
      "baseline = { \"model.dropout\" = 0.1 }\nper_class = [\"wall\", \"sky\"]\n");
  EXPECT_EQ(spec.ranks, 2);
  EXPECT_EQ(spec.runs_dir, (dir_.path() / "out").string());
  EXPECT_EQ(spec.table.rows, (std::vector<std::string>{"model.dropout"}));
  EXPECT_EQ(spec.table.cols, (std::vector<std::string>{"train.lr"}));
  EXPECT_EQ(spec.table.metric, "mAcc");
  EXPECT_EQ(spec.table.baseline, (Overrides{{"model.dropout", "0.1"}}));
  EXPECT_EQ(spec.table.per_class, (std::vector<std::string>{"wall", "sky"}));
  // Where they were given, for the errors of `table` and `sweep status` (a metric no run records).
  EXPECT_EQ(spec.table.metric_origin, dir_.str("sweep.toml") + ":11: [table] metric");
  EXPECT_EQ(spec.table.per_class_origin, dir_.str("sweep.toml") + ":13: [table] per_class");
  EXPECT_EQ(parse("base = \"configs/base.toml\"\n[grid]\n\"model.dropout\" = [0.0]\n").table.metric_origin, "");
}

TEST_F(SpecTest, ErrorsNameFileLineAndKey) {
  const std::string spec = dir_.str("sweep.toml");
  std::string e = error_of("base = \"configs/base.toml\"\n[grid]\n\"model.dropoutt\" = [0.1]\n");
  EXPECT_NE(e.find(spec + ":3: "), std::string::npos) << e;
  EXPECT_NE(e.find("model.dropoutt: unknown key (did you mean 'model.dropout'?)"), std::string::npos) << e;

  e = error_of("base = \"configs/base.toml\"\n[grid]\n\"model.dropout\" = [0.1,\n  1.5]\n");
  EXPECT_NE(e.find(spec + ":4: "), std::string::npos) << e;
  EXPECT_NE(e.find("out of range"), std::string::npos) << e;

  e = error_of("base = \"configs/base.toml\"\n[[variants]]\n\"model.norm\" = \"batchnorm\"\n");
  EXPECT_NE(e.find(spec + ":3: "), std::string::npos) << e;
  EXPECT_NE(e.find("'batchnorm' is not one of"), std::string::npos) << e;

  e = error_of("base = \"configs/base.toml\"\n[grid]\n");
  EXPECT_NE(e.find(spec + ":2: grid: empty"), std::string::npos) << e;
  e = error_of("base = \"configs/base.toml\"\n[grid]\n\"train.lr\" = []\n");
  EXPECT_NE(e.find(spec + ":3: grid train.lr: empty list of values"), std::string::npos) << e;
  e = error_of("base = \"configs/base.toml\"\n[grid]\n\"train.lr\" = 1e-4\n");
  EXPECT_NE(e.find("expected a list of values"), std::string::npos) << e;
  e = error_of("base = \"configs/base.toml\"\n[grid]\n\"train.seed\" = [1, 2]\n");
  EXPECT_NE(e.find("seeds = [...]"), std::string::npos) << e;

  // Duplicate runs: the same variant twice, or a grid value listed twice.
  e = error_of(
      "base = \"configs/base.toml\"\n[[variants]]\n\"train.lr\" = 1e-4\n[[variants]]\n\"train.lr\" = 0.0001\n");
  EXPECT_NE(e.find("duplicate run: {train.lr=0.0001} is produced twice (variant at line 2, variant at line 4)"),
            std::string::npos)
      << e;
  e = error_of("base = \"configs/base.toml\"\n[grid]\n\"train.lr\" = [1e-4, 0.0001]\n");
  EXPECT_NE(e.find(spec + ":3: grid train.lr: value 0.0001 is listed twice"), std::string::npos) << e;
  e = error_of("base = \"configs/base.toml\"\nseeds = [1, 1]\n");
  EXPECT_NE(e.find(spec + ":2: seeds: seed 1 is listed twice"), std::string::npos) << e;

  e = error_of("base = \"configs/base.toml\"\ngird = 1\n");
  EXPECT_NE(e.find(spec + ":2: gird: unknown key"), std::string::npos) << e;
  e = error_of("[grid]\n\"train.lr\" = [1e-4]\n");
  EXPECT_NE(e.find("base: missing"), std::string::npos) << e;
  e = error_of("base = \"nope.toml\"\n");
  EXPECT_NE(e.find("config file not found"), std::string::npos) << e;
  e = error_of("base = \"configs/base.toml\"\n[grid]\n\"train.lr\" = [1e-4]\n[[variants]]\n\"train.lr\" = 2e-4\n");
  EXPECT_NE(e.find(spec + ":5: variants train.lr: already swept by [grid]"), std::string::npos) << e;
  e = error_of(
      "base = \"configs/base.toml\"\nexclude = [{ \"model.norm\" = \"bn\" }]\n[grid]\n\"train.lr\" = [1e-4]\n");
  EXPECT_NE(e.find(spec + ":2: exclude model.norm: not a swept key (swept: train.lr)"), std::string::npos) << e;
  e = error_of("base = \"configs/base.toml\"\nexclude = [{ \"train.lr\" = 1e-4 }]\n[grid]\n\"train.lr\" = [1e-4]\n");
  EXPECT_NE(e.find("no runs left after include/exclude"), std::string::npos) << e;
  e = error_of("base = \"configs/base.toml\"\n[grid]\n\"train.lr\" = [1e-4]\n[table]\nrows = \"model.norm\"\n");
  EXPECT_NE(e.find(spec + ":5: table.rows: 'model.norm' is not a swept key"), std::string::npos) << e;
  e = error_of("base = \"configs/base.toml\"\n[grid]\n\"train.lr\" = [1e-4]\n[table]\norder = \"listed\"\n");
  EXPECT_NE(e.find(spec + ":5: table.order: expected \"value\" (sorted) or \"spec\""), std::string::npos) << e;
  e = error_of("base = \"configs/base.toml\"\n[grid]\n\"train.lr\" = [1e-4\n");
  EXPECT_NE(e.find("syntax error"), std::string::npos) << e;

  // Cross-field problems appear only on the full config of a run: named by its overrides.
  SweepSpec bad = parse(
      "base = \"configs/base.toml\"\n[grid]\n\"train.warmup_iters\" = [4, 30]\n"
      "\"train.iters\" = [20, 40]\n");
  try {
    expand_sweep(bad);
    ADD_FAILURE() << "expanded";
  } catch (const ConfigError& err) {
    EXPECT_NE(std::string(err.what()).find(spec + ": run {train.iters=20, train.warmup_iters=30}: "), std::string::npos)
        << err.what();
  }
}

TEST_F(SpecTest, CanonicalValuesAndOverrideArgs) {
  EXPECT_EQ(canonical_value("2e-4"), "0.0002");
  EXPECT_EQ(canonical_value(".001"), "0.001");  // as a config override reads it (not the word ".001")
  EXPECT_EQ(canonical_value("1."), "1.0");
  EXPECT_EQ(canonical_value("-0.0"), "0.0");  // as 0.0 (a grid [0.0, -0.0] has one value twice)
  EXPECT_EQ(canonical_value("1e-5"), "1e-05");
  EXPECT_EQ(canonical_value("2.0"), "2.0");
  EXPECT_EQ(canonical_value("3"), "3");
  EXPECT_EQ(canonical_value("bn"), "\"bn\"");
  EXPECT_EQ(canonical_value("\"bn\""), "\"bn\"");
  EXPECT_EQ(canonical_value("[0.5, 2]"), "[0.5, 2]");
  EXPECT_EQ(display_value("\"bn\""), "bn");
  EXPECT_EQ(parse_override_args({"model.dropout=0.10", "model.norm=bn"}, "--baseline"),
            (Overrides{{"model.dropout", "0.1"}, {"model.norm", "\"bn\""}}));
  EXPECT_THROW(parse_override_args({"model.dropout"}, "--baseline"), ConfigError);
  EXPECT_TRUE(matches({{"a", "1"}, {"b", "2"}}, {{"b", "2"}}));
  EXPECT_FALSE(matches({{"a", "1"}}, {{"b", "2"}}));
  EXPECT_EQ(describe({{"model.norm", "\"bn\""}, {"train.lr", "0.0002"}}), "model.norm=bn, train.lr=0.0002");
  // A string key's number is its text, as the run's config holds it (override name=1. is "1.").
  EXPECT_EQ(parse_filter_args({"name=1.", "name=2026-01-01", "name=true", "name=\"7\""}, "--where"),
            (ValueFilter{{"name", {"\"1.\"", "\"2026-01-01\"", "\"true\"", "\"7\""}}}));
  EXPECT_EQ(parse_override_args({"data.store=2026"}, "--baseline"), (Overrides{{"data.store", "\"2026\""}}));
  EXPECT_TRUE(is_text_key("model.head"));
  EXPECT_FALSE(is_text_key("model.dropout"));
}

TEST_F(SpecTest, PlanReusesResumesRetriesAndAdds) {
  SweepSpec spec =
      parse("base = \"configs/base.toml\"\nseeds = [0]\n[grid]\n\"model.dropout\" = [0.0, 0.1, 0.2, 0.3]\n");
  const std::string runs = dir_.str("runs");
  auto planned = expand_sweep(spec);
  auto dir_of = [&](size_t i) { return std::filesystem::path(runs) / planned[i].dir_name; };
  write_text(dir_of(0) / "status", "done\n");
  write_text(dir_of(0) / "result.json", "{\"mIoU\": 40.0}\n");
  write_text(dir_of(1) / "status", "preempted stopped by signal at iteration 20\n");
  write_text(dir_of(1) / "checkpoints/iter_20.pt", "x");
  write_text(dir_of(1) / "metrics.jsonl",
             "{\"iter\": 20, \"mode\": \"train\", \"loss\": 1.0}\n{\"iter\": 20, \"mode\": \"val\", \"mIoU\": 3.5}\n");
  write_text(dir_of(2) / "status", "failed data.store: not set\n");
  auto plan = plan_sweep(spec, runs);
  ASSERT_EQ(plan.size(), 4u);
  EXPECT_EQ(plan[0].action, PlanAction::kReuse);
  EXPECT_EQ(plan[1].action, PlanAction::kResume);
  EXPECT_EQ(plan[1].record.last_iter, 20);
  EXPECT_DOUBLE_EQ(plan[1].record.last_val.at("mIoU"), 3.5);
  EXPECT_EQ(plan[2].action, PlanAction::kRetry);
  EXPECT_EQ(plan[3].action, PlanAction::kNew);
  const std::string text = format_plan(plan, TableFormat::kCsv);
  EXPECT_NE(text.find(planned[1].id + "," + planned[1].dir_name + ",model.dropout=0.1,0,resume (iter 20)\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find(",retry (failed: data.store: not set)\n"), std::string::npos) << text;
  const std::string status = format_status(plan, "mIoU", TableFormat::kCsv);
  EXPECT_NE(status.find(planned[1].id + ",model.dropout=0.1,0,preempted,20/40,3.50 (iter 20)\n"), std::string::npos)
      << status;
  EXPECT_NE(status.find(planned[3].id + ",model.dropout=0.3,0,new,0/40,-\n"), std::string::npos) << status;
}

// A run marked done whose result.json is gone (deleted by hand, lost in a copy) or unreadable is
// not reused as done (the table leaves it out): it resumes from its final checkpoint, which
// evaluates it again, or is trained again when it has none.
TEST_F(SpecTest, ADoneRunWithoutResultJsonIsEvaluatedOrTrainedAgain) {
  SweepSpec spec = parse("base = \"configs/base.toml\"\nseeds = [0]\n[grid]\n\"model.dropout\" = [0.0, 0.1]\n");
  const std::string runs = dir_.str("runs");
  auto planned = expand_sweep(spec);
  auto dir_of = [&](size_t i) { return std::filesystem::path(runs) / planned[i].dir_name; };
  write_text(dir_of(0) / "status", "done\n");
  write_text(dir_of(0) / "checkpoints/iter_40.pt", "x");
  write_text(dir_of(1) / "status", "done\n");
  auto plan = plan_sweep(spec, runs);
  ASSERT_EQ(plan.size(), 2u);
  EXPECT_EQ(plan[0].action, PlanAction::kResume);
  EXPECT_EQ(plan[1].action, PlanAction::kRetry);
  const std::string text = format_plan(plan, TableFormat::kCsv);
  EXPECT_NE(text.find(",\"resume (iter 40; done, but no result.json)\"\n"), std::string::npos) << text;
  EXPECT_NE(text.find(",\"retry (done, but no result.json nor checkpoint)\"\n"), std::string::npos) << text;
  EXPECT_EQ(describe_run_state(plan[0].record),
            "done (no result.json: train --resume auto, or sweep run, evaluates it again)");

  // One whose result.json cannot be read (cut by a full disk, edited by hand) is planned and shown
  // as one without, saying so; reading the sweep does not fail on it.
  write_text(dir_of(0) / "result.json", "{\"mIoU\": 3");
  write_text(dir_of(1) / "result.json", "[1]");
  plan = plan_sweep(spec, runs);
  ASSERT_EQ(plan.size(), 2u);
  EXPECT_EQ(plan[0].action, PlanAction::kResume);
  EXPECT_EQ(plan[1].action, PlanAction::kRetry);
  EXPECT_FALSE(plan[0].record.has_result);
  EXPECT_TRUE(plan[0].record.result.empty());
  EXPECT_EQ(plan[0].record.result_error,
            (dir_of(0) / "result.json").string() +
                ": not a segrun result.json (parse error at line 1, column 11: syntax error while parsing object - "
                "unexpected end of input; expected '}')");
  EXPECT_EQ(plan[1].record.result_error,
            (dir_of(1) / "result.json").string() + ": not a segrun result.json (not a JSON object)");
  const std::string unreadable = format_plan(plan, TableFormat::kCsv);
  EXPECT_NE(unreadable.find(",\"resume (iter 40; done, but result.json unreadable)\"\n"), std::string::npos)
      << unreadable;
  EXPECT_NE(unreadable.find(",\"retry (done, but result.json unreadable, no checkpoint)\"\n"), std::string::npos)
      << unreadable;
  EXPECT_EQ(describe_run_state(plan[0].record),
            "done (result.json unreadable; sweep run or train --resume auto evaluates it)");
}

TEST_F(SpecTest, PlanResumesFromTheNewestCheckpointNotTheLastLoggedIteration) {
  // checkpoint_interval 20, a rank killed after iteration 35 was logged: --resume auto restarts at 20.
  SweepSpec spec = parse("base = \"configs/base.toml\"\nseeds = [0]\n[grid]\n\"model.dropout\" = [0.0]\n");
  const std::filesystem::path dir = dir_.path() / "runs" / expand_sweep(spec)[0].dir_name;
  write_text(dir / "status", "running\n");
  write_text(dir / "checkpoints/iter_10.pt", "x");
  write_text(dir / "checkpoints/iter_20.pt", "x");
  write_text(dir / "checkpoints/iter_30.pt.tmp-123", "x");  // a write cut by the crash
  write_text(dir / "checkpoints/latest", "iter_20.pt\n");
  write_text(dir / "metrics.jsonl", "{\"iter\": 20, \"mode\": \"train\"}\n{\"iter\": 35, \"mode\": \"train\"}\n");
  auto plan = plan_sweep(spec, dir_.str("runs"));
  ASSERT_EQ(plan.size(), 1u);
  EXPECT_EQ(plan[0].action, PlanAction::kResume);
  EXPECT_EQ(plan[0].record.checkpoint_iter, 20);
  EXPECT_EQ(plan[0].record.last_iter, 35);  // progress in `sweep status` is still the logged one
  const std::string text = format_plan(plan, TableFormat::kCsv);
  EXPECT_NE(text.find(",resume (iter 20)\n"), std::string::npos) << text;
}

TEST_F(SpecTest, ARunToResumeUnderAChangedBaseConfigIsMarked) {
  SweepSpec spec = parse("base = \"configs/base.toml\"\nseeds = [0]\n[grid]\n\"model.dropout\" = [0.0, 0.1]\n");
  const std::string runs = dir_.str("runs");
  auto planned = expand_sweep(spec);
  for (const auto& run : planned) {
    const std::filesystem::path dir = std::filesystem::path(runs) / run.dir_name;
    PlannedRun old = run;
    old.fingerprint = "0123456789abcdef";  // made under another base config
    write_run_manifest(dir.string(), spec, old, {"segrun", "train"});
    write_text(dir / "checkpoints/iter_30.pt", "x");
  }
  write_text(std::filesystem::path(runs) / planned[0].dir_name / "status", "preempted stopped by signal\n");
  write_text(std::filesystem::path(runs) / planned[1].dir_name / "status", "done\n");
  write_text(std::filesystem::path(runs) / planned[1].dir_name / "result.json", "{\"mIoU\": 40.0}\n");
  auto plan = plan_sweep(spec, runs);
  ASSERT_EQ(plan.size(), 2u);
  EXPECT_EQ(plan[0].action, PlanAction::kResume);
  EXPECT_TRUE(plan[0].config_changed);
  EXPECT_TRUE(plan[1].config_changed);
  const std::string text = format_plan(plan, TableFormat::kCsv);
  EXPECT_NE(text.find(",resume (iter 30; base config changed)\n"), std::string::npos) << text;
  EXPECT_NE(text.find(",done (reuse; base config changed)\n"), std::string::npos) << text;
  // Resuming rewrites overrides.json but keeps the old fingerprint: the run stays marked.
  write_run_manifest(plan[0], spec, {"segrun", "train", "--resume", "auto"});
  EXPECT_EQ(read_run(plan[0].dir).fingerprint, "0123456789abcdef");
  // Unchanged base: no mark.
  write_run_manifest(plan[0].dir, spec, planned[0], {"segrun", "train"});
  EXPECT_FALSE(plan_sweep(spec, runs)[0].config_changed);
}

// A done run is compared with what the sweep now gives it through its config.toml, key by key:
// a key the schema gained since (its config.toml lacks it: it reads back at its default) or a
// float written with more digits is no change (both used to change the fingerprint and mark every
// finished run "base config changed"); another learning rate is, and the plan says which key.
TEST_F(SpecTest, ADoneRunIsComparedByItsConfigTomlKeyByKey) {
  SweepSpec spec = parse("base = \"configs/base.toml\"\nseeds = [0]\n[grid]\n\"model.dropout\" = [0.1]\n");
  const std::string runs = dir_.str("runs");
  const PlannedRun run = expand_sweep(spec).at(0);
  const std::filesystem::path dir = std::filesystem::path(runs) / run.dir_name;
  PlannedRun old = run;
  old.fingerprint = "0123456789abcdef";  // as a fingerprint of the older schema would differ
  write_run_manifest(dir.string(), spec, old, {"segrun", "train"});
  write_text(dir / "status", "done\n");
  write_text(dir / "result.json", "{\"mIoU\": 40.0}\n");
  std::string ran = to_toml(load_config(dir_.str("configs/base.toml"), run.train_args()));
  const std::string added = "accumulate = 1\n";
  ASSERT_NE(ran.find(added), std::string::npos) << ran;
  ran.erase(ran.find(added), added.size());
  const size_t lr = ran.find("\nlr = ");
  ASSERT_NE(lr, std::string::npos);
  const size_t lr_end = ran.find('\n', lr + 1);
  const std::string lr_line = ran.substr(lr + 1, lr_end - lr - 1);
  const double lr_value = std::stod(lr_line.substr(5));
  char longer[64];
  std::snprintf(longer, sizeof(longer), "lr = %.17g", lr_value);  // 17 digits, as toml++ 3.3 wrote
  ran.replace(lr + 1, lr_line.size(), longer);
  write_text(dir / "config.toml", ran);
  auto plan = plan_sweep(spec, runs);
  EXPECT_EQ(plan.at(0).action, PlanAction::kReuse);
  EXPECT_FALSE(plan[0].config_changed) << plan[0].config_change;

  const size_t at = ran.find("\nlr = ");
  ran.replace(at + 1, ran.find('\n', at + 1) - at - 1, "lr = 0.5");
  write_text(dir / "config.toml", ran);
  plan = plan_sweep(spec, runs);
  EXPECT_TRUE(plan.at(0).config_changed);
  EXPECT_EQ(plan[0].config_change.rfind("the run was trained with train.lr = 0.5, the sweep now gives ", 0), 0u)
      << plan[0].config_change;

  // Interrupted, under a changed key that shapes training: the plan says what `sweep run` does,
  // leave it (train refuses such a resume), not "resume".
  std::filesystem::remove(dir / "result.json");
  write_text(dir / "status", "preempted stopped by signal at iteration 20\n");
  write_text(dir / "checkpoints/iter_20.pt", "x");
  const size_t width = ran.find("\nfpn_channels = ");
  ASSERT_NE(width, std::string::npos) << ran;
  ran.replace(width + 1, ran.find('\n', width + 1) - width - 1, "fpn_channels = 12");
  write_text(dir / "config.toml", ran);
  plan = plan_sweep(spec, runs);
  EXPECT_EQ(plan.at(0).action, PlanAction::kResume);
  EXPECT_NE(plan[0].refusal.find("the run was trained with model.fpn_channels = 12"), std::string::npos)
      << plan[0].refusal;
  const std::string text = format_plan(plan, TableFormat::kCsv);
  EXPECT_NE(text.find(",not run (iter 20; the base config changed what it computes)\n"), std::string::npos) << text;
  const std::string shown = format_plan(plan, TableFormat::kText);
  EXPECT_NE(shown.find("0 to resume, 1 not run"), std::string::npos) << shown;
}

}  // namespace
}  // namespace segrun::sweeps
