#include "cluster/local_launch.h"

#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <thread>

#include "core/error.h"

namespace segrun::cluster {
namespace {

std::atomic<pid_t> g_child{0};        // the one running child, for signal forwarding
std::atomic<int> g_stop_requests{0};  // SIGINT/SIGTERM received while it runs

// mpirun kills its ranks at once on SIGINT/SIGTERM, but forwards SIGUSR1 to them: the first
// Ctrl-C (or SIGTERM) therefore becomes SIGUSR1 — every rank finishes its iteration,
// checkpoints and exits — and a second one is passed on as is, for a hard stop.
void forward_signal(int sig) {
  pid_t child = g_child.load();
  if (child <= 0) return;
  if ((sig == SIGINT || sig == SIGTERM) && g_stop_requests.fetch_add(1) == 0) sig = SIGUSR1;
  ::kill(child, sig);
}

int local_cores() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

}  // namespace

std::vector<HostSlots> parse_hosts(const std::string& hosts) {
  std::vector<HostSlots> out;
  std::stringstream ss(hosts);
  std::string entry;
  while (std::getline(ss, entry, ',')) {
    if (entry.empty()) throw ClusterError("--hosts '" + hosts + "': empty host entry");
    HostSlots h;
    auto colon = entry.find(':');
    h.host = entry.substr(0, colon);
    if (h.host.empty() || h.host.find_first_not_of(
                              "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_") !=
                              std::string::npos)
      throw ClusterError("--hosts: '" + entry + "' is not a valid host name");
    if (colon != std::string::npos) {
      std::string slots = entry.substr(colon + 1);
      char* end = nullptr;
      long v = std::strtol(slots.c_str(), &end, 10);
      if (slots.empty() || *end != '\0' || v < 1 || v > 4096)
        throw ClusterError("--hosts: '" + entry + "': slots must be a positive integer");
      h.slots = static_cast<int>(v);
    }
    out.push_back(h);
  }
  if (out.empty()) throw ClusterError("--hosts: no hosts given");
  return out;
}

std::vector<std::string> build_mpirun_command(const LaunchOptions& options) {
  if (options.ranks < 1) throw ClusterError("-n must be at least 1 (got " + std::to_string(options.ranks) + ")");
  if (options.command.empty()) throw ClusterError("launch: no command given after --");
  std::vector<std::string> argv{options.mpirun, "-np", std::to_string(options.ranks)};
  int ranks_per_host = options.ranks;
  if (!options.hosts.empty()) {
    auto hosts = parse_hosts(options.hosts);
    int slots = 0;
    for (const auto& h : hosts) slots += h.slots;
    if (slots < options.ranks)
      throw ClusterError("--hosts provides " + std::to_string(slots) + " slots for -n " +
                         std::to_string(options.ranks));
    std::string list;
    ranks_per_host = 0;
    for (const auto& h : hosts) {
      list += (list.empty() ? "" : ",") + h.host + ":" + std::to_string(h.slots);
      ranks_per_host = std::max(ranks_per_host, h.slots);
    }
    argv.insert(argv.end(), {"--host", list});
  } else {
    argv.push_back("--oversubscribe");
  }
  bool as_root = options.allow_run_as_root || ::geteuid() == 0;
  if (as_root) argv.push_back("--allow-run-as-root");
  int threads = options.threads_per_rank > 0
                    ? options.threads_per_rank
                    : std::max(1, local_cores() / std::max(1, std::min(ranks_per_host, options.ranks)));
  // --stdin none: mpirun runs in its own process group (see run_and_wait) and must not read the tty.
  // SEGRUN_WORLD_SIZE: each rank checks that MPI started the world asked for (dist/rank_context.h).
  argv.insert(argv.end(), {"--stdin", "none", "--bind-to", "none", "-x", "OMP_NUM_THREADS=" + std::to_string(threads),
                           "-x", "SEGRUN_LAUNCHED=1", "-x", "SEGRUN_WORLD_SIZE=" + std::to_string(options.ranks)});
  argv.insert(argv.end(), options.command.begin(), options.command.end());
  return argv;
}

int run_and_wait(const std::vector<std::string>& argv) {
  if (argv.empty()) throw ClusterError("nothing to run");
  pid_t pid = ::fork();
  if (pid < 0) throw ClusterError("fork failed: " + std::string(std::strerror(errno)));
  if (pid == 0) {
    // Own process group: a terminal's Ctrl-C reaches only segrun, which forwards it as above
    // (mpirun in the terminal's group would kill its ranks before they can checkpoint).
    ::setpgid(0, 0);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    std::fprintf(stderr, "segrun: cannot run %s: %s\n", argv[0].c_str(), std::strerror(errno));
    ::_exit(127);
  }
  g_stop_requests.store(0);
  g_child.store(pid);
  struct sigaction action {}, old_int {}, old_term {}, old_usr1 {};
  action.sa_handler = forward_signal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, &old_int);
  sigaction(SIGTERM, &action, &old_term);
  sigaction(SIGUSR1, &action, &old_usr1);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);
  sigaction(SIGUSR1, &old_usr1, nullptr);
  g_child.store(0);
  if (WIFEXITED(status)) {
    int code = WEXITSTATUS(status);
    if (code == 127) throw ClusterError("cannot run '" + argv[0] + "' (not installed or not in PATH?)");
    return code;
  }
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

std::string shell_quote(const std::string& arg) {
  if (!arg.empty() && arg.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                            "0123456789-_./=:,+@%") == std::string::npos)
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

std::string self_executable() {
  std::error_code ec;
  auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) throw ClusterError("cannot resolve /proc/self/exe: " + ec.message());
  return p.string();
}

}  // namespace segrun::cluster
