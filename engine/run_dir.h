#pragma once
// The run directory: the contract between engine, sweeps and cluster (DESIGN "run directory").
//   <root>/config.toml      fully resolved config
//   <root>/status           "<state>[ <reason>]" — queued | running | preempted | failed | done
//   <root>/metrics.jsonl    one JSON object per logged step / evaluation
//   <root>/result.json      final metrics
//   <root>/checkpoints/     iter_<n>.pt
//   <root>/logs/rank-<r>.log
// Only rank 0 writes the shared files; every write of a whole file is atomic (core/atomic_file.h).

#include <string>

namespace segrun::engine {

enum class RunState { kQueued, kRunning, kPreempted, kFailed, kDone };
std::string to_string(RunState state);

class RunDir {
 public:
  explicit RunDir(std::string root);
  // Creates root, checkpoints/ and logs/ (any rank may call it; mkdir is idempotent).
  void create() const;
  const std::string& root() const { return root_; }
  std::string config_path() const { return root_ + "/config.toml"; }
  std::string status_path() const { return root_ + "/status"; }
  std::string metrics_path() const { return root_ + "/metrics.jsonl"; }
  std::string result_path() const { return root_ + "/result.json"; }
  std::string checkpoint_dir() const { return root_ + "/checkpoints"; }
  std::string log_dir() const { return root_ + "/logs"; }

  void write_status(RunState state, const std::string& reason = "") const;
  void append_metrics(const std::string& json_line) const;

 private:
  std::string root_;
};

}  // namespace segrun::engine
