// Sweep spec parsing (toml++) and expansion into planned runs.
#include "sweeps/spec.h"

#include <toml++/toml.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <system_error>

#include "core/config.h"
#include "core/error.h"
#include "core/format.h"
#include "core/toml_names.h"
#include "sweeps/run_naming.h"
#include "sweeps/toml_values.h"
#include "sweeps/values.h"

namespace segrun::sweeps {

using toml_detail::canonical_of;
using toml_detail::flatten;
using toml_detail::is_float_key;

namespace {

namespace fs = std::filesystem;

// A swept value with the line it came from.
struct Located {
  std::string value;  // canonical
  int line = 0;
};
using LocatedOverrides = std::map<std::string, Located>;

class SpecReader {
 public:
  SpecReader(std::string origin, fs::path dir) : origin_(std::move(origin)), dir_(std::move(dir)) {}

  [[noreturn]] void fail(int line, const std::string& key, const std::string& what) const {
    std::string where = origin_;
    if (line > 0) where += ":" + std::to_string(line);
    throw ConfigError(where + ": " + (key.empty() ? "" : key + ": ") + what);
  }
  [[noreturn]] void fail(const toml::node& node, const std::string& key, const std::string& what) const {
    fail(line_of(node), key, what);
  }
  static int line_of(const toml::node& node) { return static_cast<int>(node.source().begin.line); }

  const std::string& origin() const { return origin_; }
  const fs::path& dir() const { return dir_; }

 private:
  std::string origin_;
  fs::path dir_;
};

bool valid_name(const std::string& s) {
  return !s.empty() &&
         s.find_first_not_of(
             "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
             "0123456789._-") == std::string::npos &&
         s != "." && s != "..";
}

// The top-level keys of a spec, in the order the documentation lists them.
const std::vector<std::string> kTopKeyOrder{"name",     "base",    "runs_dir", "description", "seeds", "fixed", "grid",
                                            "variants", "include", "exclude",  "resources",   "table", "paper"};
const std::set<std::string> kTopKeys(kTopKeyOrder.begin(), kTopKeyOrder.end());

// A top-level spec key (seeds, include, ...) written after a [section] header lands in that
// table: say so rather than "unknown key". `name` is a config key too, and left to the schema.
void check_not_top_level(const SpecReader& r, const toml::node& node, const std::string& where,
                         const std::string& key) {
  static const std::set<std::string> kTopValues{"base", "runs_dir", "description", "seeds", "include", "exclude"};
  if (!kTopValues.count(key)) return;
  r.fail(node, where + " " + key,
         "'" + key +
             "' is a top-level key: move it above the first [section] header (TOML puts the keys "
             "after a header into that table)");
}

// cluster.* keys say where a run executes and are left out of run ids (is_scheduling_key): runs
// that differ only by them would be one run.
void check_not_scheduling(const SpecReader& r, const toml::node& node, const std::string& where,
                          const std::string& key) {
  if (is_scheduling_key(key))
    r.fail(node, where + " " + key,
           "cluster.* keys cannot be swept: they say where a run executes, not what it computes (set them in "
           "[fixed])");
}

// A spec is TOML, typed like a config file: a string key's number is refused there too (on a
// command line, name=1 is the text "1"; here name = 1 and name = "1" would be two runs of one config).
void check_text_value(const SpecReader& r, const toml::node& node, const std::string& where, const std::string& key) {
  if (is_text_key(key) && node.is_value() && !node.is_string())
    r.fail(node, where + " " + key, "expected a string, got " + toml_type_name(node) + " (quote it)");
}

// "key=value" arguments of a set of overrides.
std::vector<std::string> override_args(const Overrides& overrides) {
  std::vector<std::string> args;
  for (const auto& [key, value] : overrides) args.push_back(key + "=" + value);
  return args;
}

// flatten() of a spec table, refusing a key given twice: TOML keeps "train.lr" (quoted, one key)
// and train.lr (dotted, or [train] lr) apart, and both name train.lr.
std::vector<std::pair<std::string, const toml::node*>> flat_keys(const SpecReader& r, const toml::table& table,
                                                                 const std::string& where) {
  std::vector<std::pair<std::string, const toml::node*>> flat;
  flatten(table, "", flat);
  std::map<std::string, const toml::node*> seen;
  for (const auto& [key, node] : flat) {
    const auto [first, inserted] = seen.emplace(key, node);
    if (!inserted)
      r.fail(*node, where + " " + key,
             "given twice (also on line " + std::to_string(SpecReader::line_of(*first->second)) + ")");
  }
  return flat;
}

// Reads one override table (grid point, variant, filter or baseline): dotted key -> canonical
// value, each checked against the schema by applying it to the base config on top of `context`
// (the [fixed] overrides, which every run has). With together = true (the [fixed] table, a
// variant: sets that runs always get whole) each value is checked with the whole table applied, so
// paired keys such as train.iters and train.warmup_iters, or model.vit.layers and
// model.vit.out_indices, are judged together.
LocatedOverrides read_overrides(const SpecReader& r, const toml::table& table, const std::string& where,
                                const std::string& base, const Overrides& context = {}, bool together = false) {
  const auto flat = flat_keys(r, table, where);
  LocatedOverrides out;
  for (const auto& [key, node] : flat) {
    const std::string label = where + " " + key;
    check_not_top_level(r, *node, where, key);
    if (key == "train.seed") r.fail(*node, label, "set seeds with the top-level 'seeds = [...]'");
    check_text_value(r, *node, where, key);
    std::string text = canonical_of(*node, is_float_key(key));
    if (text.empty()) r.fail(*node, label, "unsupported value (" + toml_type_name(*node) + ")");
    text = canonical_for_key(key, text);  // a path spelled two ways is one value
    out[key] = Located{text, SpecReader::line_of(*node)};
  }
  Overrides whole = context;
  if (together)
    for (const auto& [key, located] : out) whole[key] = located.value;
  for (const auto& [key, node] : flat) {
    Overrides applied = whole;
    applied[key] = out[key].value;
    try {
      load_config(base, override_args(applied));
    } catch (const ConfigError& e) {
      r.fail(*node, "", e.what());
    }
  }
  return out;
}

// More configurations than this (grid points x variants, before filters) is refused.
constexpr size_t kMaxConfigurations = 10000;

std::vector<Overrides> cartesian(const std::vector<std::pair<std::string, std::vector<std::string>>>& axes) {
  std::vector<Overrides> points{Overrides{}};
  for (const auto& [key, values] : axes) {
    std::vector<Overrides> next;
    for (const auto& p : points)
      for (const auto& v : values) {
        Overrides q = p;
        q[key] = v;
        next.push_back(std::move(q));
      }
    points = std::move(next);
  }
  return points;
}

std::vector<std::string> string_list(const SpecReader& r, const toml::node& node, const std::string& key) {
  std::vector<std::string> out;
  if (auto s = node.as_string()) {
    out.push_back(s->get());
  } else if (auto arr = node.as_array()) {
    for (const auto& item : *arr) {
      if (!item.is_string()) r.fail(item, key, "expected strings, got " + toml_type_name(item));
      out.push_back(item.as_string()->get());
    }
  } else {
    r.fail(node, key, "expected a string or a list of strings, got " + toml_type_name(node));
  }
  return out;
}

struct Filter {
  Overrides values;
  int line = 0;
  std::string kind;
};

std::vector<Filter> read_filters(const SpecReader& r, const toml::node& node, const std::string& kind,
                                 const std::string& base, const std::vector<std::string>& swept) {
  std::vector<Filter> out;
  const toml::array* arr = node.as_array();
  if (!arr) r.fail(node, kind, "expected a list of tables, e.g. " + kind + " = [{ \"model.norm\" = \"bn\" }]");
  for (const auto& item : *arr) {
    const toml::table* t = item.as_table();
    if (!t) r.fail(item, kind, "expected a table of key = value, got " + toml_type_name(item));
    if (t->empty()) r.fail(item, kind, "empty filter");
    Filter f;
    f.kind = kind;
    f.line = SpecReader::line_of(item);
    for (const auto& [key, located] : read_overrides(r, *t, kind, base)) {
      if (std::find(swept.begin(), swept.end(), key) == swept.end())
        r.fail(located.line, kind + " " + key, "not a swept key (swept: " + join(swept, ", ") + ")");
      f.values[key] = located.value;
    }
    out.push_back(std::move(f));
  }
  return out;
}

// What a run's fingerprint hashes: the resolved config with the scheduling settings at their
// defaults (where a run executes is not what it computes), written as it was when fingerprints
// were introduced, so that run folders of existing sweeps keep theirs: scheduling keys added to
// the schema since (cluster.slurm.signal) are left out.
std::string fingerprint_text(Config config) {
  config.cluster = ClusterConfig{};
  static const std::set<std::string> kAddedSince{"cluster.slurm.signal"};
  std::istringstream in(to_toml(config));
  std::string out, line, table;
  while (std::getline(in, line)) {
    if (!line.empty() && line.front() == '[') table = line.substr(1, line.find(']') - 1);
    const std::string key = table + "." + line.substr(0, line.find(" = "));
    if (line.find(" = ") != std::string::npos && kAddedSince.count(key)) continue;
    out += line + "\n";
  }
  return out;
}

// The [grid] axes: key -> its values, in the order the spec lists them.
using GridAxes = std::vector<std::pair<std::string, std::vector<std::string>>>;
// The [[variants]] override sets, each with its line.
using Variants = std::vector<std::pair<Overrides, int>>;

toml::table parse_root(const SpecReader& r, const std::string& toml_text) {
  toml::table root;
  try {
    root = toml::parse(toml_text, r.origin());
  } catch (const toml::parse_error& e) {
    r.fail(static_cast<int>(e.source().begin.line), "", "syntax error: " + std::string(e.description()));
  }
  for (const auto& [k, node] : root)
    if (!kTopKeys.count(std::string(k.str())))
      r.fail(node, std::string(k.str()), "unknown key (sweep specs have: " + join(kTopKeyOrder, ", ") + ")");
  return root;
}

// The top-level table `name`, or nullptr when the spec has none; anything else there fails with
// `expected`.
const toml::table* optional_table(const SpecReader& r, const toml::table& root, const std::string& name,
                                  const std::string& expected) {
  const toml::node* n = root.get(name);
  if (!n) return nullptr;
  const toml::table* t = n->as_table();
  if (!t) r.fail(*n, name, expected);
  return t;
}

// name, base and runs_dir; returns the base config, which every run starts from.
Config read_identity(const SpecReader& r, const toml::table& root, SweepSpec& spec) {
  spec.name = fs::path(r.origin()).stem().string();
  if (const toml::node* n = root.get("name")) {
    if (!n->is_string()) r.fail(*n, "name", "expected a string, got " + toml_type_name(*n));
    spec.name = n->as_string()->get();
  }
  if (!valid_name(spec.name))
    r.fail(root.get("name") ? SpecReader::line_of(*root.get("name")) : 0, "name",
           "'" + spec.name + "' " +
               (spec.name == "." || spec.name == ".." ? std::string("names no folder of its own")
                                                      : std::string("must be letters, digits, '.', '_' or '-'")) +
               " (it names the runs folder)");

  const toml::node* base_node = root.get("base");
  if (!base_node) r.fail(0, "base", "missing (the config every run starts from)");
  if (!base_node->is_string()) r.fail(*base_node, "base", "expected a string path");
  fs::path base = base_node->as_string()->get();
  if (base.is_relative()) base = r.dir() / base;
  spec.base = fs::absolute(base).lexically_normal().string();
  Config base_config;
  try {
    base_config = load_config(spec.base);
  } catch (const ConfigError& e) {
    r.fail(*base_node, "base", e.what());
  }
  if (const toml::node* n = root.get("runs_dir")) {
    if (!n->is_string()) r.fail(*n, "runs_dir", "expected a string path");
    // "" would put the runs among the spec's own files (its folder): not what anyone means.
    if (n->as_string()->get().empty())
      r.fail(*n, "runs_dir", "empty; leave the key out for runs/" + spec.name + ", or name a folder");
    fs::path d = n->as_string()->get();
    spec.runs_dir = (d.is_relative() ? r.dir() / d : d).lexically_normal().string();
  }
  return base_config;
}

// seeds = [...]; the base config's train.seed without it.
void read_seeds(const SpecReader& r, const toml::table& root, const Config& base_config, SweepSpec& spec) {
  const toml::node* n = root.get("seeds");
  if (!n) {
    spec.seeds.push_back(base_config.train.seed);
    return;
  }
  const toml::array* arr = n->as_array();
  if (!arr || arr->empty()) r.fail(*n, "seeds", "expected a non-empty list of integers");
  for (const auto& item : *arr) {
    if (!item.is_integer() || item.as_integer()->get() < 0) r.fail(item, "seeds", "expected non-negative integers");
    const auto s = static_cast<uint64_t>(item.as_integer()->get());
    if (std::find(spec.seeds.begin(), spec.seeds.end(), s) != spec.seeds.end())
      r.fail(item, "seeds", "seed " + std::to_string(s) + " is listed twice");
    spec.seeds.push_back(s);
  }
}

// [resources] ranks = N
void read_resources(const SpecReader& r, const toml::table& root, SweepSpec& spec) {
  const toml::table* t = optional_table(r, root, "resources", "expected a table");
  if (!t) return;
  for (const auto& [k, v] : *t) {
    check_not_top_level(r, v, "resources", std::string(k.str()));
    if (k.str() != "ranks") r.fail(v, "resources." + std::string(k.str()), "unknown key (known: ranks)");
    if (!v.is_integer() || v.as_integer()->get() < 1 || v.as_integer()->get() > 4096)
      r.fail(v, "resources.ranks", "expected an integer in 1..4096");
    spec.ranks = static_cast<int>(v.as_integer()->get());
  }
}

// [fixed]: key = value set in every run (part of every id).
Overrides read_fixed(const SpecReader& r, const toml::table& root, const SweepSpec& spec) {
  Overrides fixed;
  const toml::table* t = optional_table(r, root, "fixed", "expected a table of key = value");
  if (!t) return fixed;
  for (const auto& [key, located] : read_overrides(r, *t, "fixed", spec.base, {}, /*together=*/true))
    fixed[key] = located.value;
  return fixed;
}

// [grid]: key = [values], each value checked with [fixed] applied. Adds the keys to swept_keys.
GridAxes read_grid(const SpecReader& r, const toml::table& root, const Overrides& fixed, SweepSpec& spec) {
  GridAxes axes;
  const toml::table* t = optional_table(r, root, "grid", "expected a table of key = [values]");
  if (!t) return axes;
  const auto flat = flat_keys(r, *t, "grid");
  if (flat.empty()) r.fail(*t, "grid", "empty (give key = [values], or remove [grid])");
  for (const auto& [key, node] : flat) {
    check_not_top_level(r, *node, "grid", key);
    check_not_scheduling(r, *node, "grid", key);
    const toml::array* arr = node->as_array();
    if (!arr) r.fail(*node, "grid " + key, "expected a list of values, got " + toml_type_name(*node));
    if (arr->empty()) r.fail(*node, "grid " + key, "empty list of values");
    if (key == "train.seed") r.fail(*node, "grid " + key, "set seeds with the top-level 'seeds = [...]'");
    if (fixed.count(key)) r.fail(*node, "grid " + key, "also set in [fixed]");
    std::vector<std::string> values;
    for (const auto& item : *arr) {
      check_text_value(r, item, "grid", key);
      std::string text = canonical_of(item, is_float_key(key));
      if (text.empty()) r.fail(item, "grid " + key, "unsupported value (" + toml_type_name(item) + ")");
      text = canonical_for_key(key, text);  // "/x/train/" and "/x/train" are one value
      if (std::find(values.begin(), values.end(), text) != values.end())
        r.fail(item, "grid " + key, "value " + text + " is listed twice");
      try {
        Overrides applied = fixed;
        applied[key] = text;
        load_config(spec.base, override_args(applied));
      } catch (const ConfigError& e) {
        r.fail(item, "", e.what());
      }
      values.push_back(text);
    }
    axes.emplace_back(key, std::move(values));
    spec.swept_keys.push_back(key);
  }
  return axes;
}

// [[variants]]: explicit override sets, crossed with the grid; a key is set by the grid or the
// variants, not both. Adds their keys to swept_keys.
Variants read_variants(const SpecReader& r, const toml::table& root, const Overrides& fixed, const GridAxes& axes,
                       SweepSpec& spec) {
  Variants variants;
  const toml::node* n = root.get("variants");
  if (!n) return variants;
  const toml::array* arr = n->as_array();
  if (!arr || arr->empty()) r.fail(*n, "variants", "expected [[variants]] tables of key = value");
  for (const auto& item : *arr) {
    const toml::table* t = item.as_table();
    if (!t) r.fail(item, "variants", "expected a table of key = value, got " + toml_type_name(item));
    Overrides v;
    for (const auto& [key, node] : flat_keys(r, *t, "variants")) check_not_scheduling(r, *node, "variants", key);
    for (const auto& [key, located] : read_overrides(r, *t, "variants", spec.base, fixed, /*together=*/true)) {
      for (const auto& axis : axes)
        if (axis.first == key)
          r.fail(located.line, "variants " + key, "already swept by [grid]; a key is set by one of them");
      if (fixed.count(key)) r.fail(located.line, "variants " + key, "also set in [fixed]");
      v[key] = located.value;
      if (std::find(spec.swept_keys.begin(), spec.swept_keys.end(), key) == spec.swept_keys.end())
        spec.swept_keys.push_back(key);
    }
    variants.emplace_back(std::move(v), SpecReader::line_of(item));
  }
  return variants;
}

// Grid points x variants (each variant on top of each grid point), with [fixed] in each; bounded
// first (a few long value lists multiply into millions of runs: parsing would take hours); two
// that come out equal are refused, naming where each came from.
std::vector<Overrides> expand_configurations(const SpecReader& r, const Overrides& fixed, const GridAxes& axes,
                                             const Variants& variants) {
  size_t expanded = std::max<size_t>(variants.size(), 1);
  for (const auto& axis : axes) {
    if (expanded > kMaxConfigurations / std::max<size_t>(axis.second.size(), 1)) {
      r.fail(0, "",
             "grid and variants expand to more than " + std::to_string(kMaxConfigurations) +
                 " configurations; split the sweep");
    }
    expanded *= std::max<size_t>(axis.second.size(), 1);
  }
  std::vector<Overrides> configs;
  std::vector<std::string> origins;
  for (auto point : cartesian(axes)) {
    point.insert(fixed.begin(), fixed.end());
    if (variants.empty()) {
      configs.push_back(point);
      origins.push_back("grid");
      continue;
    }
    for (const auto& [v, line] : variants) {
      Overrides merged = point;
      merged.insert(v.begin(), v.end());
      configs.push_back(std::move(merged));
      origins.push_back("variant at line " + std::to_string(line));
    }
  }
  std::map<Overrides, size_t> first_seen;
  for (size_t i = 0; i < configs.size(); ++i) {
    const auto [it, fresh] = first_seen.emplace(configs[i], i);
    if (!fresh)
      r.fail(0, "",
             "duplicate run: {" + describe(configs[i]) + "} is produced twice (" + origins[it->second] + ", " +
                 origins[i] + ")");
  }
  return configs;
}

// include / exclude: spec.configurations = the configurations the filters keep; a filter that
// matches none of them is refused (a typo would otherwise silently keep or drop nothing).
void apply_filters(const SpecReader& r, const toml::table& root, const std::vector<Overrides>& configs,
                   SweepSpec& spec) {
  std::vector<Filter> include, exclude;
  if (const toml::node* n = root.get("include")) include = read_filters(r, *n, "include", spec.base, spec.swept_keys);
  if (const toml::node* n = root.get("exclude")) exclude = read_filters(r, *n, "exclude", spec.base, spec.swept_keys);
  for (const auto* filters : {&include, &exclude})
    for (const auto& f : *filters)
      if (std::none_of(configs.begin(), configs.end(), [&](const Overrides& c) { return matches(c, f.values); }))
        r.fail(f.line, f.kind, "{" + describe(f.values) + "} matches no run of the grid/variants");
  for (const auto& c : configs) {
    const bool in = include.empty() ||
                    std::any_of(include.begin(), include.end(), [&](const Filter& f) { return matches(c, f.values); });
    const bool out = std::any_of(exclude.begin(), exclude.end(), [&](const Filter& f) { return matches(c, f.values); });
    if (in && !out) spec.configurations.push_back(c);
  }
  if (spec.configurations.empty()) r.fail(0, "", "no runs left after include/exclude");
}

void check_swept(const SpecReader& r, const SweepSpec& spec, const toml::node& node, const std::string& key,
                 const std::string& what) {
  if (std::find(spec.swept_keys.begin(), spec.swept_keys.end(), key) == spec.swept_keys.end())
    r.fail(node, what, "'" + key + "' is not a swept key");
}

// Whether some planned configuration has every key = value of `values`.
bool matches_some_run(const SweepSpec& spec, const Overrides& values) {
  return std::any_of(spec.configurations.begin(), spec.configurations.end(),
                     [&](const Overrides& c) { return matches(c, values); });
}

// [table]: rows, cols, metric, baseline, per_class, order.
void read_table_hints(const SpecReader& r, const toml::table& root, SweepSpec& spec) {
  const toml::table* t = optional_table(r, root, "table", "expected a table");
  if (!t) return;
  for (const auto& [k, v] : *t) {
    const std::string key = "table." + std::string(k.str());
    if (k.str() == "rows" || k.str() == "cols") {
      auto keys = string_list(r, v, key);
      for (const auto& s : keys) check_swept(r, spec, v, s, key);
      (k.str() == "rows" ? spec.table.rows : spec.table.cols) = keys;
    } else if (k.str() == "metric") {
      if (!v.is_string()) r.fail(v, key, "expected a string (e.g. \"mIoU\")");
      spec.table.metric = v.as_string()->get();
      spec.table.metric_origin = r.origin() + ":" + std::to_string(SpecReader::line_of(v)) + ": [table] metric";
    } else if (k.str() == "per_class") {
      spec.table.per_class = string_list(r, v, key);
      spec.table.per_class_origin = r.origin() + ":" + std::to_string(SpecReader::line_of(v)) + ": [table] per_class";
    } else if (k.str() == "order") {
      if (!v.is_string() || (v.as_string()->get() != "value" && v.as_string()->get() != "spec"))
        r.fail(v, key, "expected \"value\" (sorted) or \"spec\" (the order the spec lists them)");
      spec.table.order = v.as_string()->get();
    } else if (k.str() == "baseline") {
      const toml::table* b = v.as_table();
      if (!b || b->empty()) r.fail(v, key, "expected a table of key = value");
      for (const auto& [bk, located] : read_overrides(r, *b, key, spec.base)) {
        check_swept(r, spec, v, bk, key);
        spec.table.baseline[bk] = located.value;
      }
      if (!matches_some_run(spec, spec.table.baseline))
        r.fail(v, key, "{" + describe(spec.table.baseline) + "} matches no run");
    } else {
      check_not_top_level(r, v, "table", std::string(k.str()));
      r.fail(v, key, "unknown key (known: rows, cols, metric, baseline, per_class, order)");
    }
  }
}

// One [paper] values entry: keys with a dot are swept config keys, the others metrics (mIoU,
// mIoU_ms, ...); it needs the table's metric and must match a run.
PaperValue read_paper_value(const SpecReader& r, const toml::node& entry, const std::string& key,
                            const SweepSpec& spec) {
  const std::string shape = "{ <swept key> = value, ..., <metric> = number }";
  const toml::table* e = entry.as_table();
  if (!e) r.fail(entry, key, "expected a table " + shape);
  PaperValue paper;
  toml::table keys;
  for (const auto& [ek, ev] : *e) {
    const std::string name(ek.str());
    if (name.find('.') != std::string::npos) {
      keys.insert(ek, ev);
    } else if (ev.is_integer() || ev.is_floating_point()) {
      paper.values[name] =
          ev.is_integer() ? static_cast<double>(ev.as_integer()->get()) : ev.as_floating_point()->get();
    } else {
      r.fail(ev, key + " " + name, "a metric's value must be a number");
    }
  }
  if (!paper.values.count(spec.table.metric))
    r.fail(entry, key, "each entry needs the table metric: " + spec.table.metric + " = number");
  for (const auto& [pk, located] : read_overrides(r, keys, key, spec.base)) {
    check_swept(r, spec, entry, pk, key);
    paper.config[pk] = located.value;
  }
  if (!matches_some_run(spec, paper.config)) r.fail(entry, key, "{" + describe(paper.config) + "} matches no run");
  return paper;
}

// [paper]: source = "...", values = [{ <swept key> = <value>, ..., <metric> = <number> }, ...]
void read_paper(const SpecReader& r, const toml::table& root, SweepSpec& spec) {
  const toml::table* t = optional_table(r, root, "paper", "expected a table (source, values)");
  if (!t) return;
  for (const auto& [k, v] : *t) {
    const std::string key = "paper." + std::string(k.str());
    if (k.str() == "source") {
      if (!v.is_string()) r.fail(v, key, "expected a string (the paper's table and rows)");
      spec.table.paper_source = v.as_string()->get();
    } else if (k.str() == "values") {
      const toml::array* entries = v.as_array();
      if (!entries) r.fail(v, key, "expected an array of tables { <swept key> = value, ..., <metric> = number }");
      for (const auto& entry : *entries) spec.table.paper.push_back(read_paper_value(r, entry, key, spec));
    } else {
      check_not_top_level(r, v, "paper", std::string(k.str()));
      r.fail(v, key, "unknown key (known: source, values)");
    }
  }
}

}  // namespace

std::vector<std::string> PlannedRun::train_args() const {
  std::vector<std::string> args = override_args(overrides);
  args.push_back("train.seed=" + std::to_string(seed));
  return args;
}

SweepSpec parse_sweep_spec(const std::string& toml_text, const std::string& origin, const std::string& origin_dir) {
  const SpecReader r(origin, fs::path(origin_dir));
  const toml::table root = parse_root(r, toml_text);
  SweepSpec spec;
  spec.path = origin;
  const Config base_config = read_identity(r, root, spec);
  read_seeds(r, root, base_config, spec);
  read_resources(r, root, spec);
  const Overrides fixed = read_fixed(r, root, spec);
  const GridAxes axes = read_grid(r, root, fixed, spec);
  const Variants variants = read_variants(r, root, fixed, axes, spec);
  apply_filters(r, root, expand_configurations(r, fixed, axes, variants), spec);
  read_table_hints(r, root, spec);  // after the filters: a baseline must match a planned run
  read_paper(r, root, spec);        // after [table]: an entry needs the table's metric
  return spec;
}

SweepSpec load_sweep_spec(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec))
    throw ConfigError(path + ": is a folder; a sweep spec is a TOML file (e.g. configs/sweeps/example.toml)");
  if (fs::exists(path, ec) && !fs::is_regular_file(path, ec))
    throw ConfigError(path + ": not a regular file; a sweep spec is a TOML file");
  if (!fs::is_regular_file(path, ec)) throw ConfigError(path + ": sweep spec not found");
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  if (!in && !in.eof()) throw ConfigError(path + ": cannot read the sweep spec");
  return parse_sweep_spec(text.str(), path, fs::absolute(path).parent_path().string());
}

std::vector<PlannedRun> expand_sweep(const SweepSpec& spec) {
  std::vector<PlannedRun> runs;
  // The slugs name what varies; [fixed] keys are in every run.
  const std::vector<std::string> slugs = configuration_slugs(spec.configurations, spec.swept_keys);
  for (size_t c = 0; c < spec.configurations.size(); ++c) {
    const Overrides& config = spec.configurations[c];
    for (uint64_t seed : spec.seeds) {
      PlannedRun run;
      run.overrides = config;
      run.seed = seed;
      run.id = run_id(config, seed);
      run.dir_name = run.id + "-" + run_slug(slugs[c], seed);
      try {
        Config config = load_config(spec.base, run.train_args());
        run.iters = config.train.iters;
        run.fingerprint = hash_hex(fingerprint_text(config));
      } catch (const ConfigError& e) {
        throw ConfigError(spec.path + ": run {" + describe(config) + "}: " + e.what());
      }
      runs.push_back(std::move(run));
    }
  }
  for (size_t i = 0; i < runs.size(); ++i)
    for (size_t j = 0; j < i; ++j)
      if (runs[i].id == runs[j].id)
        throw ConfigError(spec.path + ": run ids collide for {" + describe(runs[i].overrides) + "} and {" +
                          describe(runs[j].overrides) + "}");
  return runs;
}

}  // namespace segrun::sweeps
