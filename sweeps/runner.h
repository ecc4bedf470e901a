#pragma once
// Running a sweep on this machine, and reporting on it. run_sweep plans the sweep (see
// registry.h), writes overrides.json and status "queued" into every run still to do, and hands
// one `mpirun -np <ranks> <segrun> train <base> <overrides> train.seed=<s> --run-dir <dir>
// [--resume auto]` job per run to the cluster layer's local scheduler, which packs them onto the
// cores (at most max_parallel at once, default cores / ranks; each rank gets
// cores / (parallel runs x ranks) threads). A run that fails is marked "failed <reason>" (the
// trainer's reason, or the exit code and the first "segrun: error" line of <run>/sweep.log, else
// its last line) and the others go on.
// On Ctrl-C / SIGTERM / SIGUSR1 every running run checkpoints and stops (status preempted), no
// new run starts, and re-running the sweep resumes them. Only one `sweep run` may use a runs
// folder at a time (flock on <runs>/.sweep.lock). Not thread-safe (signal handling).

#include <functional>
#include <iosfwd>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/folder_lock.h"
#include "core/run_folder.h"
#include "sweeps/registry.h"
#include "sweeps/spec.h"
#include "sweeps/table.h"

namespace segrun::sweeps {

// Exclusive use of a runs folder (flock on <runs_dir>/.sweep.lock, which must be a folder) while
// the object lives. ConfigError naming the holder, as a second `segrun train` of a run does, when
// another process holds it: "<runs_dir>: in use by pid 1234 on node7 since ...; <busy>".
class RunsLock {
 public:
  RunsLock(const std::string& runs_dir, const std::string& busy);

 private:
  std::optional<FolderLock> lock_;
};

struct SweepRunOptions {
  std::string runs_dir;  // "" = sweep_runs_dir(spec, "")
  int max_parallel = 0;  // 0 = max(1, cores / ranks)
  int cores = 0;         // 0 = process::usable_cores()
  std::string program;   // the segrun executable the ranks run
  std::string mpirun = "mpirun";
  bool dry_run = false;  // print the commands, run nothing, write nothing
  // The runs a live Slurm job works on (run dir -> "<job id> (<state>)"), which the sweep leaves to
  // it; default: slurm_jobs.h's active_slurm_jobs.
  std::function<std::map<std::string, std::string>(const std::vector<PlanEntry>&)> slurm_jobs;
};

struct SweepRunSummary {
  int reused = 0;
  int finished = 0;
  int failed = 0;
  int preempted = 0;    // stopped by a signal (resumable)
  int not_started = 0;  // left for the next `sweep run` because of a stop
  int on_slurm = 0;     // left to the pending or running Slurm job that has them
  int not_run = 0;      // left as they are: resuming them would change what they compute (resume_refusal)
  // 0 all done, 75 stopped (resumable), 1 some run failed or was not run.
  int exit_code() const { return failed + not_run > 0 ? 1 : (preempted + not_started > 0 ? kExitPreempted : 0); }
};

// Progress lines go to out.
SweepRunSummary run_sweep(const SweepSpec& spec, const SweepRunOptions& options, std::ostream& out);

// `sweep plan`: one row per run (id, directory, overrides, seed, action), then a summary line.
// Both listings show only the overrides that differ between runs ([fixed] keys are left out).
std::string format_plan(const std::vector<PlanEntry>& plan, TableFormat fmt);
// `sweep status`: id, overrides, seed, state, progress "<last iter>/<iters>", last metric value
// (result.json when done, else the last evaluation in metrics.jsonl), then counts per state.
// With `scheduler` (keyed by run directory, e.g. from Slurm), a run's state is replaced by the
// merged one and the job id and log path are shown as two more columns.
struct SchedulerState {
  std::string state;  // replaces the run directory's state when not empty
  std::string job;    // scheduler job id
  std::string log;    // where the job's output goes
};
// ConfigError when some run records metrics and none records `metric` (a misspelt --metric, or
// [table] metric: `metric_origin` says which).
std::string format_status(const std::vector<PlanEntry>& plan, const std::string& metric, TableFormat fmt,
                          const std::map<std::string, SchedulerState>& scheduler = {},
                          const std::string& metric_origin = "--metric");

}  // namespace segrun::sweeps
