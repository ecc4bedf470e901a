#pragma once
// Result tables of a sweep, as papers print them: one cell per configuration (a set of swept
// values), aggregated over its seeds as mean ± sample std (ddof = 1) and n; a delta against a
// baseline configuration; the best cell marked; and, with >= 2 seeds on both sides, deltas
// smaller than the seed-to-seed spread marked '~' (the papers report 0.1-0.5 point deltas from
// single runs). Also a per-class IoU table and the numbers a plot needs.
//
// Layout: rows are labelled by `rows` keys, columns by `cols` keys; swept keys in neither are
// appended to the row keys so that a cell never mixes configurations. Without `cols` the table
// has one metric column plus a "Δ <metric>" column when a baseline is given; with `cols` each
// cell carries its own delta (", Δ +0.50"). The delta of a cell is taken against the cell whose
// configuration equals its own with the baseline's keys set to the baseline's values (so in a
// k x lr grid with baseline k=30 every cell is compared with k=30 at the same lr). Only runs
// whose status is done count; the others are reported in a footnote. A configuration and seed
// count once: of runs repeating one (the same config trained twice with the same seed, in a
// folder of ad-hoc runs), the one whose result.json was written last counts (the later folder
// name on a tie) and a footnote names the others. Pure functions.

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "sweeps/registry.h"
#include "sweeps/spec.h"
#include "sweeps/table.h"

namespace segrun::sweeps {

struct ResultTableOptions {
  std::vector<std::string> rows;
  std::vector<std::string> cols;
  std::string metric = "mIoU";                 // a key of result.json, or a class name of its per_class
  std::string metric_origin = "--metric";      // where the metric was given, for errors
  Overrides baseline;                          // {} = no deltas
  std::string baseline_origin = "--baseline";  // where the baseline was given, for errors
  ValueFilter where;                           // keep only configurations matching this (a key: any of its values)
  int decimals = 2;
  // When set (a spec's configurations in expansion order, `[table] order = "spec"`): rows appear
  // in the order their values first occur here (values not listed follow, sorted); columns stay
  // sorted by value.
  std::vector<Overrides> order;
  // The paper's numbers for configurations (a spec's [paper]), shown beside the measured ones:
  // a "paper" column without `cols`, "(paper x)" in each cell with them.
  std::vector<PaperValue> paper;
  std::string paper_source;
  // Footnote the keys that vary with the shown ones (ResultGrid::co_varying_keys): for a folder of
  // runs; a spec's [[variants]] pair keys on purpose (a backbone and its weights file).
  bool note_co_varying = false;
};

struct ResultCell {
  Overrides config;
  std::vector<uint64_t> seeds;  // distinct
  std::vector<double> values;
  std::vector<std::string> runs;  // the run folder of each value
  double mean = 0.0;
  double std = 0.0;            // NaN when n < 2
  double delta = 0.0;          // NaN without baseline / reference
  bool within_spread = false;  // |delta| < max(std, std of the reference), both n >= 2
  bool is_baseline = false;
  bool best = false;
  double paper = 0.0;  // NaN when the paper gives no number for this configuration
  size_t row = 0;
  size_t col = 0;
};

// A done run left out because another run of the same configuration and seed counts instead.
struct RepeatedRun {
  std::string dir;
  uint64_t seed = 0;
  std::string counted;  // the folder of the run that counts
};

struct ResultGrid {
  std::string metric;
  std::vector<std::string> row_keys;
  std::vector<std::string> col_keys;
  std::vector<std::string> where_keys;  // the keys --where filtered on (they name a lone configuration)
  std::vector<Overrides> row_values;    // over row_keys, sorted by value (or in options.order)
  std::vector<Overrides> col_values;    // over col_keys ({} once when there are no col keys)
  std::vector<ResultCell> cells;
  Overrides baseline;
  bool baseline_unpaired = false;  // some delta is against the single baseline configuration
  std::string baseline_left_out;   // a spec's baseline --where filtered away ("" when none): no deltas
  int cells_without_baseline = 0;  // configurations with no delta: their baseline has no result
  int runs_not_done = 0;
  // Done runs whose metric is null in result.json (a class's IoU where the class is in neither that
  // run's validation ground truth nor its predictions): left out of their cell, a footnote says so.
  int runs_without_value = 0;
  std::string first_without_value;
  int done_without_result = 0;  // of runs_not_done: status done, result.json missing (removed) or unreadable
  std::string first_done_without_result;
  int unreadable_results = 0;              // of done_without_result: result.json there but unreadable
  std::string first_unreadable_result;     // its RunRecord::result_error
  std::vector<RepeatedRun> repeated_runs;  // in the order of the runs given
  int decimals = 2;
  bool has_paper = false;  // some cell has a paper value
  std::string paper_source;
  // Runs of the table per global batch (result.json's global_batch: batch_per_rank x ranks x
  // train.accumulate), when the runs were not all trained at the same one: a footnote says so.
  std::map<int64_t, int> mixed_global_batches;
  // Under note_co_varying: keys that vary between the configurations but follow from the row and
  // column keys, so are not shown (in a folder of ad-hoc runs, a train.lr changed together with
  // model.dropout): a footnote names them, since a row's difference is then not its label's alone.
  std::vector<std::string> co_varying_keys;
  // Runs of the table that a sweep trained under an earlier base config (RunRecord::config_change;
  // the first one's change): a footnote says their figures are not the sweep's as it now stands.
  int runs_of_older_config = 0;
  std::string older_config_change;
};

// Groups done runs into cells. ConfigError when a rows/cols/baseline/where key is not swept,
// or the baseline matches no configuration; DataError when no done run has the metric, or when
// some done runs have it and another lacks it altogether (named in the message, e.g. a run not
// evaluated with `segrun eval --ms` under --metric mIoU_ms).
ResultGrid build_result_grid(const std::vector<RunRecord>& runs, const ResultTableOptions& options);

// "md"/"markdown", "csv", "latex", "text", "html" or "json"; markdown, text, HTML and LaTeX get
// footnotes (HTML as a <ul class="notes"> after the table, LaTeX as % comments). CSV is tidy, for
// pandas: one line per cell, a column per shown key, then the numbers (mean, std, n, paper,
// delta) and 0/1 flags (baseline, within_spread, best); no footnotes.
std::string format_result_grid(const ResultGrid& grid, const std::string& format);

// Per-class IoU (result.json per_class) of each configuration for the given classes, plus the
// table metric, over the runs build_result_grid counts (so repeated runs are left out, with the
// same footnote); best value per column marked (CSV: a column per key, then each value's mean and
// "<value> std", unmarked). DataError naming an unknown class after `option`, the command-line
// option that gave the classes.
std::string format_per_class_table(const std::vector<RunRecord>& runs, const ResultTableOptions& options,
                                   const std::vector<std::string>& classes, const std::string& format,
                                   const std::string& option = "--per-class");

// Value of `metric` in a done run: result.json's top-level field or per_class entry; NaN if absent.
double run_metric(const RunRecord& run, const std::string& metric);

}  // namespace segrun::sweeps
