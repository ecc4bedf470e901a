// Plots drawn by gnuplot: the generated script and data file against golden text (log-scaled
// numeric axis with two series and error bars only where n >= 2; categorical axis of strings),
// a PNG (magic bytes and IHDR size) and an SVG (parsed by Python's xml.etree: one point per
// configuration, one error bar per configuration with >= 2 seeds, the key and titles), a script
// the user edited kept across a re-plot, and the error paths: bad extension, unknown x key,
// gnuplot missing, gnuplot failing.
#include "sweeps/plot.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <iterator>

#include "core/error.h"
#include "sweeps/registry.h"
#include "sweeps_test_util.h"

namespace segrun::sweeps {
namespace {

namespace fs = std::filesystem;
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

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

uint32_t big_endian32(const std::string& s, size_t at) {
  uint32_t v = 0;
  for (size_t i = 0; i < 4; ++i) v = (v << 8) | static_cast<unsigned char>(s[at + i]);
  return v;
}

// train.lr in {1e-4, 1e-3, 1e-2} (a log axis) x model.norm in {bn, syncbn}; bn has two seeds
// (values 30+i and 31+i: mean 30.5+i, std sqrt(0.5)), syncbn one (35-i, no error bar).
class PlotGrid : public ::testing::Test {
 protected:
  PlotGrid() : dir_("plot") {
    const auto root = dir_.path() / "runs";
    const char* lrs[] = {"0.0001", "0.001", "0.01"};
    for (int i = 0; i < 3; ++i) {
      const std::string n = std::to_string(i);
      fabricate_run(root / ("bn" + n + "a"), {{"train.lr", lrs[i]}, {"model.norm", "\"bn\""}}, 0, "done", 30.0 + i);
      fabricate_run(root / ("bn" + n + "b"), {{"train.lr", lrs[i]}, {"model.norm", "\"bn\""}}, 1, "done", 31.0 + i);
      fabricate_run(root / ("sy" + n), {{"train.lr", lrs[i]}, {"model.norm", "\"syncbn\""}}, 0, "done", 35.0 - i);
    }
    ResultTableOptions options;
    options.rows = {"train.lr"};
    options.cols = {"model.norm"};
    grid_ = build_result_grid(scan_runs(root.string()), options);
  }
  fs::path out(const std::string& name) const { return dir_.path() / "plots" / name; }
  ScratchDir dir_;
  ResultGrid grid_;
};

TEST_F(PlotGrid, GoldenScriptAndDataOnALogAxis) {
  const GnuplotFiles files = render_gnuplot(grid_, PlotOptions{}, "lr.svg");
  // xrange: log10 span [-4, -2] padded by 6% (0.12) on each side: 10^-4.12 and 10^-1.88.
  EXPECT_EQ(
      files.script,
      "# gnuplot script written by `segrun table --plot` (gnuplot 5): mIoU against train.lr,\n"
      "# mean over seeds with +-std error bars where n >= 2. Data: lr.dat. Edit it and re-run from this folder:\n"
      "#   gnuplot lr.gp\n"
      "set terminal svg size 640,420 noenhanced font 'DejaVu Sans,11' background rgb 'white'\n"
      "set output 'lr.svg'\n"
      "set title 'mIoU vs train.lr'\n"
      "set xlabel 'train.lr (log scale)'\n"
      "set ylabel 'mIoU'\n"
      "set grid ytics lc rgb '#dddddd'\n"
      "set key outside right top\n"
      "set logscale x 10\n"
      "set xrange [7.58577575e-05:0.01318256739]\n"
      "set xtics ('0.0001' 0.0001, '0.001' 0.001, '0.01' 0.01)\n"
      "set offsets 0, 0, graph 0.08, graph 0.08\n"
      "plot 'lr.dat' index 0 using 1:2 with linespoints lw 1.5 pt 7 ps 0.8 lc rgb '#1f77b4' title 'model.norm=bn', \\\n"
      "     'lr.dat' index 0 using 1:2:($4 >= 2 ? $3 : NaN) with yerrorbars lw 1.5 pt 7 ps 0.8 lc rgb '#1f77b4' "
      "notitle, \\\n"
      "     'lr.dat' index 1 using 1:2 with linespoints lw 1.5 pt 7 ps 0.8 lc rgb '#d62728' title "
      "'model.norm=syncbn'\n");
  EXPECT_EQ(files.data,
            "# mIoU against train.lr: mean over seeds, sample std (NaN when n < 2), n\n"
            "# one block per series (gnuplot: index 0, 1, ...), blocks separated by two blank lines\n"
            "# series 0: model.norm=bn\n"
            "# x\tmean\tstd\tn\tlabel\n"
            "0.0001\t30.5\t0.7071067812\t2\t\"0.0001\"\n"
            "0.001\t31.5\t0.7071067812\t2\t\"0.001\"\n"
            "0.01\t32.5\t0.7071067812\t2\t\"0.01\"\n"
            "\n\n"
            "# series 1: model.norm=syncbn\n"
            "# x\tmean\tstd\tn\tlabel\n"
            "0.0001\t35\tNaN\t1\t\"0.0001\"\n"
            "0.001\t34\tNaN\t1\t\"0.001\"\n"
            "0.01\t33\tNaN\t1\t\"0.01\"\n");
}

TEST_F(PlotGrid, GoldenScriptAndDataOnACategoricalAxis) {
  PlotOptions options;
  options.x_key = "model.norm";
  options.name = "it's";  // quotes are doubled in gnuplot's single-quoted strings
  options.width = 800;
  options.height = 500;
  const GnuplotFiles files = render_gnuplot(grid_, options, "norm.png");
  EXPECT_EQ(
      files.script,
      "# gnuplot script written by `segrun table --plot` (gnuplot 5): mIoU against model.norm,\n"
      "# mean over seeds with +-std error bars where n >= 2. Data: norm.dat. Edit it and re-run from this folder:\n"
      "#   gnuplot norm.gp\n"
      "set terminal pngcairo size 800,500 noenhanced font 'DejaVu Sans,10' background rgb 'white'\n"
      "set output 'norm.png'\n"
      "set title 'it''s: mIoU vs model.norm'\n"
      "set xlabel 'model.norm'\n"
      "set ylabel 'mIoU'\n"
      "set grid ytics lc rgb '#dddddd'\n"
      "set key outside right top\n"
      "set xrange [-0.5:1.5]\n"
      "set xtics ('bn' 0, 'syncbn' 1)\n"
      "set offsets 0, 0, graph 0.08, graph 0.08\n"
      "plot 'norm.dat' index 0 using 1:2 with linespoints lw 1.5 pt 7 ps 0.8 lc rgb '#1f77b4' title 'train.lr=0.0001', "
      "\\\n"
      "     'norm.dat' index 0 using 1:2:($4 >= 2 ? $3 : NaN) with yerrorbars lw 1.5 pt 7 ps 0.8 lc rgb '#1f77b4' "
      "notitle, \\\n"
      "     'norm.dat' index 1 using 1:2 with linespoints lw 1.5 pt 7 ps 0.8 lc rgb '#d62728' title 'train.lr=0.001', "
      "\\\n"
      "     'norm.dat' index 1 using 1:2:($4 >= 2 ? $3 : NaN) with yerrorbars lw 1.5 pt 7 ps 0.8 lc rgb '#d62728' "
      "notitle, \\\n"
      "     'norm.dat' index 2 using 1:2 with linespoints lw 1.5 pt 7 ps 0.8 lc rgb '#2ca02c' title 'train.lr=0.01', "
      "\\\n"
      "     'norm.dat' index 2 using 1:2:($4 >= 2 ? $3 : NaN) with yerrorbars lw 1.5 pt 7 ps 0.8 lc rgb '#2ca02c' "
      "notitle\n");
  EXPECT_EQ(files.data,
            "# mIoU against model.norm: mean over seeds, sample std (NaN when n < 2), n\n"
            "# one block per series (gnuplot: index 0, 1, ...), blocks separated by two blank lines\n"
            "# series 0: train.lr=0.0001\n"
            "# x\tmean\tstd\tn\tlabel\n"
            "0\t30.5\t0.7071067812\t2\t\"bn\"\n"
            "1\t35\tNaN\t1\t\"syncbn\"\n"
            "\n\n"
            "# series 1: train.lr=0.001\n"
            "# x\tmean\tstd\tn\tlabel\n"
            "0\t31.5\t0.7071067812\t2\t\"bn\"\n"
            "1\t34\tNaN\t1\t\"syncbn\"\n"
            "\n\n"
            "# series 2: train.lr=0.01\n"
            "# x\tmean\tstd\tn\tlabel\n"
            "0\t32.5\t0.7071067812\t2\t\"bn\"\n"
            "1\t33\tNaN\t1\t\"syncbn\"\n");
}

TEST_F(PlotGrid, OneSeriesOnALinearAxisHasNoKeyAndNoErrorBars) {
  // Only syncbn (one seed each): one series, no key, no yerrorbars element; 1e-4..1e-2 is a log
  // axis, so restrict to lr 0.001 and 0.01 (10x: linear), x range padded by 6% of 0.009.
  ResultTableOptions options;
  options.rows = {"train.lr"};
  options.where = {{"model.norm", {"\"syncbn\""}}};
  auto runs = scan_runs((dir_.path() / "runs").string());
  std::vector<RunRecord> kept;
  for (const auto& r : runs)
    if (r.overrides.at("train.lr") != "0.0001") kept.push_back(r);
  const ResultGrid grid = build_result_grid(kept, options);
  const GnuplotFiles files = render_gnuplot(grid, PlotOptions{}, "one.svg");
  EXPECT_NE(files.script.find("unset key\n"), std::string::npos);
  EXPECT_EQ(files.script.find("logscale"), std::string::npos);
  EXPECT_NE(files.script.find("set xrange [0.00046:0.01054]\n"), std::string::npos) << files.script;
  EXPECT_NE(files.script.find(
                "plot 'one.dat' index 0 using 1:2 with linespoints lw 1.5 pt 7 ps 0.8 lc rgb '#1f77b4' notitle\n"),
            std::string::npos)
      << files.script;
  EXPECT_EQ(files.script.find("yerrorbars"), std::string::npos);
  EXPECT_NE(
      files.data.find(
          "# series 0: mIoU\n# x\tmean\tstd\tn\tlabel\n0.001\t34\tNaN\t1\t\"0.001\"\n0.01\t33\tNaN\t1\t\"0.01\"\n"),
      std::string::npos)
      << files.data;
}

TEST_F(PlotGrid, PngHasItsMagicAndSize) {
  PlotOptions options;
  options.width = 800;
  options.height = 500;
  const PlotFiles files = write_plot(grid_, options, out("lr.png").string());
  EXPECT_EQ(files.script, out("lr.gp").string());
  EXPECT_EQ(files.data, out("lr.dat").string());
  // The script as rendered, after the stamp line that tells the next --plot it is unedited.
  const std::string script = read_bytes(files.script);
  const std::string rendered = render_gnuplot(grid_, options, "lr.png").script;
  ASSERT_GT(script.size(), rendered.size());
  EXPECT_EQ(script.substr(script.size() - rendered.size()), rendered);
  EXPECT_EQ(script.find("# segrun-plot-script "), 0u);
  EXPECT_EQ(script.find('\n'), script.size() - rendered.size() - 1);  // one line
  EXPECT_FALSE(files.script_kept);
  EXPECT_EQ(read_bytes(files.data), render_gnuplot(grid_, options, "lr.png").data);
  const std::string png = read_bytes(out("lr.png"));
  ASSERT_GT(png.size(), 33u);
  EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  EXPECT_EQ(png.substr(12, 4), "IHDR");
  EXPECT_EQ(big_endian32(png, 16), 800u);
  EXPECT_EQ(big_endian32(png, 20), 500u);
}

TEST_F(PlotGrid, SvgHasOnePointPerConfigurationAndOneErrorBarPerMultiSeedOne) {
  PlotOptions options;
  options.name = "abl";
  write_plot(grid_, options, out("lr.svg").string());
  // gnuplot's SVG: one <g id="gnuplot_plot_N"> per plot element, in plot order: bn linespoints
  // (3 points + its key sample), bn yerrorbars (3 bars, each with its point drawn twice: a white
  // halo, then the point; no key sample),
  // syncbn linespoints (3 points + key sample). Each error bar is one path segment "M x,y L x,y'"
  // with equal x; its x is that of a point of the same group.
  const std::string script =
      "import sys, re, xml.etree.ElementTree as ET\n"
      "S = \"{http://www.w3.org/2000/svg}\"\n"
      "r = ET.parse(sys.argv[1]).getroot()\n"
      "groups = [g for g in r.iter(S + \"g\") if (g.get(\"id\") or \"\").startswith(\"gnuplot_plot_\")]\n"
      "uses = [len(list(g.iter(S + \"use\"))) for g in groups]\n"
      "g = groups[1]\n"
      "xs = set(re.match(r\"translate\\(([0-9.]+),\", u.get(\"transform\")).group(1) for u in g.iter(S + \"use\"))\n"
      "d = \" \".join(p.get(\"d\") for p in g.iter(S + \"path\"))\n"
      "segs = re.findall(r\"M([0-9.]+),([0-9.]+) L([0-9.]+),([0-9.]+)\", d)\n"
      "bars = [s for s in segs if s[0] == s[2] and s[1] != s[3] and s[0] in xs]\n"
      "texts = [\"\".join(t.itertext()) for t in r.iter(S + \"text\")]\n"
      "print(len(groups), uses, len(bars), \"abl: mIoU vs train.lr\" in texts, \"model.norm=syncbn\" in texts, "
      "\"train.lr (log scale)\" in texts, [t for t in texts if t in (\"0.0001\", \"0.001\", \"0.01\")])\n";
  ASSERT_EQ(script.find('\''), std::string::npos);  // the shell's single quotes wrap it
  EXPECT_EQ(run_python(script, out("lr.svg").string()), "3 [4, 6, 4] 3 True True True ['0.0001', '0.001', '0.01']\n");
}

TEST_F(PlotGrid, AnEditedScriptIsKeptAndDrawnWithTheNewData) {
  // docs/sweeps.md invites users to restyle a plot by editing FILE.gp: the next --plot must not
  // undo that. An unedited script is replaced (here: another size).
  PlotOptions options;
  const fs::path gp = out("lr.gp");
  write_plot(grid_, options, out("lr.svg").string());
  const std::string first = read_bytes(gp);
  options.width = 800;
  PlotFiles files = write_plot(grid_, options, out("lr.svg").string());
  EXPECT_FALSE(files.script_kept);
  const std::string second = read_bytes(gp);
  EXPECT_NE(second, first);
  EXPECT_NE(second.find("size 800,420"), std::string::npos) << second;

  // Edited: kept byte for byte, the data rewritten, and gnuplot draws with the edited script.
  const std::string edited = second.substr(0, second.find("set grid")) + "set grid xtics ytics\n" +
                             second.substr(second.find('\n', second.find("set grid")) + 1);
  ASSERT_NE(edited, second);
  { std::ofstream(gp, std::ios::binary) << edited; }
  fs::remove(out("lr.dat"));
  fs::remove(out("lr.svg"));
  options.width = 640;
  files = write_plot(grid_, options, out("lr.svg").string());
  EXPECT_TRUE(files.script_kept);
  EXPECT_EQ(read_bytes(gp), edited);
  EXPECT_EQ(read_bytes(out("lr.dat")), render_gnuplot(grid_, options, "lr.svg").data);
  EXPECT_NE(read_bytes(out("lr.svg")).find("width=\"800\""), std::string::npos);  // the edited script's size

  // A FILE.gp without the stamp that is not the script segrun renders (the user's own, or one
  // edited from an older segrun's) is kept too; one equal to the rendered script is segrun's.
  // Beside the user's own script, a picture or data file is theirs: refused then
  // (FilesOfTheUsersOwnAreNeverOverwritten), drawn when there is none yet.
  const std::string own = "set terminal svg\nset output 'lr.svg'\nplot 'lr.dat' index 0 using 1:2\n";
  { std::ofstream(gp, std::ios::binary) << own; }
  EXPECT_THROW(write_plot(grid_, options, out("lr.svg").string()), ConfigError);
  fs::remove(out("lr.dat"));
  fs::remove(out("lr.svg"));
  EXPECT_TRUE(write_plot(grid_, options, out("lr.svg").string()).script_kept);
  EXPECT_EQ(read_bytes(gp), own);
  { std::ofstream(gp, std::ios::binary) << render_gnuplot(grid_, options, "lr.svg").script; }
  EXPECT_FALSE(write_plot(grid_, options, out("lr.svg").string()).script_kept);
  EXPECT_EQ(read_bytes(gp).find("# segrun-plot-script "), 0u);
}

TEST_F(PlotGrid, FilesOfTheUsersOwnAreNeverOverwritten) {
  PlotOptions options;
  options.gnuplot = "segrun-no-such-gnuplot";  // refused before gnuplot is looked for
  // A picture, or a data file, of the plot's name without a FILE.gp beside it: the user's.
  fs::create_directories(out(""));
  { std::ofstream(out("mine.svg"), std::ios::binary) << "mine"; }
  EXPECT_THROW(check_plot_target(out("mine.svg").string(), ""), ConfigError);
  try {
    write_plot(grid_, options, out("mine.svg").string());
    ADD_FAILURE() << "mine.svg overwritten";
  } catch (const ConfigError& e) {
    const std::string resolved = fs::weakly_canonical(out("mine.svg")).string();
    EXPECT_EQ(std::string(e.what()), "--plot " + out("mine.svg").string() + ": " + resolved +
                                         " already exists and no FILE.gp of segrun's (mine.gp) beside it says segrun "
                                         "drew it; nothing is overwritten, choose another name");
  }
  EXPECT_EQ(read_bytes(out("mine.svg")), "mine");
  EXPECT_FALSE(fs::exists(out("mine.gp")));
  { std::ofstream(out("data.dat"), std::ios::binary) << "mine"; }
  EXPECT_THROW(write_plot(grid_, options, out("data.png").string()), ConfigError);
  EXPECT_EQ(read_bytes(out("data.dat")), "mine");
  // Through a folder that does not exist yet: where the path resolves.
  EXPECT_THROW(write_plot(grid_, options, (out("new") / ".." / "mine.svg").string()), ConfigError);
  EXPECT_FALSE(fs::exists(out("new")));
  EXPECT_EQ(read_bytes(out("mine.svg")), "mine");
  // The user's own gnuplot files (a script without segrun's stamp): theirs too.
  { std::ofstream(out("mine.gp"), std::ios::binary) << "plot 'mine.dat'\n"; }
  EXPECT_THROW(check_plot_target(out("mine.svg").string(), "set terminal svg\n"), ConfigError);
  // Beside segrun's script (stamped, or as segrun renders it) they are an earlier plot's.
  EXPECT_NO_THROW(check_plot_target(out("mine.svg").string(), "plot 'mine.dat'\n"));
  { std::ofstream(out("mine.gp"), std::ios::binary) << "# segrun-plot-script 0123456789abcdef (edited)\n"; }
  EXPECT_NO_THROW(check_plot_target(out("mine.svg").string(), ""));
  EXPECT_NO_THROW(check_plot_target(out("new.svg").string(), ""));
}

TEST_F(PlotGrid, Errors) {
  PlotOptions options;
  EXPECT_THROW(render_gnuplot(grid_, options, "lr.pdf"), ConfigError);
  options.x_key = "model.dropout";
  EXPECT_THROW(render_gnuplot(grid_, options, "lr.svg"), ConfigError);

  options.x_key.clear();
  options.gnuplot = "segrun-no-such-gnuplot";
  try {
    write_plot(grid_, options, out("missing.svg").string());
    ADD_FAILURE() << "no error without gnuplot";
  } catch (const IoError& e) {
    EXPECT_EQ(std::string(e.what()),
              "gnuplot not found (segrun-no-such-gnuplot: No such file or directory); install it: "
              "apt-get install gnuplot-nox");
  }

  // A stand-in that fails like gnuplot does: message on stderr (after a blank line), exit 1.
  const fs::path fake = dir_.path() / "bin" / "fake-gnuplot";
  write_text(fake, "#!/bin/sh\necho >&2\necho '\"'$1'\" line 3: undefined function: foo' >&2\necho more >&2\nexit 1\n");
  ::chmod(fake.c_str(), 0755);
  options.gnuplot = fake.string();
  try {
    write_plot(grid_, options, out("failing.svg").string());
    ADD_FAILURE() << "no error from a failing gnuplot";
  } catch (const IoError& e) {
    EXPECT_EQ(
        std::string(e.what()),
        out("failing.gp").string() + ": gnuplot failed (exit code 1): \"failing.gp\" line 3: undefined function: foo");
  }
  EXPECT_TRUE(fs::exists(out("failing.gp")));  // kept for the user to fix

  // A stand-in that succeeds without writing the plot.
  write_text(fake, "#!/bin/sh\nexit 0\n");
  ::chmod(fake.c_str(), 0755);
  try {
    write_plot(grid_, options, out("silent.svg").string());
    ADD_FAILURE() << "no error when gnuplot writes nothing";
  } catch (const IoError& e) {
    EXPECT_EQ(std::string(e.what()), out("silent.gp").string() + ": gnuplot wrote no " + out("silent.svg").string());
  }
}

}  // namespace
}  // namespace segrun::sweeps
