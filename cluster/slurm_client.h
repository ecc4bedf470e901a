#pragma once
// Talking to Slurm through its commands (sbatch, squeue, sacct, scancel), and parsing what they
// print. squeue is asked for `kSqueueFields` and sacct for `kSacctFields`, both '|'-separated
// (sacct --parsable2), so a value can never shift a column; array tasks come back one per line
// ("123_4"), and sacct's compressed pending remainder "123_[5-9%2]" is expanded.
// squeue knows live jobs and, for MinJobAge seconds, ended ones; sacct (when the cluster keeps
// accounting) knows the history with exit codes. query_jobs merges both: a cluster without
// accounting storage just yields fewer entries. A job that squeue does not list has ended only when
// squeue answered: when it could not (controller down, command missing), JobQuery::unanswered says
// why, and callers that would act on "ended" (submit again, train locally) must refuse.
// The clients find the cluster as usual (SLURM_CONF or /etc/slurm). Not thread-safe only in that
// the commands run as child processes of the caller.

#include <map>
#include <string>
#include <vector>

#include "core/run_folder.h"

namespace segrun::cluster {

// `sbatch --parsable SCRIPT` run in cwd (the job's working directory); returns the job id ("123"
// of "123;cluster"). ClusterError with sbatch's message when it fails or is not installed.
std::string sbatch_submit(const std::string& script_path, const std::string& cwd);

struct SlurmJobInfo {
  std::string job_id;     // "<array job>_<task>" for array tasks, else "<job>"
  std::string state;      // PENDING, RUNNING, REQUEUED, COMPLETED, FAILED, CANCELLED, TIMEOUT, ...
  std::string reason;     // pending reason (squeue) or Reason (sacct); "" for None
  std::string exit_code;  // "code:signal" (sacct); "" when unknown
  int restarts = -1;      // times requeued (squeue RestartCnt); -1 when unknown
  std::string nodes;
  std::string source;  // "squeue" or "sacct"
};

extern const char* const kSqueueFields;  // squeue -O argument
extern const char* const kSacctFields;   // sacct --format argument

// squeue --noheader --array --states=all -O kSqueueFields output.
std::vector<SlurmJobInfo> parse_squeue(const std::string& text);
// sacct --noheader --parsable2 -X --format=kSacctFields output.
std::vector<SlurmJobInfo> parse_sacct(const std::string& text);

struct JobQuery {
  std::map<std::string, SlurmJobInfo> jobs;  // by job id: those Slurm still knows
  std::string unanswered;                    // why squeue gave no answer ("squeue failed (...): ..."); "" when it did
};
// State of each given job id that Slurm still knows (squeue first, sacct for the others).
JobQuery query_jobs(const std::vector<std::string>& job_ids);

// Pending, running, requeued, suspended, completing...: the job may still run (again).
bool is_active(const SlurmJobInfo& job);
// The state as a person reads it: "pending (Priority)", "requeued (pending: BeginTime)",
// "running", "failed (exit 1:0, NonZeroExitCode)", "cancelled", ...
std::string describe_job(const SlurmJobInfo& job);

// What `segrun status` shows for a run: the run directory's state (core/run_folder.h; kNew when
// nothing ran yet) and its reason, merged with the state of its Slurm job
// (nullptr: none recorded, or Slurm no longer knows it). A live job wins (pending, requeued,
// running); then the run directory's own verdict; a job that ended while the run directory still
// says running/queued is reported as lost with the job's state and exit code.
std::string merge_run_state(RunState run_state, const std::string& run_reason, const SlurmJobInfo* job);

// scancel the given jobs ("123_4" cancels one array task). ClusterError with scancel's message.
void scancel(const std::vector<std::string>& job_ids);

}  // namespace segrun::cluster
