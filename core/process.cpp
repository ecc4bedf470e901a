#include "core/process.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <sys/prctl.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <string_view>
#include <thread>

#include "core/error.h"

namespace segrun::process {

const char kStopNotForcedNotice[] =
    "segrun: the ranks are checkpointing before they stop; a second Ctrl-C (or SIGTERM) 5 s or more after the first "
    "aborts them\n";

namespace {

constexpr int kForwardedSignals[5] = {SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2};
constexpr int kCountedSignals[4] = {SIGINT, SIGTERM, SIGHUP, SIGUSR1};

// A closed terminal (SIGHUP) stops like Ctrl-C, unless the process was started to ignore it
// (nohup): that choice is kept.
bool hangup_ignored(int sig) { return sig == SIGHUP && ignores_hangup(); }

std::atomic<pid_t> g_forward_target{0};
std::atomic<int> g_forward_first_stop{0};
std::atomic<int> g_forward_stops{0};
std::atomic<int> g_forwarded{0};  // signals forwarded by the current ScopedSignalForwarding
std::atomic<int64_t> g_forward_first_stop_ns{0};
std::atomic<int64_t> g_forward_force_after_ns{0};
volatile sig_atomic_t g_signal_count = 0;

int64_t monotonic_ns() {  // async-signal-safe (clock_gettime)
  struct timespec now {};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<int64_t>(now.tv_sec) * 1000000000 + now.tv_nsec;
}

extern "C" void segrun_process_forward(int sig) {
  const int saved_errno = errno;  // write() and kill() may set it under the interrupted code
  const pid_t target = g_forward_target.load();
  if (target == 0) return;
  if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP) {
    if (g_forward_stops.fetch_add(1) == 0) {
      g_forward_first_stop_ns.store(monotonic_ns());
      sig = g_forward_first_stop.load();
    } else if (monotonic_ns() - g_forward_first_stop_ns.load() < g_forward_force_after_ns.load()) {
      const ssize_t written = ::write(STDERR_FILENO, kStopNotForcedNotice, std::strlen(kStopNotForcedNotice));
      (void)written;
      errno = saved_errno;
      return;
    }
  }
  g_forwarded.fetch_add(1);
  ::kill(target, sig);
  errno = saved_errno;
}

extern "C" void segrun_process_count(int) { g_signal_count = g_signal_count + 1; }

// What the child reports through the close-on-exec pipe when it cannot start the program.
struct StartFailure {
  int stage;  // kStageCwd or kStageExec
  int error;  // errno
};
constexpr int kStageCwd = 1;
constexpr int kStageExec = 2;

const char* signal_name(int sig) {
  switch (sig) {
    case SIGINT: return "SIGINT";
    case SIGTERM: return "SIGTERM";
    case SIGKILL: return "SIGKILL";
    case SIGUSR1: return "SIGUSR1";
    case SIGUSR2: return "SIGUSR2";
    case SIGSEGV: return "SIGSEGV";
    case SIGABRT: return "SIGABRT";
    case SIGBUS: return "SIGBUS";
    case SIGPIPE: return "SIGPIPE";
    case SIGHUP: return "SIGHUP";
    default: return nullptr;
  }
}

void close_if_open(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

}  // namespace

std::string ExitStatus::describe() const {
  if (signal == 0) return "exit code " + std::to_string(code);
  const char* name = signal_name(signal);
  return std::string("killed by ") + (name ? name : "signal " + std::to_string(signal));
}

ExitStatus decode_wait_status(int status) {
  ExitStatus s;
  if (WIFEXITED(status)) {
    s.code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    s.signal = WTERMSIG(status);
  } else {
    s.code = 1;
  }
  return s;
}

Child spawn(const SpawnOptions& o) {
  if (o.argv.empty() || o.argv[0].empty()) throw ProcessError("spawn: no program given");
  const std::string& program = o.argv[0];
  // Everything the child needs is prepared here: after fork() it only calls async-signal-safe
  // functions.
  std::vector<char*> args;
  for (const auto& a : o.argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  // The child's environment, made here: after fork the child only execs.
  std::vector<char*> envp;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    const std::string_view name = std::string_view(*entry).substr(0, std::string_view(*entry).find('='));
    const bool replaced = std::any_of(o.env.begin(), o.env.end(), [&](const std::string& e) {
      return std::string_view(e).substr(0, e.find('=')) == name;
    });
    if (!replaced) envp.push_back(*entry);
  }
  for (const auto& e : o.env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  int log_fd = -1, null_fd = -1;
  int report[2] = {-1, -1}, out_pipe[2] = {-1, -1}, err_pipe[2] = {-1, -1};
  auto cleanup = [&] {
    for (int* fd : {&log_fd, &null_fd, &report[0], &report[1], &out_pipe[0], &out_pipe[1], &err_pipe[0], &err_pipe[1]})
      close_if_open(*fd);
  };
  const bool to_file = o.out == Output::kAppendFile || o.err == Output::kAppendFile;
  if (to_file) {
    log_fd = ::open(o.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log_fd < 0)
      throw ProcessError(o.log_path + ": cannot open the log of " + program + ": " + std::strerror(errno));
  }
  null_fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null_fd < 0 || ::pipe2(report, O_CLOEXEC) != 0 ||
      (o.out == Output::kCapture && ::pipe2(out_pipe, O_CLOEXEC) != 0) ||
      (o.err == Output::kCapture && ::pipe2(err_pipe, O_CLOEXEC) != 0)) {
    const std::string why = std::strerror(errno);
    cleanup();
    throw ProcessError("cannot start " + program + ": " + why);
  }
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    const std::string why = std::strerror(errno);
    cleanup();
    throw ProcessError("cannot start " + program + ": fork failed: " + why);
  }
  if (pid == 0) {
    if (o.new_process_group) ::setpgid(0, 0);
    if (o.parent_death_signal != 0) {
      ::prctl(PR_SET_PDEATHSIG, o.parent_death_signal);
      if (::getppid() != parent) ::raise(o.parent_death_signal);  // the parent is gone already
    }
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    for (int sig : kForwardedSignals) ::sigaction(sig, &dfl, nullptr);
    if (o.stdin_null) ::dup2(null_fd, STDIN_FILENO);
    auto route = [&](Output mode, int pipe_write, int target) {
      if (mode == Output::kNull) ::dup2(null_fd, target);
      if (mode == Output::kCapture) ::dup2(pipe_write, target);
      if (mode == Output::kAppendFile) ::dup2(log_fd, target);
    };
    route(o.out, out_pipe[1], STDOUT_FILENO);
    route(o.err, err_pipe[1], STDERR_FILENO);
    StartFailure failure{0, 0};
    if (!o.cwd.empty() && ::chdir(o.cwd.c_str()) != 0) {
      failure = {kStageCwd, errno};
    } else {
      ::execvpe(args[0], args.data(), envp.data());
      failure = {kStageExec, errno};
    }
    [[maybe_unused]] ssize_t written = ::write(report[1], &failure, sizeof(failure));
    ::_exit(127);
  }
  if (o.new_process_group) ::setpgid(pid, pid);  // also done by the child; whichever runs first wins
  close_if_open(report[1]);
  close_if_open(out_pipe[1]);
  close_if_open(err_pipe[1]);
  close_if_open(log_fd);
  close_if_open(null_fd);
  StartFailure failure{0, 0};
  ssize_t n;
  do {
    n = ::read(report[0], &failure, sizeof(failure));
  } while (n < 0 && errno == EINTR);
  close_if_open(report[0]);
  if (n == static_cast<ssize_t>(sizeof(failure))) {
    wait(pid);
    cleanup();
    if (failure.stage == kStageCwd)
      throw ProcessError("cannot run " + program + " in " + o.cwd + ": " + std::strerror(failure.error), failure.error);
    throw ProcessError("cannot run " + program + ": " + std::strerror(failure.error) +
                           (failure.error == ENOENT ? " (not installed, or not in PATH?)" : ""),
                       failure.error);
  }
  return Child{pid, out_pipe[0], err_pipe[0]};
}

ExitStatus wait(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return ExitStatus{};  // ECHILD: collected already
  }
  return decode_wait_status(status);
}

std::optional<ExitStatus> try_wait(pid_t pid) {
  int status = 0;
  const pid_t r = ::waitpid(pid, &status, WNOHANG);
  if (r == 0) return std::nullopt;
  if (r < 0) return errno == EINTR ? std::nullopt : std::optional<ExitStatus>(ExitStatus{});
  return decode_wait_status(status);
}

Captured run_captured(const std::vector<std::string>& argv, const std::string& cwd, size_t max_bytes) {
  SpawnOptions options;
  options.argv = argv;
  options.cwd = cwd;
  options.stdin_null = true;
  options.out = Output::kCapture;
  options.err = Output::kCapture;
  Child child = spawn(options);
  Captured result;
  pollfd fds[2] = {{child.out_fd, POLLIN, 0}, {child.err_fd, POLLIN, 0}};
  std::string* sinks[2] = {&result.out, &result.err};
  int open_fds = 2;
  char buf[4096];
  while (open_fds > 0) {
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      const ssize_t n = ::read(fds[i].fd, buf, sizeof(buf));
      if (n > 0) {
        if (sinks[i]->size() < max_bytes)
          sinks[i]->append(buf, std::min(static_cast<size_t>(n), max_bytes - sinks[i]->size()));
      } else if (n == 0 || errno != EINTR) {
        close_if_open(fds[i].fd);
        --open_fds;
      }
    }
  }
  for (auto& f : fds) close_if_open(f.fd);
  result.status = wait(child.pid);
  return result;
}

ScopedSignalForwarding::ScopedSignalForwarding(pid_t target, int first_stop_as, double force_after_seconds) {
  g_forward_stops.store(0);
  g_forward_force_after_ns.store(static_cast<int64_t>(force_after_seconds * 1e9));
  g_forward_first_stop_ns.store(0);
  g_forwarded.store(0);
  g_forward_first_stop.store(first_stop_as);
  g_forward_target.store(target);
  struct sigaction action {};
  action.sa_handler = segrun_process_forward;
  // One forwarded signal at a time: a SIGHUP in the middle of the first Ctrl-C's handler would
  // otherwise see the stop counted but its time not yet set, and be forwarded at once.
  sigemptyset(&action.sa_mask);
  for (const int sig : kForwardedSignals) sigaddset(&action.sa_mask, sig);
  for (int i = 0; i < 5; ++i)
    ::sigaction(kForwardedSignals[i], hangup_ignored(kForwardedSignals[i]) ? nullptr : &action, &old_[i]);
}

ScopedSignalForwarding::~ScopedSignalForwarding() {
  for (int i = 0; i < 5; ++i) ::sigaction(kForwardedSignals[i], &old_[i], nullptr);
  g_forward_target.store(0);
}

bool ScopedSignalForwarding::forwarded_any() const { return g_forwarded.load() > 0; }

ScopedSignalCounter::ScopedSignalCounter() {
  g_signal_count = 0;
  struct sigaction action {};
  action.sa_handler = segrun_process_count;
  sigemptyset(&action.sa_mask);
  for (int i = 0; i < 4; ++i)
    ::sigaction(kCountedSignals[i], hangup_ignored(kCountedSignals[i]) ? nullptr : &action, &old_[i]);
}

ScopedSignalCounter::~ScopedSignalCounter() {
  for (int i = 0; i < 4; ++i) ::sigaction(kCountedSignals[i], &old_[i], nullptr);
}

int ScopedSignalCounter::count() const { return g_signal_count; }

int ScopedSignalCounter::last_count() { return g_signal_count; }

bool ignores_hangup() {
  struct sigaction current {};
  return ::sigaction(SIGHUP, nullptr, &current) == 0 && current.sa_handler == SIG_IGN;
}

bool is_environment_name(const std::string& name) {
  static const char* const kFirst = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_";
  return !name.empty() && std::strchr(kFirst, name.front()) != nullptr &&
         name.find_first_not_of(std::string(kFirst) + "0123456789") == std::string::npos;
}

int usable_cores() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

std::string host_name() {
  char name[256] = {};
  if (::gethostname(name, sizeof(name) - 1) != 0) return "";
  return name;
}

std::string shell_quote(const std::string& arg, bool always) {
  if (!always && !arg.empty() &&
      arg.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%") ==
          std::string::npos)
    return arg;
  std::string out = "'";
  for (char c : arg) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::string shell_join(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& a : argv) out += (out.empty() ? "" : " ") + shell_quote(a);
  return out;
}

}  // namespace segrun::process
