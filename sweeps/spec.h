#pragma once
// Sweep specs: one TOML file naming a base config, [fixed] overrides for every run, a cartesian
// [grid], explicit [[variants]], seeds, include/exclude filters, resources and table hints (format in docs/sweeps.md),
// expanded deterministically into runs with stable ids.
//
// Contract: a spec is validated before anything runs: load_sweep_spec applies every swept value
// to the base config through core/config.h (so a bad key or value is reported as
// "<spec>:<line>: ..." with the config schema's own message), and expand_sweep loads every
// expanded run's full config once more (cross-field checks, e.g. a swept width its heads do not
// divide). Values are kept as canonical TOML text
// (integers plain, floats in their shortest round-trip form with a '.' or exponent, strings
// quoted; a float key's integers as floats), so `0.1`, `1e-1` and `0.10` are the same value, and
// `0` and `0.0` of model.dropout too, and a run's id is the first 10 hex
// digits of a 64-bit FNV-1a hash (with MurmurHash3's fmix64 finalizer) of its sorted
// "key=value" lines plus its seed: reordering
// grid keys, variants or filters never changes an id. Pure functions; thread-safe.

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace segrun::sweeps {

// Dotted config key -> canonical TOML value text, sorted by key.
using Overrides = std::map<std::string, std::string>;

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
  Overrides baseline;                  // partial configuration the deltas refer to
  std::vector<std::string> per_class;  // class names for the per-class table
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

// `cluster.*` keys (Slurm partition, time, ...) say where a run executes, not what it computes:
// they are left out of run ids and fingerprints, so changing them reuses finished runs.
bool is_scheduling_key(const std::string& key);
std::string run_id(const Overrides& overrides, uint64_t seed);
// The 64-bit hash run ids and slugs are made of (FNV-1a with fmix64, docs/sweeps.md), as 16 hex
// digits: for other files segrun stamps (a plot script's).
std::string hash_hex(const std::string& text);
// The readable part of each configuration's run folder name (same order as configurations; a
// folder is "<id>-<slug>_s<seed>", unique through its id): "<key><value>" parts joined by '_' for
// the swept keys a configuration sets, a key by its last component (more where two swept keys
// share it: data.crop, eval.crop), a value as in a file name (RN50.pt, 640x640). The keys that
// tell the configurations apart come first (keys with more values first, each unless the ones
// before it determine it: the weights file follows from the backbone), then the others. Where
// that is longer than 64 characters with the seed, only the distinguishing keys (every key for a
// lone configuration), cut to fit, and "~" + 6 hex digits of a hash of the configuration's
// overrides, so that it stays unique.
std::vector<std::string> configuration_slugs(const std::vector<Overrides>& configurations,
                                             const std::vector<std::string>& swept_keys);
// configuration_slug + "_s<seed>".
std::string run_slug(const std::string& configuration_slug, uint64_t seed);

// "key=value" strings (value in TOML syntax, bare words are strings) to canonical overrides;
// ConfigError naming the bad argument, or a key given twice with two values. what names the
// option in messages ("--baseline").
Overrides parse_override_args(const std::vector<std::string>& args, const std::string& what);
// Canonical TOML text of one value written as TOML (bare words are strings).
std::string canonical_value(const std::string& toml_value_text);
// canonical rewritten for the config key it is a value of: for a float key (model.dropout,
// train.lr, a list of floats) integers become floats, so 0 and 0.0 are one value.
std::string canonical_for_key(const std::string& key, const std::string& canonical);
// Every value of a resolved config (a run folder's config.toml text) as dotted key -> canonical
// value, tables flattened ("train.lr"). DataError "<origin>:<line>: ..." when it is not TOML.
Overrides flatten_config(const std::string& toml_text, const std::string& origin);
// A canonical value for people: strings without their quotes.
std::string display_value(const std::string& canonical);
// True when every key of filter is in config with the same value.
bool matches(const Overrides& config, const Overrides& filter);

// Accepted values per key (`segrun table --where k=a --where k=b`): a configuration passes when
// each key's value is one of its set.
using ValueFilter = std::map<std::string, std::set<std::string>>;
// As parse_override_args, a key given again adding a value instead of replacing it.
ValueFilter parse_filter_args(const std::vector<std::string>& args, const std::string& what);
bool matches(const Overrides& config, const ValueFilter& filter);
// "k=v, k2=v2" with display values ("(base config)" when empty).
std::string describe(const Overrides& overrides);

}  // namespace segrun::sweeps
