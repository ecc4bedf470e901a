// Result tables from fabricated run directories: means and sample stds over seeds checked
// against hand-computed values, deltas against a baseline, best marking, deltas within the
// seed-to-seed spread, and exact markdown / CSV / LaTeX / text output.
#include "sweeps/results.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <filesystem>

#include "core/error.h"
#include "core/atomic_file.h"
#include "sweeps/registry.h"
#include "sweeps_test_util.h"

namespace segrun::sweeps {
namespace {

using testing::fabricate_run;
using testing::ScratchDir;
using testing::write_text;

// model.dropout in {0.0, 0.1, 0.2}, two seeds each, plus one run still running.
//   0.0: 40.0, 41.0 -> mean 40.50, std sqrt(0.5)   = 0.7071
//   0.1: 42.0, 42.5 -> mean 42.25, std sqrt(0.125) = 0.3536  (baseline)
//   0.2: 42.5, 42.3 -> mean 42.40, std sqrt(0.02)  = 0.1414
// Deltas: 0.0 -> -1.75 (beyond the spread), 0.2 -> +0.15 < max(0.14, 0.35): within the spread.
class OneAxis : public ::testing::Test {
 protected:
  OneAxis() : dir_("results1") {
    const auto root = dir_.path();
    fabricate_run(root / "a0", {{"model.dropout", "0.0"}}, 0, "done", 40.0, {{"wall", 70.0}, {"sky", 90.0}});
    fabricate_run(root / "a1", {{"model.dropout", "0.0"}}, 1, "done", 41.0, {{"wall", 72.0}, {"sky", 91.0}});
    fabricate_run(root / "b0", {{"model.dropout", "0.1"}}, 0, "done", 42.0, {{"wall", 75.0}, {"sky", 89.0}});
    fabricate_run(root / "b1", {{"model.dropout", "0.1"}}, 1, "done", 42.5, {{"wall", 74.0}, {"sky", 88.0}});
    fabricate_run(root / "c0", {{"model.dropout", "0.2"}}, 0, "done", 42.5, {{"wall", 71.0}, {"sky", 92.5}});
    fabricate_run(root / "c1", {{"model.dropout", "0.2"}}, 1, "done", 42.3, {{"wall", 71.0}, {"sky", 92.5}});
    fabricate_run(root / "d0", {{"model.dropout", "0.3"}}, 0, "running", 0.0);
    runs_ = scan_runs(root.string());
  }
  ScratchDir dir_;
  std::vector<RunRecord> runs_;
};

TEST_F(OneAxis, CellsMatchHandComputedMeansAndStds) {
  ResultTableOptions options;
  options.baseline = {{"model.dropout", "0.1"}};
  ResultGrid g = build_result_grid(runs_, options);
  ASSERT_EQ(g.cells.size(), 3u);
  EXPECT_EQ(g.row_keys, (std::vector<std::string>{"model.dropout"}));
  EXPECT_EQ(g.runs_not_done, 1);
  EXPECT_DOUBLE_EQ(g.cells[0].mean, 40.5);
  EXPECT_NEAR(g.cells[0].std, std::sqrt(0.5), 1e-12);
  EXPECT_NEAR(g.cells[1].std, std::sqrt(0.125), 1e-12);
  EXPECT_NEAR(g.cells[2].mean, 42.4, 1e-12);
  EXPECT_NEAR(g.cells[2].std, std::sqrt(0.02), 1e-12);
  EXPECT_NEAR(g.cells[0].delta, -1.75, 1e-12);
  EXPECT_FALSE(g.cells[0].within_spread);
  EXPECT_TRUE(g.cells[1].is_baseline);
  EXPECT_NEAR(g.cells[2].delta, 0.15, 1e-12);
  EXPECT_TRUE(g.cells[2].within_spread);
  EXPECT_TRUE(g.cells[2].best);
  EXPECT_FALSE(g.cells[1].best);
}

TEST_F(OneAxis, Markdown) {
  ResultTableOptions options;
  options.baseline = {{"model.dropout", "0.1"}};
  const std::string expected =
      "| model.dropout |                   mIoU |   \xCE\x94 mIoU |\n"
      "|:--------------|-----------------------:|---------:|\n"
      "| 0.0           |     40.50 \xC2\xB1 0.71 (n=2) |    -1.75 |\n"
      "| 0.1           |     42.25 \xC2\xB1 0.35 (n=2) | baseline |\n"
      "| 0.2           | **42.40 \xC2\xB1 0.14 (n=2)** |   +0.15~ |\n"
      "\n"
      "- mean \xC2\xB1 sample std over n seeds.\n"
      "- \xCE\x94: mIoU minus that of the baseline (model.dropout=0.1) with the other keys equal.\n"
      "- ~: |\xCE\x94| is smaller than the seed-to-seed std of the two configurations (not "
      "distinguishable from noise).\n"
      "- 1 run(s) not done were left out.\n";
  EXPECT_EQ(format_result_grid(build_result_grid(runs_, options), "md"), expected);
}

// Runs a sweep trained under an earlier base config (its plan says "done (reuse; base config
// changed)") are shown with a footnote: their figures are not the sweep's as it now stands.
TEST_F(OneAxis, RunsOfAnEarlierBaseConfigAreFootnoted) {
  std::vector<RunRecord> runs = runs_;
  runs[0].config_change = "the run was trained with model.width = 8, the sweep now gives 16";
  runs[3].config_change = "the run was trained with model.width = 8, the sweep now gives 16";
  const ResultGrid g = build_result_grid(runs, ResultTableOptions{});
  EXPECT_EQ(g.runs_of_older_config, 2);
  const std::string md = format_result_grid(g, "md");
  EXPECT_NE(md.find("- 2 run(s) were trained under an earlier base config (the first: the run was trained with "
                    "model.width = 8, the sweep now gives 16); their figures are not the sweep's as it now stands: "
                    "delete their folders and run the sweep again to redo them (`segrun sweep plan` lists them).\n"),
            std::string::npos)
      << md;
  EXPECT_EQ(format_result_grid(build_result_grid(runs_, ResultTableOptions{}), "md").find("earlier base config"),
            std::string::npos);
}

// The paper's value beside the measured one: a column without cols, only for the metric it
// reports, with its source in a footnote.
TEST_F(OneAxis, PaperColumn) {
  ResultTableOptions options;
  options.baseline = {{"model.dropout", "0.1"}};
  options.paper = {PaperValue{{{"model.dropout", "0.1"}}, {{"mIoU", 43.0}}}};
  options.paper_source = "Table 9";
  const ResultGrid g = build_result_grid(runs_, options);
  EXPECT_TRUE(g.has_paper);
  EXPECT_TRUE(std::isnan(g.cells[0].paper));
  EXPECT_DOUBLE_EQ(g.cells[1].paper, 43.0);
  EXPECT_EQ(format_result_grid(g, "csv"),
            "model.dropout,mIoU,std,n,paper,delta,baseline,within_spread,best\n"
            "0.0,40.5,0.707107,2,,-1.75,0,0,0\n"
            "0.1,42.25,0.353553,2,43,0,1,0,0\n"
            "0.2,42.4,0.141421,2,,0.15,0,1,1\n");
  EXPECT_NE(format_result_grid(g, "md").find("- paper: the value the paper reports (Table 9)."), std::string::npos);
  EXPECT_EQ(nlohmann::json::parse(format_result_grid(g, "json"))["cells"][1]["paper"], 43.0);
  options.metric = "sky";  // a metric the paper does not report: no column
  EXPECT_FALSE(build_result_grid(runs_, options).has_paper);
}

TEST_F(OneAxis, CsvTextLatexAndJson) {
  ResultTableOptions options;
  options.baseline = {{"model.dropout", "0.1"}};
  const ResultGrid g = build_result_grid(runs_, options);
  EXPECT_EQ(format_result_grid(g, "csv"),
            "model.dropout,mIoU,std,n,delta,baseline,within_spread,best\n"
            "0.0,40.5,0.707107,2,-1.75,0,0,0\n"
            "0.1,42.25,0.353553,2,0,1,0,0\n"
            "0.2,42.4,0.141421,2,0.15,0,1,1\n");
  const std::string text = format_result_grid(g, "text");
  EXPECT_NE(text.find("| 0.2           | 42.40 \xC2\xB1 0.14 (n=2)* |   +0.15~ |\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\n*: best mIoU.\n"), std::string::npos) << text;
  EXPECT_EQ(format_result_grid(g, "latex"),
            "\\begin{tabular}{lrr}\n"
            "\\toprule\n"
            "model.dropout & mIoU & $\\Delta$ mIoU \\\\\n"
            "\\midrule\n"
            "0.0 & 40.50 $\\pm$ 0.71 (n=2) & -1.75 \\\\\n"
            "0.1 & 42.25 $\\pm$ 0.35 (n=2) & baseline \\\\\n"
            "0.2 & \\textbf{42.40 $\\pm$ 0.14 (n=2)} & +0.15\\textasciitilde{} \\\\\n"
            "\\bottomrule\n"
            "\\end{tabular}\n"
            "% mean \xC2\xB1 sample std over n seeds.\n"
            "% \xCE\x94: mIoU minus that of the baseline (model.dropout=0.1) with the other keys equal.\n"
            "% ~: |\xCE\x94| is smaller than the seed-to-seed std of the two configurations (not "
            "distinguishable from noise).\n"
            "% 1 run(s) not done were left out.\n");
  auto j = nlohmann::json::parse(format_result_grid(g, "json"));
  ASSERT_EQ(j["cells"].size(), 3u);
  EXPECT_EQ(j["cells"][2]["config"]["model.dropout"], 0.2);
  EXPECT_EQ(j["cells"][2]["n"], 2);
  EXPECT_NEAR(j["cells"][2]["std"].get<double>(), std::sqrt(0.02), 1e-12);
  EXPECT_TRUE(j["cells"][2]["within_spread"].get<bool>());
  EXPECT_TRUE(j["cells"][2]["best"].get<bool>());
  EXPECT_TRUE(j["cells"][1]["delta"].get<double>() == 0.0);
  EXPECT_EQ(j["runs_not_done"], 1);
}

TEST_F(OneAxis, PerClassTableAndFilters) {
  ResultTableOptions options;
  options.where = {{"model.dropout", {"0.0"}}};
  // Only dropout 0.0 is left (and no running run matches the filter).
  const ResultGrid g = build_result_grid(runs_, options);
  ASSERT_EQ(g.cells.size(), 1u);
  EXPECT_EQ(g.runs_not_done, 0);
  // One configuration left: nothing to be best against, nothing marked.
  EXPECT_FALSE(g.cells[0].best);
  const std::string alone = format_per_class_table(runs_, options, {"wall"}, "md");
  EXPECT_EQ(alone.find("**"), std::string::npos) << alone;
  // A key given twice keeps either value (a paper's k = 20, 40 out of a top-k sweep); the
  // baseline takes one.
  options.where = parse_filter_args({"model.dropout=0", "model.dropout=0.2"}, "--where");
  const ResultGrid two = build_result_grid(runs_, options);
  ASSERT_EQ(two.cells.size(), 2u);
  EXPECT_EQ(two.cells[0].config.at("model.dropout"), "0.0");
  EXPECT_EQ(two.cells[1].config.at("model.dropout"), "0.2");
  try {
    parse_override_args({"model.dropout=0.1", "model.dropout=0.2"}, "--baseline");
    ADD_FAILURE() << "a baseline of two values was accepted";
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(), "--baseline model.dropout: given 2 values (0.1, 0.2); it takes one");
  }
  ResultTableOptions all;
  // wall: 71.0 | 74.5 | 71.0 ; sky: 90.5 | 88.5 | 92.5 (means over the two seeds).
  EXPECT_EQ(format_per_class_table(runs_, all, {"wall", "sky"}, "csv"),
            "model.dropout,wall,wall std,sky,sky std,mIoU,mIoU std\n"
            "0.0,71,1.414214,90.5,0.707107,40.5,0.707107\n"
            "0.1,74.5,0.707107,88.5,0.707107,42.25,0.353553\n"
            "0.2,71,0,92.5,0,42.4,0.141421\n");
  EXPECT_THROW(format_per_class_table(runs_, all, {"ceiling"}, "csv"), DataError);
  // A class as the table metric.
  ResultTableOptions sky;
  sky.metric = "sky";
  EXPECT_DOUBLE_EQ(build_result_grid(runs_, sky).cells[2].mean, 92.5);
}

// A class with no IoU in some runs (null in result.json: in neither their ground truth nor their
// predictions): as the table metric those runs are left out and said to be, each cell shows its n;
// in the per-class table a mean over fewer runs than the configuration has says so too.
TEST_F(OneAxis, RunsWithANullClassIoUAreCountedNotHidden) {
  for (auto& run : runs_) {
    if (run.dir == (dir_.path() / "a1").string() || run.dir.find("/c") != std::string::npos)
      run.per_class["sky"] = std::nan("");
  }
  ResultTableOptions sky;
  sky.metric = "sky";
  const ResultGrid g = build_result_grid(runs_, sky);
  ASSERT_EQ(g.cells.size(), 2u);  // 0.2 has no value left
  EXPECT_EQ(g.runs_without_value, 3);
  EXPECT_EQ(g.cells[0].values.size(), 1u);
  const std::string md = format_result_grid(g, "md");
  EXPECT_NE(md.find("| 0.0           |    **90.00 (n=1)** |"), std::string::npos) << md;
  EXPECT_NE(md.find("- 3 done run(s) have a null sky in result.json (a class in neither their validation ground truth "
                    "nor their predictions has no IoU) and were left out (the first: " +
                    (dir_.path() / "a1").string() + ")."),
            std::string::npos)
      << md;
  const std::string per_class = format_per_class_table(runs_, ResultTableOptions{}, {"sky"}, "md");
  EXPECT_NE(per_class.find("90.00 (n=1)"), std::string::npos) << per_class;
  EXPECT_NE(per_class.find("- (n=k): the mean of the k runs of the configuration in which the class has an IoU"),
            std::string::npos)
      << per_class;
}

TEST_F(OneAxis, BadOptions) {
  ResultTableOptions options;
  options.rows = {"train.lr"};
  EXPECT_THROW(build_result_grid(runs_, options), ConfigError);
  // A key every run sets alike (a spec's [fixed]) is listed apart from the swept ones.
  for (auto& run : runs_) run.overrides["train.iters"] = "80";
  options.rows = {"model.droput"};
  try {
    build_result_grid(runs_, options);
    ADD_FAILURE() << "a misspelt --rows key was accepted";
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(),
                 "--rows model.droput: not a swept key of these runs (swept: model.dropout; the same in every run: "
                 "train.iters)");
  }
  for (auto& run : runs_) run.overrides.erase("train.iters");
  options.rows.clear();
  options.baseline = {{"model.dropout", "0.7"}};
  EXPECT_THROW(build_result_grid(runs_, options), ConfigError);
  // A spec's [table] baseline that --where filtered away: the table without deltas, a footnote
  // naming the spec's baseline; a --baseline the user gave is an error (named as theirs).
  options.baseline = {{"model.dropout", "0.1"}};
  options.baseline_origin = "s.toml: [table] baseline";
  options.where = {{"model.dropout", {"0.0"}}};
  const std::string md = format_result_grid(build_result_grid(runs_, options), "md");
  EXPECT_NE(md.find("- No \xCE\x94: s.toml: [table] baseline model.dropout=0.1 is not among the runs --where keeps.\n"),
            std::string::npos)
      << md;
  EXPECT_EQ(md.find(", \xCE\x94"), std::string::npos) << md;
  options.baseline_origin = "--baseline";
  try {
    build_result_grid(runs_, options);
    ADD_FAILURE() << "a --baseline that --where removed was accepted";
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(),
                 "--baseline model.dropout=0.1: matches no configuration with a result among the runs --where keeps");
  }
  options.where.clear();
  options.baseline_origin = "--baseline";
  options.baseline.clear();
  options.metric = "nope";
  EXPECT_THROW(build_result_grid(runs_, options), DataError);
  // A metric no run has, spelt like one they have: a typo, exit 2, with the name meant.
  options.metric = "mIOU";
  try {
    build_result_grid(runs_, options);
    ADD_FAILURE() << "a misspelt --metric was not refused";
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(), ("table: --metric mIOU: no done run has it in result.json (e.g. " +
                            (dir_.path() / "a0").string() + "); did you mean 'mIoU'?")
                               .c_str());
  }
  options.metric_origin = "s.toml:6: [table] metric";  // the spec's metric
  try {
    build_result_grid(runs_, options);
    ADD_FAILURE() << "a misspelt [table] metric was not refused";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()).rfind("table: s.toml:6: [table] metric mIOU: no done run has it", 0), 0u)
        << e.what();
  }
  options.metric_origin = "--metric";
  // A multi-scale metric that one done run lacks: that run is named, with the command that adds it.
  runs_[0].result["mIoU_ms"] = 41.5;
  options.metric = "mIoU_ms";
  try {
    build_result_grid(runs_, options);
    FAIL();
  } catch (const DataError& e) {
    const std::string a1 = (dir_.path() / "a1").string();
    EXPECT_EQ(std::string(e.what()), "table: run " + a1 +
                                         " has no 'mIoU_ms' in result.json; evaluate it with `segrun eval " + a1 +
                                         " --ms` (or train with eval.report_ms = true)");
  }
  // A value that is there but not a number (written by hand) is quoted, not called missing.
  const std::string a1 = (dir_.path() / "a1").string();
  write_text(dir_.path() / "a1" / "result.json", "{\"mIoU\": 40.0, \"mIoU_ms\": \"n/a\", \"per_class\": {}}\n");
  try {
    build_result_grid(runs_, options);
    FAIL();
  } catch (const DataError& e) {
    EXPECT_EQ(std::string(e.what()), "table: run " + a1 + ": 'mIoU_ms' in result.json is \"n/a\", not a number");
  }
  // The best validation's figure (train.save_best) is a metric like any other; a run without it
  // is named with the key that records it.
  for (auto& run : runs_)
    if (run.result.count("mIoU")) run.result["best_mIoU"] = run.result["mIoU"] + 1.0;
  options.metric = "best_mIoU";
  EXPECT_DOUBLE_EQ(build_result_grid(runs_, options).cells[0].mean, 41.5);  // 40.50 + 1
  const std::string b1 = (dir_.path() / "b1").string();
  for (auto& run : runs_)
    if (run.dir == b1) run.result.erase("best_mIoU");
  try {
    build_result_grid(runs_, options);
    FAIL();
  } catch (const DataError& e) {
    EXPECT_EQ(std::string(e.what()),
              "table: run " + b1 + " has no 'best_mIoU' in result.json; train it with train.save_best = \"mIoU\"");
  }
}

TEST_F(OneAxis, AWhereFilterThatMatchesNothingIsNamed) {
  ResultTableOptions options;
  options.where = {{"model.dropout", {"0.5"}}};
  try {
    build_result_grid(runs_, options);
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()),
              "table: nothing to tabulate: no run matches --where model.dropout=0.5 (model.dropout has 0.0, 0.1, "
              "0.2, 0.3)");
  }
}

// --where that leaves one configuration: its row is named by the keys --where chose it by, not
// "(all runs)" (and not by a key every run sets alike, a spec's [fixed] one).
TEST(RowLabel, AWhereFilterThatLeavesOneConfigurationNamesIt) {
  ScratchDir dir("results-where-one");
  fabricate_run(dir.path() / "a", {{"model.dropout", "0.0"}, {"train.iters", "60"}}, 0, "done", 30.0, {{"wall", 50.0}});
  fabricate_run(dir.path() / "b", {{"model.dropout", "0.1"}, {"train.iters", "60"}}, 0, "done", 31.0, {{"wall", 52.5}});
  ResultTableOptions options;
  options.metric = "mIoU";
  options.where = {{"model.dropout", {"0.1"}}};
  const std::string md = format_result_grid(build_result_grid(scan_runs(dir.path().string()), options), "md");
  EXPECT_NE(md.find("| model.dropout=0.1 |"), std::string::npos) << md;
  EXPECT_EQ(md.find("(all runs)"), std::string::npos) << md;
  // The CSV too has a column for the key that picked it.
  EXPECT_EQ(format_result_grid(build_result_grid(scan_runs(dir.path().string()), options), "csv"),
            "model.dropout,mIoU,std,n,best\n0.1,31,,1,0\n");
  EXPECT_EQ(format_per_class_table(scan_runs(dir.path().string()), options, {"wall"}, "csv"),
            "model.dropout,wall,wall std,mIoU,mIoU std\n0.1,52.5,,31,\n");
}

// A run whose status says done but whose result.json is gone (removed by hand) is footnoted as
// that, not counted among the runs not done (d0, running, is).
TEST_F(OneAxis, ADoneRunWithoutResultJsonIsFootnotedAsSuch) {
  std::vector<RunRecord> runs = runs_;
  runs[0].has_result = false;
  runs[0].result.clear();
  const std::string md = format_result_grid(build_result_grid(runs, {}), "md");
  EXPECT_NE(md.find("- 1 run(s) marked done have no result.json and were left out (the first: " + runs[0].dir +
                    "): restore the file, or evaluate the run again with segrun train RUN --resume auto on the run's "
                    "ranks (segrun "
                    "sweep run does it for a sweep).\n"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("- 1 run(s) not done were left out.\n"), std::string::npos) << md;  // d0 alone
  // When no done run has one, the error says so (it said "no run is done").
  for (RunRecord& run : runs) {
    run.has_result = false;
    run.result.clear();
  }
  try {
    build_result_grid(runs, {});
    ADD_FAILURE() << "a table of runs without result.json";
  } catch (const DataError& e) {
    EXPECT_EQ(std::string(e.what()),
              "table: nothing to tabulate: no run is done with a result.json (6 marked done have none, the first: " +
                  runs[0].dir + ") (1 not done)");
  }
}

// One whose result.json is unreadable is footnoted with the reason, apart from the missing ones.
TEST_F(OneAxis, ADoneRunWithAnUnreadableResultJsonIsFootnotedWithTheReason) {
  std::vector<RunRecord> runs = runs_;
  runs[0].has_result = false;
  runs[0].result.clear();
  runs[0].result_error = runs[0].dir + "/result.json: not a segrun result.json (not a JSON object)";
  const std::string md = format_result_grid(build_result_grid(runs, {}), "md");
  EXPECT_NE(md.find("- 1 run(s) marked done have an unreadable result.json and were left out (the first: " +
                    runs[0].result_error +
                    "): evaluate the run again with segrun train RUN --resume auto on the run's ranks (it sets the "
                    "file aside; segrun sweep run does it for a sweep).\n"),
            std::string::npos)
      << md;
  EXPECT_EQ(md.find("have no result.json"), std::string::npos) << md;
  EXPECT_NE(md.find("- 1 run(s) not done were left out.\n"), std::string::npos) << md;  // d0, running
}

// A key some runs lack sorts first, before numbers (as the docs say): "-" is the first row.
TEST(RowOrder, AnAbsentKeySortsFirst) {
  ScratchDir dir("results-absent-first");
  fabricate_run(dir.path() / "a", {{"train.iters", "30"}}, 0, "done", 30.0);
  fabricate_run(dir.path() / "b", {}, 0, "done", 31.0);
  ResultTableOptions options;
  options.rows = {"train.iters"};
  const std::string md = format_result_grid(build_result_grid(scan_runs(dir.path().string()), options), "md");
  const size_t absent = md.find("| -"), thirty = md.find("| 30");
  ASSERT_NE(absent, std::string::npos) << md;
  ASSERT_NE(thirty, std::string::npos) << md;
  EXPECT_LT(absent, thirty) << md;
}

TEST(JsonTable, IntegerKeysStayIntegers) {
  ScratchDir dir("results-json");
  fabricate_run(dir.path() / "a", {{"train.iters", "30"}, {"train.lr", "0.005"}}, 0, "done", 30.0);
  fabricate_run(dir.path() / "b", {{"train.iters", "60"}, {"train.lr", "0.005"}}, 0, "done", 31.0);
  const ResultGrid g = build_result_grid(scan_runs(dir.str()), ResultTableOptions{});
  const std::string text = format_result_grid(g, "json");
  EXPECT_NE(text.find("\"train.iters\": 30,"), std::string::npos) << text;
  const nlohmann::json j = nlohmann::json::parse(text);
  EXPECT_TRUE(j["cells"][0]["config"]["train.iters"].is_number_integer()) << text;
  EXPECT_TRUE(j["cells"][0]["config"]["train.lr"].is_number_float()) << text;
}

// A 2 x 2 grid (dropout 0.0 / 0.1 x lr 1e-4 / 2e-4), one seed each, in `root`; the run of the
// baseline dropout 0.1 at lr 2e-4 ends `last_status` (mIoU 32.0 when done). Rows dropout,
// columns lr, baseline dropout 0.1.
ResultGrid dropout_by_lr_grid(const std::filesystem::path& root, const std::string& last_status) {
  fabricate_run(root / "r1", {{"model.dropout", "0.0"}, {"train.lr", "0.0001"}}, 0, "done", 30.0);
  fabricate_run(root / "r2", {{"model.dropout", "0.0"}, {"train.lr", "0.0002"}}, 0, "done", 33.5);
  fabricate_run(root / "r3", {{"model.dropout", "0.1"}, {"train.lr", "0.0001"}}, 0, "done", 31.25);
  fabricate_run(root / "r4", {{"model.dropout", "0.1"}, {"train.lr", "0.0002"}}, 0, last_status, 32.0);
  ResultTableOptions options;
  options.rows = {"model.dropout"};
  options.cols = {"train.lr"};
  options.baseline = {{"model.dropout", "0.1"}};
  return build_result_grid(scan_runs(root.string()), options);
}

// Deltas compared at the same learning rate; CSV keeps each key in its own column and each
// number in its own cell.
TEST(TwoAxes, CsvIsOneLineOfNumbersPerCell) {
  ScratchDir dir("results2");
  const ResultGrid g = dropout_by_lr_grid(dir.path(), "done");
  EXPECT_EQ(format_result_grid(g, "csv"),
            "model.dropout,train.lr,mIoU,std,n,delta,baseline,within_spread,best\n"
            "0.0,0.0001,30,,1,-1.25,0,0,0\n"
            "0.0,0.0002,33.5,,1,1.5,0,0,1\n"
            "0.1,0.0001,31.25,,1,0,1,0,0\n"
            "0.1,0.0002,32,,1,0,1,0,0\n");
  EXPECT_EQ(format_result_grid(g, "md"),
            "| model.dropout | train.lr=0.0001 |    train.lr=0.0002 |\n"
            "|:--------------|----------------:|-------------------:|\n"
            "| 0.0           |  30.00, \xCE\x94 -1.25 | **33.50, \xCE\x94 +1.50** |\n"
            "| 0.1           |           31.25 |              32.00 |\n"
            "\n"
            "- \xCE\x94: mIoU minus that of the baseline (model.dropout=0.1) with the other keys equal.\n");
}

// The baseline at the same learning rate has no result yet (its runs failed, or are still
// training): that cell gets no delta, with a footnote -- not a delta against the baseline at
// another learning rate, the only one with a result (a wrong number, exit 0, before).
TEST(TwoAxes, ACellWhoseBaselineHasNoResultGetsNoDelta) {
  ScratchDir dir("results-baseline-missing");
  const ResultGrid g = dropout_by_lr_grid(dir.path(), "failed");
  EXPECT_EQ(format_result_grid(g, "csv"),
            "model.dropout,train.lr,mIoU,std,n,delta,baseline,within_spread,best\n"
            "0.0,0.0001,30,,1,-1.25,0,0,0\n"
            "0.0,0.0002,33.5,,1,,0,0,1\n"
            "0.1,0.0001,31.25,,1,0,1,0,0\n");
  const std::string md = format_result_grid(g, "md");
  EXPECT_NE(md.find("- 1 configuration(s) have no \xCE\x94: the baseline with their other keys has no result (yet).\n"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("(model.dropout=0.1) with the other keys equal."), std::string::npos) << md;
  // A paper's single "Baseline" row that sets none of a configuration's other keys still pairs
  // with every configuration (the fallback this case must not reach).
  ScratchDir paper_dir("results-baseline-single");
  fabricate_run(paper_dir.path() / "fpn", {{"model.head", "fpn"}}, 0, "done", 40.0);
  fabricate_run(paper_dir.path() / "k3", {{"model.head", "clip_sp"}, {"model.clip_sp.top_k", "3"}}, 0, "done", 42.0);
  ResultTableOptions paper;
  paper.baseline = {{"model.head", "fpn"}};
  const ResultGrid p = build_result_grid(scan_runs(paper_dir.path().string()), paper);
  ASSERT_EQ(p.cells.size(), 2u);
  for (const ResultCell& cell : p.cells)
    EXPECT_DOUBLE_EQ(cell.delta, cell.is_baseline ? 0.0 : 2.0) << format_result_grid(p, "md");
  EXPECT_EQ(p.cells_without_baseline, 0);
}

// Keys outside --rows/--cols join the row label only when rows and columns leave them open: each
// backbone's weights file follows from the backbone, the norm does not.
TEST(TwoAxes, RowLabelsSkipKeysThatFollowFromRowsAndColumns) {
  ScratchDir dir("results3");
  const auto root = dir.path();
  const std::vector<std::pair<std::string, std::string>> backbones{{"clip_rn50", "RN50.pt"},
                                                                   {"clip_vit_b16", "ViT-B-16.pt"}};
  double miou = 30.0;
  for (const auto& [backbone, weights] : backbones)
    for (const std::string head : {"fpn", "clip_sp"})
      fabricate_run(root / (backbone + head),
                    {{"model.backbone", backbone}, {"model.head", head}, {"model.pretrained", weights}}, 0, "done",
                    miou += 1.0);
  ResultTableOptions options;
  options.rows = {"model.backbone"};
  options.cols = {"model.head"};
  EXPECT_EQ(build_result_grid(scan_runs(root.string()), options).row_keys,
            (std::vector<std::string>{"model.backbone"}));

  // A second norm for one configuration: model.norm is no longer determined, so it is shown.
  fabricate_run(
      root / "bn",
      {{"model.backbone", "clip_rn50"}, {"model.head", "fpn"}, {"model.pretrained", "RN50.pt"}, {"model.norm", "bn"}},
      0, "done", 20.0);
  const ResultGrid g = build_result_grid(scan_runs(root.string()), options);
  EXPECT_EQ(g.row_keys, (std::vector<std::string>{"model.backbone", "model.norm"}));
  EXPECT_EQ(g.cells.size(), 5u);
}

// Runs trained at different global batches (a seed on 2 GPUs instead of 4, or with
// train.accumulate) still form one table; a footnote counts the runs of each global batch. A run
// whose result.json predates the field counts in none.
TEST(MixedGlobalBatches, AFootnoteCountsTheRunsOfEachGlobalBatch) {
  ScratchDir dir("results4");
  const auto root = dir.path();
  const auto with_global_batch = [&](const std::string& run, int64_t batch) {
    const auto path = root / run / "result.json";
    nlohmann::json result = nlohmann::json::parse(read_file(path.string()));
    result["global_batch"] = batch;
    write_text(path, result.dump());
  };
  fabricate_run(root / "a0", {{"model.dropout", "0.0"}}, 0, "done", 40.0);
  fabricate_run(root / "a1", {{"model.dropout", "0.0"}}, 1, "done", 41.0);
  fabricate_run(root / "b0", {{"model.dropout", "0.1"}}, 0, "done", 42.0);
  fabricate_run(root / "b1", {{"model.dropout", "0.1"}}, 1, "done", 43.0);
  for (const std::string run : {"a0", "a1", "b0"}) with_global_batch(run, 16);
  const std::string same = format_result_grid(build_result_grid(scan_runs(root.string()), {}), "md");
  EXPECT_EQ(same.find("global batch"), std::string::npos) << same;

  with_global_batch("a1", 8);
  const ResultGrid g = build_result_grid(scan_runs(root.string()), {});
  EXPECT_EQ(g.mixed_global_batches, (std::map<int64_t, int>{{8, 1}, {16, 2}}));
  const std::string md = format_result_grid(g, "md");
  EXPECT_NE(md.find("- the runs were trained at different global batches: 8 (1 run), 16 (2 runs) (batch_per_rank x "
                    "ranks x train.accumulate); their differences are not the swept keys' alone.\n"),
            std::string::npos)
      << md;
  const nlohmann::json j = nlohmann::json::parse(format_result_grid(g, "json"));
  EXPECT_EQ(j["mixed_global_batches"], (nlohmann::json{{"8", 1}, {"16", 2}}));
  EXPECT_EQ(format_result_grid(g, "csv").find("global"), std::string::npos);  // CSV stays data only
}

// Two ad-hoc runs that differ in model.dropout and, unnoticed, in train.lr: the row says dropout,
// a footnote says that the learning rate changed with it (a spec's variants pair keys on purpose:
// no footnote unless asked for).
TEST(CoVaryingKeys, AFootnoteNamesTheKeysThatChangedWithTheShownOnes) {
  ScratchDir dir("results5");
  fabricate_run(dir.path() / "u", {{"model.dropout", "0.1"}, {"train.lr", "0.002"}}, 0, "done", 9.5);
  fabricate_run(dir.path() / "v", {{"model.dropout", "0.0"}, {"train.lr", "0.001"}}, 0, "done", 7.5);
  const std::vector<RunRecord> runs = scan_runs(dir.str());
  ResultTableOptions options;
  options.rows = {"model.dropout"};
  EXPECT_TRUE(build_result_grid(runs, options).co_varying_keys.empty());
  options.note_co_varying = true;
  const ResultGrid g = build_result_grid(runs, options);
  EXPECT_EQ(g.co_varying_keys, std::vector<std::string>{"train.lr"});
  const std::string md = format_result_grid(g, "md");
  EXPECT_NE(md.find("the configurations also differ in train.lr, which follows from model.dropout"), std::string::npos)
      << md;
  EXPECT_EQ(nlohmann::json::parse(format_result_grid(g, "json"))["co_varying_keys"], nlohmann::json{"train.lr"});
}

// Runs scored on different validation sets (an ADE20K and a Cityscapes run in one folder) are not
// comparable: data.val_store labels the rows even where another key already tells them apart.
TEST(CoVaryingKeys, TheValidationSetIsShownWheneverItVaries) {
  ScratchDir dir("results6");
  fabricate_run(dir.path() / "u", {{"data.crop", "[48, 48]"}, {"data.val_store", "\"/d/c_val\""}}, 0, "done", 9.5);
  fabricate_run(dir.path() / "v", {{"data.crop", "[64, 64]"}, {"data.val_store", "\"/d/a_val\""}}, 0, "done", 7.5);
  ResultTableOptions options;
  options.rows = {"data.crop"};
  options.note_co_varying = true;
  const ResultGrid g = build_result_grid(scan_runs(dir.str()), options);
  EXPECT_EQ(g.row_keys, (std::vector<std::string>{"data.crop", "data.val_store"}));
  EXPECT_TRUE(g.co_varying_keys.empty());
  EXPECT_FALSE(g.cells[0].best || g.cells[1].best);  // no best across two validation sets
  // Columns that separate the validation sets leave the rows to the other keys.
  fabricate_run(dir.path() / "w", {{"data.crop", "[64, 64]"}, {"data.val_store", "\"/d/c_val\""}}, 0, "done", 8.5);
  fabricate_run(dir.path() / "x", {{"data.crop", "[48, 48]"}, {"data.val_store", "\"/d/a_val\""}}, 0, "done", 6.5);
  options.cols = {"data.val_store"};
  const ResultGrid by_cols = build_result_grid(scan_runs(dir.str()), options);
  EXPECT_EQ(by_cols.row_keys, (std::vector<std::string>{"data.crop"}));
  ASSERT_EQ(by_cols.cells.size(), 4u);
  int best = 0;
  for (const ResultCell& c : by_cols.cells) best += c.best ? 1 : 0;
  EXPECT_EQ(best, 2);  // one per validation set: 7.5 of a_val, 9.5 of c_val
}

// JSON gives each key's value as the type it has in TOML: an array of numbers (data.crop) is an
// array, a string a string, not the TOML text of either.
TEST(JsonConfig, ArraysAndStringsKeepTheirTypes) {
  ScratchDir dir("results_json");
  fabricate_run(dir.path() / "a", {{"data.crop", "[64, 64]"}, {"model.head", "\"fpn\""}}, 0, "done", 9.5);
  fabricate_run(dir.path() / "b", {{"data.crop", "[128, 64]"}, {"model.head", "\"fpn\""}}, 0, "done", 7.5);
  const nlohmann::json j =
      nlohmann::json::parse(format_result_grid(build_result_grid(scan_runs(dir.str()), {}), "json"));
  ASSERT_EQ(j["cells"].size(), 2u);
  EXPECT_EQ(j["cells"][0]["config"]["data.crop"], (nlohmann::json{64, 64}));
  EXPECT_EQ(j["cells"][1]["config"]["data.crop"], (nlohmann::json{128, 64}));
  EXPECT_EQ(j["cells"][0]["config"]["model.head"], "fpn");
}

// The same configuration trained twice with the same seed (a folder of ad-hoc runs: a run
// repeated to check it, or copied): one value per configuration and seed, the run whose
// result.json was written last, and a footnote naming the ones left out. Counting both would
// give "n=2, std 0.00", which reads as two seeds that agree perfectly.
TEST(RepeatedRuns, ASeedCountsOnceWithItsNewestResult) {
  ScratchDir dir("results6");
  const auto root = dir.path();
  fabricate_run(root / "k2", {{"model.dropout", "0.1"}}, 0, "done", 21.5, {{"wall", 60.0}});
  fabricate_run(root / "k3", {{"model.dropout", "0.1"}}, 0, "done", 19.9, {{"wall", 50.0}});
  fabricate_run(root / "k4", {{"model.dropout", "0.1"}}, 1, "done", 20.5, {{"wall", 55.0}});
  fabricate_run(root / "m0", {{"model.dropout", "0.0"}}, 0, "done", 18.0, {{"wall", 40.0}});
  // k3 finished first, k2 (a later rerun, whatever its name) last.
  const auto now = std::filesystem::file_time_type::clock::now();
  std::filesystem::last_write_time(root / "k3" / "result.json", now - std::chrono::hours(2));
  std::filesystem::last_write_time(root / "k4" / "result.json", now - std::chrono::hours(1));
  std::filesystem::last_write_time(root / "k2" / "result.json", now);
  std::filesystem::last_write_time(root / "m0" / "result.json", now);
  const std::vector<RunRecord> runs = scan_runs(root.string());
  ASSERT_EQ(runs.size(), 4u);
  EXPECT_GT(runs[0].result_written_ns, runs[1].result_written_ns);  // k2 after k3, from the file

  const ResultGrid g = build_result_grid(runs, {});
  ASSERT_EQ(g.cells.size(), 2u);
  const ResultCell& repeated = g.cells[1];
  EXPECT_EQ(repeated.config, (Overrides{{"model.dropout", "0.1"}}));
  EXPECT_EQ(repeated.seeds, (std::vector<uint64_t>{0, 1}));
  EXPECT_EQ(repeated.values, (std::vector<double>{21.5, 20.5}));
  EXPECT_EQ(repeated.runs, (std::vector<std::string>{(root / "k2").string(), (root / "k4").string()}));
  EXPECT_DOUBLE_EQ(repeated.mean, 21.0);
  EXPECT_NEAR(repeated.std, std::sqrt(0.5), 1e-12);
  EXPECT_TRUE(repeated.best);
  EXPECT_EQ(g.cells[0].values, std::vector<double>{18.0});
  ASSERT_EQ(g.repeated_runs.size(), 1u);
  EXPECT_EQ(g.repeated_runs[0].dir, (root / "k3").string());
  EXPECT_EQ(g.repeated_runs[0].seed, 0u);
  EXPECT_EQ(g.repeated_runs[0].counted, (root / "k2").string());

  const std::string note =
      "1 run(s) repeating a configuration and seed already counted were left out (of such runs "
      "the one whose result.json was written last counts): " +
      (root / "k3").string() + " (seed 0; " + (root / "k2").string() + " counts).";
  const std::string md = format_result_grid(g, "md");
  EXPECT_NE(md.find("| 0.1           | **21.00 \xC2\xB1 0.71 (n=2)** |\n"), std::string::npos) << md;
  EXPECT_NE(md.find("- " + note + "\n"), std::string::npos) << md;
  EXPECT_NE(format_result_grid(g, "latex").find("% " + note + "\n"), std::string::npos);
  const nlohmann::json j = nlohmann::json::parse(format_result_grid(g, "json"));
  EXPECT_EQ(
      j["repeated_runs"],
      (nlohmann::json::array({{{"dir", (root / "k3").string()}, {"seed", 0}, {"counted", (root / "k2").string()}}})));
  EXPECT_EQ(j["cells"][1]["n"], 2);
  EXPECT_EQ(j["cells"][1]["seeds"], nlohmann::json::array({0, 1}));
  EXPECT_EQ(j["cells"][1]["runs"], nlohmann::json::array({(root / "k2").string(), (root / "k4").string()}));
  EXPECT_EQ(format_result_grid(g, "csv"), "model.dropout,mIoU,std,n,best\n0.0,18,,1,0\n0.1,21,0.707107,2,1\n");

  // The per-class table counts the same runs: wall of 0.1 is (60 + 55) / 2, not with k3's 50.
  const std::string per_class = format_per_class_table(runs, {}, {"wall"}, "md");
  EXPECT_NE(per_class.find("| 0.1           | **57.50 \xC2\xB1 3.54** | **21.00 \xC2\xB1 0.71** |"), std::string::npos)
      << per_class;
  EXPECT_NE(per_class.find("- " + note + "\n"), std::string::npos) << per_class;

  // A null value (a class with no IoU) in the older repeat is not footnoted: k2 counts for seed 0.
  std::vector<RunRecord> with_null = runs;
  ASSERT_EQ(with_null[1].dir, (root / "k3").string());
  with_null[1].per_class["wall"] = std::nan("");
  ResultTableOptions wall;
  wall.metric = "wall";
  const ResultGrid older_null = build_result_grid(with_null, wall);
  EXPECT_EQ(older_null.runs_without_value, 0);
  EXPECT_EQ(older_null.cells[1].values, (std::vector<double>{60.0, 55.0}));
  EXPECT_EQ(older_null.repeated_runs.size(), 1u);
  // A null in the newest: seed 0 has no value, and k3's older one does not stand in for it.
  with_null[1].per_class["wall"] = 50.0;
  with_null[0].per_class["wall"] = std::nan("");
  const ResultGrid newest_null = build_result_grid(with_null, wall);
  EXPECT_EQ(newest_null.runs_without_value, 1);
  EXPECT_EQ(newest_null.first_without_value, (root / "k2").string());
  EXPECT_EQ(newest_null.cells[1].values, std::vector<double>{55.0});
  EXPECT_EQ(newest_null.repeated_runs.size(), 1u);

  // Two runs of one configuration and seed alone: n = 1, no spread; on a tie the later folder counts.
  std::filesystem::last_write_time(root / "k3" / "result.json", now);
  ResultTableOptions only_seed_0;
  only_seed_0.where = {{"model.dropout", {"0.1"}}};
  std::vector<RunRecord> seed_0 = {runs[0], scan_runs(root.string())[1]};
  const ResultGrid tie = build_result_grid(seed_0, only_seed_0);
  ASSERT_EQ(tie.cells.size(), 1u);
  EXPECT_EQ(tie.cells[0].values, std::vector<double>{19.9});
  EXPECT_TRUE(std::isnan(tie.cells[0].std));
  ASSERT_EQ(tie.repeated_runs.size(), 1u);
  EXPECT_EQ(tie.repeated_runs[0].dir, (root / "k2").string());
  EXPECT_EQ(format_result_grid(tie, "md").find("n="), std::string::npos);
}

}  // namespace
}  // namespace segrun::sweeps
