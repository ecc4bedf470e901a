#include "cluster/job_record.h"

#include <nlohmann/json.hpp>

#include <ctime>
#include <filesystem>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/json_errors.h"

namespace segrun::cluster {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;

std::string now_text() {
  const std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", std::localtime(&t));
  return buf;
}

}  // namespace

std::optional<JobRecord> read_job_record(const std::string& run_dir) {
  const fs::path path = fs::path(run_dir) / kJobRecordFile;
  if (!path_exists(path)) return std::nullopt;
  try {
    const Json j = Json::parse(read_file(path.string()));
    return JobRecord{j.at("job_id").get<std::string>(), j.value("script", ""), j.value("log", ""),
                     j.value("submitted", "")};
  } catch (const Json::exception& e) {
    throw DataError(path.string() + ": not a segrun Slurm job record (" + json_error_text(e.what()) + ")");
  }
}

void write_job_record(const std::string& run_dir, const std::string& job_id, const std::string& script,
                      const std::string& log) {
  Json j;
  j["job_id"] = job_id;
  j["script"] = script;
  j["log"] = log;
  j["submitted"] = now_text();
  write_file_atomic((fs::path(run_dir) / kJobRecordFile).string(), j.dump(2) + "\n");
}

std::map<std::string, RecordedJob> recorded_jobs(const std::vector<std::string>& run_dirs) {
  std::map<std::string, RecordedJob> out;
  std::vector<std::string> ids;
  for (const auto& dir : run_dirs)
    if (auto record = read_job_record(dir)) {
      out[dir].record = *record;
      ids.push_back(record->job_id);
    }
  if (ids.empty()) return out;
  const JobQuery states = query_jobs(ids);
  for (auto& [dir, entry] : out) {
    auto it = states.jobs.find(entry.record.job_id);
    if (it != states.jobs.end())
      entry.slurm = it->second;
    else
      entry.unknown_because = states.unanswered;
  }
  return out;
}

void require_known_states(const std::map<std::string, RecordedJob>& jobs, const std::string& consequence) {
  size_t unknown = 0;
  const std::pair<const std::string, RecordedJob>* first = nullptr;
  for (const auto& entry : jobs)
    if (!entry.second.unknown_because.empty() && unknown++ == 0) first = &entry;
  if (!first) return;
  const std::string others = unknown > 1 ? " (and " + std::to_string(unknown - 1) + " other run(s))" : "";
  throw ClusterError(first->first + others + ": cannot tell whether Slurm job " + first->second.record.job_id +
                     " is still pending or running (" + first->second.unknown_because + "); " + consequence +
                     " (if that job has ended, remove " + first->first + "/" + kJobRecordFile + ")");
}

}  // namespace segrun::cluster
