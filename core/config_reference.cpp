#include "core/config_reference.h"

#include <algorithm>
#include <array>
#include <sstream>

#include "core/error.h"
#include "core/format.h"
#include "core/spelling.h"

namespace segrun {
namespace {

// The TOML table a key lives in ("model.clip_sp.batch_drop" for model.clip_sp.batch_drop.mode);
// "" for a top-level key.
std::string table_of(const std::string& key) {
  const auto dot = key.rfind('.');
  return dot == std::string::npos ? "" : key.substr(0, dot);
}

std::string heading_of(const std::string& table) { return table.empty() ? "top level" : "[" + table + "]"; }

// The keys of each table, the tables in the order their first keys come (one group per table even
// where the schema lists a subtable between a table's keys, as TOML would write them).
std::vector<std::vector<KeyInfo>> by_table(const std::vector<KeyInfo>& keys) {
  std::vector<std::vector<KeyInfo>> groups;
  for (const KeyInfo& key : keys) {
    auto group = std::find_if(groups.begin(), groups.end(), [&key](const std::vector<KeyInfo>& g) {
      return table_of(g.front().key) == table_of(key.key);
    });
    if (group == groups.end()) group = groups.insert(groups.end(), std::vector<KeyInfo>{});
    group->push_back(key);
  }
  return groups;
}

std::string text_table(const std::vector<KeyInfo>& keys) {
  using Row = std::array<std::string, 5>;
  const Row header{"key", "type", "default", "range / choices", "meaning"};
  std::array<size_t, 4> width{};  // the last column is not padded
  const auto widen = [&width](const Row& row) {
    for (size_t c = 0; c < width.size(); ++c) width[c] = std::max(width[c], row[c].size());
  };
  const auto row_of = [](const KeyInfo& k) { return Row{k.key, k.type, k.default_value, key_range_text(k), k.help}; };
  widen(header);
  for (const KeyInfo& k : keys) widen(row_of(k));
  std::ostringstream os;
  const auto line = [&](const Row& row) {
    os << "  ";
    for (size_t c = 0; c < width.size(); ++c) os << row[c] << std::string(width[c] - row[c].size() + 2, ' ');
    os << row[4] << "\n";
  };
  line(header);
  for (const auto& group : by_table(keys)) {
    os << heading_of(table_of(group.front().key)) << "\n";
    for (const KeyInfo& k : group) line(row_of(k));
  }
  return os.str();
}

// Text that markdown would read as table cells or HTML, escaped.
std::string md_text(const std::string& text) {
  std::string out;
  for (const char c : text) {
    if (c == '|')
      out += "\\|";
    else if (c == '<')
      out += "&lt;";
    else if (c == '>')
      out += "&gt;";
    else
      out += c;
  }
  return out;
}

std::string md_code(const std::string& text) { return "`" + md_text(text) + "`"; }

std::string markdown_tables(const std::vector<KeyInfo>& keys) {
  std::ostringstream os;
  bool first = true;
  for (const auto& group : by_table(keys)) {
    const std::string table = table_of(group.front().key);
    os << (first ? "" : "\n") << "## " << (table.empty() ? "Top level" : md_code(heading_of(table))) << "\n\n";
    first = false;
    os << "| key | type | default | range / choices | meaning |\n|---|---|---|---|---|\n";
    for (const KeyInfo& k : group) {
      std::string range;
      if (k.choices.empty()) {
        range = md_text(key_range_text(k));
      } else {
        std::vector<std::string> codes;
        for (const std::string& c : k.choices) codes.push_back(md_code(c));
        range = join(codes, ", ");
      }
      os << "| " << md_code(k.key) << " | " << k.type << " | " << md_code(k.default_value) << " | " << range << " | "
         << md_text(k.help) << " |\n";
    }
  }
  return os.str();
}

}  // namespace

std::vector<KeyInfo> keys_with_prefix(const std::string& prefix) {
  std::vector<KeyInfo> all = config_key_infos();
  std::vector<KeyInfo> keys;
  std::copy_if(all.begin(), all.end(), std::back_inserter(keys),
               [&prefix](const KeyInfo& k) { return k.key.compare(0, prefix.size(), prefix) == 0; });
  if (!keys.empty()) return keys;
  std::vector<std::string> names;  // every key and every table
  for (const KeyInfo& k : all) {
    names.push_back(k.key);
    for (std::string table = table_of(k.key); !table.empty(); table = table_of(table))
      if (std::find(names.begin(), names.end(), table) == names.end()) names.push_back(table);
  }
  const std::string meant = likely_meant(prefix, names);
  throw ConfigError("config --keys: no key starts with '" + prefix + "'" +
                    (meant.empty() ? " (the tables: segrun config --keys)" : " (did you mean '" + meant + "'?)"));
}

std::string format_key_reference(const std::vector<KeyInfo>& keys, ReferenceFormat format) {
  return format == ReferenceFormat::kMarkdown ? markdown_tables(keys) : text_table(keys);
}

std::string config_reference_page() {
  return R"(# Config keys

Every key of a segrun experiment config, with its type, default, valid range or choices and
meaning. Keys are set in the config file's TOML tables (`[train]` then `lr = 2e-4`) or on the
command line as overrides (`train.lr=2e-4`, `model.head=clip_sp`: TOML syntax, and decimals
such as `.5`, bare words are strings; a string key's number or date is its text: `name=1`); every key has a default, and `segrun config CONFIG [key=value...]` prints the resolved
values. A range `[a, b]` includes both ends, `(a, b]` not a; for arrays it bounds each element.
Relative paths resolve against the config file's folder (an override's, against the current
folder). A resume refuses a changed key that shapes what the run computes (model, data pipeline,
optimizer, seed...; `training_changes` in `core/config_changes.h` names the keys that may
change). What the keys build is explained in [models.md](models.md), the distributed keys in
[distributed.md](distributed.md) and [gpu.md](gpu.md), `[cluster.slurm]` in [cluster.md](cluster.md).

This page is generated: `segrun config --keys --format md` prints it from the schema in
`core/config.cpp`, and `core_test` fails when the two differ (`SEGRUN_UPDATE_GOLDEN=1
build/tests/core/core_test` rewrites it). `segrun config --keys [PREFIX]` prints the same table
in the terminal, e.g. `segrun config --keys model.mta_clip`.

)" + markdown_tables(config_key_infos());
}

}  // namespace segrun
