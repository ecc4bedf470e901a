#include "sweeps/results.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <map>
#include <optional>
#include <set>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/format.h"
#include "core/spelling.h"

namespace segrun::sweeps {
namespace {

using Json = nlohmann::ordered_json;

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// Text with its runs of digits compared as numbers: "clip_rn50" < "clip_rn101", "[64, 64]" <
// "[128, 64]". Ties (equal up to leading zeros) fall back to plain text order.
bool natural_less(const std::string& a, const std::string& b) {
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    if (!is_digit(a[i]) || !is_digit(b[j])) {
      if (a[i] != b[j]) return a[i] < b[j];
      ++i, ++j;
      continue;
    }
    size_t i_end = i, j_end = j;
    while (i_end < a.size() && is_digit(a[i_end])) ++i_end;
    while (j_end < b.size() && is_digit(b[j_end])) ++j_end;
    while (i + 1 < i_end && a[i] == '0') ++i;  // leading zeros
    while (j + 1 < j_end && b[j] == '0') ++j;
    if (i_end - i != j_end - j) return i_end - i < j_end - j;  // fewer digits: smaller
    const int c = a.compare(i, i_end - i, b, j, j_end - j);
    if (c != 0) return c < 0;
    i = i_end, j = j_end;
  }
  if ((i < a.size()) != (j < b.size())) return j < b.size();  // a prefix first
  return a < b;
}

// Numbers by value, then strings (their numbers by value too); an absent key ("") first.
bool value_less(const std::string& a, const std::string& b) {
  if (a.empty() != b.empty()) return a.empty();
  double x = 0, y = 0;
  const bool na = parse_number(a, x), nb = parse_number(b, y);
  if (na && nb && x != y) return x < y;
  if (na != nb) return na;
  return natural_less(a, b);
}

Overrides project(const Overrides& config, const std::vector<std::string>& keys) {
  Overrides out;
  for (const auto& k : keys) {
    auto it = config.find(k);
    out[k] = it == config.end() ? "" : it->second;
  }
  return out;
}

bool projection_less(const Overrides& a, const Overrides& b, const std::vector<std::string>& keys) {
  for (const auto& k : keys) {
    const std::string& x = a.at(k);
    const std::string& y = b.at(k);
    if (x != y) return value_less(x, y);
  }
  return false;
}

std::string label_of(const Overrides& projection, const std::vector<std::string>& keys) {
  std::vector<std::string> parts;
  for (const auto& k : keys) {
    const std::string& v = projection.at(k);
    parts.push_back(v.empty() ? "-" : display_value(v));
  }
  return join(parts, ", ");
}

std::string col_label(const Overrides& projection, const std::vector<std::string>& keys) {
  std::vector<std::string> parts;
  for (const auto& k : keys) {
    const std::string& v = projection.at(k);
    parts.push_back(k + "=" + (v.empty() ? "-" : display_value(v)));
  }
  return join(parts, ", ");
}

// The override keys of the runs, split into those that vary between them and those every run
// sets alike (a spec's [fixed] keys).
struct RunKeys {
  std::set<std::string> all;
  std::vector<std::string> swept;
  std::vector<std::string> fixed;
};

RunKeys keys_of(const std::vector<RunRecord>& runs) {
  std::map<std::string, std::set<std::string>> values;
  for (const auto& r : runs)
    for (const auto& [k, v] : r.overrides) values[k].insert(v);
  RunKeys keys;
  for (const auto& [k, vs] : values) {
    keys.all.insert(k);
    const bool in_every_run =
        std::all_of(runs.begin(), runs.end(), [&k = k](const RunRecord& r) { return r.overrides.count(k) > 0; });
    (vs.size() == 1 && in_every_run ? keys.fixed : keys.swept).push_back(k);
  }
  return keys;
}

void check_keys(const std::vector<std::string>& keys, const RunKeys& known, const std::string& what) {
  for (const auto& k : keys) {
    if (known.all.count(k)) continue;
    std::string listed = "swept: " + (known.swept.empty() ? std::string("none") : join(known.swept, ", "));
    if (!known.fixed.empty()) listed += "; the same in every run: " + join(known.fixed, ", ");
    throw ConfigError(what + " " + k + ": not a swept key of these runs (" + listed + ")");
  }
}

std::string fmt(double v, int decimals) { return format_number(v, decimals, "-"); }

std::string fmt_delta(double v, int decimals) {
  if (std::isnan(v)) return "-";
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%+.*f", decimals, v);
  return buf;
}

// A CSV number: v to 6 decimals, written as short as reads back the same ("42.4", "0.707107",
// not "0.14999999999999858"); empty where v is not finite.
std::string csv_number(double v) {
  if (!std::isfinite(v)) return "";
  const double rounded = std::round(v * 1e6) / 1e6;
  char buf[64];
  const auto end = std::to_chars(buf, buf + sizeof(buf), rounded == 0.0 ? 0.0 : rounded).ptr;
  return std::string(buf, end);
}

// A configuration's value of each key, one CSV cell each (empty where it has none).
std::vector<std::string> csv_key_cells(const Overrides& config, const std::vector<std::string>& keys) {
  std::vector<std::string> cells;
  for (const auto& k : keys) {
    const auto it = config.find(k);
    cells.push_back(it == config.end() || it->second.empty() ? "" : display_value(it->second));
  }
  return cells;
}

// The keys that tell a grid's configurations apart, in a table of a column per key: the row keys,
// then the column keys; for one configuration that --where picked, the keys it was picked by.
std::vector<std::string> shown_keys(const ResultGrid& g) {
  std::vector<std::string> keys = g.row_keys;
  keys.insert(keys.end(), g.col_keys.begin(), g.col_keys.end());
  if (keys.empty() && g.cells.size() == 1) keys = g.where_keys;
  return keys;
}

// The result grid as a tidy CSV for pandas and spreadsheets: one line per cell, a column per
// shown key, then numbers only (mean, std, n, paper, delta) and 0/1 flags; no footnotes.
std::string result_grid_csv(const ResultGrid& g) {
  const std::vector<std::string> keys = shown_keys(g);
  std::vector<std::string> header = keys;
  header.insert(header.end(), {g.metric, "std", "n"});
  if (g.has_paper) header.push_back("paper");
  if (!g.baseline.empty()) header.insert(header.end(), {"delta", "baseline", "within_spread"});
  header.push_back("best");
  std::vector<std::vector<std::string>> rows;
  for (const auto& c : g.cells) {
    std::vector<std::string> row = csv_key_cells(c.config, keys);
    row.insert(row.end(), {csv_number(c.mean), csv_number(c.std), std::to_string(c.values.size())});
    if (g.has_paper) row.push_back(csv_number(c.paper));
    if (!g.baseline.empty())
      row.insert(row.end(), {csv_number(c.delta), c.is_baseline ? "1" : "0", c.within_spread ? "1" : "0"});
    row.push_back(c.best ? "1" : "0");
    rows.push_back(row);
  }
  return format_table(header, rows, TableFormat::kCsv);
}

struct CellText {
  std::string value;
  std::string delta;
  std::string paper;  // empty without a paper value
};

CellText cell_text(const ResultCell& c, const ResultGrid& g, bool show_n) {
  CellText t;
  t.value = fmt(c.mean, g.decimals);
  if (!std::isnan(c.paper)) t.paper = fmt(c.paper, g.decimals);
  if (c.values.size() >= 2) t.value += " \xC2\xB1 " + fmt(c.std, g.decimals);
  if (show_n) t.value += " (n=" + std::to_string(c.values.size()) + ")";
  if (!g.baseline.empty()) {
    if (c.is_baseline)
      t.delta = "baseline";
    else
      t.delta = fmt_delta(c.delta, g.decimals) + (c.within_spread ? "~" : "");
  }
  return t;
}

std::string row_header(const ResultGrid& g) { return g.row_keys.empty() ? "configuration" : join(g.row_keys, ", "); }

std::string row_label(const ResultGrid& g, size_t r) {
  if (!g.row_keys.empty()) return label_of(g.row_values[r], g.row_keys);
  // One configuration left (--where picked it): named by the keys --where picked it by, not
  // "(all runs)" of a sweep of several.
  if (g.col_keys.empty() && g.cells.size() == 1 && !g.where_keys.empty())
    return describe(project(g.cells.front().config, g.where_keys));
  return "(all runs)";
}

// "2 run(s) repeating a configuration and seed already counted were left out: runs/a (seed 0;
// runs/b counts), ..."
std::string repeated_runs_note(const std::vector<RepeatedRun>& repeated) {
  std::vector<std::string> listed;
  for (const RepeatedRun& r : repeated)
    listed.push_back(r.dir + " (seed " + std::to_string(r.seed) + "; " + r.counted + " counts)");
  return std::to_string(repeated.size()) +
         " run(s) repeating a configuration and seed already counted were left out (of such runs the one whose "
         "result.json was written last counts): " +
         join(listed, ", ") + ".";
}

// Whether cells say how many runs they average ("(n=2)"): when some cell has several, or when some
// runs were left out for a null value (then n differs from the seeds a configuration has).
bool shows_n(const ResultGrid& g) {
  return g.runs_without_value > 0 ||
         std::any_of(g.cells.begin(), g.cells.end(), [](const ResultCell& c) { return c.values.size() >= 2; });
}

std::vector<std::string> footnotes(const ResultGrid& g, TableFormat fmt) {
  std::vector<std::string> notes;
  if (shows_n(g)) notes.push_back("mean \xC2\xB1 sample std over n seeds.");
  if (!g.baseline.empty())
    notes.push_back("\xCE\x94: " + g.metric + " minus that of the baseline (" + describe(g.baseline) +
                    (g.baseline_unpaired ? ")." : ") with the other keys equal."));
  if (std::any_of(g.cells.begin(), g.cells.end(), [](const ResultCell& c) { return c.within_spread; }))
    notes.push_back(
        "~: |\xCE\x94| is smaller than the seed-to-seed std of the two configurations "
        "(not distinguishable from noise).");
  if (fmt == TableFormat::kText) notes.push_back("*: best " + g.metric + ".");
  if (!g.baseline_left_out.empty())
    notes.push_back("No \xCE\x94: " + g.baseline_left_out + " is not among the runs --where keeps.");
  if (g.cells_without_baseline > 0)
    notes.push_back(std::to_string(g.cells_without_baseline) +
                    " configuration(s) have no \xCE\x94: the baseline with their other keys has no result (yet).");
  if (g.runs_not_done > g.done_without_result)
    notes.push_back(std::to_string(g.runs_not_done - g.done_without_result) + " run(s) not done were left out.");
  if (g.runs_without_value > 0)
    notes.push_back(std::to_string(g.runs_without_value) + " done run(s) have a null " + g.metric +
                    " in result.json (a class in neither their validation ground truth nor their predictions has "
                    "no IoU) and were left out (the first: " +
                    g.first_without_value + ").");
  if (g.done_without_result > g.unreadable_results)
    notes.push_back(
        std::to_string(g.done_without_result - g.unreadable_results) +
        " run(s) marked done have no result.json and were left out (the first: " + g.first_done_without_result +
        "): restore the file, or evaluate the run again with segrun train RUN --resume auto on the run's ranks (segrun "
        "sweep run does it for a sweep).");
  if (g.unreadable_results > 0)
    notes.push_back(std::to_string(g.unreadable_results) +
                    " run(s) marked done have an unreadable result.json and were left out (the first: " +
                    g.first_unreadable_result +
                    "): evaluate the run again with segrun train RUN --resume auto on the run's ranks (it sets the "
                    "file aside; segrun sweep run does it for a sweep).");
  if (!g.repeated_runs.empty()) notes.push_back(repeated_runs_note(g.repeated_runs));
  if (g.runs_of_older_config > 0)
    notes.push_back(std::to_string(g.runs_of_older_config) +
                    " run(s) were trained under an earlier base config (the first: " + g.older_config_change +
                    "); their figures are not the sweep's as it now stands: delete their folders and run the sweep "
                    "again to redo them (`segrun sweep plan` lists them).");
  if (!g.mixed_global_batches.empty()) {
    std::vector<std::string> counts;
    for (const auto& [batch, runs] : g.mixed_global_batches)
      counts.push_back(std::to_string(batch) + " (" + std::to_string(runs) + (runs == 1 ? " run)" : " runs)"));
    notes.push_back("the runs were trained at different global batches: " + join(counts, ", ") +
                    " (batch_per_rank x ranks x train.accumulate); their differences are not the swept keys' alone.");
  }
  if (!g.co_varying_keys.empty()) {
    std::vector<std::string> shown = g.row_keys;
    shown.insert(shown.end(), g.col_keys.begin(), g.col_keys.end());
    notes.push_back("the configurations also differ in " + join(g.co_varying_keys, ", ") + ", which follow" +
                    (g.co_varying_keys.size() == 1 ? "s" : "") + " from " + join(shown, ", ") +
                    ": a difference is not theirs alone (--format json lists every key).");
  }
  if (g.has_paper)
    notes.push_back("paper: the value the paper reports" +
                    (g.paper_source.empty() ? std::string(".") : " (" + g.paper_source + ")."));
  return notes;
}

std::string with_footnotes(std::string table, const std::vector<std::string>& notes, TableFormat fmt) {
  if (notes.empty() || fmt == TableFormat::kCsv) return table;
  if (fmt == TableFormat::kHtml) {
    table += "<ul class=\"notes\">\n";
    for (const auto& n : notes) table += "<li>" + escape_html(n) + "</li>\n";
    return table + "</ul>\n";
  }
  if (fmt != TableFormat::kLatex) table += "\n";
  for (const auto& n : notes) {
    if (fmt == TableFormat::kMarkdown)
      table += "- " + n + "\n";
    else if (fmt == TableFormat::kLatex)
      table += "% " + n + "\n";
    else
      table += n + "\n";
  }
  return table;
}

Json json_config(const Overrides& config) {
  Json j = Json::object();
  for (const auto& [k, v] : config) {
    const std::string d = display_value(v);
    double x = 0;
    const bool integer = !v.empty() && v.size() < 19 && v.find_first_not_of("-0123456789") == std::string::npos &&
                         v.find('-', 1) == std::string::npos && v != "-";
    if (v == "true" || v == "false")
      j[k] = v == "true";
    else if (integer)  // canonical integers (train.iters) stay integers: 30, not 30.0
      j[k] = std::stoll(v);
    else if (!v.empty() && v.front() != '"' && v.front() != '[' && parse_number(v, x))
      j[k] = x;
    else if (!v.empty() && v.front() == '[' && Json::accept(v))
      j[k] = Json::parse(v);  // a canonical TOML array of numbers or strings is JSON too: [512, 512]
    else
      j[k] = d;
  }
  return j;
}

// "--where k=v (k has a, b)" for each filter key: what the runs hold instead.
std::string where_text(const ValueFilter& where, const std::vector<RunRecord>& runs) {
  std::string out;
  for (const auto& [key, accepted] : where) {
    std::vector<std::string> wanted;
    for (const auto& v : accepted) wanted.push_back(display_value(v));
    std::set<std::string> held;
    for (const auto& r : runs) {
      const auto it = r.overrides.find(key);
      held.insert(it == r.overrides.end() ? "-" : display_value(it->second));
    }
    std::vector<std::string> values(held.begin(), held.end());
    out += std::string(out.empty() ? "" : ", ") + "--where " + key + "=" + join(wanted, "|") + " (" + key + " has " +
           join(values, ", ") + ")";
  }
  return out;
}

Json number_or_null(double v) { return std::isfinite(v) ? Json(v) : Json(); }

// Whether result.json has `metric` as a number or as a per_class entry (a class whose IoU is
// null, absent from that run's ground truth and predictions, is skipped as before, not refused).
bool has_metric_key(const RunRecord& run, const std::string& metric) {
  return run.result.count(metric) || run.per_class.count(metric);
}

// The metrics a run's result.json gives --metric: its numeric fields and its classes' IoUs.
std::vector<std::string> metric_names(const RunRecord& run) {
  std::vector<std::string> names;
  for (const auto& entry : run.result) names.push_back(entry.first);
  for (const auto& entry : run.per_class) names.push_back(entry.first);
  return names;
}

// A metric field that result.json has but not as a number ("n/a" written by hand): its text.
std::optional<std::string> non_numeric_field(const std::string& dir, const std::string& metric) {
  try {
    const Json j = Json::parse(read_file(RunFolder(dir).result_path()));
    for (const Json* object : {&j, j.contains("per_class") ? &j["per_class"] : nullptr})
      if (object && object->is_object() && object->contains(metric) && !(*object)[metric].is_number() &&
          !(*object)[metric].is_null()) {
        const Json& value = (*object)[metric];
        if (value.is_object()) return std::string("an object");  // --metric per_class
        if (value.is_array()) return std::string("an array");
        const std::string text = value.dump();
        return text.size() <= 60 ? text : text.substr(0, 57) + "...";
      }
  } catch (const std::exception&) {  // read before: it was a JSON object
  }
  return std::nullopt;
}

// How to get a metric that only some runs record (best_<metric>, <metric>_ms) into a run that lacks it.
std::string missing_metric_hint(const std::string& dir, const std::string& metric) {
  const std::string best = "best_";
  if (metric.compare(0, best.size(), best) == 0 && metric != "best_iter")
    return "; train it with train.save_best = \"" + metric.substr(best.size()) + "\"";
  const std::string suffix = "_ms";
  if (metric.size() <= suffix.size() || metric.compare(metric.size() - suffix.size(), suffix.size(), suffix) != 0)
    return "";
  return "; evaluate it with `segrun eval " + dir + " --ms` (or train with eval.report_ms = true)";
}

// "<dir> has no 'mIoU' in result.json" with the hint above, or, for a value that is not a
// number, "<dir>: 'mIoU' in result.json is \"n/a\", not a number".
std::string lacks_metric(const std::string& dir, const std::string& metric) {
  if (const auto text = non_numeric_field(dir, metric))
    return dir + ": '" + metric + "' in result.json is " + *text + ", not a number";
  return dir + " has no '" + metric + "' in result.json" + missing_metric_hint(dir, metric);
}

// The steps of build_result_grid, in order; each fills its part of `g`.

// The done runs with the metric that `options.where` selects, grouped by configuration (of runs
// repeating a configuration and seed, the newest counts). Throws when there is nothing to
// tabulate, or when some done runs lack the metric altogether.
std::map<Overrides, ResultCell> collect_cells(const std::vector<RunRecord>& runs, const ResultTableOptions& options,
                                              ResultGrid& g) {
  std::vector<const RunRecord*> finished;
  std::map<std::pair<Overrides, uint64_t>, const RunRecord*> newest;
  int without_metric = 0;
  const RunRecord* first_without = nullptr;  // a done run lacking the metric (absent key, not a null value)
  size_t where_matched = 0;
  for (const auto& r : runs) {
    if (!matches(r.overrides, options.where)) continue;
    ++where_matched;
    if (r.state == RunState::kDone && !r.has_result) {
      ++g.done_without_result;
      if (!r.result_error.empty()) {
        if (g.unreadable_results++ == 0) g.first_unreadable_result = r.result_error;
      } else if (g.first_done_without_result.empty()) {
        g.first_done_without_result = r.dir;
      }
    }
    if (!r.finished()) {
      ++g.runs_not_done;
      continue;
    }
    finished.push_back(&r);
    const RunRecord*& kept = newest[{r.overrides, r.seed}];
    if (!kept || std::make_pair(r.result_written_ns, r.dir) > std::make_pair(kept->result_written_ns, kept->dir))
      kept = &r;
  }
  // Of runs repeating a configuration and seed the newest counts, even when its metric is null
  // (an older repeat's value, or null, is not that of the run as it now stands).
  std::map<Overrides, ResultCell> by_config;
  for (const RunRecord* run : finished) {
    const RunRecord* kept = newest.at({run->overrides, run->seed});
    if (kept != run) {
      g.repeated_runs.push_back({run->dir, run->seed, kept->dir});
      continue;
    }
    const double v = run_metric(*run, options.metric);
    if (std::isnan(v)) {
      ++without_metric;
      if (!first_without && !has_metric_key(*run, options.metric)) first_without = run;
      if (has_metric_key(*run, options.metric) && g.runs_without_value++ == 0) g.first_without_value = run->dir;
      continue;
    }
    if (!run->config_change.empty() && g.runs_of_older_config++ == 0) g.older_config_change = run->config_change;
    const auto global_batch = run->result.find(kGlobalBatchKey);
    if (global_batch != run->result.end()) ++g.mixed_global_batches[static_cast<int64_t>(global_batch->second)];
    ResultCell& c = by_config[run->overrides];
    c.config = run->overrides;
    c.seeds.push_back(run->seed);
    c.values.push_back(v);
    c.runs.push_back(run->dir);
  }
  // A metric only some runs have (mIoU_ms of runs evaluated with --ms) would silently drop the
  // others from the table: name the first such run instead.
  if (!by_config.empty() && first_without)
    throw DataError("table: run " + lacks_metric(first_without->dir, options.metric));
  if (by_config.empty() && where_matched == 0 && !runs.empty())
    throw ConfigError("table: nothing to tabulate: no run matches " + where_text(options.where, runs));
  if (by_config.empty()) {
    std::string why =
        without_metric > 0 && g.runs_without_value == without_metric
            ? std::to_string(without_metric) + " done run(s) have a null '" + options.metric +
                  "' in result.json (a class in neither their validation ground truth nor their predictions has "
                  "no IoU)"
        : without_metric > 0
            ? std::to_string(without_metric) + " done run(s) have no '" + options.metric + "' in result.json"
        : g.unreadable_results > 0
            ? "no run is done with a readable result.json (" + std::to_string(g.done_without_result) +
                  " marked done have no readable one; the first unreadable: " + g.first_unreadable_result + ")"
        : g.done_without_result > 0 ? "no run is done with a result.json (" + std::to_string(g.done_without_result) +
                                          " marked done have none, the first: " + g.first_done_without_result + ")"
                                    : "no run is done";
    if (first_without) {
      // No run has it, and a run has a metric of a name this close: a typo (--metric miou).
      const std::string meant = likely_meant(options.metric, metric_names(*first_without));
      if (!meant.empty())
        throw ConfigError("table: " + options.metric_origin + " " + options.metric +
                          ": no done run has it in result.json (e.g. " + first_without->dir + "); did you mean '" +
                          meant + "'?");
      why += " (e.g. " + lacks_metric(first_without->dir, options.metric) + ")";
    }
    throw DataError("table: nothing to tabulate: " + why +
                    (g.runs_not_done > g.done_without_result
                         ? " (" + std::to_string(g.runs_not_done - g.done_without_result) + " not done)"
                         : ""));
  }

  return by_config;
}

// The row keys: options.rows, plus each varying key the row and column keys leave open.
void choose_row_keys(const std::map<Overrides, ResultCell>& by_config, const RunKeys& swept,
                     const ResultTableOptions& options, ResultGrid& g) {
  // Keys that vary across the configurations; the rest are constant and not shown.
  std::set<std::string> varying;
  for (const auto& k : swept.all) {
    std::set<std::string> values;
    for (const auto& [config, cell] : by_config) {
      auto it = config.find(k);
      values.insert(it == config.end() ? "" : it->second);
    }
    if (values.size() > 1) varying.insert(k);
  }
  // A varying key the row and column keys leave open joins the row label, so that distinct
  // configurations never share a cell; one that follows from them (a variant's weights file next
  // to its model.backbone) would only repeat what the label already says, but for data.val_store.
  g.row_keys = options.rows;
  g.col_keys = options.cols;
  for (const auto& k : varying) {
    if (std::find(g.row_keys.begin(), g.row_keys.end(), k) != g.row_keys.end() ||
        std::find(g.col_keys.begin(), g.col_keys.end(), k) != g.col_keys.end())
      continue;
    // Whether the value of k follows from the values of `keys` across the configurations.
    const auto follows_from = [&](const std::vector<std::string>& keys) {
      std::map<Overrides, std::string> value_of_k;
      for (const auto& [config, cell] : by_config) {
        auto it = config.find(k);
        const std::string value = it == config.end() ? "" : it->second;
        auto [seen, inserted] = value_of_k.emplace(project(config, keys), value);
        if (!inserted && seen->second != value) return false;
      }
      return true;
    };
    std::vector<std::string> shown = g.row_keys;
    shown.insert(shown.end(), g.col_keys.begin(), g.col_keys.end());
    // The validation set labels the rows whenever the columns do not separate it: numbers scored
    // on different sets (ADE20K and Cityscapes runs in one folder) are not comparable, whatever
    // else labels their rows.
    if (!follows_from(shown) || (k == "data.val_store" && !follows_from(g.col_keys)))
      g.row_keys.push_back(k);
    else if (options.note_co_varying)
      g.co_varying_keys.push_back(k);
  }
}

// The row and column values, in table order.
void order_rows_and_cols(const std::map<Overrides, ResultCell>& by_config, const ResultTableOptions& options,
                         ResultGrid& g) {
  std::vector<Overrides> rows, cols;
  for (const auto& [config, cell] : by_config) {
    Overrides r = project(config, g.row_keys), c = project(config, g.col_keys);
    if (std::find(rows.begin(), rows.end(), r) == rows.end()) rows.push_back(r);
    if (std::find(cols.begin(), cols.end(), c) == cols.end()) cols.push_back(c);
  }
  // Rank of a row value: its first occurrence in options.order (unlisted values last). Columns
  // stay sorted by value (numbers in ascending order, whatever the spec's exclusions leave first).
  auto listed_rank = [&](const Overrides& row) {
    for (size_t i = 0; i < options.order.size(); ++i)
      if (project(options.order[i], g.row_keys) == row) return i;
    return options.order.size();
  };
  std::sort(rows.begin(), rows.end(), [&](const Overrides& a, const Overrides& b) {
    const size_t ra = listed_rank(a), rb = listed_rank(b);
    return ra != rb ? ra < rb : projection_less(a, b, g.row_keys);
  });
  std::sort(cols.begin(), cols.end(),
            [&](const Overrides& a, const Overrides& b) { return projection_less(a, b, g.col_keys); });
  g.row_values = rows;
  g.col_values = cols;
}

// Each cell's mean, sample std, place in the table and paper value.
void summarize_cells(std::map<Overrides, ResultCell>& by_config, const ResultTableOptions& options, ResultGrid& g) {
  const std::vector<Overrides>& rows = g.row_values;
  const std::vector<Overrides>& cols = g.col_values;
  for (auto& [config, cell] : by_config) {
    const size_t n = cell.values.size();
    double sum = 0;
    for (double v : cell.values) sum += v;
    cell.mean = sum / static_cast<double>(n);
    if (n >= 2) {
      double ss = 0;
      for (double v : cell.values) ss += (v - cell.mean) * (v - cell.mean);
      cell.std = std::sqrt(ss / static_cast<double>(n - 1));
    } else {
      cell.std = std::nan("");
    }
    cell.row = static_cast<size_t>(std::find(rows.begin(), rows.end(), project(config, g.row_keys)) - rows.begin());
    cell.col = static_cast<size_t>(std::find(cols.begin(), cols.end(), project(config, g.col_keys)) - cols.begin());
    cell.delta = std::nan("");
    cell.paper = std::nan("");
    for (const PaperValue& p : options.paper) {
      if (!matches(config, p.config)) continue;
      auto value = p.values.find(options.metric);  // the paper may not report this metric
      if (value != p.values.end()) {
        cell.paper = value->second;
        g.has_paper = true;
      }
      break;
    }
  }
}

// Each cell's delta against its baseline configuration. `runs`: all the table's runs (a
// configuration they hold that has no cell is one without a result: not done, failed).
void apply_baseline(std::map<Overrides, ResultCell>& by_config, const std::vector<RunRecord>& runs,
                    const ResultTableOptions& options, ResultGrid& g) {
  if (options.baseline.empty()) return;
  // The delta of a configuration is taken against the baseline configuration that differs
  // from it only in the baseline keys; when there is none and the baseline is a single
  // configuration (a paper's "Baseline" row, e.g. model.head = fpn), against that one -- unless
  // the runs hold a baseline configuration of its own that has no result (not done, failed):
  // then it has no delta, since one against the baseline at another learning rate, say, would
  // be a wrong number. A configuration without one of the baseline keys (a ResNet row without
  // the ViT's drop path) is a baseline when it has the baseline's values of the keys it has (at
  // least one).
  const auto is_baseline = [&](const Overrides& config) {
    bool has_key = false;
    for (const auto& [k, v] : options.baseline) {
      const auto it = config.find(k);
      if (it == config.end()) continue;
      if (it->second != v) return false;
      has_key = true;
    }
    return has_key;
  };
  const auto other_keys = [&](Overrides config) {
    for (const auto& [k, v] : options.baseline) config.erase(k);
    return config;
  };
  std::map<Overrides, const ResultCell*> baseline_by_other_keys;
  for (const auto& [config, cell] : by_config)
    if (is_baseline(config)) {
      const ResultCell*& kept = baseline_by_other_keys[other_keys(config)];
      if (!kept || matches(config, options.baseline)) kept = &cell;  // the one with every key wins
    }
  std::set<Overrides> baseline_without_result;  // other keys of baseline configurations without a result
  for (const RunRecord& run : runs)
    if (matches(run.overrides, options.where) && is_baseline(run.overrides) && !by_config.count(run.overrides))
      baseline_without_result.insert(other_keys(run.overrides));
  bool any = false;
  for (auto& [config, cell] : by_config) {
    if (is_baseline(config)) {
      cell.is_baseline = true;
      cell.delta = 0.0;
      any = true;
      continue;
    }
    const Overrides others = other_keys(config);
    auto it = baseline_by_other_keys.find(others);
    // A baseline run without a result may lack keys the trained runs have (one not trained yet has
    // no config.toml to read them from: report.cpp's add_keys_the_base_changed): it is this
    // configuration's baseline when the keys it has agree.
    const bool own_baseline_pending =
        std::any_of(baseline_without_result.begin(), baseline_without_result.end(), [&](const Overrides& pending) {
          return std::all_of(pending.begin(), pending.end(), [&](const auto& entry) {
            const auto mine = others.find(entry.first);
            return mine != others.end() && mine->second == entry.second;
          });
        });
    if (it == baseline_by_other_keys.end() && own_baseline_pending) {
      ++g.cells_without_baseline;
      continue;
    }
    if (it == baseline_by_other_keys.end() && baseline_by_other_keys.size() == 1) {
      it = baseline_by_other_keys.begin();
      g.baseline_unpaired = true;
    }
    if (it == baseline_by_other_keys.end()) continue;
    const ResultCell& reference = *it->second;
    cell.delta = cell.mean - reference.mean;
    if (cell.values.size() >= 2 && reference.values.size() >= 2)
      cell.within_spread = std::fabs(cell.delta) < std::max(cell.std, reference.std);
  }
  // A spec's [table] baseline that --where left out: the table without deltas, saying why (an
  // error is for a baseline the user gave).
  if (!any && !options.where.empty() && options.baseline_origin != "--baseline") {
    g.baseline_left_out = options.baseline_origin + " " + describe(options.baseline);
    g.baseline.clear();
    return;
  }
  if (!any)
    throw ConfigError(options.baseline_origin + " " + describe(options.baseline) +
                      ": matches no configuration with a result" +
                      (options.where.empty() ? "" : " among the runs --where keeps"));
}

// Marks the best cell and lays the cells out in table order.
void mark_best(std::map<Overrides, ResultCell>& by_config, ResultGrid& g) {
  // Best: the highest mean, marked only where another configuration scored less (a tie of every
  // configuration, or a single one, singles none out); among the configurations scored on the
  // same validation set (data.val_store) only, since numbers of two sets do not compare.
  const auto val_set = [](const Overrides& config) {
    const auto it = config.find("data.val_store");
    return it == config.end() ? std::string() : it->second;
  };
  std::map<std::string, std::pair<double, double>> range;  // validation set -> (best, worst) mean
  for (const auto& [config, cell] : by_config) {
    auto& [best, worst] = range
                              .try_emplace(val_set(config), -std::numeric_limits<double>::infinity(),
                                           std::numeric_limits<double>::infinity())
                              .first->second;
    best = std::max(best, cell.mean);
    worst = std::min(worst, cell.mean);
  }
  for (auto& [config, cell] : by_config) {
    const auto& [best, worst] = range.at(val_set(config));
    cell.best = cell.mean == best && worst < best;
    g.cells.push_back(cell);
  }
  std::sort(g.cells.begin(), g.cells.end(),
            [](const ResultCell& a, const ResultCell& b) { return a.row != b.row ? a.row < b.row : a.col < b.col; });
}

}  // namespace

double run_metric(const RunRecord& run, const std::string& metric) {
  auto it = run.result.find(metric);
  if (it != run.result.end()) return it->second;
  auto pc = run.per_class.find(metric);
  if (pc != run.per_class.end()) return pc->second;
  return std::nan("");
}

ResultGrid build_result_grid(const std::vector<RunRecord>& runs, const ResultTableOptions& options) {
  ResultGrid g;
  g.metric = options.metric;
  g.decimals = options.decimals;
  g.baseline = options.baseline;
  g.paper_source = options.paper_source;
  for (const auto& entry : options.where) g.where_keys.push_back(entry.first);
  const RunKeys swept = keys_of(runs);
  check_keys(options.rows, swept, "--rows");
  check_keys(options.cols, swept, "--cols");
  std::vector<std::string> where_keys, baseline_keys;
  for (const auto& [k, v] : options.where) where_keys.push_back(k);
  for (const auto& [k, v] : options.baseline) baseline_keys.push_back(k);
  check_keys(where_keys, swept, "--where");
  check_keys(baseline_keys, swept, "--baseline");
  for (const auto& k : options.rows)
    if (std::find(options.cols.begin(), options.cols.end(), k) != options.cols.end())
      throw ConfigError("--rows and --cols both name " + k);

  std::map<Overrides, ResultCell> by_config = collect_cells(runs, options, g);
  // Said once, as a footnote, unless the table already has the global batch as a key.
  if (g.mixed_global_batches.size() < 2 || swept.all.count(kGlobalBatchKey)) g.mixed_global_batches.clear();

  choose_row_keys(by_config, swept, options, g);
  order_rows_and_cols(by_config, options, g);
  summarize_cells(by_config, options, g);
  apply_baseline(by_config, runs, options, g);
  mark_best(by_config, g);
  return g;
}

std::string format_result_grid(const ResultGrid& g, const std::string& format) {
  const bool show_n = shows_n(g);
  if (format == "json") {
    Json j;
    j["metric"] = g.metric;
    j["rows"] = g.row_keys;
    j["cols"] = g.col_keys;
    j["baseline"] = json_config(g.baseline);
    j["runs_not_done"] = g.runs_not_done;
    if (g.runs_without_value > 0) j["runs_without_value"] = g.runs_without_value;
    if (g.cells_without_baseline > 0) j["cells_without_baseline"] = g.cells_without_baseline;
    if (g.done_without_result > 0) j["done_without_result"] = g.done_without_result;
    if (g.unreadable_results > 0) j["unreadable_results"] = g.unreadable_results;
    j["runs_of_older_config"] = g.runs_of_older_config;
    if (!g.repeated_runs.empty()) {
      Json repeated = Json::array();
      for (const RepeatedRun& r : g.repeated_runs)
        repeated.push_back(Json{{"dir", r.dir}, {"seed", r.seed}, {"counted", r.counted}});
      j["repeated_runs"] = repeated;  // left out: another run of the same configuration and seed counts
    }
    if (!g.mixed_global_batches.empty()) {
      Json batches = Json::object();
      for (const auto& [batch, runs] : g.mixed_global_batches) batches[std::to_string(batch)] = runs;
      j["mixed_global_batches"] = batches;  // global batch -> runs, only when they differ
    }
    if (!g.co_varying_keys.empty()) j["co_varying_keys"] = g.co_varying_keys;
    j["cells"] = Json::array();
    for (const auto& c : g.cells) {
      Json cell;
      cell["config"] = json_config(c.config);
      cell["row"] = row_label(g, c.row);
      cell["col"] = g.col_keys.empty() ? g.metric : col_label(g.col_values[c.col], g.col_keys);
      cell["seeds"] = c.seeds;
      cell["values"] = c.values;
      cell["runs"] = c.runs;
      cell["n"] = c.values.size();
      cell["mean"] = c.mean;
      cell["std"] = number_or_null(c.std);
      cell["delta"] = g.baseline.empty() ? Json() : number_or_null(c.delta);
      cell["within_spread"] = c.within_spread;
      cell["baseline"] = c.is_baseline;
      cell["best"] = c.best;
      cell["paper"] = number_or_null(c.paper);
      j["cells"].push_back(cell);
    }
    return j.dump(2) + "\n";
  }
  const TableFormat fmt = parse_table_format(format);
  if (fmt == TableFormat::kCsv) return result_grid_csv(g);
  std::vector<std::string> header{row_header(g)};
  std::vector<std::vector<std::string>> rows(g.row_values.size());
  std::vector<CellIndex> best;
  if (g.col_keys.empty()) {
    header.push_back(g.metric);
    if (g.has_paper) header.push_back("paper");
    if (!g.baseline.empty()) header.push_back("\xCE\x94 " + g.metric);
    const size_t delta_col = g.has_paper ? 3 : 2;
    for (size_t r = 0; r < rows.size(); ++r) {
      rows[r].assign(header.size(), "-");
      rows[r][0] = row_label(g, r);
    }
    for (const auto& c : g.cells) {
      const CellText t = cell_text(c, g, show_n);
      rows[c.row][1] = t.value;
      if (!t.paper.empty()) rows[c.row][2] = t.paper;
      if (!g.baseline.empty()) rows[c.row][delta_col] = t.delta;
      if (c.best) best.emplace_back(c.row, 1);
    }
  } else {
    for (const auto& cv : g.col_values) header.push_back(col_label(cv, g.col_keys));
    for (size_t r = 0; r < rows.size(); ++r) {
      rows[r].assign(header.size(), "-");
      rows[r][0] = row_label(g, r);
    }
    for (const auto& c : g.cells) {
      const CellText t = cell_text(c, g, show_n);
      std::string text = t.value;
      if (!t.paper.empty()) text += " (paper " + t.paper + ")";
      if (!g.baseline.empty() && !c.is_baseline && !std::isnan(c.delta)) text += ", \xCE\x94 " + t.delta;
      rows[c.row][c.col + 1] = text;
      if (c.best) best.emplace_back(c.row, c.col + 1);
    }
  }
  std::vector<Align> align(header.size(), Align::kRight);
  align[0] = Align::kLeft;
  return with_footnotes(format_table(header, rows, fmt, align, best), footnotes(g, fmt), fmt);
}

std::string format_per_class_table(const std::vector<RunRecord>& runs, const ResultTableOptions& options,
                                   const std::vector<std::string>& classes, const std::string& format,
                                   const std::string& option) {
  SEGRUN_CHECK(!classes.empty(), ConfigError, option << ": no class names given");
  std::set<std::string> known;
  for (const auto& r : runs)
    for (const auto& [name, v] : r.per_class) known.insert(name);
  for (const auto& name : classes) {
    if (!known.count(name)) {
      std::vector<std::string> some(known.begin(), known.end());
      if (some.size() > 12) some.resize(12);
      throw DataError(
          option + " " + name + ": no run has this class in result.json per_class" +
          (some.empty() ? std::string() : " (classes: " + join(some, ", ") + (known.size() > 12 ? ", ..." : "") + ")"));
    }
  }
  const ResultGrid grid = build_result_grid(runs, options);
  const std::vector<std::string> keys = shown_keys(grid);
  std::vector<std::string> columns = classes;
  columns.push_back(options.metric);
  std::vector<std::string> header{keys.empty() ? "configuration" : join(keys, ", ")};
  header.insert(header.end(), columns.begin(), columns.end());
  std::vector<std::vector<std::string>> rows;
  std::vector<std::vector<double>> means, stds;
  bool some_partial = false;  // a value over fewer runs than its configuration has (null IoUs)
  for (const auto& cell : grid.cells) {
    std::vector<std::string> row{keys.empty() ? "(all runs)" : label_of(project(cell.config, keys), keys)};
    std::vector<double> row_means, row_stds;
    for (const auto& column : columns) {
      std::vector<double> values;  // of the runs the table counts (one per seed)
      for (const auto& r : runs) {
        if (std::find(cell.runs.begin(), cell.runs.end(), r.dir) == cell.runs.end()) continue;
        const double v = run_metric(r, column);
        if (!std::isnan(v)) values.push_back(v);
      }
      if (values.empty()) {
        row.push_back("-");
        row_means.push_back(std::nan(""));
        row_stds.push_back(std::nan(""));
        continue;
      }
      double mean = 0;
      for (double v : values) mean += v;
      mean /= static_cast<double>(values.size());
      std::string text = fmt(mean, options.decimals);
      double std = std::nan("");
      if (values.size() >= 2) {
        double ss = 0;
        for (double v : values) ss += (v - mean) * (v - mean);
        std = std::sqrt(ss / static_cast<double>(values.size() - 1));
        text += " \xC2\xB1 " + fmt(std, options.decimals);
      }
      if (values.size() < cell.runs.size()) {
        text += " (n=" + std::to_string(values.size()) + ")";
        some_partial = true;
      }
      row.push_back(text);
      row_means.push_back(mean);
      row_stds.push_back(std);
    }
    rows.push_back(row);
    means.push_back(row_means);
    stds.push_back(row_stds);
  }
  std::vector<CellIndex> best;
  for (size_t c = 0; c < columns.size(); ++c) {
    double top = -std::numeric_limits<double>::infinity(), bottom = std::numeric_limits<double>::infinity();
    for (const auto& m : means)
      if (!std::isnan(m[c])) top = std::max(top, m[c]), bottom = std::min(bottom, m[c]);
    for (size_t r = 0; r < means.size(); ++r)
      if (means[r][c] == top && bottom < top) best.emplace_back(r, c + 1);  // a column all tied: none
  }
  if (format == "json") {
    Json j = Json::array();
    for (size_t r = 0; r < grid.cells.size(); ++r) {
      Json row;
      row["config"] = json_config(grid.cells[r].config);
      for (size_t c = 0; c < columns.size(); ++c) row[columns[c]] = number_or_null(means[r][c]);
      j.push_back(row);
    }
    return j.dump(2) + "\n";
  }
  const TableFormat fmt_kind = parse_table_format(format);
  if (fmt_kind == TableFormat::kCsv) {  // tidy: a column per key, then each value's mean and std
    std::vector<std::string> csv_header = keys;
    for (const auto& column : columns) csv_header.insert(csv_header.end(), {column, column + " std"});
    std::vector<std::vector<std::string>> csv_rows;
    for (size_t r = 0; r < grid.cells.size(); ++r) {
      std::vector<std::string> row = csv_key_cells(grid.cells[r].config, keys);
      for (size_t c = 0; c < columns.size(); ++c)
        row.insert(row.end(), {csv_number(means[r][c]), csv_number(stds[r][c])});
      csv_rows.push_back(row);
    }
    return format_table(csv_header, csv_rows, TableFormat::kCsv);
  }
  std::vector<Align> align(header.size(), Align::kRight);
  align[0] = Align::kLeft;
  std::vector<std::string> notes;
  if (fmt_kind == TableFormat::kText) notes.push_back("*: best per column (IoU in %).");
  if (some_partial)
    notes.push_back(
        "(n=k): the mean of the k runs of the configuration in which the class has an IoU (null in the others: "
        "in neither their validation ground truth nor their predictions).");
  if (!grid.repeated_runs.empty()) notes.push_back(repeated_runs_note(grid.repeated_runs));
  return with_footnotes(format_table(header, rows, fmt_kind, align, best), notes, fmt_kind);
}

}  // namespace segrun::sweeps
