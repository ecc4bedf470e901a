#include "sweeps/report.h"

#include <nlohmann/json.hpp>
#include <stdlib.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <system_error>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/log.h"
#include "core/run_folder.h"
#include "sweeps/plot.h"
#include "sweeps/registry.h"
#include "sweeps/table.h"

namespace segrun::sweeps {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;

std::string folder_name(const std::string& path) {
  fs::path p = fs::absolute(path).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();  // a trailing '/'
  return p.filename().string();
}

std::string run_name(const RunRecord& run) { return folder_name(run.dir); }

std::string fmt_g(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.4g", v);
  return buf;
}

std::string fmt_fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", decimals, v);
  return buf;
}

std::string note(const std::string& text) { return "<p class=\"note\">" + escape_html(text) + "</p>\n"; }

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M UTC", &tm);
  return buf;
}

// A temporary folder for gnuplot's files, removed with them.
class TempFolder {
 public:
  TempFolder() {
    std::string pattern = (fs::temp_directory_path() / "segrun-report-XXXXXX").string();
    if (!::mkdtemp(pattern.data())) throw IoError(pattern + ": cannot create a temporary folder");
    path_ = pattern;
  }
  ~TempFolder() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempFolder(const TempFolder&) = delete;
  TempFolder& operator=(const TempFolder&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// The newest samples/iter_<n> folder of a run ("" when none) and its n.
std::pair<fs::path, int64_t> newest_samples(const RunRecord& run) {
  const fs::path root = RunFolder(run.dir).samples_dir();
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return {{}, -1};
  fs::path best;
  int64_t best_iter = -1;
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("iter_", 0) != 0 || name.size() == 5 || !entry.is_directory(ec)) continue;
    const std::string digits = name.substr(5);
    if (digits.find_first_not_of("0123456789") != std::string::npos || digits.size() > 18) continue;
    const int64_t iter = std::stoll(digits);
    if (iter > best_iter) best_iter = iter, best = entry.path();
  }
  return {best, best_iter};
}

bool is_png(const std::string& bytes) { return bytes.size() > 8 && bytes.compare(0, 8, "\x89PNG\r\n\x1a\n") == 0; }

// The inline part of a gnuplot SVG file: from <svg to the end (no XML prolog or DOCTYPE).
std::string inline_svg(const std::string& svg_file, const std::string& path) {
  const size_t start = svg_file.find("<svg");
  if (start == std::string::npos) throw DataError(path + ": gnuplot wrote no <svg> element");
  return svg_file.substr(start);
}

const char* kStyle = R"CSS(
body { font-family: "DejaVu Sans", Verdana, sans-serif; margin: 1.5em 2em; color: #222; background: #fff; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; }
h2 { font-size: 1.2em; margin-top: 1.8em; border-bottom: 1px solid #ccc; padding-bottom: 0.2em; }
h3 { font-size: 1em; margin: 1em 0 0.3em; }
.meta, .note, .cfg { color: #555; }
.cfg { font-weight: normal; font-size: 0.9em; }
section { overflow-x: auto; }  /* a wide per-class table scrolls inside its section */
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; white-space: nowrap; }
th { background: #f2f2f2; }
td.r, th.r { text-align: right; font-variant-numeric: tabular-nums; }
td.l, th.l { text-align: left; }
ul.notes { font-size: 0.85em; color: #444; }
.curves { display: flex; flex-wrap: wrap; gap: 0.5em 1.5em; }
.run-curves { border: 1px solid #e4e4e4; padding: 0.3em 0.6em; }
.samples { display: flex; flex-wrap: wrap; gap: 0.6em; }
figure { margin: 0; }
figure img { max-width: 100%; image-rendering: pixelated; border: 1px solid #ddd; }
figcaption { font-size: 0.8em; color: #555; }
img.broken { outline: 3px solid #c00; }
)CSS";

// Sets data-images / data-images-ok on <body> once the page has loaded: a self-check of the
// embedded pictures (the browser test reads it from the DOM); broken ones get a red outline.
const char* kImageCheck = R"JS(
window.addEventListener("load", function () {
  var images = document.images, ok = 0;
  for (var i = 0; i < images.length; ++i) {
    if (images[i].complete && images[i].naturalWidth > 0) ++ok;
    else images[i].classList.add("broken");
  }
  document.body.setAttribute("data-images", String(images.length));
  document.body.setAttribute("data-images-ok", String(ok));
});
)JS";

std::string state_summary(const std::vector<RunRecord>& runs) {
  std::map<std::string, int> count;
  for (const auto& r : runs) ++count[to_string(r.state)];
  std::string out;
  for (const auto& [state, n] : count) out += (out.empty() ? "" : ", ") + std::to_string(n) + " " + state;
  return out;
}

std::string runs_section(const std::vector<RunRecord>& runs, const std::string& metric, int decimals) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& r : runs) {
    const double v = run_metric(r, metric);
    rows.push_back({run_name(r), r.overrides.empty() ? "-" : describe(r.overrides), std::to_string(r.seed),
                    describe_run_state(r) + (r.reason.empty() ? "" : " (" + r.reason + ")"),
                    r.last_iter < 0 ? "-" : std::to_string(r.last_iter), format_number(v, decimals, "-")});
  }
  return "<section id=\"runs\">\n<h2>Runs</h2>\n" +
         format_table({"run", "configuration", "seed", "status", "last iter", metric}, rows, TableFormat::kHtml,
                      {Align::kLeft, Align::kLeft, Align::kRight, Align::kLeft, Align::kRight, Align::kRight}) +
         "</section>\n";
}

// The classes of the per-class table: the explicit ones, else the source's, else the best run's
// top `count` by IoU (highest first).
std::vector<std::string> chosen_classes(const ReportSource& source, const ResultTableOptions& table,
                                        const ReportOptions& options) {
  if (!options.classes.empty()) return options.classes;
  if (!source.per_class.empty()) return source.per_class;
  const RunRecord* best = nullptr;
  double best_value = -std::numeric_limits<double>::infinity();
  for (const auto& r : source.runs) {
    if (!r.finished() || r.per_class.empty()) continue;
    double v = run_metric(r, table.metric);
    if (std::isnan(v)) v = run_metric(r, "mIoU");
    if (!best || v > best_value) best = &r, best_value = std::isnan(v) ? best_value : v;
  }
  if (!best) return {};
  std::vector<std::pair<std::string, double>> ranked;
  for (const auto& [name, iou] : best->per_class)
    if (!std::isnan(iou)) ranked.emplace_back(name, iou);
  std::stable_sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  std::vector<std::string> out;
  for (size_t i = 0; i < ranked.size() && i < options.top_classes; ++i) out.push_back(ranked[i].first);
  return out;
}

std::string per_class_section(const ReportSource& source, const ResultTableOptions& table,
                              const ReportOptions& options) {
  std::string html = "<section id=\"per-class\">\n<h2>Per-class IoU</h2>\n";
  const bool any_result = std::any_of(source.runs.begin(), source.runs.end(),
                                      [](const RunRecord& r) { return r.finished() && !r.per_class.empty(); });
  if (!any_result) return html + note("No done run has a per-class IoU in result.json yet.") + "</section>\n";
  const std::vector<std::string> classes = chosen_classes(source, table, options);
  if (classes.empty()) return html + note("The best run has no class with a defined IoU.") + "</section>\n";
  const char* why = !options.classes.empty()    ? "classes chosen with --classes"
                    : !source.per_class.empty() ? "the spec's [table] per_class"
                                                : "the best run's top classes by IoU";
  html += "<p class=\"meta\">IoU in % (" + escape_html(why) + ").</p>\n";
  if (source.kind == ReportSource::Kind::kRun) {
    const RunRecord& r = source.runs.front();
    std::vector<std::vector<std::string>> rows;
    for (const auto& name : classes) {
      auto it = r.per_class.find(name);
      if (it == r.per_class.end() && !options.classes.empty())
        throw DataError("--classes " + name + ": not a class of " + RunFolder(r.dir).result_path() + " per_class");
      rows.push_back({name, it == r.per_class.end() ? "-" : format_number(it->second, table.decimals, "-")});
    }
    return html + format_table({"class", "IoU"}, rows, TableFormat::kHtml) + "</section>\n";
  }
  try {
    html += format_per_class_table(source.runs, table, classes, "html", "--classes");
  } catch (const DataError& e) {
    if (!options.classes.empty()) throw;
    html += note(std::string("No per-class table: ") + e.what());
  }
  return html + "</section>\n";
}

std::string curves_section(const std::vector<RunRecord>& runs, ReportSummary* summary) {
  std::string html = "<section id=\"curves\">\n<h2>Training curves</h2>\n<div class=\"curves\">\n";
  std::vector<std::string> without;
  for (const auto& r : runs) {
    const std::string metrics = RunFolder(r.dir).metrics_path();
    if (!path_exists(metrics)) {
      without.push_back(run_name(r));
      continue;
    }
    const auto loss = read_metric_series(metrics, "train", "loss");
    const auto miou = read_metric_series(metrics, "val", "mIoU");
    if (loss.empty() && miou.empty()) {
      without.push_back(run_name(r));
      continue;
    }
    html += "<div class=\"run-curves\" data-run=\"" + escape_html(run_name(r)) + "\">\n<h3>" +
            escape_html(run_name(r)) +
            (r.overrides.empty() ? "" : " <span class=\"cfg\">" + escape_html(describe(r.overrides)) + "</span>") +
            "</h3>\n";
    html += line_chart_svg(loss, "train loss", "train-loss");
    html += line_chart_svg(miou, "val mIoU", "val-miou", /*mark_best=*/true);
    html += "</div>\n";
    ++summary->curves;
  }
  html += "</div>\n";
  if (!without.empty()) {
    std::string names;
    for (const auto& n : without) names += (names.empty() ? "" : ", ") + n;
    html += note("No train or val lines in metrics.jsonl yet: " + names + ".");
  }
  return html + "</section>\n";
}

std::string samples_section(const std::vector<RunRecord>& runs, ReportSummary* summary) {
  std::string html =
      "<section id=\"samples\">\n<h2>Sample predictions</h2>\n"
      "<p class=\"meta\">Each picture: image | ground truth | prediction, from the run's newest evaluation.</p>\n";
  std::vector<std::string> without;
  for (const auto& r : runs) {
    const auto [dir, iter] = newest_samples(r);
    std::vector<fs::path> pngs;
    std::error_code ec;
    if (!dir.empty())
      for (const auto& entry : fs::directory_iterator(dir, ec))
        if (entry.path().extension() == ".png" && entry.is_regular_file(ec)) pngs.push_back(entry.path());
    if (pngs.empty()) {
      without.push_back(run_name(r));
      continue;
    }
    std::sort(pngs.begin(), pngs.end());
    html += "<h3>" + escape_html(run_name(r)) + " <span class=\"cfg\">iter " + std::to_string(iter) +
            (r.overrides.empty() ? "" : ", " + escape_html(describe(r.overrides))) +
            "</span></h3>\n<div class=\"samples\">\n";
    for (const auto& png : pngs) {
      const std::string bytes = read_file(png.string());
      const std::string name = png.stem().string();
      if (!is_png(bytes)) {
        html += note(png.string() + ": not a PNG file, left out");
        log::warn("report: {}: not a PNG file, left out of the report", png.string());
        continue;
      }
      html += "<figure><img src=\"data:image/png;base64," + base64_encode(bytes) + "\" alt=\"" +
              escape_html(run_name(r) + " " + name) + "\"><figcaption>" + escape_html(name) +
              "</figcaption></figure>\n";
      ++summary->images;
    }
    html += "</div>\n";
  }
  if (!without.empty()) {
    std::string names;
    for (const auto& n : without) names += (names.empty() ? "" : ", ") + n;
    html += note("No samples/iter_<n>/*.png: " + names + ".");
  }
  return html + "</section>\n";
}

std::string table_and_plot_sections(const ReportSource& source, const ResultTableOptions& table,
                                    const ReportOptions& options, const std::string& plot_dir, ReportSummary* summary) {
  std::string html = "<section id=\"table\">\n<h2>Results: " + escape_html(table.metric) + "</h2>\n";
  ResultGrid grid;
  try {
    grid = build_result_grid(source.runs, table);
  } catch (const DataError& e) {
    // A metric asked for that no done run has is a typo, an error as in `segrun table`; a sweep
    // whose runs are not done yet gets its page.
    bool done = false, has_metric = false;
    for (const RunRecord& run : source.runs) {
      if (!run.has_result) continue;
      done = true;
      has_metric = has_metric || !std::isnan(run_metric(run, table.metric));
    }
    if (options.metric_given && done && !has_metric) throw;
    return html + note(std::string("No table yet: ") + e.what()) + "</section>\n";
  }
  html += format_result_grid(grid, "html") + "</section>\n";
  summary->has_table = true;

  html += "<section id=\"plot\">\n<h2>Plot</h2>\n";
  if (grid.row_keys.empty() && grid.col_keys.empty())
    return html + note("No plot: the runs have no swept key that varies.") + "</section>\n";
  PlotOptions plot;
  plot.x_key = options.plot_x;
  plot.name = source.kind == ReportSource::Kind::kSpec ? source.name : "";
  plot.gnuplot = options.gnuplot;
  const std::string svg_path = plot_dir + "/plot.svg";
  try {
    write_plot(grid, plot, svg_path);
  } catch (const IoError& e) {
    log::warn("report: no plot: {}", e.what());
    return html + note(std::string("No plot: ") + e.what()) + "</section>\n";
  }
  html += "<div class=\"plot\">\n" + inline_svg(read_file(svg_path), svg_path) + "\n</div>\n";
  summary->has_plot = true;
  return html + "</section>\n";
}

// A sweep's runs differ in what their overrides.json records, and also in any key the spec's base
// config changed between them (seeds 0-1 trained at lr 2e-3, seed 2 after the base said 3e-3):
// such keys, read from the runs' config.toml (scan_trained_runs), join the trained runs'
// overrides, so that a table of the runs folder never averages runs of different training in one
// cell. Only keys that no run's overrides.json sets (a key the sweep sets already tells its runs
// apart, and a run leaving it out means "the base's value", not the schema's default) and that
// every trained run's config.toml holds (one written before a key joined the schema reads back
// at its default). Not the global batch (a footnote says when runs differ in it) nor the names.
void add_keys_the_base_changed(std::vector<RunRecord>& runs, const std::string& runs_dir) {
  std::vector<RunRecord> trained;
  try {
    trained = scan_trained_runs(runs_dir);
  } catch (const DataError& e) {  // a damaged config.toml: the runs' overrides.json still tell them apart
    log::warn("{}; the runs are compared by their overrides.json only", e.what());
    return;
  }
  std::set<std::string> keys;
  for (const RunRecord& run : trained)
    for (const auto& entry : run.overrides) keys.insert(entry.first);
  for (const RunRecord& run : runs)
    for (const auto& entry : run.overrides) keys.erase(entry.first);
  keys.erase(kGlobalBatchKey);
  keys.erase("name");
  for (const RunRecord& run : trained)
    for (const auto& [key, value] : run.overrides)
      if (value.empty()) keys.erase(key);
  std::map<std::string, const Overrides*> configs;
  for (const RunRecord& run : trained) configs[run.dir] = &run.overrides;
  for (RunRecord& run : runs) {
    const auto it = configs.find(run.dir);
    if (it == configs.end()) continue;
    for (const std::string& key : keys) {
      const auto value = it->second->find(key);
      if (value != it->second->end()) run.overrides[key] = value->second;
    }
  }
}

}  // namespace

ReportSource load_report_source(const std::string& path, const std::string& runs_dir, bool allow_single_run) {
  ReportSource source;
  source.path = path;
  std::error_code ec;
  if (!fs::exists(path, ec))
    throw ConfigError(path + (allow_single_run ? ": no such sweep spec, runs folder or run folder"
                                               : ": no such runs folder or sweep spec"));
  if (fs::is_directory(path, ec)) {
    source.name = folder_name(path);
    if (allow_single_run && is_run_folder(path)) {
      source.kind = ReportSource::Kind::kRun;
      source.runs.push_back(read_run(path));
      return source;
    }
    source.kind = ReportSource::Kind::kRunsDir;
    source.table.note_co_varying = true;  // ad-hoc runs: nothing says which keys changed together
    source.runs = scan_runs(path);
    if (source.runs.empty())
      source.runs = scan_trained_runs(path);  // runs trained one by one
    else
      add_keys_the_base_changed(source.runs, path);
    if (source.runs.empty())
      throw DataError(path +
                      (allow_single_run ? ": not a runs folder (no subfolder is a run folder) nor a run folder"
                                        : ": not a runs folder (no subfolder is a run folder)") +
                      " (a run folder holds config.toml with metrics.jsonl or result.json)");
    return source;
  }
  if (!fs::is_regular_file(path, ec)) throw ConfigError(path + ": not a sweep spec (a TOML file) or a folder");
  const SweepSpec spec = load_sweep_spec(path);
  source.kind = ReportSource::Kind::kSpec;
  source.name = spec.name;
  source.runs_dir = sweep_runs_dir(spec, runs_dir);
  for (const auto& e : plan_sweep(spec, source.runs_dir)) {
    RunRecord record = e.record;
    record.overrides = e.run.overrides;  // also for runs never launched (no overrides.json yet)
    record.seed = e.run.seed;
    if (e.config_changed) record.config_change = e.config_change.empty() ? "its base config changed" : e.config_change;
    source.runs.push_back(std::move(record));
  }
  source.table.rows = spec.table.rows;
  source.table.cols = spec.table.cols;
  source.table.metric = spec.table.metric;
  if (!spec.table.metric_origin.empty()) source.table.metric_origin = spec.table.metric_origin;
  source.table.baseline = spec.table.baseline;
  source.table.baseline_origin = spec.path + ": [table] baseline";
  source.table.paper = spec.table.paper;
  source.table.paper_source = spec.table.paper_source;
  if (spec.table.order == "spec") source.table.order = spec.configurations;
  source.per_class = spec.table.per_class;
  source.per_class_origin = spec.table.per_class_origin;
  return source;
}

std::vector<std::pair<double, double>> read_metric_series(const std::string& metrics_path, const std::string& mode,
                                                          const std::string& field) {
  std::vector<std::pair<double, double>> points;
  for_each_metrics_record(metrics_path, [&](const Json& j) {
    if (j.value("mode", "") != mode) return;
    auto iter = j.find("iter");
    auto value = j.find(field);
    if (iter == j.end() || value == j.end() || !iter->is_number() || !value->is_number()) return;
    points.emplace_back(iter->get<double>(), value->get<double>());
  });
  return points;
}

std::string line_chart_svg(const std::vector<std::pair<double, double>>& points, const std::string& title,
                           const std::string& series_class, bool mark_best) {
  constexpr double kWidth = 260, kHeight = 150, kLeft = 56, kRight = 12, kTop = 22, kBottom = 32;
  std::vector<std::pair<double, double>> finite;
  for (const auto& p : points)
    if (std::isfinite(p.first) && std::isfinite(p.second)) finite.push_back(p);
  const std::string size = "width=\"" + fmt_g(kWidth) + "\" height=\"" + fmt_g(kHeight) + "\" viewBox=\"0 0 " +
                           fmt_g(kWidth) + " " + fmt_g(kHeight) + "\"";
  std::string svg = "<svg class=\"chart " + escape_html(series_class) + "\" xmlns=\"http://www.w3.org/2000/svg\" " +
                    size + " role=\"img\" aria-label=\"" + escape_html(title) +
                    "\" font-family=\"DejaVu Sans, Verdana, sans-serif\" font-size=\"10\">\n";
  svg += "<text x=\"" + fmt_g(kLeft) + "\" y=\"14\" font-size=\"12\" fill=\"#222\">" + escape_html(title) + "</text>\n";
  const double x0 = kLeft, x1 = kWidth - kRight, y0 = kHeight - kBottom, y1 = kTop;
  svg += "<path d=\"M" + fmt_g(x0) + " " + fmt_g(y1) + " V" + fmt_g(y0) + " H" + fmt_g(x1) +
         "\" fill=\"none\" stroke=\"#888\" stroke-width=\"1\"/>\n";
  if (finite.empty()) {
    svg += "<text x=\"" + fmt_g((x0 + x1) / 2) + "\" y=\"" + fmt_g((y0 + y1) / 2) +
           "\" text-anchor=\"middle\" fill=\"#888\">no data</text>\n";
    return svg + "</svg>\n";
  }
  double xmin = finite.front().first, xmax = xmin, ymin = finite.front().second, ymax = ymin;
  for (const auto& [x, y] : finite) {
    xmin = std::min(xmin, x), xmax = std::max(xmax, x);
    ymin = std::min(ymin, y), ymax = std::max(ymax, y);
  }
  const double xspan = xmax > xmin ? xmax - xmin : 1.0;
  const double yspan = ymax > ymin ? ymax - ymin : 1.0;
  auto px = [&](double x) { return xmax > xmin ? x0 + (x - xmin) / xspan * (x1 - x0) : (x0 + x1) / 2; };
  auto py = [&](double y) { return ymax > ymin ? y0 - (y - ymin) / yspan * (y0 - y1) : (y0 + y1) / 2; };
  auto label = [&](double x, double y, const char* anchor, const std::string& text) {
    return "<text x=\"" + fmt_fixed(x, 1) + "\" y=\"" + fmt_fixed(y, 1) + "\" text-anchor=\"" + anchor +
           "\" fill=\"#444\">" + escape_html(text) + "</text>\n";
  };
  // Min and max at the axes' ends; a single value at the height / under the place of its points.
  svg += label(x0 - 4, py(ymax) + 4, "end", fmt_g(ymax));
  if (ymax > ymin) svg += label(x0 - 4, y0, "end", fmt_g(ymin));
  svg += label(px(xmin), y0 + 14, xmax > xmin ? "start" : "middle", fmt_g(xmin));
  if (xmax > xmin) svg += label(x1, y0 + 14, "end", fmt_g(xmax));
  svg += label((x0 + x1) / 2, y0 + 26, "middle", "iter");
  std::string coords;
  for (const auto& [x, y] : finite)
    coords += (coords.empty() ? "" : " ") + fmt_fixed(px(x), 1) + "," + fmt_fixed(py(y), 1);
  svg += "<polyline class=\"series\" points=\"" + coords +
         "\" fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\" stroke-linejoin=\"round\"/>\n";
  const auto& last = finite.back();
  svg += "<circle cx=\"" + fmt_fixed(px(last.first), 1) + "\" cy=\"" + fmt_fixed(py(last.second), 1) +
         "\" r=\"2.5\" fill=\"#1f77b4\"><title>iter " + fmt_g(last.first) + ": " + fmt_g(last.second) +
         "</title></circle>\n";
  if (mark_best) {
    const auto best = std::max_element(finite.begin(), finite.end(),
                                       [](const auto& a, const auto& b) { return a.second < b.second; });
    const std::string text = "best " + fmt_g(best->second) + " (iter " + fmt_g(best->first) + ")";
    svg += "<circle class=\"best\" cx=\"" + fmt_fixed(px(best->first), 1) + "\" cy=\"" +
           fmt_fixed(py(best->second), 1) + "\" r=\"3.5\" fill=\"#ff7f0e\"><title>" + escape_html(text) +
           "</title></circle>\n";
    svg += "<text x=\"" + fmt_g(x1) + "\" y=\"14\" text-anchor=\"end\" fill=\"#ff7f0e\">" + escape_html(text) +
           "</text>\n";
  }
  return svg + "</svg>\n";
}

std::string base64_encode(const std::string& bytes) {
  static const char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const uint32_t v =
        (uint32_t(uint8_t(bytes[i])) << 16) | (uint32_t(uint8_t(bytes[i + 1])) << 8) | uint32_t(uint8_t(bytes[i + 2]));
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (i < bytes.size()) {
    uint32_t v = uint32_t(uint8_t(bytes[i])) << 16;
    if (i + 1 < bytes.size()) v |= uint32_t(uint8_t(bytes[i + 1])) << 8;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += i + 1 < bytes.size() ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::string render_report(const ReportSource& source, const ResultTableOptions& table, const ReportOptions& options,
                          const std::string& plot_dir, ReportSummary* summary) {
  ReportSummary local;
  if (!summary) summary = &local;
  // --where keeps the runs of the configurations it picks, in the table and in every section
  // after it (their runs, curves, per-class IoU, pictures).
  ReportSource kept = source;
  kept.runs.clear();
  const bool one_run = source.kind == ReportSource::Kind::kRun;  // no configurations to pick from
  for (const RunRecord& run : source.runs)
    if (one_run || matches(run.overrides, table.where)) kept.runs.push_back(run);
  summary->runs = kept.runs.size();
  const char* kind = source.kind == ReportSource::Kind::kSpec      ? "sweep spec"
                     : source.kind == ReportSource::Kind::kRunsDir ? "runs folder"
                                                                   : "run folder";
  const std::string title = "segrun report: " + source.name;
  std::string html = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
  html += std::string(kReportMarker) + "\n";
  html += "<title>" + escape_html(title) + "</title>\n<style>" + kStyle + "</style>\n</head>\n<body>\n";
  html += "<h1>" + escape_html(title) + "</h1>\n";
  const std::string of_all =
      table.where.empty() || one_run ? "" : " (of the " + std::to_string(source.runs.size()) + ", those --where keeps)";
  html += "<p class=\"meta\">" + std::string(kind) + " <code>" + escape_html(source.path) + "</code>; " +
          std::to_string(kept.runs.size()) + " run(s)" + escape_html(of_all) + ": " +
          escape_html(state_summary(kept.runs)) + "; written " + utc_now() + ".</p>\n";
  if (source.kind != ReportSource::Kind::kRun)
    html += table_and_plot_sections(source, table, options, plot_dir, summary);
  html += runs_section(kept.runs, table.metric, table.decimals);
  html += curves_section(kept.runs, summary);
  html += per_class_section(kept, table, options);
  html += samples_section(kept.runs, summary);
  html += "<script>" + std::string(kImageCheck) + "</script>\n</body>\n</html>\n";
  summary->bytes = html.size();
  return html;
}

bool is_segrun_report(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::string head(1024, '\0');
  in.read(head.data(), static_cast<std::streamsize>(head.size()));
  head.resize(static_cast<size_t>(in.gcount()));
  return head.find(kReportMarker) != std::string::npos;
}

ReportSummary write_report(const ReportSource& source, const ResultTableOptions& table, const ReportOptions& options) {
  SEGRUN_CHECK(!options.out.empty(), ConfigError, "report: no output file given (--out FILE.html)");
  std::error_code ec;
  const fs::path out = fs::absolute(options.out, ec);
  if (fs::is_directory(out, ec)) throw IoError(options.out + ": is a folder; --out names the HTML file to write");
  const fs::path parent = out.parent_path();
  if (!fs::is_directory(parent, ec))
    throw IoError(options.out + ": cannot write: folder " + parent.string() + " does not exist");
  if (fs::exists(out, ec) && !is_segrun_report(options.out))
    throw ConfigError("--out " + options.out +
                      ": exists and is not a segrun report; nothing written: choose another file name (a report "
                      "replaces only an earlier report)");
  ReportSummary summary;
  TempFolder plot_dir;
  const std::string html = render_report(source, table, options, plot_dir.path(), &summary);
  write_file_atomic(options.out, html);
  summary.path = options.out;
  return summary;
}

}  // namespace segrun::sweeps
