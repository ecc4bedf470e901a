// The HTML report (sweeps/report.h) from fabricated run folders: the result table's and the
// per-class table's cells equal the markdown tables' cells (without their markup) and footnotes,
// the plot is gnuplot's SVG inlined, the curves' polylines sit at hand-computed coordinates, the
// newest samples/iter_<n> pictures are embedded as base64 (RFC 4648 test vectors), a non-PNG and
// runs without samples are noted; a single run folder's report; and the user errors.
#include "sweeps/report.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <regex>
#include <tuple>

#include "core/atomic_file.h"
#include "core/error.h"
#include "sweeps/registry.h"
#include "sweeps/table.h"
#include "sweeps_test_util.h"

namespace segrun::sweeps {
namespace {

namespace fs = std::filesystem;
using testing::fabricate_run;
using testing::ScratchDir;
using testing::write_text;

// Two valid PNGs: 1x1 red, 3x1 blue.
const std::string kPngA(
    "\x89\x50\x4e\x47\x0d\x0a\x1a\x0a\x00\x00\x00\x0d\x49\x48\x44\x52\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00"
    "\x00\x90\x77\x53\xde\x00\x00\x00\x0c\x49\x44\x41\x54\x78\x9c\x63\xf8\xcf\xc0\x00\x00\x03\x01\x01\x00\xc9\xfe\x92"
    "\xef\x00\x00\x00\x00\x49\x45\x4e\x44\xae\x42\x60\x82",
    69);
const std::string kPngB(
    "\x89\x50\x4e\x47\x0d\x0a\x1a\x0a\x00\x00\x00\x0d\x49\x48\x44\x52\x00\x00\x00\x03\x00\x00\x00\x01\x08\x02\x00\x00"
    "\x00\x94\x82\x83\xe3\x00\x00\x00\x0d\x49\x44\x41\x54\x78\x9c\x63\x60\x68\xf8\x0f\x41\x00\x13\x7e\x04\x7e\xe5\x6f"
    "\x7b\xb0\x00\x00\x00\x00\x49\x45\x4e\x44\xae\x42\x60\x82",
    70);

using Rows = std::vector<std::vector<std::string>>;

std::string trim(const std::string& s) {
  const size_t a = s.find_first_not_of(' '), b = s.find_last_not_of(' ');
  return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}

// Cells of a markdown table (its separator line skipped), "**x**" -> "x", "\|" -> "|".
Rows markdown_cells(const std::string& md) {
  Rows rows;
  std::istringstream in(md);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] != '|') continue;
    if (line.find("---") != std::string::npos && line.find_first_not_of("|:- ") == std::string::npos) continue;
    std::vector<std::string> cells;
    std::string cell;
    for (size_t i = 1; i < line.size(); ++i) {
      if (line[i] == '\\' && i + 1 < line.size() && line[i + 1] == '|') {
        cell += '|';
        ++i;
      } else if (line[i] == '|') {
        cell = trim(cell);
        if (cell.size() >= 4 && cell.compare(0, 2, "**") == 0 && cell.compare(cell.size() - 2, 2, "**") == 0)
          cell = cell.substr(2, cell.size() - 4);
        cells.push_back(cell);
        cell.clear();
      } else {
        cell += line[i];
      }
    }
    rows.push_back(cells);
  }
  return rows;
}

std::string unescape_html(std::string s) {
  s = std::regex_replace(s, std::regex("<[^>]*>"), "");
  for (const auto& [from, to] : std::vector<std::pair<std::string, std::string>>{
           {"&lt;", "<"}, {"&gt;", ">"}, {"&quot;", "\""}, {"&#39;", "'"}, {"&amp;", "&"}}) {
    size_t pos = 0;
    while ((pos = s.find(from, pos)) != std::string::npos) s.replace(pos, from.size(), to), pos += to.size();
  }
  return s;
}

// Text of each cell of the first <table> in html.
Rows html_cells(const std::string& html) {
  const size_t begin = html.find("<table>"), end = html.find("</table>", begin);
  EXPECT_NE(begin, std::string::npos);
  const std::string table = html.substr(begin, end - begin);
  Rows rows;
  const std::regex tr("<tr>([\\s\\S]*?)</tr>"), cell("<t[hd][^>]*>([\\s\\S]*?)</t[hd]>");
  for (std::sregex_iterator r(table.begin(), table.end(), tr), e; r != e; ++r) {
    const std::string row = (*r)[1];
    rows.emplace_back();
    for (std::sregex_iterator c(row.begin(), row.end(), cell); c != e; ++c)
      rows.back().push_back(unescape_html((*c)[1]));
  }
  return rows;
}

std::vector<std::string> markdown_notes(const std::string& md) {
  std::vector<std::string> notes;
  std::istringstream in(md);
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("- ", 0) == 0) notes.push_back(line.substr(2));
  return notes;
}

std::vector<std::string> html_notes(const std::string& html) {
  std::vector<std::string> notes;
  const std::regex li("<li>([\\s\\S]*?)</li>");
  for (std::sregex_iterator i(html.begin(), html.end(), li), e; i != e; ++i) notes.push_back(unescape_html((*i)[1]));
  return notes;
}

// The text of <section id="name">...</section>.
std::string section(const std::string& html, const std::string& name) {
  const size_t begin = html.find("<section id=\"" + name + "\">");
  if (begin == std::string::npos) return "";
  return html.substr(begin, html.find("</section>", begin) - begin);
}

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t pos = text.find(what); pos != std::string::npos; pos = text.find(what, pos + 1)) ++n;
  return n;
}

// model.dropout in {0.0, 0.1, 0.2} x seeds {0, 1}: means 40.5 (std 0.71), 42.25 (best, +1.75),
// 40.4 (-0.10, within the spread: '~'); one more run still running. The 0.1/seed 0 run has
// metrics (train loss 2.0, 1.5, 1.2 at iter 10, 20, 30; val mIoU 30, 42 at 20, 40; a last line
// cut by a crash) and samples at iter_9 (A) and iter_10 (the newest: a.png, b.png = B); the
// 0.2/seed 1 run has a samples/iter_5/bad.png that is no PNG.
class Report : public ::testing::Test {
 protected:
  Report() : dir_("report") {
    const std::map<std::string, double> pc{{"wall", 70.0}, {"sky", 90.5}, {"a<b&c", 12.25}, {"road", 80.0}};
    const double values[3][2] = {{40.0, 41.0}, {42.0, 42.5}, {40.2, 40.6}};
    const char* dropouts[3] = {"0.0", "0.1", "0.2"};
    for (int d = 0; d < 3; ++d)
      for (int seed = 0; seed < 2; ++seed) {
        std::map<std::string, double> classes = pc;
        classes["sky"] += d + seed;  // the per-class table averages over seeds
        fabricate_run(runs() / ("d" + std::to_string(d) + "s" + std::to_string(seed)), {{"model.dropout", dropouts[d]}},
                      seed, "done", values[d][seed], classes);
      }
    fabricate_run(runs() / "d3s0", {{"model.dropout", "0.3"}}, 0, "running", 0.0);
    const fs::path best = runs() / "d1s0";
    write_text(best / "metrics.jsonl",
               "{\"iter\": 10, \"mode\": \"train\", \"loss\": 2.0, \"lr\": 0.01}\n"
               "{\"iter\": 20, \"mode\": \"train\", \"loss\": 1.5}\n"
               "{\"iter\": 20, \"mode\": \"val\", \"mIoU\": 30.0, \"mAcc\": 40}\n"
               "{\"iter\": 30, \"mode\": \"train\", \"loss\": 1.2}\n"
               "{\"iter\": 40, \"mode\": \"val\", \"mIoU\": 42.0}\n"
               "{\"iter\": 50, \"mode\": \"tr");
    write_text(best / "samples/iter_9/a.png", kPngA);
    write_text(best / "samples/iter_10/a.png", kPngB);
    write_text(best / "samples/iter_10/b.png", kPngB);
    write_text(best / "samples/iter_10/notes.txt", "not a picture");
    write_text(runs() / "d2s1/samples/iter_5/bad.png", "not a png");
    table_.metric = "mIoU";
    table_.baseline = {{"model.dropout", "0.0"}};
  }
  fs::path runs() const { return dir_.path() / "runs"; }

  ScratchDir dir_;
  ResultTableOptions table_;
};

TEST_F(Report, TableCellsAndNotesEqualTheMarkdownTable) {
  const ReportSource source = load_report_source(runs().string(), "", true);
  ASSERT_EQ(source.kind, ReportSource::Kind::kRunsDir);
  ASSERT_EQ(source.runs.size(), 7u);
  const std::string html = render_report(source, table_, {}, dir_.str(), nullptr);
  const std::string md = format_result_grid(build_result_grid(source.runs, table_), "md");
  const std::string table = section(html, "table");
  const Rows cells = html_cells(table);
  EXPECT_EQ(cells, markdown_cells(md));
  // The values themselves (hand-computed): 40.5 ± 0.71, 42.25 ± 0.35 best, 40.40 ± 0.28 ~.
  const Rows expected{{"model.dropout", "mIoU", "Δ mIoU"},
                      {"0.0", "40.50 ± 0.71 (n=2)", "baseline"},
                      {"0.1", "42.25 ± 0.35 (n=2)", "+1.75"},
                      {"0.2", "40.40 ± 0.28 (n=2)", "-0.10~"}};
  EXPECT_EQ(cells, expected);
  EXPECT_NE(table.find("<strong>42.25 ± 0.35 (n=2)</strong>"), std::string::npos) << table;
  EXPECT_EQ(html_notes(table), markdown_notes(md));
  EXPECT_EQ(html_notes(table).size(), 4u);  // mean ± std, Δ, ~, 1 run not done
}

TEST_F(Report, PlotIsGnuplotsSvgInlined) {
  const std::string html =
      render_report(load_report_source(runs().string(), "", true), table_, {}, dir_.str(), nullptr);
  const std::string plot = section(html, "plot");
  EXPECT_NE(plot.find("<svg"), std::string::npos) << plot.substr(0, 400);
  EXPECT_NE(plot.find("Gnuplot"), std::string::npos);  // gnuplot's own <desc>
  EXPECT_EQ(html.find("<?xml"), std::string::npos);
  EXPECT_EQ(html.find("<!DOCTYPE svg"), std::string::npos);
  EXPECT_TRUE(fs::exists(dir_.path() / "plot.gp"));
  // No gnuplot: the report is still written, with a note.
  ReportOptions options;
  options.gnuplot = dir_.str("no-such-gnuplot");
  ReportSummary summary;
  const std::string without =
      render_report(load_report_source(runs().string(), "", true), table_, options, dir_.str(), &summary);
  EXPECT_FALSE(summary.has_plot);
  EXPECT_TRUE(summary.has_table);
  EXPECT_NE(section(without, "plot").find("No plot: gnuplot not found"), std::string::npos) << section(without, "plot");
}

TEST_F(Report, CurvesArePolylinesAtHandComputedPoints) {
  ReportSummary summary;
  const std::string html =
      render_report(load_report_source(runs().string(), "", true), table_, {}, dir_.str(), &summary);
  const std::string curves = section(html, "curves");
  EXPECT_EQ(summary.curves, 1u);
  EXPECT_EQ(count(curves, "class=\"chart train-loss\""), 1u);
  EXPECT_EQ(count(curves, "class=\"chart val-miou\""), 1u);
  // Plot area x 56..248, y 118 (min) .. 22 (max): loss 2.0, 1.5, 1.2 at iter 10, 20, 30.
  EXPECT_NE(curves.find("points=\"56.0,22.0 152.0,82.0 248.0,118.0\""), std::string::npos) << curves;
  // mIoU 30 at iter 20, 42 at iter 40; the best one marked and named.
  EXPECT_NE(curves.find("points=\"56.0,118.0 248.0,22.0\""), std::string::npos) << curves;
  EXPECT_NE(curves.find("<circle class=\"best\" cx=\"248.0\" cy=\"22.0\""), std::string::npos) << curves;
  EXPECT_NE(curves.find(">best 42 (iter 40)</text>"), std::string::npos) << curves;
  EXPECT_EQ(count(curves, "class=\"best\""), 1u);            // the loss chart has none
  EXPECT_NE(curves.find(">1.2</text>"), std::string::npos);  // min and max labels
  EXPECT_NE(curves.find(">2</text>"), std::string::npos);
  EXPECT_NE(curves.find(">30</text>"), std::string::npos);
  EXPECT_NE(curves.find(">42</text>"), std::string::npos);
  EXPECT_NE(curves.find("No train or val lines in metrics.jsonl yet: d0s0, d0s1, d1s1, d2s0, d2s1, d3s0."),
            std::string::npos)
      << curves;
}

// --where picks configurations for the whole page, not only its table: the runs, curves,
// per-class IoU and pictures of the others are left out, and the header says how many are kept.
TEST_F(Report, WhereKeepsOnlyItsRunsInEverySection) {
  ResultTableOptions table = table_;
  table.baseline.clear();
  table.where = {{"model.dropout", {"0.1"}}};
  ReportSummary summary;
  const std::string html =
      render_report(load_report_source(runs().string(), "", true), table, {}, dir_.str(), &summary);
  EXPECT_EQ(summary.runs, 2u);
  EXPECT_NE(html.find("2 run(s) (of the 7, those --where keeps): 2 done"), std::string::npos) << html.substr(0, 600);
  const std::string listed = section(html, "runs");
  EXPECT_NE(listed.find("d1s0"), std::string::npos) << listed;
  EXPECT_NE(listed.find("d1s1"), std::string::npos) << listed;
  for (const char* other : {"d0s0", "d2s1", "d3s0"}) EXPECT_EQ(listed.find(other), std::string::npos) << other;
  EXPECT_NE(section(html, "curves").find("No train or val lines in metrics.jsonl yet: d1s1."), std::string::npos)
      << section(html, "curves");
  EXPECT_EQ(section(html, "samples").find("d2s1"), std::string::npos);  // its unreadable picture is not shown
  // One run folder has no configurations to pick from: it is its page whatever --where says.
  ReportSummary one;
  write_text(runs() / "d1s0" / "config.toml", "name = 'd1s0'\n");
  render_report(load_report_source((runs() / "d1s0").string(), "", true), table, {}, dir_.str(), &one);
  EXPECT_EQ(one.runs, 1u);
}

TEST_F(Report, SeriesReaderKeepsOrderAndRefusesCorruptLines) {
  const std::string metrics = (runs() / "d1s0/metrics.jsonl").string();
  using Points = std::vector<std::pair<double, double>>;
  EXPECT_EQ(read_metric_series(metrics, "train", "loss"), (Points{{10, 2.0}, {20, 1.5}, {30, 1.2}}));
  EXPECT_EQ(read_metric_series(metrics, "val", "mIoU"), (Points{{20, 30.0}, {40, 42.0}}));
  EXPECT_TRUE(read_metric_series(metrics, "val", "nope").empty());
  write_text(dir_.path() / "bad.jsonl", "{\"iter\": 1, \"mode\": \"train\", \"loss\": 1}\n{oops\n{\"iter\": 2}\n");
  try {
    read_metric_series(dir_.str("bad.jsonl"), "train", "loss");
    FAIL() << "no DataError";
  } catch (const DataError& e) {
    EXPECT_EQ(std::string(e.what()), dir_.str("bad.jsonl") + ":2: not JSON");
  }
}

// The one metrics.jsonl reader of the sweeps layer (registry.h), which both the report's curves
// and a run's record (last iteration, last validation) go through.
TEST_F(Report, MetricsRecordsPassOverACutLastLineOnly) {
  const fs::path run = dir_.path() / "cut";
  write_text(run / "metrics.jsonl",
             "{\"iter\": 10, \"mode\": \"train\", \"loss\": 2}\n\n{\"iter\": 20, \"mode\": \"val\", \"mIoU\": 7.5}\n"
             "{\"iter\": 30, \"mode\": \"tr");  // the last line, cut by a crash
  std::vector<int64_t> iters;
  for_each_metrics_record((run / "metrics.jsonl").string(),
                          [&](const nlohmann::ordered_json& j) { iters.push_back(j["iter"].get<int64_t>()); });
  EXPECT_EQ(iters, (std::vector<int64_t>{10, 20}));
  const RunRecord record = read_run(run.string());
  EXPECT_EQ(record.last_iter, 20);
  EXPECT_DOUBLE_EQ(record.last_val.at("mIoU"), 7.5);

  write_text(run / "metrics.jsonl", "{\"iter\": 10}\n[10, 2.0]\n{\"iter\": 20}\n");
  try {
    read_run(run.string());
    FAIL() << "no DataError";
  } catch (const DataError& e) {
    EXPECT_EQ(std::string(e.what()), (run / "metrics.jsonl").string() + ":2: not a JSON object");
  }
  // A cut result.json is no result (the run is evaluated again), and says why; reading goes on.
  write_text(run / "metrics.jsonl", "{\"iter\": 10}\n");
  write_text(run / "result.json", "{\"mIoU\": 4");
  const RunRecord cut = read_run(run.string());
  EXPECT_FALSE(cut.has_result);
  EXPECT_EQ(cut.last_iter, 10);
  // A status file naming no state (NUL bytes) makes a failed run, resumed or retried by a sweep.
  write_text(run / "status", std::string(2, '\0'));
  const RunRecord garbled = read_run(run.string());
  EXPECT_EQ(garbled.state, RunState::kFailed);
  EXPECT_NE(garbled.reason.find("status: '\\x00\\x00' is not a run state"), std::string::npos) << garbled.reason;
  EXPECT_EQ(cut.result_error, (run / "result.json").string() +
                                  ": not a segrun result.json (parse error at line 1, column 11: syntax error while "
                                  "parsing object - unexpected end of input; expected '}')");
}

TEST_F(Report, NewestSamplesEmbeddedAsBase64) {
  ReportSummary summary;
  const std::string html =
      render_report(load_report_source(runs().string(), "", true), table_, {}, dir_.str(), &summary);
  const std::string samples = section(html, "samples");
  EXPECT_EQ(summary.images, 2u);
  EXPECT_EQ(count(samples, "<img src=\"data:image/png;base64,"), 2u);
  EXPECT_EQ(count(samples, "data:image/png;base64," + base64_encode(kPngB) + "\""), 2u);
  EXPECT_EQ(samples.find(base64_encode(kPngA)), std::string::npos);  // iter_9 is older than iter_10
  EXPECT_NE(samples.find("d1s0 <span class=\"cfg\">iter 10, model.dropout=0.1</span>"), std::string::npos) << samples;
  EXPECT_NE(samples.find("bad.png: not a PNG file, left out"), std::string::npos);
  EXPECT_NE(samples.find("No samples/iter_&lt;n&gt;/*.png: d0s0, d0s1, d1s1, d2s0, d3s0."), std::string::npos)
      << samples;
  EXPECT_NE(html.find("data-images-ok"), std::string::npos);  // the page's self-check
}

TEST_F(Report, PerClassCellsEqualTheMarkdownTable) {
  // Default: the best run's (d1s1: mIoU 42.5, sky 92.5) top 10 classes by IoU, highest first.
  const ReportSource source = load_report_source(runs().string(), "", true);
  const std::string html = render_report(source, table_, {}, dir_.str(), nullptr);
  const std::string per_class = section(html, "per-class");
  const std::vector<std::string> classes{"sky", "road", "wall", "a<b&c"};
  EXPECT_EQ(html_cells(per_class), markdown_cells(format_per_class_table(source.runs, table_, classes, "md")));
  EXPECT_EQ(html_cells(per_class)[0],
            (std::vector<std::string>{"model.dropout", "sky", "road", "wall", "a<b&c", "mIoU"}));
  EXPECT_EQ(html_cells(per_class)[2][1], "92.00 ± 0.71");  // 91.5 and 92.5
  // --classes: those, in that order; an unknown one is an error naming it.
  ReportOptions options;
  options.classes = {"wall", "a<b&c"};
  const std::string chosen = section(render_report(source, table_, options, dir_.str(), nullptr), "per-class");
  EXPECT_EQ(html_cells(chosen)[0], (std::vector<std::string>{"model.dropout", "wall", "a<b&c", "mIoU"}));
  options.classes = {"ceiling"};
  EXPECT_THROW(render_report(source, table_, options, dir_.str(), nullptr), DataError);
}

TEST_F(Report, SingleRunFolder) {
  const fs::path run = runs() / "d1s0";
  write_text(run / "config.toml", "[train]\niters = 40\n");
  const ReportSource source = load_report_source(run.string(), "", true);
  ASSERT_EQ(source.kind, ReportSource::Kind::kRun);
  ASSERT_EQ(source.runs.size(), 1u);
  ReportOptions options;
  options.out = dir_.str("one.html");
  const ReportSummary summary = write_report(source, source.table, options);
  const std::string html = read_file(options.out);
  EXPECT_EQ(summary.bytes, html.size());
  EXPECT_EQ(section(html, "table"), "");  // no sweep table or plot
  EXPECT_EQ(section(html, "plot"), "");
  EXPECT_EQ(summary.curves, 1u);
  EXPECT_EQ(summary.images, 2u);
  EXPECT_EQ(html_cells(section(html, "per-class")),
            (Rows{{"class", "IoU"}, {"sky", "91.50"}, {"road", "80.00"}, {"wall", "70.00"}, {"a<b&c", "12.25"}}));
  EXPECT_EQ(html.find("http://"), html.find("http://www.w3.org/2000/svg"));  // no link but SVG's namespace
  EXPECT_EQ(html.find("https://"), std::string::npos);
  EXPECT_EQ(html.find(" src=\"http"), std::string::npos);
  // A second report replaces the first, atomically (no temporary file left).
  write_report(source, source.table, options);
  size_t files = 0;
  for (const auto& entry : fs::directory_iterator(dir_.path())) files += entry.is_regular_file() ? 1 : 0;
  EXPECT_EQ(files, 1u);
}

// Runs trained one by one (no sweep, no overrides.json) are compared by the config keys that
// differ between their config.toml files; train.seed is averaged over as in a sweep.
TEST_F(Report, RunsTrainedOneByOneAreComparedByTheKeysThatDiffer) {
  const fs::path folder = dir_.path() / "by_hand";
  const auto trained = [&](const std::string& name, const std::string& config, const std::string& miou) {
    write_text(folder / name / "config.toml", config);
    write_text(folder / name / "status", "done\n");
    write_text(folder / name / "result.json", "{\"mIoU\": " + miou + ", \"aAcc\": 80.0, \"per_class\": {}}\n");
  };
  trained("lr1e-3", "name = 'demo'\n[train]\nlr = 1e-3\nseed = 0\niters = 40\n", "40.0");
  trained("lr1e-3-seed1", "name = 'demo'\n[train]\nlr = 0.001\nseed = 1\niters = 40\n", "41.0");
  trained("lr2e-3", "name = 'demo'\n[train]\nlr = 2e-3\nseed = 0\niters = 40\n[model]\ndropout = 0.1\n", "43.5");
  write_text(folder / "notes" / "todo.txt", "not a run folder\n");
  const ReportSource source = load_report_source(folder.string(), "", false);
  ASSERT_EQ(source.kind, ReportSource::Kind::kRunsDir);
  ASSERT_EQ(source.runs.size(), 3u);
  EXPECT_EQ(source.runs[0].overrides, (Overrides{{"model.dropout", ""}, {"train.lr", "0.001"}}));
  EXPECT_EQ(source.runs[1].overrides, (Overrides{{"model.dropout", ""}, {"train.lr", "0.001"}}));
  EXPECT_EQ(source.runs[2].overrides, (Overrides{{"model.dropout", "0.1"}, {"train.lr", "0.002"}}));
  EXPECT_EQ(source.runs[1].seed, 1u);
  ResultTableOptions options;
  options.rows = {"train.lr"};
  // 40.0 and 41.0: mean 40.5, sample std sqrt(0.5) = 0.71.
  EXPECT_EQ(markdown_cells(format_result_grid(build_result_grid(source.runs, options), "md")),
            (Rows{{"train.lr", "mIoU"}, {"0.001", "40.50 ± 0.71 (n=2)"}, {"0.002", "43.50 (n=1)"}}));

  // Runs whose configs differ only in their names are told apart by them.
  const fs::path named = dir_.path() / "named";
  write_text(named / "a" / "config.toml", "name = 'first'\n[train]\nlr = 1e-3\n");
  write_text(named / "a" / "result.json", "{\"mIoU\": 1.0}\n");
  write_text(named / "b" / "config.toml", "name = 'second'\n[train]\nlr = 1e-3\n");
  write_text(named / "b" / "result.json", "{\"mIoU\": 2.0}\n");
  const ReportSource by_name = load_report_source(named.string(), "", false);
  ASSERT_EQ(by_name.runs.size(), 2u);
  EXPECT_EQ(by_name.runs[1].overrides, (Overrides{{"name", "\"second\""}}));

  // Keys that change no result (how often to log, one store spelled two ways) do not label the
  // rows while a key that does (the head) tells the runs apart.
  const fs::path heads = dir_.path() / "heads";
  write_text(heads / "a" / "config.toml", "[model]\nhead = 'fpn'\n[log]\ninterval = 10\n[data]\nstore = '/x/a'\n");
  write_text(heads / "a" / "result.json", "{\"mIoU\": 1.0}\n");
  write_text(heads / "b" / "config.toml",
             "[model]\nhead = 'clip_sp'\n[log]\ninterval = 50\n[data]\nstore = '/x/./a/manifest.json'\n");
  write_text(heads / "b" / "result.json", "{\"mIoU\": 2.0}\n");
  const ReportSource by_head = load_report_source(heads.string(), "", false);
  ASSERT_EQ(by_head.runs.size(), 2u);
  EXPECT_EQ(by_head.runs[1].overrides, (Overrides{{"model.head", "\"clip_sp\""}}));
  // Runs of different stores are no repeats of one another: the stores label them too (a run
  // trained on the validation store must not stand for the baseline).
  write_text(heads / "b" / "config.toml", "[model]\nhead = 'clip_sp'\n[log]\ninterval = 50\n[data]\nstore = '/x/b'\n");
  EXPECT_EQ(load_report_source(heads.string(), "", false).runs[1].overrides,
            (Overrides{{"data.store", "\"/x/b\""}, {"model.head", "\"clip_sp\""}}));
  // Where only such keys differ, the runs' names label them (else those keys).
  write_text(heads / "b" / "config.toml", "name = 'b'\n[model]\nhead = 'fpn'\n[log]\ninterval = 50\n");
  write_text(heads / "a" / "config.toml", "name = 'a'\n[model]\nhead = 'fpn'\n[log]\ninterval = 10\n");
  EXPECT_EQ(load_report_source(heads.string(), "", false).runs[1].overrides, (Overrides{{"name", "\"b\""}}));

  // A run queued, or failed before its first metrics line (config.toml and status only), is a run
  // that is not done, not a folder to skip.
  const fs::path pending = dir_.path() / "pending";
  write_text(pending / "a" / "config.toml", "[train]\nlr = 1e-3\n");
  write_text(pending / "a" / "result.json", "{\"mIoU\": 1.0}\n");
  write_text(pending / "a" / "status", "done\n");
  write_text(pending / "b" / "config.toml", "[train]\nlr = 2e-3\n");
  write_text(pending / "b" / "status", "queued\n");
  write_text(pending / "c" / "config.toml", "[train]\nlr = 3e-3\n");
  write_text(pending / "c" / "status", "failed rank 1 exited with 1\n");
  const ReportSource with_pending = load_report_source(pending.string(), "", false);
  ASSERT_EQ(with_pending.runs.size(), 3u);
  ResultTableOptions by_lr;
  by_lr.rows = {"train.lr"};
  EXPECT_EQ(build_result_grid(with_pending.runs, by_lr).runs_not_done, 2);

  // The same config on 2 and on 4 ranks: told apart by result.json's global batch, which the
  // table then has as a key (and so no footnote about mixed global batches).
  const fs::path ranks = dir_.path() / "ranks";
  for (const auto& [run, global_batch, miou] : std::vector<std::tuple<std::string, int, double>>{
           {"two", 8, 40.0}, {"four", 16, 42.0}, {"four_seed1", 16, 43.0}}) {
    write_text(ranks / run / "config.toml",
               std::string("[train]\nlr = 1e-3\nseed = ") + (run == "four_seed1" ? "1" : "0") + "\n");
    write_text(ranks / run / "status", "done\n");
    write_text(ranks / run / "result.json",
               "{\"mIoU\": " + std::to_string(miou) + ", \"global_batch\": " + std::to_string(global_batch) + "}\n");
  }
  const ReportSource by_batch = load_report_source(ranks.string(), "", false);
  ASSERT_EQ(by_batch.runs.size(), 3u);
  EXPECT_EQ(by_batch.runs[0].overrides, (Overrides{{"global_batch", "16"}}));  // "four", by name
  EXPECT_EQ(by_batch.runs[2].overrides, (Overrides{{"global_batch", "8"}}));
  const std::string table = format_result_grid(build_result_grid(by_batch.runs, {}), "md");
  EXPECT_EQ(markdown_cells(table),
            (Rows{{"global_batch", "mIoU"}, {"8", "40.00 (n=1)"}, {"16", "42.50 ± 0.71 (n=2)"}}));
  EXPECT_EQ(table.find("different global batches"), std::string::npos) << table;

  write_text(named / "c" / "config.toml", "[train]\nlr = = 1\n");
  write_text(named / "c" / "result.json", "{\"mIoU\": 2.0}\n");
  try {
    load_report_source(named.string(), "", false);
    FAIL();
  } catch (const DataError& e) {
    EXPECT_EQ(std::string(e.what()).find((named / "c" / "config.toml").string() + ":2: not TOML"), 0u) << e.what();
  }
}

// A sweep's runs folder where a later seed was trained after the spec's base config changed
// the learning rate: its overrides.json records only the swept dropout, but its config.toml says
// lr 3e-3, so its cell is its own -- not averaged with the seeds trained at 2e-3 (a wrong mean,
// exit 0, before; found by a user pass).
TEST_F(Report, ASweepsRunsOfAChangedBaseAreNotAveragedTogether) {
  const fs::path folder = dir_.path() / "abl";
  const auto seed_run = [&](const std::string& name, int seed, const std::string& lr, double miou) {
    fabricate_run(folder / name, {{"model.dropout", "0.1"}}, seed, "done", miou);
    write_text(folder / name / "config.toml", "name = '" + name + "'\n[model]\ndropout = 0.1\n[train]\nlr = " + lr +
                                                  "\nseed = " + std::to_string(seed) + "\n");
  };
  seed_run("s1", 1, "2e-3", 40.0);
  seed_run("s2", 2, "2e-3", 42.0);
  seed_run("s3", 3, "3e-3", 50.0);
  const ReportSource source = load_report_source(folder.string(), "", false);
  ASSERT_EQ(source.runs.size(), 3u);
  EXPECT_EQ(source.runs[2].overrides, (Overrides{{"model.dropout", "0.1"}, {"train.lr", "0.003"}}));
  ResultTableOptions options;
  EXPECT_EQ(markdown_cells(format_result_grid(build_result_grid(source.runs, options), "md")),
            (Rows{{"train.lr", "mIoU"}, {"0.002", "41.00 ± 1.41 (n=2)"}, {"0.003", "50.00 (n=1)"}}));
  // A damaged config.toml does not stop the table: the runs are compared by overrides.json alone.
  write_text(folder / "s3" / "config.toml", "[train\n");
  const ReportSource damaged = load_report_source(folder.string(), "", false);
  ASSERT_EQ(damaged.runs.size(), 3u);
  EXPECT_EQ(damaged.runs[2].overrides, (Overrides{{"model.dropout", "0.1"}}));
}

// The keys joined from config.toml do not disturb baselines: a baseline run not trained yet (no
// config.toml) is still the baseline of the cells whose keys it shares, so they get no delta
// rather than one against the baseline at another learning rate; a key some runs' overrides set
// (a ViT's drop path) is not filled in from the others' config.toml defaults.
TEST_F(Report, KeysFromConfigTomlKeepBaselinesRight) {
  const fs::path folder = dir_.path() / "pending";
  const auto run = [&](const std::string& name, const std::string& dropout, int seed, const std::string& lr,
                       const std::string& status) {
    fabricate_run(folder / name, {{"model.dropout", dropout}}, seed, status, dropout == "0.0" ? 40.0 : 45.0);
    if (status == "done")
      write_text(folder / name / "config.toml",
                 "[model]\ndropout = " + dropout + "\n[train]\nlr = " + lr + "\nseed = " + std::to_string(seed) + "\n");
  };
  run("a0", "0.0", 0, "2e-3", "done");
  run("a1", "0.0", 1, "2e-3", "done");
  run("a2", "0.0", 2, "3e-3", "queued");  // the base's lr changed before it started
  run("b0", "0.1", 0, "2e-3", "done");
  run("b1", "0.1", 1, "2e-3", "done");
  run("b2", "0.1", 2, "3e-3", "done");
  ResultTableOptions options;
  options.rows = {"model.dropout"};
  options.baseline = {{"model.dropout", "0.0"}};
  const ResultGrid g = build_result_grid(load_report_source(folder.string(), "", false).runs, options);
  ASSERT_EQ(g.cells.size(), 3u);
  for (const ResultCell& cell : g.cells) {
    const std::string lr = cell.config.at("train.lr");
    if (cell.is_baseline) continue;
    if (lr == "0.002") {
      EXPECT_DOUBLE_EQ(cell.delta, 5.0);
    } else {
      EXPECT_TRUE(std::isnan(cell.delta)) << lr << ": " << cell.delta;
    }
  }
  EXPECT_EQ(g.cells_without_baseline, 1);

  const fs::path layout = dir_.path() / "backbones";
  const auto trained = [&](const std::string& name, const Overrides& overrides, double drop_path, double miou) {
    fabricate_run(layout / name, {overrides.begin(), overrides.end()}, 0, "done", miou);
    write_text(layout / name / "config.toml",
               "[model]\nbackbone = '" + overrides.at("model.backbone") + "'\nhead = '" + overrides.at("model.head") +
                   "'\n[model.vit]\ndrop_path_rate = " + std::to_string(drop_path) + "\n");
  };
  trained("rf", {{"model.backbone", "rn50"}, {"model.head", "fpn"}}, 0.0, 40.0);
  trained("rc", {{"model.backbone", "rn50"}, {"model.head", "clip_sp"}}, 0.0, 45.1);
  trained("vf", {{"model.backbone", "vit"}, {"model.head", "fpn"}, {"model.vit.drop_path_rate", "0.1"}}, 0.1, 49.5);
  trained("vc", {{"model.backbone", "vit"}, {"model.head", "clip_sp"}, {"model.vit.drop_path_rate", "0.1"}}, 0.1, 51.0);
  ResultTableOptions paper;
  paper.rows = {"model.backbone"};
  paper.cols = {"model.head"};
  paper.baseline = {{"model.head", "fpn"}, {"model.vit.drop_path_rate", "0.1"}};
  const ResultGrid t = build_result_grid(load_report_source(layout.string(), "", false).runs, paper);
  for (const ResultCell& cell : t.cells) {
    if (cell.is_baseline) continue;
    EXPECT_NEAR(cell.delta, cell.config.at("model.backbone") == "rn50" ? 5.1 : 1.5, 1e-9) << describe(cell.config);
  }
}

TEST_F(Report, UserErrorsNameThePath) {
  const std::string missing = dir_.str("nope");
  try {
    load_report_source(missing, "", true);
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()), missing + ": no such sweep spec, runs folder or run folder");
  }
  fs::create_directories(dir_.path() / "empty");
  try {
    load_report_source(dir_.str("empty"), "", true);
    FAIL();
  } catch (const DataError& e) {
    EXPECT_EQ(std::string(e.what()).find(dir_.str("empty") + ": not a runs folder (no subfolder is a run folder)"), 0u)
        << e.what();
  }
  const ReportSource source = load_report_source(runs().string(), "", true);
  ReportOptions options;
  options.out = dir_.str("no/such/folder/report.html");
  try {
    write_report(source, table_, options);
    FAIL();
  } catch (const IoError& e) {
    EXPECT_EQ(std::string(e.what()).find(options.out + ": cannot write"), 0u) << e.what();
  }
  options.out = dir_.str("empty");
  EXPECT_THROW(write_report(source, table_, options), IoError);
  // A bad table option is the user's error too, as in `segrun table`.
  ResultTableOptions bad = table_;
  bad.rows = {"model.nope"};
  options.out = dir_.str("r.html");
  EXPECT_THROW(write_report(source, bad, options), ConfigError);
  EXPECT_FALSE(fs::exists(options.out));
  // A metric no run has: "No table yet" on the page, unless --metric asked for it; spelt like
  // one they have, a typo (ConfigError, with the name meant).
  bad = table_;
  bad.metric = "mIoU_ms";
  EXPECT_NO_THROW(write_report(source, bad, options));
  EXPECT_NE(read_file(options.out).find("No table yet"), std::string::npos);
  fs::remove(options.out);
  options.metric_given = true;
  EXPECT_THROW(write_report(source, bad, options), DataError);
  EXPECT_FALSE(fs::exists(options.out));
  bad.metric = "mIoUU";
  EXPECT_THROW(write_report(source, bad, options), ConfigError);
  EXPECT_FALSE(fs::exists(options.out));
  // Runs not done yet: the page, with --metric too.
  ReportSource not_done = source;
  for (RunRecord& run : not_done.runs) {
    run.has_result = false;
    run.result.clear();
    run.state = RunState::kRunning;
  }
  bad.metric = "mIoU";
  EXPECT_NO_THROW(write_report(not_done, bad, options));
  EXPECT_NE(read_file(options.out).find("No table yet"), std::string::npos);
}

TEST_F(Report, OnlyAnEarlierReportIsReplaced) {
  // `--out myconfig.toml` of a file the user wrote: refused (exit 2), the file kept byte for byte.
  const ReportSource source = load_report_source(runs().string(), "", true);
  ReportOptions options;
  options.out = dir_.str("myconfig.toml");
  const std::string mine = "[train]\niters = 40\n";
  write_text(options.out, mine);
  try {
    write_report(source, table_, options);
    FAIL() << "replaced a file that is no report";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()), "--out " + options.out +
                                         ": exists and is not a segrun report; nothing written: choose another file "
                                         "name (a report replaces only an earlier report)");
  }
  EXPECT_EQ(read_file(options.out), mine);
  EXPECT_FALSE(is_segrun_report(options.out));
  // A report names itself in its head; the next report replaces it.
  options.out = dir_.str("r.html");
  write_report(source, table_, options);
  const std::string first = read_file(options.out);
  EXPECT_NE(first.substr(0, 1024).find(kReportMarker), std::string::npos);
  EXPECT_TRUE(is_segrun_report(options.out));
  write_text(options.out, first + "<!-- an earlier report -->\n");
  write_report(source, table_, options);
  EXPECT_EQ(read_file(options.out).find("<!-- an earlier report -->"), std::string::npos);
  // An HTML file of the user's, even one naming segrun further down, is not a report of segrun's.
  write_text(options.out, "<html><body>" + std::string(2000, ' ') + kReportMarker + "</body></html>\n");
  EXPECT_THROW(write_report(source, table_, options), ConfigError);
}

TEST(Base64, Rfc4648TestVectors) {
  EXPECT_EQ(base64_encode(""), "");
  EXPECT_EQ(base64_encode("f"), "Zg==");
  EXPECT_EQ(base64_encode("fo"), "Zm8=");
  EXPECT_EQ(base64_encode("foo"), "Zm9v");
  EXPECT_EQ(base64_encode("foob"), "Zm9vYg==");
  EXPECT_EQ(base64_encode("fooba"), "Zm9vYmE=");
  EXPECT_EQ(base64_encode("foobar"), "Zm9vYmFy");
  EXPECT_EQ(base64_encode(std::string("\xff\xfe\x00", 3)), "//4A");
}

TEST(HtmlTable, EscapesAndEmphasizes) {
  EXPECT_EQ(format_table({"a<b", "v"}, {{"x&y", "\"1\""}}, TableFormat::kHtml, {}, {{0, 1}}),
            "<table>\n<thead>\n<tr><th class=\"l\">a&lt;b</th><th class=\"r\">v</th></tr>\n</thead>\n<tbody>\n"
            "<tr><td class=\"l\">x&amp;y</td><td class=\"r\"><strong>&quot;1&quot;</strong></td></tr>\n</tbody>\n"
            "</table>\n");
  EXPECT_EQ(parse_table_format("html"), TableFormat::kHtml);
}

}  // namespace
}  // namespace segrun::sweeps
