#include "sweeps/plot.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <sstream>
#include <system_error>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/format.h"
#include "core/output_paths.h"
#include "core/process.h"
#include "sweeps/run_naming.h"

namespace segrun::sweeps {
namespace {

namespace fs = std::filesystem;

// matplotlib's default cycle: distinguishable, and prints well in grey.
const char* const kPalette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"};

// The stamp segrun puts as the first line of every FILE.gp it writes: a hash of the rest, so that
// the next --plot tells a script as written (replaced) from one a user edited (kept).
constexpr const char* kScriptStamp = "# segrun-plot-script ";

std::string stamped(const std::string& script) {
  return kScriptStamp + hash_hex(script) + " (segrun table --plot replaces this file while it is as written here; " +
         "edited, it is kept)\n" + script;
}

// Whether `text` (an existing FILE.gp) is as segrun wrote it: stamped with the hash of the rest
// (whatever grid it plotted), or, written before the stamp, byte-identical to today's `script`.
bool as_segrun_wrote_it(const std::string& text, const std::string& script) {
  if (text == script) return true;
  const size_t first_end = text.find('\n');
  const std::string prefix = kScriptStamp;
  if (first_end == std::string::npos || text.compare(0, prefix.size(), prefix) != 0) return false;
  return text.compare(prefix.size(), 16, hash_hex(text.substr(first_end + 1))) == 0;
}

std::string num(double v) {
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%.10g", v);
  return buf;
}

// A gnuplot single-quoted string: no escapes inside but '' for a quote; one line.
std::string gp_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'')
      out += "''";
    else if (c == '\n' || c == '\r')
      out += ' ';
    else
      out += c;
  }
  return out + "'";
}

// A label column of the data file: double-quoted, without double quotes inside.
std::string data_label(const std::string& s) {
  std::string out = "\"";
  for (char c : s) out += (c == '"' || c == '\n' || c == '\r' || c == '\t') ? '\'' : c;
  return out + "\"";
}

struct Point {
  std::string x_text;  // the swept value (display form)
  double x;            // the value, or the category index
  double mean;
  double std;  // NaN when n < 2
  size_t n;
};

struct Series {
  std::string label;
  std::vector<Point> points;
  bool has_error_bars = false;
};

}  // namespace

GnuplotFiles render_gnuplot(const ResultGrid& grid, const PlotOptions& options, const std::string& output_name) {
  const std::string ext = fs::path(output_name).extension().string();
  if (ext != ".png" && ext != ".svg")
    throw ConfigError("--plot " + output_name + ": the file must end in .png or .svg");
  std::vector<std::string> keys = grid.row_keys;
  keys.insert(keys.end(), grid.col_keys.begin(), grid.col_keys.end());
  if (keys.empty()) throw ConfigError("--plot: the runs sweep no key to put on the x axis");
  if (grid.cells.empty()) throw ConfigError("--plot: the table has no cell to plot");
  const std::string x_key = options.x_key.empty() ? keys.front() : options.x_key;
  if (std::find(keys.begin(), keys.end(), x_key) == keys.end())
    throw ConfigError("--plot-x " + x_key + ": not a row or column key of the table");
  std::vector<std::string> series_keys;
  for (const auto& k : keys)
    if (k != x_key) series_keys.push_back(k);

  // x values in the grid's order (rows and columns are sorted by value already); "" = no such key.
  auto x_of = [&](const ResultCell& c) {
    auto it = c.config.find(x_key);
    return it == c.config.end() ? std::string() : it->second;
  };
  std::vector<std::string> x_values;
  for (const auto& c : grid.cells) {
    const std::string v = x_of(c);
    if (std::find(x_values.begin(), x_values.end(), v) == x_values.end()) x_values.push_back(v);
  }
  bool numeric = true;
  std::vector<double> xs;
  for (const auto& v : x_values) {
    double d = 0;
    numeric = numeric && parse_number(v, d);
    xs.push_back(d);
  }
  if (numeric) {
    std::vector<size_t> order(x_values.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return xs[a] < xs[b]; });
    std::vector<std::string> sv;
    std::vector<double> sx;
    for (size_t i : order) {
      sv.push_back(x_values[i]);
      sx.push_back(xs[i]);
    }
    x_values = sv;
    xs = sx;
  }
  const bool log_x = numeric && xs.size() >= 2 && xs.front() > 0 && xs.back() / xs.front() >= 20.0;
  auto x_index = [&](const std::string& v) {
    return static_cast<size_t>(std::find(x_values.begin(), x_values.end(), v) - x_values.begin());
  };
  auto x_text = [](const std::string& v) { return v.empty() ? std::string("-") : display_value(v); };

  // Series: one per combination of the other keys, in the grid's order; points sorted by x.
  std::vector<Series> series;
  std::map<std::string, size_t> series_index;
  for (const auto& c : grid.cells) {
    std::string label;
    for (const auto& k : series_keys) {
      auto it = c.config.find(k);
      label += (label.empty() ? "" : ", ") + k + "=" + (it == c.config.end() ? "-" : display_value(it->second));
    }
    auto [it, inserted] = series_index.emplace(label, series.size());
    if (inserted) series.push_back({label, {}, false});
    Series& s = series[it->second];
    const std::string v = x_of(c);
    const size_t i = x_index(v);
    s.points.push_back({x_text(v), numeric ? xs[i] : static_cast<double>(i), c.mean,
                        c.values.size() >= 2 ? c.std : std::nan(""), c.values.size()});
    s.has_error_bars = s.has_error_bars || c.values.size() >= 2;
  }
  for (auto& s : series)
    std::stable_sort(s.points.begin(), s.points.end(), [](const Point& a, const Point& b) { return a.x < b.x; });

  // x range with a margin: 6% of the span on each side (in log10 space on a log axis).
  double x0 = 0, x1 = 0;
  if (!numeric) {
    x0 = -0.5;
    x1 = static_cast<double>(x_values.size()) - 0.5;
  } else if (log_x) {
    const double l0 = std::log10(xs.front()), l1 = std::log10(xs.back()), pad = (l1 - l0) * 0.06;
    x0 = std::pow(10.0, l0 - pad);
    x1 = std::pow(10.0, l1 + pad);
  } else if (xs.front() == xs.back()) {
    const double pad = std::max(std::fabs(xs.front()) * 0.1, 0.5);
    x0 = xs.front() - pad;
    x1 = xs.front() + pad;
  } else {
    const double pad = (xs.back() - xs.front()) * 0.06;
    x0 = xs.front() - pad;
    x1 = xs.back() + pad;
  }

  const std::string stem = fs::path(output_name).stem().string();
  const std::string data_name = stem + ".dat";
  const std::string title = !options.title.empty()
                                ? options.title
                                : (options.name.empty() ? "" : options.name + ": ") + grid.metric + " vs " + x_key;
  const std::string x_label = options.x_label.empty() ? x_key + (log_x ? " (log scale)" : "") : options.x_label;
  const std::string y_label = options.y_label.empty() ? grid.metric : options.y_label;

  GnuplotFiles files;
  std::ostringstream data;
  data << "# " << grid.metric << " against " << x_key << ": mean over seeds, sample std (NaN when n < 2), n\n"
       << "# one block per series (gnuplot: index 0, 1, ...), blocks separated by two blank lines\n";
  for (size_t s = 0; s < series.size(); ++s) {
    if (s) data << "\n\n";
    data << "# series " << s << ": " << (series_keys.empty() ? grid.metric : series[s].label) << "\n"
         << "# x\tmean\tstd\tn\tlabel\n";
    for (const auto& p : series[s].points)
      data << num(p.x) << "\t" << num(p.mean) << "\t" << (std::isnan(p.std) ? "NaN" : num(p.std)) << "\t" << p.n << "\t"
           << data_label(p.x_text) << "\n";
  }
  files.data = data.str();

  std::ostringstream gp;
  gp << "# gnuplot script written by `segrun table --plot` (gnuplot 5): " << grid.metric << " against " << x_key
     << ",\n# mean over seeds with +-std error bars where n >= 2. Data: " << data_name
     << ". Edit it and re-run from this folder:\n#   gnuplot " << stem << ".gp\n";
  if (ext == ".png")
    gp << "set terminal pngcairo size " << options.width << "," << options.height
       << " noenhanced font 'DejaVu Sans,10' background rgb 'white'\n";
  else
    gp << "set terminal svg size " << options.width << "," << options.height
       << " noenhanced font 'DejaVu Sans,11' background rgb 'white'\n";
  gp << "set output " << gp_quote(output_name) << "\n"
     << "set title " << gp_quote(title) << "\n"
     << "set xlabel " << gp_quote(x_label) << "\n"
     << "set ylabel " << gp_quote(y_label) << "\n"
     << "set grid ytics lc rgb '#dddddd'\n";
  if (series.size() > 1)
    gp << "set key outside right top\n";
  else
    gp << "unset key\n";
  if (log_x) gp << "set logscale x 10\n";
  gp << "set xrange [" << num(x0) << ":" << num(x1) << "]\n"
     << "set xtics (";
  for (size_t i = 0; i < x_values.size(); ++i)
    gp << (i ? ", " : "") << gp_quote(x_text(x_values[i])) << " " << (numeric ? num(xs[i]) : std::to_string(i));
  gp << ")\n"
     << "set offsets 0, 0, graph 0.08, graph 0.08\n"
     << "plot";
  const std::string data_ref = gp_quote(data_name);
  bool first = true;
  for (size_t s = 0; s < series.size(); ++s) {
    const std::string style =
        std::string(" lw 1.5 pt 7 ps 0.8 lc rgb '") + kPalette[s % (sizeof(kPalette) / sizeof(kPalette[0]))] + "'";
    gp << (first ? " " : ", \\\n     ") << data_ref << " index " << s << " using 1:2 with linespoints" << style
       << (series.size() > 1 ? " title " + gp_quote(series[s].label) : std::string(" notitle"));
    first = false;
    if (series[s].has_error_bars)
      gp << ", \\\n     " << data_ref << " index " << s << " using 1:2:($4 >= 2 ? $3 : NaN) with yerrorbars" << style
         << " notitle";
  }
  gp << "\n";
  files.script = gp.str();
  return files;
}

namespace {

std::string first_line(const std::string& text) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line))
    if (line.find_first_not_of(" \t\r") != std::string::npos) return line;
  return "";
}

}  // namespace

void check_plot_target(const std::string& output_path, const std::string& segrun_script) {
  const fs::path out = resolved_output_path(output_path);  // "new/../fig.svg" is ./fig.svg
  const fs::path script = fs::path(out).replace_extension(".gp");
  std::error_code ec;
  if (fs::exists(script, ec)) {
    const std::string text = read_file(script.string());
    if (text.rfind(kScriptStamp, 0) == 0 || text == segrun_script) return;  // segrun's, edited or not
  }
  for (const fs::path& file : {out, fs::path(out).replace_extension(".dat")})
    if (fs::exists(file, ec))
      throw ConfigError("--plot " + output_path + ": " + file.string() +
                        " already exists and no FILE.gp of segrun's (" + script.filename().string() +
                        ") beside it says segrun drew it; nothing is overwritten, choose another name");
}

PlotFiles write_plot(const ResultGrid& grid, const PlotOptions& options, const std::string& output_path) {
  const fs::path out(output_path);
  const fs::path dir = out.has_parent_path() ? out.parent_path() : fs::path(".");
  const std::string name = out.filename().string();
  const GnuplotFiles files = render_gnuplot(grid, options, name);
  check_plot_target(output_path, files.script);
  PlotFiles paths;
  paths.output = output_path;
  paths.script = fs::path(out).replace_extension(".gp").string();
  paths.data = fs::path(out).replace_extension(".dat").string();
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw IoError(dir.string() + ": cannot create the plot's folder: " + ec.message());
  write_file_atomic(paths.data, files.data);
  // A script the user edited since segrun wrote it (or one segrun did not write) is theirs: kept,
  // and drawn with the new data.
  if (fs::exists(paths.script, ec)) {
    const std::string text = read_file(paths.script);
    paths.script_kept = !as_segrun_wrote_it(text, files.script);
  }
  if (!paths.script_kept) write_file_atomic(paths.script, stamped(files.script));

  fs::remove(out, ec);  // a stale plot must not pass for a new one
  std::string program = options.gnuplot;
  if (program.find('/') != std::string::npos) program = fs::absolute(program).string();  // gnuplot runs in dir
  std::string err;
  process::Captured run;
  try {
    run = process::run_captured({program, out.stem().string() + ".gp"}, dir.string(), 1u << 20);
  } catch (const ProcessError& e) {
    if (e.os_error() == ENOENT)
      throw IoError("gnuplot not found (" + program + ": " + std::strerror(ENOENT) +
                    "); install it: apt-get install gnuplot-nox");
    throw IoError(e.what());
  }
  err = run.err;
  if (!run.status.ok())
    throw IoError(paths.script + ": gnuplot failed (" + run.status.describe() +
                  "): " + (first_line(err).empty() ? "no message" : first_line(err)));
  if (fs::file_size(out, ec) == 0 || ec)
    throw IoError(paths.script + ": gnuplot wrote no " + output_path +
                  (first_line(err).empty() ? std::string() : ": " + first_line(err)));
  return paths;
}

}  // namespace segrun::sweeps
