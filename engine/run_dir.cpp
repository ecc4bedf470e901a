#include "engine/run_dir.h"

#include <filesystem>

#include "core/atomic_file.h"
#include "core/error.h"

namespace segrun::engine {

std::string to_string(RunState state) {
  switch (state) {
    case RunState::kQueued: return "queued";
    case RunState::kRunning: return "running";
    case RunState::kPreempted: return "preempted";
    case RunState::kFailed: return "failed";
    case RunState::kDone: return "done";
  }
  return "unknown";
}

RunDir::RunDir(std::string root) : root_(std::move(root)) {}

void RunDir::create() const {
  std::error_code ec;
  for (const auto& dir : {root_, checkpoint_dir(), log_dir()}) {
    std::filesystem::create_directories(dir, ec);
    if (ec) throw IoError(dir + ": cannot create run directory: " + ec.message());
  }
}

void RunDir::write_status(RunState state, const std::string& reason) const {
  std::string line = to_string(state);
  if (!reason.empty()) {
    std::string one_line = reason;
    for (char& c : one_line)
      if (c == '\n') c = ' ';
    line += " " + one_line;
  }
  write_file_atomic(status_path(), line + "\n");
}

void RunDir::append_metrics(const std::string& json_line) const { append_line(metrics_path(), json_line); }

}  // namespace segrun::engine
