#include "engine/train_request.h"

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <system_error>
#include <thread>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/log.h"
#include "core/output_paths.h"
#include "core/run_folder.h"
#include "engine/checkpoint.h"

namespace segrun::engine {
namespace {

namespace fs = std::filesystem;

// Resuming `run` under `config`: ConfigError naming the changed keys when they shape training;
// else the keys that changed all the same.
std::vector<ConfigChange> check_resume_config(const RunFolder& run, const Config& config) {
  if (!path_exists(run.config_path())) return {};
  const Config run_config = load_config(run.config_path());
  const std::vector<ConfigChange> changes = training_changes(run_config, config);
  if (changes.empty()) return config_changes(run_config, config);
  throw ConfigError(run.config_path() + ": " + describe_changes(changes, "this command") +
                    ". Resume with the run's own config (" + run.resume_command() +
                    "), or, to change the run on purpose, edit " + run.config_path() + " and resume from it");
}

// --resume PATH of a checkpoint of another run folder (<other>/checkpoints/iter_<n>.pt, beside
// its config.toml): ConfigError when `config` would train on differently from that run, as a
// resume of that run would be refused (the checkpoint carries its weights, optimizer state and
// iteration, not its settings). A lone checkpoint file has no run to compare with.
void check_checkpoint_owner(const std::string& checkpoint, const RunFolder& run, const Config& config) {
  const fs::path folder = resolved_output_path(checkpoint).parent_path();
  if (folder.filename() != "checkpoints") return;
  const RunFolder owner(folder.parent_path().string());
  if (!path_exists(owner.config_path()) || resolved_output_path(run.root()) == resolved_output_path(owner.root()))
    return;
  Config owner_config;
  try {
    owner_config = load_config(owner.config_path());
  } catch (const ConfigError& e) {  // that run's file, of an older segrun say: nothing to compare with
    log::warn("--resume {}: its run's {} cannot be read ({}); its settings are not compared", checkpoint,
              owner.config_path(), first_line(e.what()));
    return;
  }
  const std::vector<ConfigChange> changes = training_changes(owner_config, config);
  if (changes.empty()) return;
  throw ConfigError("--resume " + checkpoint + " is a checkpoint of " + owner.root() + ": " +
                    describe_changes(changes, "this command") +
                    "; a resume goes on with that run's training as it was: give its config (segrun train " +
                    owner.root() + " --run-dir " + run.root() + " --resume " + checkpoint + ")");
}

std::string busy_message(const RunFolder& run, const std::string& holder) {
  return run.root() + ": already being trained by " + holder + "; one process trains a run at a time (segrun status " +
         run.root() + ")";
}

}  // namespace

void check_run_not_busy(const std::string& run_dir) {
  const RunFolder run(run_dir);
  const std::optional<std::string> holder = lock_holder(run.lock_path());
  if (holder && !holder->empty()) throw ConfigError(busy_message(run, *holder));
}

FolderLock take_run_lock(const std::string& run_dir, double requeue_wait_s) {
  const RunFolder run(run_dir);
  const char* restarts = std::getenv("SLURM_RESTART_COUNT");
  const bool requeued = restarts && std::atoi(restarts) > 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(requeued ? requeue_wait_s : 0);
  bool said = false;
  while (true) {
    if (std::optional<FolderLock> lock = FolderLock::try_take(run.lock_path())) return std::move(*lock);
    const std::string holder = lock_holder(run.lock_path()).value_or("another process");
    if (std::chrono::steady_clock::now() >= deadline) throw ConfigError(busy_message(run, holder));
    if (!said) log::warn("{}: held by {}; a requeued job waits for it to be released", run.root(), holder);
    said = true;
    std::this_thread::sleep_for(std::chrono::seconds(2));
  }
}

std::vector<ConfigChange> check_train_request(const Config& config, const TrainRequest& request,
                                              bool check_run_folder) {
  SEGRUN_CHECK(!request.run_dir.empty(), ConfigError, "train: a run directory is required");
  // A paper recipe without its CLIP weights would silently train from random weights and a random
  // text codebook: a config must say so ("none").
  SEGRUN_CHECK(!config.model.pretrained.empty(), ConfigError,
               origin_of(config, "model.pretrained")
                   << ": model.pretrained: not set; point it at OpenAI CLIP's archive (RN50.pt, "
                      "RN101.pt), or set it to \"none\" to train from random weights on purpose");
  SEGRUN_CHECK(!config.data.store.empty(), ConfigError, origin_of(config, "data.store") << ": data.store: not set");
  require_inputs(config);  // before the run folder is made: a typo must not leave a failed run behind
  if (check_run_folder) require_new_empty_or_run_folder("--run-dir", request.run_dir);
  // A path through '..' is read where it resolves (--run-dir new/.. is the current folder, whose
  // checkpoints count, though new/ does not exist yet); any other is named as given.
  bool through_parent = false;
  for (const fs::path& part : fs::path(request.run_dir)) through_parent = through_parent || part == "..";
  const RunFolder run(through_parent ? resolved_output_path(request.run_dir).string() : request.run_dir);
  const bool has_checkpoints = !checkpoints_newest_first(run.checkpoint_dir()).empty();
  if (request.resume.empty()) {
    SEGRUN_CHECK(!has_checkpoints, ConfigError,
                 run.root() << ": run directory already has checkpoints; pass --resume auto to continue it, or "
                               "choose another --run-dir");
    return {};
  }
  if (request.resume != "auto") {
    SEGRUN_CHECK(path_exists(request.resume), ConfigError, "--resume " << request.resume << ": no such checkpoint");
    std::error_code ec;
    SEGRUN_CHECK(!fs::is_directory(request.resume, ec), ConfigError,
                 "--resume " << request.resume << ": a folder, not a checkpoint file (iter_<n>.pt; or --resume auto)");
  }
  if (request.resume != "auto") check_checkpoint_owner(request.resume, run, config);
  if (request.resume != "auto" || has_checkpoints) return check_resume_config(run, config);
  return {};
}

}  // namespace segrun::engine
