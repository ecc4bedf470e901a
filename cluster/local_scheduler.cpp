#include "cluster/local_scheduler.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "core/error.h"

namespace segrun::cluster {
namespace {

using Clock = std::chrono::steady_clock;

volatile sig_atomic_t g_stop_signals = 0;  // stop signals received during run_local_jobs

extern "C" void segrun_local_scheduler_on_signal(int) { g_stop_signals = g_stop_signals + 1; }

// Installs the stop handlers for its lifetime and restores the previous ones.
class StopHandlers {
 public:
  StopHandlers() {
    g_stop_signals = 0;
    struct sigaction action {};
    action.sa_handler = segrun_local_scheduler_on_signal;
    sigemptyset(&action.sa_mask);
    for (size_t i = 0; i < kSignals.size(); ++i) sigaction(kSignals[i], &action, &old_[i]);
  }
  ~StopHandlers() {
    for (size_t i = 0; i < kSignals.size(); ++i) sigaction(kSignals[i], &old_[i], nullptr);
  }
  StopHandlers(const StopHandlers&) = delete;
  StopHandlers& operator=(const StopHandlers&) = delete;

 private:
  static constexpr std::array<int, 3> kSignals{SIGINT, SIGTERM, SIGUSR1};
  std::array<struct sigaction, 3> old_{};
};

struct Running {
  size_t index;
  pid_t pid;
  Clock::time_point start;
};

// Child side of fork(): own process group, dies-with-parent signal, log redirection, exec.
[[noreturn]] void exec_child(const LocalJob& job, pid_t parent) {
  ::setpgid(0, 0);
  ::prctl(PR_SET_PDEATHSIG, SIGUSR1);
  if (::getppid() != parent) ::raise(SIGUSR1);  // parent already gone
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGUSR1}) sigaction(sig, &dfl, nullptr);
  if (!job.log_path.empty()) {
    int fd = ::open(job.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
      std::fprintf(stderr, "segrun: cannot open log %s: %s\n", job.log_path.c_str(),
                   std::strerror(errno));
      ::_exit(126);
    }
    ::dup2(fd, STDOUT_FILENO);
    ::dup2(fd, STDERR_FILENO);
  }
  std::vector<char*> args;
  for (const auto& a : job.argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  ::execvp(args[0], args.data());
  std::fprintf(stderr, "segrun: cannot run %s: %s\n", job.argv[0].c_str(), std::strerror(errno));
  ::_exit(127);
}

int decode_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

void signal_all(const std::vector<Running>& running, int sig) {
  for (const auto& r : running) ::kill(-r.pid, sig);  // the job's whole process group
}

}  // namespace

int usable_cores() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

bool local_stop_requested() { return g_stop_signals > 0; }

std::vector<LocalJobResult> run_local_jobs(const std::vector<LocalJob>& jobs,
                                           const LocalSchedulerOptions& options) {
  for (const auto& job : jobs) {
    if (job.argv.empty()) throw ClusterError("job '" + job.name + "': empty command");
    if (job.slots < 1) throw ClusterError("job '" + job.name + "': slots must be at least 1");
  }
  const int cores = options.cores > 0 ? options.cores : usable_cores();
  const size_t max_parallel =
      options.max_parallel > 0 ? static_cast<size_t>(options.max_parallel) : jobs.size() + 1;
  std::vector<LocalJobResult> results(jobs.size());
  std::vector<Running> running;
  StopHandlers handlers;
  const pid_t self = ::getpid();
  int used = 0;
  size_t next = 0;
  int forwarded = 0;  // stop signals forwarded so far (1: SIGUSR1, 2: SIGTERM)

  auto finish = [&](size_t k, int status) {
    const Running r = running[k];
    running.erase(running.begin() + static_cast<long>(k));
    used -= jobs[r.index].slots;
    LocalJobResult& result = results[r.index];
    result.exit_code = decode_status(status);
    result.seconds = std::chrono::duration<double>(Clock::now() - r.start).count();
    if (options.on_finish) options.on_finish(r.index, jobs[r.index], result);
  };
  auto wait_all = [&] {
    while (!running.empty()) {
      int status = 0;
      pid_t pid = ::waitpid(running.front().pid, &status, 0);
      if (pid < 0 && errno == EINTR) continue;
      finish(0, pid < 0 ? 0 : status);
    }
  };

  while (true) {
    // Start what fits: queue order, a job wider than the budget runs alone.
    while (g_stop_signals == 0 && next < jobs.size() && running.size() < max_parallel &&
           (running.empty() || used + jobs[next].slots <= cores)) {
      const LocalJob& job = jobs[next];
      if (options.on_start) options.on_start(next, job);
      pid_t pid = ::fork();
      if (pid < 0) {
        const std::string why = std::strerror(errno);
        signal_all(running, SIGUSR1);
        wait_all();
        throw ClusterError("job '" + job.name + "': fork failed: " + why);
      }
      if (pid == 0) exec_child(job, self);
      ::setpgid(pid, pid);  // also done by the child; whichever runs first wins
      running.push_back({next, pid, Clock::now()});
      results[next].started = true;
      used += job.slots;
      ++next;
    }
    if (running.empty() && (g_stop_signals > 0 || next >= jobs.size())) break;

    const int stops = g_stop_signals;
    if (stops > forwarded && forwarded < 2) {
      const int sig = forwarded == 0 ? SIGUSR1 : SIGTERM;
      signal_all(running, sig);
      for (const auto& r : running) results[r.index].stop_sent = true;
      forwarded = std::min(2, stops);
      if (forwarded == 2 && sig == SIGUSR1) signal_all(running, SIGTERM);
    }

    bool reaped = false;
    for (size_t k = 0; k < running.size();) {
      int status = 0;
      pid_t pid = ::waitpid(running[k].pid, &status, WNOHANG);
      if (pid == running[k].pid || (pid < 0 && errno == ECHILD)) {
        finish(k, pid < 0 ? 0 : status);
        reaped = true;
      } else {
        ++k;
      }
    }
    if (!reaped)
      std::this_thread::sleep_for(std::chrono::duration<double>(options.poll_seconds));
  }
  return results;
}

}  // namespace segrun::cluster
