#include "cluster/local_scheduler.h"

#include <signal.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <iostream>
#include <thread>

#include "core/error.h"
#include "core/launcher_watch.h"
#include "core/process.h"

namespace segrun::cluster {
namespace {

using Clock = std::chrono::steady_clock;

struct Running {
  size_t index;
  pid_t pid;
  Clock::time_point start;
};

// Own process group, dies-with-parent signal (its stop signal), output appended to its log.
pid_t start_job(const LocalJob& job) {
  process::SpawnOptions options;
  options.argv = job.argv;
  options.new_process_group = true;
  options.parent_death_signal = job.stop_signal;
  // The ranks watch this process too (core/launcher_watch.h).
  options.env = launcher_environment();
  if (!job.log_path.empty()) {
    options.out = process::Output::kAppendFile;
    options.err = process::Output::kAppendFile;
    options.log_path = job.log_path;
  }
  return process::spawn(options).pid;
}

void report_start_failure(const LocalJob& job, const std::string& why) {
  const std::string line = "segrun: " + why + "\n";
  if (!job.log_path.empty()) {
    std::ofstream log(job.log_path, std::ios::app);
    if (log << line) return;
  }
  std::cerr << "job '" << job.name << "': " << line;
}

// Sends `sig` (0: each job's own stop signal) to every running job's whole process group.
void signal_all(const std::vector<Running>& running, const std::vector<LocalJob>& jobs, int sig) {
  for (const auto& r : running) ::kill(-r.pid, sig != 0 ? sig : jobs[r.index].stop_signal);
}

}  // namespace

bool local_stop_requested() { return process::ScopedSignalCounter::last_count() > 0; }

std::vector<LocalJobResult> run_local_jobs(const std::vector<LocalJob>& jobs, const LocalSchedulerOptions& options) {
  for (const auto& job : jobs) {
    if (job.argv.empty()) throw ClusterError("job '" + job.name + "': empty command");
    if (job.slots < 1) throw ClusterError("job '" + job.name + "': slots must be at least 1");
  }
  const int cores = options.cores > 0 ? options.cores : process::usable_cores();
  const size_t max_parallel = options.max_parallel > 0 ? static_cast<size_t>(options.max_parallel) : jobs.size() + 1;
  std::vector<LocalJobResult> results(jobs.size());
  std::vector<Running> running;
  process::ScopedSignalCounter stop_signals;
  int used = 0;
  size_t next = 0;
  int forwarded = 0;   // stop signals forwarded so far (1: the jobs' stop signals, 2: SIGTERM)
  int stops_seen = 0;  // stop signals received and acted on (forwarded, or dropped as too early)
  Clock::time_point first_stop;

  auto finish = [&](size_t k, const process::ExitStatus& status) {
    const Running r = running[k];
    running.erase(running.begin() + static_cast<long>(k));
    used -= jobs[r.index].slots;
    LocalJobResult& result = results[r.index];
    result.exit_code = status.shell_code();
    result.seconds = std::chrono::duration<double>(Clock::now() - r.start).count();
    if (options.on_finish) options.on_finish(r.index, jobs[r.index], result);
  };

  while (true) {
    // Start what fits: queue order, a job wider than the budget runs alone.
    while (stop_signals.count() == 0 && next < jobs.size() && running.size() < max_parallel &&
           (running.empty() || used + jobs[next].slots <= cores)) {
      const LocalJob& job = jobs[next];
      if (options.on_start) options.on_start(next, job);
      pid_t pid = -1;
      try {
        pid = start_job(job);
      } catch (const ProcessError& e) {
        // The job fails as a shell's would (127), with the reason in its log; the others go on.
        report_start_failure(job, e.what());
        results[next].started = true;
        results[next].exit_code = 127;
        if (options.on_finish) options.on_finish(next, job, results[next]);
        ++next;
        continue;
      }
      running.push_back({next, pid, Clock::now()});
      results[next].started = true;
      used += job.slots;
      ++next;
    }
    if (running.empty() && (stop_signals.count() > 0 || next >= jobs.size())) break;

    // The first stop: every job's stop signal (its ranks checkpoint); a later one, SIGTERM, but
    // only once the ranks had process::kForceStopAfterSeconds to do so (see there).
    const int stops = stop_signals.count();
    if (stops > stops_seen && forwarded == 0) {
      signal_all(running, jobs, 0);
      for (const auto& r : running) results[r.index].stop_sent = true;
      forwarded = 1;
      first_stop = Clock::now();
      stops_seen = 1;
    }
    if (stops > stops_seen && forwarded == 1) {
      if (Clock::now() - first_stop >= std::chrono::duration<double>(options.force_stop_after_seconds)) {
        signal_all(running, jobs, SIGTERM);
        forwarded = 2;
      } else {
        std::cerr << process::kStopNotForcedNotice;
      }
      stops_seen = stops;
    }

    bool reaped = false;
    for (size_t k = 0; k < running.size();) {
      if (const auto status = process::try_wait(running[k].pid)) {
        finish(k, *status);
        reaped = true;
      } else {
        ++k;
      }
    }
    if (!reaped) std::this_thread::sleep_for(std::chrono::duration<double>(options.poll_seconds));
  }
  return results;
}

}  // namespace segrun::cluster
