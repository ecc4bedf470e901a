#pragma once
// The Slurm subcommands of the segrun CLI:
//   segrun submit CONFIG [k=v...] | SPEC --on slurm [resource flags] [--dry-run]
//   segrun status RUN_DIR          a run's state merged with its Slurm job, job id, log
//   segrun cancel SPEC|RUN_DIR     scancel the jobs of a sweep's runs (or of one run)
// and the Slurm side of `sweep run --on slurm`, `sweep status` and of `launch` inside an
// allocation. submit writes each run's resolved config.toml, overrides.json (sweeps) and status
// "queued", the job script (0750) and, for a sweep, the array's tasks file (0640) into
// <runs>/slurm/submit-<k>.{sbatch,tasks}, runs `sbatch --parsable` there, and records the job in
// <run>/slurm_job.json {"job_id", "script", "log", "submitted"}. Runs that are done or whose job
// is still pending/running are not submitted again. Resource values: [cluster.slurm] of the
// (base) config, then the sweep's [fixed] cluster.slurm.* keys, then the command line.
// ClusterCommands is a CommandGroup (launcher/command_group.h). None of them starts MPI in this
// process.

#include <iosfwd>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "launcher/command_group.h"
#include "sweeps/registry.h"
#include "sweeps/runner.h"

namespace CLI {
class App;
}

namespace segrun::launcher {

struct LaunchCommand;

class ClusterCommands final : public CommandGroup {
 public:
  explicit ClusterCommands(CLI::App& app);
  ~ClusterCommands() override;

  bool selected() const override;
  int run() override;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// `sweep run SPEC --on slurm`: submits the sweep as a job array with the spec's and config's
// [cluster.slurm] settings (max_parallel > 0 overrides cluster.slurm.max_parallel).
int submit_sweep_on_slurm(const std::string& spec_path, const std::string& runs_dir, int max_parallel, bool dry_run,
                          std::ostream& out);

// For `sweep status`: the merged state, job id and log of every run of the plan that has a
// recorded Slurm job (empty when none has: the plain status table is shown).
std::map<std::string, sweeps::SchedulerState> slurm_states_of(const std::vector<sweeps::PlanEntry>& plan);

// `segrun launch` inside a Slurm allocation (SLURM_JOB_ID set, not inside a job step, no --hosts):
// starts the ranks with srun --mpi=pmix (SEGRUN_SLURM_LAUNCHER=mpirun: mpirun on the allocation's
// nodes). Returns false (and does nothing) outside an allocation, or when the allocation has
// fewer tasks than -n (with a warning); then run_launch (mpirun on this node) applies.
bool launch_in_allocation(const LaunchCommand& cmd, int* exit_code);

}  // namespace segrun::launcher
