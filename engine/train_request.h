#pragma once
// What `segrun train` is asked to do, and the checks it must pass before anything is written.
// They need no MPI and only read the run folder, so `segrun launch` makes them once before mpirun
// starts (a mistake is one line, not one per rank) and Trainer's constructor again on every rank:
//   - a run directory is named; model.pretrained and data.store are set, data.store and
//     data.val_store are stores and model.pretrained a file (core/config.h's require_inputs);
//   - the run directory is new, empty, or a segrun run folder (it has a status file, a sweep's
//     overrides.json, a checkpoint or a rank log; RunFolder::holds_run_files): a folder of the
//     user's own files is never written into;
//   - a run folder with checkpoints is continued only with --resume (auto or a path), and an
//     explicit --resume names a file;
//   - resuming a run whose config.toml differs from the config in a key that shapes the training
//     is refused, naming the keys (core/config.h's training_changes): config.toml stays the
//     record of how the run's model was trained. Where the data and weights are read from, how
//     long to train (train.iters), how often to log, evaluate and checkpoint, and the eval, dist,
//     log and cluster sections may change.
// Every refusal is a ConfigError naming the folder, file or key.
// One process trains a run folder at a time: rank 0 holds the run's lock (take_run_lock) while it
// trains, and a second `segrun train` of the same folder is refused naming the holder.

#include <string>
#include <vector>

#include "core/config.h"
#include "core/config_changes.h"
#include "core/folder_lock.h"

namespace segrun::engine {

struct TrainRequest {
  std::string run_dir;  // required
  std::string resume;   // "" (fresh; refuses a run dir that has checkpoints), "auto", or a path
};

// The checks above; ConfigError on the first that fails. Returns the keys a resume changes that
// may change (for the trainer to say so; train.iters with a warning: the learning-rate schedule
// follows the new length from the checkpoint on).
// `check_run_folder` = false skips the run folder's own check: ranks other than 0 pass it, since
// rank 0 may already be creating the folder they would look at (and rank 0 checks it).
std::vector<ConfigChange> check_train_request(const Config& config, const TrainRequest& request,
                                              bool check_run_folder = true);

// ConfigError when another process holds `run_dir`'s lock ("<run>: already being trained by pid
// 1234 on node7 since ..."); for `segrun launch` to say so before mpirun starts.
void check_run_not_busy(const std::string& run_dir);

// Rank 0's hold on `run_dir` (RunFolder::lock_path) for the whole training. A requeued Slurm job
// (SLURM_RESTART_COUNT > 0) waits up to `requeue_wait_s` for its previous incarnation's lock to be
// released (a dead node's NFS lock lasts until the server's lease ends); otherwise, or after the
// wait, the ConfigError of check_run_not_busy.
FolderLock take_run_lock(const std::string& run_dir, double requeue_wait_s = 180.0);

}  // namespace segrun::engine
