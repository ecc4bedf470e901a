#include "cluster/local_launch.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <system_error>
#include <thread>

#include "cluster/mpirun_output.h"
#include "core/error.h"
#include "core/launcher_watch.h"
#include "core/process.h"

namespace segrun::cluster {

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
  // One that comes while mpirun starts the ranks reaches none: the ranks on this host watch this
  // process too (core/launcher_watch.h), and the stderr relay sends the signal again.
  options.env = launcher_environment();
  // Its stderr through MpirunErrFilter, in a relay process that outlives this one (mpirun_output.h).
  options.err = process::Output::kCapture;
  process::Child child;
  pid_t relay = -1;
  try {
    child = process::spawn(options);
    relay = start_stderr_relay(child.err_fd, OrphanedRanksStop{child.pid, stop_signal});
  } catch (const ProcessError& e) {
    if (child.pid > 0) {  // mpirun started, its relay did not: mpirun must not write into a pipe without a reader
      ::kill(child.pid, SIGKILL);
      process::wait(child.pid);
    }
    if (child.err_fd >= 0) ::close(child.err_fd);
    throw ClusterError(e.what());
  }
  ::close(child.err_fd);
  process::ScopedSignalForwarding forwarding(child.pid, stop_signal);
  const int code = process::wait(child.pid).shell_code();
  if (stop_forwarded) *stop_forwarded = forwarding.forwarded_any();
  // What mpirun wrote last is out before this process says more; a process mpirun left holding
  // the pipe (an ssh) is not waited for past 2 s: the relay goes on alone until it lets go.
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (!process::try_wait(relay) && std::chrono::steady_clock::now() < give_up)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  return code;
}

std::string self_executable() {
  std::error_code ec;
  auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) throw ClusterError("cannot resolve /proc/self/exe: " + ec.message());
  return p.string();
}

}  // namespace segrun::cluster
