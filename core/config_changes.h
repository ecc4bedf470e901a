#pragma once
// Two configs compared key by key (config_values() of each, schema order), and what a difference
// means to a run: whether a resume may make it (training_changes) and whether a finished run given
// it is still the same result (result_changes: a sweep reuses a done run unless it differs). Which
// keys count for which is one table in config_changes.cpp (kKeyRoles). Pure functions;
// thread-safe.

#include <string>
#include <vector>

#include "core/config.h"

namespace segrun {

struct ConfigChange {
  std::string key;     // dotted, e.g. "train.iters"
  std::string before;  // as TOML text, in the run's config
  std::string after;   // in the new one
};
// The keys whose values differ between a run's config and a new one (schema order) ...
std::vector<ConfigChange> config_changes(const Config& run_config, const Config& config);
// ... and those of them that shape what the run computes, which a resume must not change: all but
// where the data and weights are read from, how long to train (train.iters), how often to log,
// evaluate and checkpoint, TF32 / cuDNN autotuning, and the eval, dist, log and cluster sections.
std::vector<ConfigChange> training_changes(const Config& run_config, const Config& config);
// ... and those of them that change a finished run's result: all but where the data is read from
// and with how many workers, how often to log, evaluate and checkpoint, TF32 / cuDNN autotuning,
// test-time crops per forward pass, the run's name, and the dist, log and cluster sections (a
// sweep reuses a done run unless these differ). A key added to the schema since the run reads
// back at its default, so it is no change.
std::vector<ConfigChange> result_changes(const Config& run_config, const Config& config);
// Whether a dotted key is one result_changes() counts.
bool changes_result(const std::string& key);
// "the run was trained with model.width = 8, <given_by> gives 16; also train.lr" for non-empty
// `changes` (the first with both values, up to three more by name).
std::string describe_changes(const std::vector<ConfigChange>& changes, const std::string& given_by);

}  // namespace segrun
