#pragma once
// The Slurm job of a run folder: `<run>/slurm_job.json` {"job_id", "script", "log", "submitted"},
// written by `segrun submit` after sbatch accepted the job ("123", or "123_4" for array task 4),
// and read back by `segrun status`, `sweep status`, `cancel` and a later `submit` (a sweep's
// skips runs whose job is still pending or running; one run's is refused). recorded_jobs() asks Slurm (squeue, then
// sacct) for the state of every recorded job at once.

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "cluster/slurm_client.h"

namespace segrun::cluster {

inline constexpr const char* kJobRecordFile = "slurm_job.json";
inline constexpr const char* kJobLogFile = "slurm.log";  // a run's job output, appended across requeues

struct JobRecord {
  std::string job_id;
  std::string script;
  std::string log;
  std::string submitted;  // local time, 2026-12-05T01:02:03
};

// The record of run_dir, nullopt when it has none; DataError naming the file when it is not one.
std::optional<JobRecord> read_job_record(const std::string& run_dir);
// Writes run_dir/slurm_job.json atomically, `submitted` = now.
void write_job_record(const std::string& run_dir, const std::string& job_id, const std::string& script,
                      const std::string& log);

struct RecordedJob {
  JobRecord record;
  std::optional<SlurmJobInfo> slurm;  // nullopt: no longer known to squeue/sacct, or see unknown_because
  std::string unknown_because;        // Slurm could not be asked (JobQuery::unanswered); "" when it answered
};
// The recorded jobs of these run folders (those without a record are left out), keyed by folder.
std::map<std::string, RecordedJob> recorded_jobs(const std::vector<std::string>& run_dirs);
// ClusterError when Slurm could not say whether one of these jobs is still pending or running:
// "<run folder>: cannot tell whether Slurm job <id> is still pending or running (<why>);
// <consequence> (if that job has ended, remove <run folder>/slurm_job.json)".
// Acting on such a job as if it had ended would train its run twice at once.
void require_known_states(const std::map<std::string, RecordedJob>& jobs, const std::string& consequence);

}  // namespace segrun::cluster
