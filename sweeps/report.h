#pragma once
// The report of a sweep or of one run: one self-contained HTML file (inline CSS and SVG, images
// as base64 data: URIs, no network access, no external script or font) holding
//   1. the result table exactly as `segrun table` computes it (build_result_grid, then
//      format_result_grid(..., "html"): the same cells as `--format md` without its markup),
//   2. its gnuplot plot (write_plot into a temporary folder, the SVG inlined; a note instead when
//      the grid has no swept key or gnuplot cannot run),
//   3. a table of the runs (folder, configuration, seed, status, last iter, metric),
//   4. per run, train loss and val mIoU against iter from metrics.jsonl as small SVG polylines
//      (the best val mIoU marked),
//   5. per-class IoU (result.json per_class) for chosen classes: the spec's [table] per_class,
//      else the 10 best classes of the best run,
//   6. each run's newest sample predictions (samples/iter_<n>/*.png, image | truth | prediction).
// A single run folder (config.toml plus metrics.jsonl or result.json) gives sections 3-6 only.
// A sweep with no run done yet still gets a report: the table section says why it is empty.
//
// Contract: load_report_source reads run folders only; write_report writes --out atomically
// (core/atomic_file.h), replacing a file there only when it is an earlier report (its head holds
// kReportMarker); nothing is written when it throws. Errors name the path: a missing source or an
// --out that is some other file -> ConfigError; a folder that is neither a runs folder nor a run
// folder, or a corrupt run file -> DataError; an --out that cannot be written -> IoError; bad
// table options -> ConfigError, as in `segrun table`.
// Thread-compatible; write_report runs gnuplot as a child process (sweeps/plot.h).

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "sweeps/registry.h"
#include "sweeps/results.h"

namespace segrun::sweeps {

// The line in the head of every report (its fifth) that tells a report apart from other files.
inline constexpr const char* kReportMarker = "<meta name=\"generator\" content=\"segrun report\">";
// Whether `path` is a file whose first 1 KiB holds kReportMarker (false when it cannot be read).
bool is_segrun_report(const std::string& path);

// What `segrun table` and `segrun report` read from their SOURCE argument.
struct ReportSource {
  enum class Kind { kSpec, kRunsDir, kRun };
  Kind kind = Kind::kRunsDir;
  std::string path;                    // as given
  std::string name;                    // the sweep's name (a spec), else the folder's name
  std::vector<RunRecord> runs;         // a spec's planned runs (also those never launched)
  ResultTableOptions table;            // the spec's [table] (rows, cols, metric, baseline, order, paper)
  std::vector<std::string> per_class;  // the spec's [table] per_class
  std::string per_class_origin;        // "<spec>:<line>: [table] per_class" (for errors)
  std::string runs_dir;                // a spec's runs folder (where its runs were looked for)
};

// path: a sweep spec TOML (runs_dir overrides its runs folder), a runs folder (every subfolder
// with an overrides.json, else every subfolder that is a run folder trained one by one:
// scan_trained_runs) or, when allow_single_run, one run folder. ConfigError when the path
// does not exist; DataError when a folder is neither (naming it).
ReportSource load_report_source(const std::string& path, const std::string& runs_dir, bool allow_single_run);

struct ReportOptions {
  std::string out;                   // the HTML file
  std::vector<std::string> classes;  // per-class IoU columns; {} = the source's per_class, else top 10
  std::string plot_x;                // the plot's x key ("" = plot.h's default)
  std::string gnuplot = "gnuplot";
  size_t top_classes = 10;
  // The table's metric was asked for (--metric): when no done run has it (a misspelt metric) the
  // report fails with the error `segrun table` gives, instead of a page that says "No table yet"
  // (what a sweep whose runs are not done yet still gets).
  bool metric_given = false;
};

// What write_report wrote, for the caller's message.
struct ReportSummary {
  std::string path;
  size_t bytes = 0;
  size_t runs = 0;
  size_t images = 0;
  size_t curves = 0;
  bool has_table = false;
  bool has_plot = false;
};
// Writes options.out. table: the result table's options, as `segrun table SOURCE` builds them
// (source.table, the spec's [table], with the command line's flags applied over it).
ReportSummary write_report(const ReportSource& source, const ResultTableOptions& table, const ReportOptions& options);

// The HTML text itself (write_report without the file); plot_dir is where gnuplot may write.
std::string render_report(const ReportSource& source, const ResultTableOptions& table, const ReportOptions& options,
                          const std::string& plot_dir, ReportSummary* summary);

// One train/val series of a run's metrics.jsonl: (iter, value) for lines whose "mode" equals
// `mode` and that have a numeric `field`, in file order. DataError naming file:line for a corrupt
// line that is not the last one (a crash may cut the last line).
std::vector<std::pair<double, double>> read_metric_series(const std::string& metrics_path, const std::string& mode,
                                                          const std::string& field);

// A small SVG line chart (axes, min/max labels, one polyline) of points; title above it. With
// mark_best, the first highest point is also drawn in orange (class "best") and named at the
// top right, "best <value> (iter <x>)": the validation train.save_best keeps.
std::string line_chart_svg(const std::vector<std::pair<double, double>>& points, const std::string& title,
                           const std::string& series_class, bool mark_best = false);

// RFC 4648 base64 (with padding).
std::string base64_encode(const std::string& bytes);

}  // namespace segrun::sweeps
