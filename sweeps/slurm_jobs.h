#pragma once
// Runs and sweeps on Slurm. submit_run / submit_sweep write each run's resolved config.toml,
// overrides.json (sweeps) and status "queued", the job script (0750) -- one run's as
// <run>/job.sbatch, a sweep's with the array's tasks file (0640) as
// <runs>/slurm/submit-<k>.{sbatch,tasks} -- run `sbatch --parsable` in that folder, and record the
// job in <run>/slurm_job.json (cluster/job_record.h). A sweep skips runs that are done or whose
// job is still pending/running; submit_run refuses such a run with a ClusterError. Submitting and
// cancelling refuse when squeue cannot say whether a recorded job still runs (job_record.h). Resource values:
// [cluster.slurm] of the (base) config, then the sweep's [fixed] cluster.slurm.* keys, then SlurmOverrides (the command
// line). print_run_status merges a run folder's state with its Slurm job; cancel_jobs scancels the pending and running
// jobs of a sweep, a runs folder or one run; slurm_states_of feeds `sweep status`. Messages go to `out` (with a dry
// run, `out` gets only the job script and the rest goes to stderr, so that `submit ... --dry-run > job.sbatch` works).

#include <iosfwd>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/config.h"
#include "sweeps/registry.h"
#include "sweeps/runner.h"

namespace segrun::sweeps {

// Resource settings given on the command line; unset ones keep the config's value.
struct SlurmOverrides {
  std::optional<std::string> partition, account, qos, time, mem, constraint, launcher, mpi;
  std::optional<int> nodes, gpus_per_node, cpus_per_task, tasks_per_node, max_parallel, signal_grace_s;

  void apply(SlurmConfig& s) const;
};

struct SubmitRequest {
  std::string target;                  // experiment config, or sweep spec
  std::vector<std::string> overrides;  // key=value (a config only)
  SlurmOverrides slurm;
  int ranks = 0;                     // 0: the spec's resources.ranks or the node layout
  std::vector<std::string> exports;  // NAME=VALUE exported to the ranks
  std::string run_dir;               // one run (default runs/<name>)
  std::string runs_dir;              // a sweep (default: the spec's)
  bool dry_run = false;
};

// The sweep spec names a base config; an experiment config never has a top-level `base`.
// ConfigError when `path` is not a file.
bool is_sweep_spec(const std::string& path);

int submit_run(const SubmitRequest& request, std::ostream& out);
int submit_sweep(const SubmitRequest& request, std::ostream& out);

// `segrun status RUN`: state (merged with Slurm's), progress, metric, checkpoint, job, log.
int print_run_status(const std::string& run_dir, std::ostream& out);

// `segrun cancel SPEC|RUN_DIR|RUNS_DIR`.
int cancel_jobs(const std::string& target, const std::string& runs_dir, std::ostream& out);

// The runs of the plan whose recorded Slurm job is pending or running, or may be (squeue could not
// be asked: "<job id> (may still be pending or running: <why>)"): run dir -> "<job id> (<state>)",
// for mark_slurm_jobs (registry.h). Asks Slurm only when some run has a job record.
std::map<std::string, std::string> active_slurm_jobs(const std::vector<PlanEntry>& plan);

// For `sweep status`: the merged state, job id and log of every run of the plan that has a
// recorded Slurm job (empty when none has: the plain status table is shown).
std::map<std::string, SchedulerState> slurm_states_of(const std::vector<PlanEntry>& plan);

}  // namespace segrun::sweeps
