// SVG plots: well-formed XML (parsed by Python's xml.etree), one point per configuration, one
// error bar per configuration with >= 2 seeds, one line per series, and a log-scaled x axis that
// spaces 1e-4, 1e-3, 1e-2 evenly.
#include "sweeps/plot.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include "core/error.h"
#include "sweeps/registry.h"
#include "sweeps_test_util.h"

namespace segrun::sweeps {
namespace {

using testing::fabricate_run;
using testing::ScratchDir;
using testing::write_text;

std::string run_python(const std::string& script, const std::string& arg) {
  const std::string command = std::string(SEGRUN_TEST_PYTHON) + " -c '" + script + "' " + arg + " 2>&1";
  std::string out;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) return "popen failed";
  char buf[512];
  while (std::fgets(buf, sizeof(buf), pipe)) out += buf;
  ::pclose(pipe);
  return out;
}

TEST(Plot, SvgIsWellFormedWithPointsErrorBarsAndSeries) {
  ScratchDir dir("plot");
  const auto root = dir.path();
  // lr in {1e-4, 1e-3, 1e-2} (log axis) x norm in {bn, syncbn}; bn has two seeds (error bars).
  const char* lrs[] = {"0.0001", "0.001", "0.01"};
  for (int i = 0; i < 3; ++i) {
    fabricate_run(root / ("bn" + std::to_string(i) + "a"), {{"train.lr", lrs[i]}, {"model.norm", "\"bn\""}}, 0, "done", 30.0 + i);
    fabricate_run(root / ("bn" + std::to_string(i) + "b"), {{"train.lr", lrs[i]}, {"model.norm", "\"bn\""}}, 1, "done", 31.0 + i);
    fabricate_run(root / ("sy" + std::to_string(i)), {{"train.lr", lrs[i]}, {"model.norm", "\"syncbn\""}}, 0, "done", 35.0 - i);
  }
  ResultTableOptions options;
  options.rows = {"train.lr"};
  options.cols = {"model.norm"};
  const ResultGrid grid = build_result_grid(scan_runs(root.string()), options);
  PlotOptions plot;
  const std::string svg = render_svg_plot(grid, plot);
  write_text(root / "plot.svg", svg);
  const std::string script =
      "import sys, xml.etree.ElementTree as ET\n"
      "ns = {\"s\": \"http://www.w3.org/2000/svg\"}\n"
      "r = ET.parse(sys.argv[1]).getroot()\n"
      "pts = r.findall(\".//s:circle[@class=\\\"point\\\"]\", ns)\n"
      "bars = r.findall(\".//s:line[@class=\\\"errorbar\\\"]\", ns)\n"
      "lines = r.findall(\".//s:polyline\", ns)\n"
      "texts = [t.text for t in r.iter(\"{http://www.w3.org/2000/svg}text\")]\n"
      "grp = [g for g in r.findall(\"s:g\", ns) if g.findall(\"s:circle\", ns)]\n"
      "xs = sorted(float(c.get(\"cx\")) for c in grp[0].findall(\"s:circle\", ns))\n"
      "print(r.tag, len(pts), len(bars), len(lines), len(xs), \"model.norm=syncbn\" in texts, "
      "\"train.lr (log scale)\" in texts, abs((xs[1]-xs[0]) - (xs[2]-xs[1])) < 0.02)\n";
  // Python's single quotes wrap the script: it must not contain any.
  ASSERT_EQ(script.find('\''), std::string::npos);
  EXPECT_EQ(run_python(script, (root / "plot.svg").string()),
            "{http://www.w3.org/2000/svg}svg 6 3 2 3 True True True\n");

  plot.x_key = "model.dropout";
  EXPECT_THROW(render_svg_plot(grid, plot), ConfigError);
}

}  // namespace
}  // namespace segrun::sweeps
