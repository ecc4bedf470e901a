#pragma once
// Local/multi-host launch through Open MPI's mpirun: builds the command line that starts N ranks
// of the same segrun subcommand, and runs it as a child process, forwarding stop signals so that
// a Ctrl-C or a scheduler's preemption signal reaches every rank: SIGUSR1/SIGUSR2 as they are,
// the first SIGINT/SIGTERM as the ranks' stop signal (SIGUSR1, or SIGUSR2 when the run's
// cluster.slurm.signal says so; mpirun would kill the ranks on SIGINT/SIGTERM; on the stop signal
// each rank finishes its iteration, checkpoints and exits 75), a second one as itself (hard stop). As root it adds
// --allow-run-as-root; on this machine it exports OMP_NUM_THREADS = cores / ranks so LibTorch threads
// never oversubscribe (ranks on other hosts divide their own host's cores). Ranks on other hosts
// (--hosts, started over ssh) get the launcher's NCCL_* and UCX_* variables, NCCL_DEBUG=WARN and
// CUDA_DEVICE_ORDER=PCI_BUS_ID by default (as the Slurm job script exports them), and --export
// NAME[=VALUE] goes to every rank. Host lists follow Open MPI's syntax "host:slots,host:slots"
// and are validated first (a host named twice is refused).

#include <string>
#include <vector>

namespace segrun::cluster {

struct HostSlots {
  std::string host;
  int slots = 1;
};

// "a:4,b:4" -> {{a,4},{b,4}}; "a" means one slot. Throws ConfigError (a command-line mistake, exit
// 2) naming the bad entry.
std::vector<HostSlots> parse_hosts(const std::string& hosts);

struct LaunchOptions {
  int ranks = 1;
  std::string hosts;                 // "" = this machine only
  std::vector<std::string> command;  // the program and its arguments, run on every rank
  std::string mpirun = "mpirun";
  bool allow_run_as_root = false;    // set automatically when running as root
  int threads_per_rank = 0;          // 0 = cores / ranks on each host (at least 1)
  std::vector<std::string> exports;  // NAME=VALUE or NAME, passed to every rank (mpirun -x)
};

// The names of the variables of this process's environment that start with one of `prefixes`, sorted.
std::vector<std::string> environment_names_with_prefixes(const std::vector<std::string>& prefixes);

// ConfigError (a command-line mistake) for -n < 1, no command, or a --hosts that is malformed or
// has fewer slots than ranks.
std::vector<std::string> build_mpirun_command(const LaunchOptions& options);

// Runs argv (argv[0] looked up in PATH), forwarding stop signals as above (`stop_signal`: SIGUSR1
// or SIGUSR2; a Ctrl-C, SIGTERM or hangup of this process goes as it, and it is also what the
// child gets should this process die); returns its exit code (128 + signal when it was killed)
// and, in *stop_forwarded when given, whether a signal was forwarded to it. Its stderr reaches
// this process's through MpirunErrFilter, relayed by a process that outlives this one
// (mpirun_output.h); stdout is this process's. Throws ClusterError when it cannot be started.
int run_and_wait(const std::vector<std::string>& argv, int stop_signal, bool* stop_forwarded = nullptr);

// Absolute path of the running executable (/proc/self/exe).
std::string self_executable();

}  // namespace segrun::cluster
