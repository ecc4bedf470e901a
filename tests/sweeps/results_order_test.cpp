// Order of rows and columns in result tables: numbers by value, and strings with their runs of
// digits compared as numbers, so backbones come as a paper lists them (clip_rn50 before
// clip_rn101, MTA-CLIP Tables 1-2) and crop sizes by size; `[table] order = "spec"` keeps rows in
// the spec's order.
#include "sweeps/results.h"

#include <gtest/gtest.h>

#include "sweeps/registry.h"
#include "sweeps_test_util.h"

namespace segrun::sweeps {
namespace {

using testing::fabricate_run;
using testing::ScratchDir;

std::vector<std::string> row_labels(const ResultGrid& g, const std::string& key) {
  std::vector<std::string> out;
  for (const auto& r : g.row_values) out.push_back(display_value(r.at(key)));
  return out;
}

TEST(ResultOrder, DigitsInsideStringsCompareAsNumbers) {
  ScratchDir dir("results_order1");
  const auto root = dir.path();
  // Written in an order that plain text order would keep (rn101 < rn50 < rn50x4 < rn9 as text).
  fabricate_run(root / "a", {{"model.backbone", "\"clip_rn101\""}}, 0, "done", 48.4);
  fabricate_run(root / "b", {{"model.backbone", "\"clip_rn50\""}}, 0, "done", 47.4);
  fabricate_run(root / "c", {{"model.backbone", "\"clip_rn50x4\""}}, 0, "done", 49.0);
  fabricate_run(root / "d", {{"model.backbone", "\"clip_rn9\""}}, 0, "done", 40.0);
  fabricate_run(root / "e", {{"model.backbone", "\"clip_rn050\""}}, 0, "done", 41.0);
  ResultTableOptions options;
  const ResultGrid g = build_result_grid(scan_runs(root.string()), options);
  // rn050 and rn50 are the same number: plain text order ('0' < '5') breaks the tie.
  EXPECT_EQ(row_labels(g, "model.backbone"),
            (std::vector<std::string>{"clip_rn9", "clip_rn050", "clip_rn50", "clip_rn50x4", "clip_rn101"}));
  ASSERT_EQ(g.cells.size(), 5u);
  EXPECT_DOUBLE_EQ(g.cells[0].mean, 40.0);
  EXPECT_DOUBLE_EQ(g.cells[4].mean, 48.4);
}

TEST(ResultOrder, ArraysAndColumnsAndAbsentKeys) {
  ScratchDir dir("results_order2");
  const auto root = dir.path();
  fabricate_run(root / "a", {{"data.crop", "[128, 64]"}, {"model.head", "\"fpn\""}}, 0, "done", 1.0);
  fabricate_run(root / "b", {{"data.crop", "[64, 64]"}, {"model.head", "\"fpn\""}}, 0, "done", 2.0);
  fabricate_run(root / "c", {{"data.crop", "[64, 128]"}, {"model.head", "\"fpn\""}}, 0, "done", 3.0);
  fabricate_run(root / "d", {{"data.crop", "[64, 64]"}, {"model.head", "\"mask2former\""}}, 0, "done", 4.0);
  fabricate_run(root / "e", {{"model.head", "\"mask2former\""}}, 0, "done", 5.0);
  ResultTableOptions options;
  options.rows = {"data.crop"};
  options.cols = {"model.head"};
  const ResultGrid g = build_result_grid(scan_runs(root.string()), options);
  // The run without data.crop ("-") comes first.
  EXPECT_EQ(row_labels(g, "data.crop"), (std::vector<std::string>{"", "[64, 64]", "[64, 128]", "[128, 64]"}));
  const std::string expected =
      "| data.crop | model.head=fpn | model.head=mask2former |\n"
      "|:----------|---------------:|-----------------------:|\n"
      "| -         |              - |               **5.00** |\n"
      "| [64, 64]  |           2.00 |                   4.00 |\n"
      "| [64, 128] |           3.00 |                      - |\n"
      "| [128, 64] |           1.00 |                      - |\n";
  EXPECT_EQ(format_result_grid(g, "md"), expected);
}

TEST(ResultOrder, SpecOrderKeepsRowsAsListedAndColumnsSorted) {
  ScratchDir dir("results_order3");
  const auto root = dir.path();
  const std::string neg = "model.mta_clip.negatives", k = "model.mta_clip.prompts";
  fabricate_run(root / "a", {{neg, "\"mixneg\""}, {k, "1"}}, 0, "done", 48.6);
  fabricate_run(root / "b", {{neg, "\"mixneg\""}, {k, "3"}}, 0, "done", 49.1);
  fabricate_run(root / "c", {{neg, "\"separateneg\""}, {k, "3"}}, 0, "done", 48.7);
  fabricate_run(root / "d", {{neg, "\"allneg\""}, {k, "3"}}, 0, "done", 47.0);  // not in the spec
  ResultTableOptions options;
  options.rows = {neg};
  options.cols = {k};
  EXPECT_EQ(row_labels(build_result_grid(scan_runs(root.string()), options), neg),
            (std::vector<std::string>{"allneg", "mixneg", "separateneg"}));
  // The spec lists separateneg first (with K = 3 only) and mixneg with K = 3 before K = 1.
  options.order = {
      {{neg, "\"separateneg\""}, {k, "3"}}, {{neg, "\"mixneg\""}, {k, "3"}}, {{neg, "\"mixneg\""}, {k, "1"}}};
  const ResultGrid g = build_result_grid(scan_runs(root.string()), options);
  EXPECT_EQ(row_labels(g, neg), (std::vector<std::string>{"separateneg", "mixneg", "allneg"}));
  ASSERT_EQ(g.col_values.size(), 2u);
  EXPECT_EQ(g.col_values[0].at(k), "1");  // columns stay sorted by value
  EXPECT_EQ(g.col_values[1].at(k), "3");
}

}  // namespace
}  // namespace segrun::sweeps
