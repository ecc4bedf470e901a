#pragma once
// Sweep specs: one TOML file naming a base config, [fixed] overrides for every run, a cartesian
// [grid], explicit [[variants]], seeds, include/exclude filters, resources and table hints
// (format in docs/sweeps.md), expanded deterministically into runs with stable ids.
//
// Contract: a spec is validated before anything runs: load_sweep_spec applies every swept value
// to the base config through core/config.h (so a bad key or value is reported as
// "<spec>:<line>: ..." with the config schema's own message), and expand_sweep loads every
// expanded run's full config once more (cross-field checks, e.g. a swept width its heads do not
// divide). Values are canonical TOML text (sweeps/values.h); ids and folder names come from
// sweeps/run_naming.h, so reordering grid keys, variants or filters never changes a run's id.
// Pure functions; thread-safe.

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "sweeps/run_naming.h"
#include "sweeps/values.h"

namespace segrun::sweeps {

// The numbers the paper reports for one configuration (an entry of the spec's [paper] values).
struct PaperValue {
  Overrides config;                      // swept keys it sets: it applies to the configurations that have them (the
                                         // first entry that applies to a configuration gives its values)
  std::map<std::string, double> values;  // metric (a key without a dot: mIoU, mIoU_ms) -> number
};

struct TableHints {
  std::vector<std::string> rows;  // swept keys labelling the rows
  std::vector<std::string> cols;  // swept keys labelling the columns
  std::string metric = "mIoU";
  std::string metric_origin;           // "<spec>:<line>: [table] metric" when the spec sets it (for errors)
  Overrides baseline;                  // partial configuration the deltas refer to
  std::vector<std::string> per_class;  // class names for the per-class table
  std::string per_class_origin;        // "<spec>:<line>: [table] per_class" when the spec sets it
  std::string order = "value";         // rows: "value" = sorted by value; "spec" = as the spec lists them
  // [paper]: the paper's numbers, shown beside the measured ones, and where they come from.
  std::vector<PaperValue> paper;
  std::string paper_source;
};

struct SweepSpec {
  std::string path;                       // the spec file as given
  std::string name;                       // [A-Za-z0-9._-]+, default: the spec file's stem
  std::string base;                       // absolute path of the base config
  std::string runs_dir;                   // "" = runs/<name> under the working directory
  std::vector<std::string> swept_keys;    // keys set by grid or variants, in spec order
  std::vector<Overrides> configurations;  // after include/exclude, in expansion order
  std::vector<uint64_t> seeds;            // default: the base config's train.seed
  int ranks = 1;                          // [resources] ranks per run
  TableHints table;
};

struct PlannedRun {
  std::string id;        // 10 hex digits
  std::string dir_name;  // "<id>-<slug>", the run directory's name under the sweep's runs dir
  Overrides overrides;
  uint64_t seed = 0;
  int64_t iters = 0;        // resolved train.iters of the run
  std::string fingerprint;  // hash of the fully resolved config: detects edits of the base for a
                            // run folder without a config.toml (others compare it key by key)
  // "key=value" arguments for `segrun train`, seed last: train.seed=<seed>.
  std::vector<std::string> train_args() const;
};

// Reads and validates a spec; ConfigError "<file>:<line>: <key>: <what>" on the first problem.
SweepSpec load_sweep_spec(const std::string& path);
// Same from text; relative `base`/`runs_dir` resolve against origin_dir.
SweepSpec parse_sweep_spec(const std::string& toml_text, const std::string& origin, const std::string& origin_dir);

// configurations x seeds, configuration-major. Each run's full config is validated.
std::vector<PlannedRun> expand_sweep(const SweepSpec& spec);

}  // namespace segrun::sweeps
