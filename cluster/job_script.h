#pragma once
// Slurm batch scripts for segrun runs: one run, or a sweep as a job array whose task i trains the
// run named on line i+1 of a tasks file written next to the script. The script
//  - asks for the resources (#SBATCH: nodes, tasks, GPUs per node, CPUs per task, partition,
//    account, qos, time, mem, constraint, --array=0-(R-1)%M), `--requeue`, `--open-mode=append`
//    and `--signal=B:<SIG>@<grace>` (the batch shell gets cluster.slurm.signal, USR1 by default,
//    <grace> s before the time limit);
//  - starts `segrun train <run>/config.toml --run-dir <run> --resume auto` on every rank with
//    `srun --mpi=<mpi>` (one task per rank: one per GPU on GPU nodes) or with `mpirun`, in the
//    background, appending the task's output to <run>/slurm.log;
//  - on <SIG> (time limit) or TERM (scancel, preemption, `scontrol requeue`) forwards <SIG> to
//    the ranks, which finish their iteration, checkpoint and exit 75; after <SIG> it requeues the
//    job itself (`scontrol requeue <array job>_<task>`, at most max_requeues times), after a TERM
//    it does not (the job is being cancelled, or Slurm requeues it already). With <SIG> = TERM
//    (srun only: mpirun kills its ranks on TERM) every TERM counts as the time limit;
//  - marks a run whose ranks exit with another non-zero code "failed" in its status file (unless
//    the trainer did), with the job id, the exit code and the first line of this job's output
//    that says why: a rank's "segrun: error" line, else the launcher's line naming the rank that
//    died (srun "task 1: Killed", Open MPI "process rank 1 ... exited on signal 9").
// Safety: every value in the script body is single-quoted ('...' with ' written as '\''), so no
// path, run name or environment value can inject shell; values of #SBATCH lines are not parsed
// by a shell but end at a newline, so they must match strict character sets (ConfigError naming
// the field otherwise) and hold no paths. Run and job names are restricted to [A-Za-z0-9._-].
// Pure functions; thread-safe.

#include <string>
#include <utility>
#include <vector>

#include "core/config.h"

namespace segrun::cluster {

struct JobScriptOptions {
  SlurmConfig slurm;     // resources and launcher: config < sweep spec < command line
  std::string job_name;  // [A-Za-z0-9._-]+
  int ranks = 0;         // MPI ranks per run; 0 = nodes x (GPUs or tasks per node, else 1)
  std::string program;   // the segrun executable the ranks run (absolute path)
  std::vector<std::pair<std::string, std::string>> env;  // extra variables exported to the ranks
  std::string description;                               // one comment line at the top (newlines are replaced)
  // One run: run_dir. A job array: runs_dir, tasks_file and array_size > 0.
  std::string run_dir;
  std::string runs_dir;
  std::string tasks_file;
  int array_size = 0;
  // #SBATCH --output, relative to the job's working directory, which is where sbatch runs (the
  // run directory for one run, <runs>/slurm for an array): "slurm.log", "submit-1_%A_%a.out".
  // Keeping paths out of #SBATCH lines lets run folders have any name.
  std::string output;
};

struct TaskLayout {
  int nodes = 1;
  int ntasks = 1;          // ranks of one run
  int tasks_per_node = 0;  // 0 = let Slurm place the tasks
};

// Ranks and their placement; ConfigError (a user mistake, exit 2) when ranks, nodes, GPUs and tasks per node disagree.
TaskLayout resolve_layout(const SlurmConfig& slurm, int ranks);

// The whole script. Throws ConfigError naming the field when a value cannot be written safely.
std::string render_job_script(const JobScriptOptions& options);

// The tasks file of an array: one run directory name per line (task i = line i+1).
std::string render_tasks_file(const std::vector<std::string>& run_names);

// [A-Za-z0-9._-]+, not "." or "..".
bool is_safe_name(const std::string& name);

}  // namespace segrun::cluster
