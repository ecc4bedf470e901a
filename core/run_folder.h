#pragma once
// The run folder: the contract between the engine (which writes it), the sweeps layer, the Slurm
// job script and the launcher (which read it). One home, low in the DAG,
// so that no layer keeps its own copy of the names, the states or the exit codes.
//   <root>/config.toml      the fully resolved config
//   <root>/status           "<state>[ <reason>]" on one line: queued | running | preempted | failed | done
//   <root>/metrics.jsonl    one JSON object per logged step / evaluation
//   <root>/result.json      final metrics
//   <root>/overrides.json   a sweep's record of what it set (sweeps/registry.h)
//   <root>/checkpoints/     iter_<n>.pt, latest, best.pt (train.save_best; engine/checkpoint.h)
//   <root>/tb/              TensorBoard event files (engine/tensorboard_writer.h), one per start
//   <root>/samples/         iter_<n>/<name>.png: validation pictures (image | truth | prediction)
//   <root>/logs/rank-<r>.log
//   <root>/.lock            held (core/folder_lock.h) by rank 0 of the process training the run
//   exit 75                 the run stopped on a signal after checkpointing (resumable: --resume auto;
//                           sysexits' EX_TEMPFAIL, so a scheduler wrapper tells "resume me" apart)
//   exit 2                  a config error, before anything ran
// Only rank 0 writes the shared files; a whole-file write replaces the file atomically
// (core/atomic_file.h), so a reader sees the old content or the new. Thread-compatible.

#include <nlohmann/json_fwd.hpp>

#include <optional>
#include <string>

namespace segrun {

inline constexpr int kExitPreempted = 75;
inline constexpr int kExitConfigError = 2;

// kNew: no status file yet (the run has not been queued or started).
enum class RunState { kNew, kQueued, kRunning, kPreempted, kFailed, kDone };

// "new", "queued", "running", "preempted", "failed", "done".
std::string to_string(RunState state);
// The state a status file's first word names; nullopt for any other word ("new" included: it is
// never written).
std::optional<RunState> parse_run_state(const std::string& word);

struct RunStatus {
  RunState state = RunState::kNew;
  std::string reason;  // the rest of the line (why a run failed), "" when none
};

class RunFolder {
 public:
  explicit RunFolder(std::string root);
  const std::string& root() const { return root_; }
  std::string config_path() const { return root_ + "/config.toml"; }
  std::string status_path() const { return root_ + "/status"; }
  std::string metrics_path() const { return root_ + "/metrics.jsonl"; }
  std::string result_path() const { return root_ + "/result.json"; }
  std::string overrides_path() const { return root_ + "/overrides.json"; }
  std::string checkpoint_dir() const { return root_ + "/checkpoints"; }
  std::string tensorboard_dir() const { return root_ + "/tb"; }
  std::string samples_dir() const { return root_ + "/samples"; }
  std::string log_dir() const { return root_ + "/logs"; }
  std::string lock_path() const { return root_ + "/.lock"; }

  // Creates root, checkpoints/ and logs/ (any rank may call it; mkdir is idempotent). IoError.
  void create() const;
  // Whether the folder holds what only segrun writes into a run folder: a status file that names a
  // state, overrides.json, a checkpoints/iter_<n>.pt or best.pt, a logs/rank-<r>.log, or nothing
  // but the empty checkpoints/ and logs/ (and .lock) another rank of the run has just made
  // (create()). Then it is a run folder (queued, a sweep's, starting, trained); else a folder of
  // other files, never taken for a run (a config.toml, a status file of other words, a logs/ of
  // the user's own may be theirs).
  bool holds_run_files() const;
  // The status file; kNew when it does not exist. DataError naming the file when its first word
  // is not a state, IoError when it cannot be read.
  RunStatus read_status() const;
  // Writes "<state>[ <reason>]" (newlines in the reason become spaces). kNew is never written
  // (std::logic_error: a programming error, not a user one).
  void write_status(RunState state, const std::string& reason = "") const;
  void append_metrics(const std::string& json_line) const;
  // Why result.json cannot be taken as the run's result: "" when it is a JSON object or there is
  // none; else one line naming it ("<path>: not a segrun result.json (parse error at ...)", "<path>:
  // a folder, not a file"). A run marked done with such a file is evaluated again, as one without.
  // IoError when the file cannot be read (permissions, an I/O error): it may be a good one.
  std::string result_problem() const;
  // The same, reading the file once: on "" `result` holds it (discarded when there is none).
  std::string read_result(nlohmann::ordered_json& result) const;
  // Moves result.json aside, to result.json.unreadable (or .unreadable.2, ...: nothing is replaced),
  // so that a new one can be written; returns the new path. IoError when it cannot be renamed.
  std::string set_aside_result() const;
  // The command that continues the run where it stopped: "segrun train ROOT --resume auto", under
  // "segrun launch -n N --" when it needs N > 1 ranks: the world that wrote its latest checkpoint
  // (a resume on another number of ranks is refused: the global batch), else, without
  // checkpoints, the world size rank 0 last logged (core/rank_logs.h).
  std::string resume_command() const;

 private:
  bool holds_run_status() const;  // a status file whose first word is a state

  std::string root_;
};

// RunFolder(run_dir).read_status() / .write_status(...), for callers holding a path.
RunStatus read_run_status(const std::string& run_dir);
void write_run_status(const std::string& run_dir, RunState state, const std::string& reason = "");

}  // namespace segrun
