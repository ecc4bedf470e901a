#pragma once
// What `segrun train` is asked to do, and the checks it must pass before anything is written.
// They need no MPI and only read the run folder, so `segrun launch` makes them once before mpirun
// starts (a mistake is one line, not one per rank) and Trainer's constructor again on every rank:
//   - a run directory is named; model.pretrained and data.store are set;
//   - the run directory is new, empty, or a segrun run folder (it has a status file, a sweep's
//     overrides.json, checkpoints/ or logs/): a folder of the user's own files is never written into;
//   - a run folder with checkpoints is continued only with --resume (auto or a path), and an
//     explicit --resume names a file;
//   - resuming a run whose config.toml differs from the config in a key that shapes the training
//     is refused, naming the keys (core/config.h's training_changes): config.toml stays the
//     record of how the run's model was trained. Where the data and weights are read from, how
//     long to train (train.iters), how often to log, evaluate and checkpoint, and the eval, dist,
//     log and cluster sections may change.
// Every refusal is a ConfigError naming the folder, file or key.

#include <string>
#include <vector>

#include "core/config.h"

namespace segrun::engine {

struct TrainRequest {
  std::string run_dir;  // required
  std::string resume;   // "" (fresh; refuses a run dir that has checkpoints), "auto", or a path
};

// The checks above; ConfigError on the first that fails. Returns the keys a resume changes that
// may change (for the trainer to say so; train.iters with a warning: the learning-rate schedule
// follows the new length from the checkpoint on).
std::vector<ConfigChange> check_train_request(const Config& config, const TrainRequest& request);

}  // namespace segrun::engine
