#include "cluster/local_launch.h"

#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <sstream>
#include <system_error>
#include <thread>
#include <utility>

#include "cluster/mpirun_output.h"
#include "core/error.h"
#include "core/process.h"

namespace segrun::cluster {
namespace {

void write_text(const std::string& text) {
  if (text.empty()) return;
  std::fwrite(text.data(), 1, text.size(), stderr);
  std::fflush(stderr);
}

void write_lines(const std::vector<std::string>& lines) {
  std::string text;
  for (const auto& line : lines) text += line + "\n";
  write_text(text);
}

// Copies mpirun's stderr (the read end `fd`, closed here) to this process's through
// MpirunErrFilter, line by line, until the stream ends -- or, once `child_done` is set, for at
// most kDrainAfterExit more (a process mpirun left behind, an ssh say, may hold the pipe open and
// write on). A line longer than kLongestLine goes out in pieces; after 200 ms without output,
// what the filter holds and an unfinished line go out as they are.
void relay_filtered(int fd, const std::atomic<bool>& child_done) {
  constexpr auto kDrainAfterExit = std::chrono::seconds(2);
  constexpr size_t kLongestLine = 64 * 1024;
  MpirunErrFilter filter;
  std::string pending;
  char buffer[4096];
  std::optional<std::chrono::steady_clock::time_point> drain_until;
  while (true) {
    if (child_done && !drain_until) drain_until = std::chrono::steady_clock::now() + kDrainAfterExit;
    if (drain_until && std::chrono::steady_clock::now() >= *drain_until) break;
    pollfd readable{fd, POLLIN, 0};
    const int ready = ::poll(&readable, 1, 200);
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) break;
    if (ready == 0) {
      if (drain_until) break;  // quiet after mpirun's end: all was said
      // Quiet for a moment: what is held goes out (a block of dashes that is no help block, a
      // progress line rewritten with '\r' and no newline) instead of waiting for more.
      write_lines(filter.finish());
      if (!pending.empty()) write_text(std::exchange(pending, std::string()));
      continue;
    }
    const ssize_t n = ::read(fd, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    pending.append(buffer, static_cast<size_t>(n));
    size_t start = 0;
    for (size_t end; (end = pending.find('\n', start)) != std::string::npos; start = end + 1)
      write_lines(filter.line(pending.substr(start, end - start)));
    pending.erase(0, start);
    if (pending.size() > kLongestLine) write_lines(filter.line(std::exchange(pending, std::string())));
  }
  std::vector<std::string> rest = filter.finish();
  if (!pending.empty()) rest.push_back(pending);
  write_lines(rest);
  ::close(fd);
}

}  // namespace

std::vector<HostSlots> parse_hosts(const std::string& hosts) {
  std::vector<HostSlots> out;
  std::stringstream ss(hosts);
  std::string entry;
  while (std::getline(ss, entry, ',')) {
    if (entry.empty()) throw ConfigError("--hosts '" + hosts + "': empty host entry");
    HostSlots h;
    auto colon = entry.find(':');
    h.host = entry.substr(0, colon);
    if (h.host.empty() || h.host.find_first_not_of(
                              "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_") != std::string::npos)
      throw ConfigError("--hosts: '" + entry + "' is not a valid host name");
    if (colon != std::string::npos) {
      std::string slots = entry.substr(colon + 1);
      char* end = nullptr;
      long v = std::strtol(slots.c_str(), &end, 10);
      if (slots.empty() || *end != '\0' || v < 1 || v > 4096)
        throw ConfigError("--hosts: '" + entry + "': slots must be a positive integer");
      h.slots = static_cast<int>(v);
    }
    for (const HostSlots& earlier : out)
      if (earlier.host == h.host)
        throw ConfigError("--hosts: " + h.host + " is given twice ('" + hosts +
                          "'); give each host once, with all its slots (" + h.host + ":N)");
    out.push_back(h);
  }
  if (out.empty()) throw ConfigError("--hosts: no hosts given");
  return out;
}

std::vector<std::string> build_mpirun_command(const LaunchOptions& options) {
  if (options.ranks < 1) throw ConfigError("-n must be at least 1 (got " + std::to_string(options.ranks) + ")");
  if (options.command.empty()) throw ConfigError("launch: no command given after --");
  std::vector<std::string> argv{options.mpirun, "-np", std::to_string(options.ranks)};
  int ranks_per_host = options.ranks;
  if (!options.hosts.empty()) {
    auto hosts = parse_hosts(options.hosts);
    int slots = 0;
    for (const auto& h : hosts) slots += h.slots;
    if (slots < options.ranks)
      throw ConfigError("--hosts provides " + std::to_string(slots) + " slots for -n " + std::to_string(options.ranks));
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
  // --stdin none: mpirun runs in its own process group (see run_and_wait) and must not read the tty.
  argv.insert(argv.end(), {"--stdin", "none", "--bind-to", "none"});
  // Threads per rank: this machine's cores / its ranks. On other hosts each rank divides its own
  // host's cores among the ranks there (dist/rank_context.cpp), unless told a number.
  if (options.threads_per_rank > 0 || options.hosts.empty()) {
    const int threads =
        options.threads_per_rank > 0
            ? options.threads_per_rank
            : std::max(1, process::usable_cores() / std::max(1, std::min(ranks_per_host, options.ranks)));
    argv.insert(argv.end(), {"-x", "OMP_NUM_THREADS=" + std::to_string(threads)});
  }
  // SEGRUN_WORLD_SIZE: each rank checks that MPI started the world asked for (dist/rank_context.h).
  argv.insert(argv.end(), {"-x", "SEGRUN_LAUNCHED=1", "-x", "SEGRUN_WORLD_SIZE=" + std::to_string(options.ranks)});
  if (!options.hosts.empty()) {
    // Ranks started over ssh get only what -x names: the launcher's NCCL and UCX settings
    // (interfaces, HCAs, debug level), NCCL_DEBUG=WARN and PCI bus order of the GPUs by default,
    // as the Slurm job script exports them.
    std::vector<std::string> names = environment_names_with_prefixes({"NCCL_", "UCX_"});
    if (std::getenv("NCCL_DEBUG") == nullptr) argv.insert(argv.end(), {"-x", "NCCL_DEBUG=WARN"});
    argv.insert(argv.end(), {"-x", "CUDA_DEVICE_ORDER=PCI_BUS_ID"});
    for (const std::string& name : names) argv.insert(argv.end(), {"-x", name});
  }
  for (const std::string& e : options.exports) {
    if (!process::is_environment_name(e.substr(0, e.find('='))))
      throw ConfigError("--export '" + e + "': expected NAME=VALUE or NAME (an environment variable name)");
    argv.insert(argv.end(), {"-x", e});
  }
  argv.insert(argv.end(), options.command.begin(), options.command.end());
  return argv;
}

std::vector<std::string> environment_names_with_prefixes(const std::vector<std::string>& prefixes) {
  std::vector<std::string> names;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    const std::string text(*entry);
    const std::string name = text.substr(0, text.find('='));
    for (const std::string& prefix : prefixes)
      if (name.rfind(prefix, 0) == 0) {
        names.push_back(name);
        break;
      }
  }
  std::sort(names.begin(), names.end());
  return names;
}

int run_and_wait(const std::vector<std::string>& argv, int stop_signal, bool* stop_forwarded) {
  if (stop_signal != SIGUSR1 && stop_signal != SIGUSR2)
    throw ClusterError("the ranks' stop signal must be SIGUSR1 or SIGUSR2 (mpirun forwards only those)");
  process::SpawnOptions options;
  options.argv = argv;
  // Own process group: a terminal's Ctrl-C reaches only segrun, which forwards it as above
  // (mpirun in the terminal's group would kill its ranks before they can checkpoint).
  options.new_process_group = true;
  // A launcher killed outright (SIGKILL, OOM) still stops its ranks: mpirun gets the stop signal
  // and forwards it, and they checkpoint and exit, instead of training on unwatched.
  options.parent_death_signal = stop_signal;
  // Its stderr through MpirunErrFilter (mpirun_output.h); should this process die, mpirun's
  // writes there fail instead of killing it while its ranks checkpoint.
  options.err = process::Output::kCapture;
  options.ignore_sigpipe = true;
  process::Child child;
  try {
    child = process::spawn(options);
  } catch (const ProcessError& e) {
    throw ClusterError(e.what());
  }
  std::atomic<bool> child_done{false};
  std::thread relay(relay_filtered, child.err_fd, std::cref(child_done));
  struct Finish {  // the relay ends however this function does
    std::atomic<bool>& child_done;
    std::thread& relay;
    ~Finish() {
      child_done = true;
      relay.join();
    }
  } finish{child_done, relay};
  process::ScopedSignalForwarding forwarding(child.pid, stop_signal);
  const int code = process::wait(child.pid).shell_code();
  child_done = true;
  if (stop_forwarded) *stop_forwarded = forwarding.forwarded_any();
  return code;
}

std::string self_executable() {
  std::error_code ec;
  auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) throw ClusterError("cannot resolve /proc/self/exe: " + ec.message());
  return p.string();
}

}  // namespace segrun::cluster
