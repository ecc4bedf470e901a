// The run folder's names, states and status file: see run_folder.h.
#include "core/run_folder.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <system_error>

#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/json_errors.h"
#include "core/rank_logs.h"

namespace segrun {

std::string to_string(RunState state) {
  switch (state) {
    case RunState::kNew: return "new";
    case RunState::kQueued: return "queued";
    case RunState::kRunning: return "running";
    case RunState::kPreempted: return "preempted";
    case RunState::kFailed: return "failed";
    case RunState::kDone: return "done";
  }
  return "unknown";
}

std::optional<RunState> parse_run_state(const std::string& word) {
  for (RunState state :
       {RunState::kQueued, RunState::kRunning, RunState::kPreempted, RunState::kFailed, RunState::kDone})
    if (word == to_string(state)) return state;
  return std::nullopt;
}

RunFolder::RunFolder(std::string root) : root_(std::move(root)) {}

void RunFolder::create() const {
  std::error_code ec;
  for (const auto& dir : {root_, checkpoint_dir(), log_dir()}) {
    std::filesystem::create_directories(dir, ec);
    if (ec) throw IoError(dir + ": cannot create run directory: " + ec.message());
  }
}

RunStatus RunFolder::read_status() const {
  const std::string path = status_path();
  if (!path_exists(path)) return RunStatus{};
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) throw DataError(path + ": a folder, not the run's status file");
  std::ifstream in(path);
  if (!in) throw IoError(path + ": cannot read");
  std::string line;
  std::getline(in, line);
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
  const auto space = line.find(' ');
  const std::string word = line.substr(0, space);
  const std::optional<RunState> state = parse_run_state(word);
  if (!state) {
    // Shown as it is, up to 40 bytes, anything but printable ASCII as \xNN (a power loss can leave
    // a file of NUL bytes, which would end the message).
    std::string shown;
    for (const unsigned char c : word.substr(0, 40)) {
      char hex[8];
      std::snprintf(hex, sizeof(hex), "\\x%02x", c);
      shown += c >= 0x20 && c < 0x7f ? std::string(1, static_cast<char>(c)) : std::string(hex);
    }
    throw DataError(path + ": '" + shown + (word.size() > 40 ? "..." : "") +
                    "' is not a run state (queued, running, preempted, failed, done); " + resume_command() +
                    " continues the run and rewrites it");
  }
  RunStatus status;
  status.state = *state;
  if (space != std::string::npos) status.reason = line.substr(space + 1);
  return status;
}

std::string RunFolder::result_problem() const {
  nlohmann::ordered_json ignored;
  return read_result(ignored);
}

std::string RunFolder::read_result(nlohmann::ordered_json& result) const {
  const std::string path = result_path();
  if (!path_exists(path)) return "";
  try {
    result = nlohmann::ordered_json::parse(read_file(path));
    if (!result.is_object()) return path + ": not a segrun result.json (not a JSON object)";
  } catch (const nlohmann::json::exception& e) {
    return path + ": not a segrun result.json (" + json_error_text(e.what()) + ")";
  } catch (const Error& e) {
    // A folder is no result; a file that cannot be read now (permissions, an I/O error) may be a
    // good one: that is not for a caller to set aside.
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) return e.what();
    throw;
  }
  return "";
}

std::string RunFolder::set_aside_result() const {
  const std::string path = result_path();
  std::string aside = path + ".unreadable";
  for (int n = 2; path_exists(aside); ++n) aside = path + ".unreadable." + std::to_string(n);
  std::error_code ec;
  std::filesystem::rename(path, aside, ec);
  if (ec) throw IoError(path + ": cannot move it aside to " + aside + ": " + ec.message());
  return aside;
}

void RunFolder::write_status(RunState state, const std::string& reason) const {
  if (state == RunState::kNew) throw std::logic_error("write_status: 'new' is not written to a status file");
  std::string line = to_string(state);
  if (!reason.empty()) {
    std::string one_line = reason;
    std::replace(one_line.begin(), one_line.end(), '\n', ' ');
    line += " " + one_line;
  }
  write_file_atomic(status_path(), line + "\n");
}

void RunFolder::append_metrics(const std::string& json_line) const { append_line(metrics_path(), json_line); }

namespace {

namespace fs = std::filesystem;

// Whether `dir` holds a file whose name `is_ours` accepts.
template <typename Predicate>
bool holds_file(const std::string& dir, Predicate is_ours) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec))
    if (is_ours(entry.path().filename().string())) return true;
  return false;
}

bool starts_ends(const std::string& name, const std::string& prefix, const std::string& suffix) {
  return name.size() > prefix.size() + suffix.size() && name.rfind(prefix, 0) == 0 &&
         name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

bool RunFolder::holds_run_files() const {
  // What another rank of this run has just made (create(), the lock), nothing else yet. Checked
  // first: that rank goes on adding files (its rank log into logs/) while this looks, and a file
  // that appears during this check is one the checks below then see (files are only added).
  std::error_code ec;
  bool skeleton = fs::is_directory(checkpoint_dir(), ec) || fs::is_directory(log_dir(), ec);
  for (const auto& entry : fs::directory_iterator(root_, ec)) {
    const std::string name = entry.path().filename().string();
    const bool empty_folder = (name == "checkpoints" || name == "logs") && fs::is_empty(entry.path(), ec);
    skeleton = skeleton && (empty_folder || name == ".lock");
  }
  if (skeleton) return true;
  if (holds_run_status() || path_exists(overrides_path())) return true;
  // A checkpoint or a rank log of segrun's names (a folder of the user's that merely has a
  // logs/ or checkpoints/ subfolder is not a run).
  if (holds_file(checkpoint_dir(),
                 [](const std::string& n) { return starts_ends(n, "iter_", ".pt") || n == "best.pt"; }))
    return true;
  return holds_file(log_dir(), [](const std::string& n) { return starts_ends(n, "rank-", ".log"); });
}

std::string RunFolder::resume_command() const {
  int ranks = 0;
  if (holds_file(checkpoint_dir(), [](const std::string& n) { return starts_ends(n, "iter_", ".pt"); }))
    ranks = log::checkpoint_world_size(log_dir());
  if (ranks <= 0) ranks = log::last_world_size(log_dir());
  const std::string train = "train " + root_ + " --resume auto";
  return ranks > 1 ? "segrun launch -n " + std::to_string(ranks) + " -- " + train : "segrun " + train;
}

bool RunFolder::holds_run_status() const {
  if (!path_exists(status_path())) return false;
  try {
    read_status();
    return true;
  } catch (const Error&) {  // a file named status that is not segrun's ("mine"), or unreadable
    return false;
  }
}

RunStatus read_run_status(const std::string& run_dir) { return RunFolder(run_dir).read_status(); }

void write_run_status(const std::string& run_dir, RunState state, const std::string& reason) {
  RunFolder(run_dir).write_status(state, reason);
}

}  // namespace segrun
