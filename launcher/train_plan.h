#pragma once
// How a `segrun train` command line becomes a config and a run request:
//   train CONFIG|RUN_DIR [k=v...] [--run-dir D] [--resume auto|PATH]
// A run folder trains (or, with --resume, continues) under its own config.toml, in that folder
// unless --run-dir says otherwise; otherwise the run directory defaults to runs/<name>. Shared by
// the train action on every rank and by `segrun launch`, which, before mpirun, checks the request,
// picks the ranks' stop signal from the config, and afterwards marks a run failed whose ranks died.
// `segrun submit RUN_DIR` reads a run folder the same way (run_source).

#include <string>
#include <vector>

#include "core/config.h"
#include "engine/train_request.h"

namespace segrun::launcher {

struct TrainCommand {
  std::string config;  // a config file, or a run folder (its config.toml)
  std::vector<std::string> overrides;
  std::string run_dir;  // "": the run folder given, or runs/<name>
  std::string resume;   // "", "auto" or a checkpoint path
};

struct TrainPlan {
  Config config;
  engine::TrainRequest request;
};

// What a CONFIG|RUN_DIR argument names: a config file as given, with run_dir as given; or a run
// folder's config.toml, with run_dir defaulting to that folder. ConfigError for a folder without a
// config.toml ("<folder>: not a run folder (no config.toml); give a config file").
struct RunSource {
  std::string config_path;
  std::string run_dir;  // "" when neither a run folder nor --run-dir gave one
};
RunSource run_source(const std::string& config_or_run, const std::string& run_dir);

// ConfigError naming the folder or the config problem.
TrainPlan plan_train(const TrainCommand& command);

// The TrainCommand of the words after `train` as segrun's parser reads them (an option word not
// of the form --opt=value takes the next word).
TrainCommand train_command_of(const std::vector<std::string>& words);

}  // namespace segrun::launcher
