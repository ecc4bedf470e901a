#pragma once
// Local scheduler: runs a queue of jobs (each usually an `mpirun -np R ...` command line from
// build_mpirun_command) as child processes on this machine, packing them onto its cores: a job
// starts when fewer than max_parallel jobs run and the ranks in flight plus its own fit in the
// core budget (a job wider than the budget runs alone). Jobs start in queue order.
//
// Each child runs in its own process group with stdout/stderr appended to its log file, so a
// terminal Ctrl-C reaches only this process: on SIGINT/SIGTERM/SIGUSR1 the scheduler starts no
// new job, sends each running job its stop signal (SIGUSR1 or SIGUSR2; mpirun forwards it to its
// ranks, which checkpoint and exit 75), and waits for them; a second signal, 5 s or more after the
// first (force_stop_after_seconds), sends SIGTERM. If this process dies, its
// children receive their stop signal (PR_SET_PDEATHSIG). The signal handlers are installed only while
// run_local_jobs() executes and the previous ones restored afterwards. Not thread-safe: one run_local_jobs() at a time
// per process (the stop flag is process-global, as signal flags must be).

#include <csignal>
#include <functional>
#include <string>
#include <vector>

#include "core/process.h"

namespace segrun::cluster {

struct LocalJob {
  std::string name;               // for messages
  std::vector<std::string> argv;  // argv[0] looked up in PATH
  int slots = 1;                  // cores it occupies (its rank count)
  std::string log_path;           // stdout+stderr appended here ("" = inherit the terminal)
  int stop_signal = SIGUSR1;      // what its ranks checkpoint and stop on (process::local_stop_signal)
};

struct LocalJobResult {
  bool started = false;    // false: never started because a stop was requested first
  int exit_code = -1;      // exit status, 128 + signal when killed, -1 when not started
  bool stop_sent = false;  // the scheduler forwarded a stop signal to this job
  double seconds = 0.0;
};

struct LocalSchedulerOptions {
  int cores = 0;         // core budget, 0 = process::usable_cores()
  int max_parallel = 0;  // jobs at once, 0 = no limit beyond the core budget
  double poll_seconds = 0.05;
  // A stop signal after the first sends the jobs SIGTERM only this long after the first; an
  // earlier one is dropped with a notice (process::kForceStopAfterSeconds says why).
  double force_stop_after_seconds = process::kForceStopAfterSeconds;
  // Called (from run_local_jobs()'s thread) right before a job starts and right after it ends.
  std::function<void(size_t index, const LocalJob&)> on_start;
  std::function<void(size_t index, const LocalJob&, const LocalJobResult&)> on_finish;
};

// Runs every job (unless stopped); returns one result per job, in queue order. A job that cannot
// be started (program not found, log file not writable, fork failure) ends with exit code 127
// and the reason (process::spawn's message) appended to its log, or printed when it has none.
// Throws ClusterError for an empty command or fewer than one slot.
std::vector<LocalJobResult> run_local_jobs(const std::vector<LocalJob>& jobs, const LocalSchedulerOptions& options);

// True once a stop signal arrived during the current/last run_local_jobs call.
bool local_stop_requested();

}  // namespace segrun::cluster
