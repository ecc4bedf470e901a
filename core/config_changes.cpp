// Comparing two configs key by key, and what a difference means to a run: see config_changes.h.
#include "core/config_changes.h"

#include <algorithm>

namespace segrun {

namespace {

// What a key's value does to a run, for the keys and sections whose value does not simply define
// what the run computes (every other key: changes both). `result`: a finished run given another
// value is not the same result (a sweep would redo it); `training`: a resumed run given another
// value would go on computing something else (so a resume refuses it). One entry per key or
// section ("eval." covers every eval key); a key's own entry wins over its section's.
struct KeyRole {
  const char* key;  // a dotted key, or a section ending in '.'
  bool result;
  bool training;
};
constexpr KeyRole kKeyRoles[] = {
    // How a run is watched, where its inputs are read from, how fast and on what it runs.
    {"name", false, false},
    {"data.store", false, false},
    {"data.val_store", false, false},
    {"data.workers", false, false},
    {"data.prefetch", false, false},
    {"data.on_corrupt", false, false},
    {"train.eval_interval", false, false},
    {"train.checkpoint_interval", false, false},
    {"train.keep_checkpoints", false, false},
    {"train.tf32", false, false},
    {"train.cudnn_benchmark", false, false},
    {"eval.batch", false, false},
    {"dist.", false, false},
    {"log.", false, false},
    {"cluster.", false, false},
    // Part of the result, not of the training a resume continues.
    {"eval.", true, false},             // how the trained weights are scored
    {"model.pretrained", true, false},  // a resumed run's weights come from its checkpoint
    {"train.iters", true, false},       // train longer or shorter: a warning on resume
    {"train.save_best", true, false},   // which checkpoint is kept as best
};

const KeyRole* key_role(const std::string& key) {
  for (const KeyRole& role : kKeyRoles)
    if (key == role.key) return &role;
  for (const KeyRole& role : kKeyRoles) {
    const std::string section = role.key;
    if (section.back() == '.' && key.rfind(section, 0) == 0) return &role;
  }
  return nullptr;
}

bool changes_training(const std::string& key) {
  const KeyRole* role = key_role(key);
  return role == nullptr || role->training;
}

// The changes between two configs of the keys `counts` accepts, in schema order.
std::vector<ConfigChange> changes_of(const Config& run_config, const Config& config,
                                     bool (*counts)(const std::string&)) {
  std::vector<ConfigChange> changes = config_changes(run_config, config);
  changes.erase(std::remove_if(changes.begin(), changes.end(), [&](const ConfigChange& c) { return !counts(c.key); }),
                changes.end());
  return changes;
}

}  // namespace

std::vector<ConfigChange> config_changes(const Config& run_config, const Config& config) {
  const auto before = config_values(run_config);
  const auto after = config_values(config);
  std::vector<ConfigChange> changes;
  for (size_t i = 0; i < before.size() && i < after.size(); ++i)
    if (before[i].second != after[i].second) changes.push_back({before[i].first, before[i].second, after[i].second});
  return changes;
}

std::vector<ConfigChange> training_changes(const Config& run_config, const Config& config) {
  return changes_of(run_config, config, changes_training);
}

bool changes_result(const std::string& key) {
  const KeyRole* role = key_role(key);
  return role == nullptr || role->result;
}

std::vector<ConfigChange> result_changes(const Config& run_config, const Config& config) {
  return changes_of(run_config, config, changes_result);
}

std::string describe_changes(const std::vector<ConfigChange>& changes, const std::string& given_by) {
  if (changes.empty()) return "";
  const ConfigChange& first = changes.front();
  std::string text =
      "the run was trained with " + first.key + " = " + first.before + ", " + given_by + " gives " + first.after;
  for (size_t i = 1; i < changes.size() && i < 4; ++i) text += (i == 1 ? "; also " : ", ") + changes[i].key;
  if (changes.size() > 4) text += " and " + std::to_string(changes.size() - 4) + " more";
  return text;
}

}  // namespace segrun
