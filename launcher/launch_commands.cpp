// The multi-rank subcommands:
//   segrun launch -n N [--hosts h:s,...] [--dry-run] -- SUBCOMMAND ARGS   (mpirun; inside a Slurm
//                allocation srun, cluster/slurm_env.h)
//   segrun demo [--dir D] [--ranks N] [--iters K]   (synthesize, pack, train, print mIoU)
// A launcher first checks the command line it will run (and, for `train`, loads its config): such
// errors are one line and exit 2 before any rank starts. It forwards a Ctrl-C or SIGTERM to the
// ranks as their "checkpoint and stop" signal (launched_stop_signal) and returns their exit code.
#include "launcher/launch_commands.h"

#include <CLI/CLI.hpp>

#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <optional>
#include <system_error>

#include "cluster/local_launch.h"
#include "cluster/slurm_env.h"
#include "core/config.h"
#include "core/error.h"
#include "core/folder_lock.h"
#include "core/log.h"
#include "core/process.h"
#include "core/rank_logs.h"
#include "core/run_folder.h"
#include "core/stop_request.h"
#include "launcher/command_group.h"
#include "launcher/demo.h"
#include "launcher/train_plan.h"

namespace segrun::launcher {
namespace {

namespace fs = std::filesystem;

struct LaunchCommand {
  int ranks = 1;
  std::string hosts;
  std::vector<std::string> exports;  // --export NAME[=VALUE], to every rank
  std::vector<std::string> command;  // segrun subcommand and its arguments
  bool dry_run = false;
};

// `segrun launch` inside a Slurm allocation (SLURM_JOB_ID set, not inside a job step, no --hosts):
// starts the ranks with srun --mpi=pmix (SEGRUN_SLURM_LAUNCHER=mpirun: mpirun on the allocation's
// nodes). Returns false (and does nothing) outside an allocation; then mpirun on this node
// applies. An allocation with fewer tasks than -n is a ConfigError: the ranks would all start on
// this node, oversubscribing its GPUs while the allocation's other nodes wait. A Ctrl-C or SIGTERM of
// the launcher reaches the ranks as `stop_signal`.
bool launch_in_allocation(const LaunchCommand& cmd, int stop_signal, int* exit_code) {
  const cluster::SlurmEnv env = cluster::read_slurm_env();
  if (!env.in_allocation || env.in_step || !cmd.hosts.empty()) return false;
  if (env.ntasks > 0 && cmd.ranks > env.ntasks)
    throw ConfigError(segrun::format(
        "-n {}: Slurm job {} has {} task(s) (SLURM_NTASKS) on {} node(s); ask the allocation for {} tasks "
        "(e.g. salloc --ntasks={}, or --ntasks-per-node with -N), or put the ranks on this node on purpose with "
        "--hosts localhost:{}",
        cmd.ranks, env.job_id, env.ntasks, env.nodes.size(), cmd.ranks, cmd.ranks, cmd.ranks));
  cluster::AllocationLaunchOptions options;
  options.ranks = cmd.ranks;
  options.command.push_back(cluster::self_executable());
  options.command.insert(options.command.end(), cmd.command.begin(), cmd.command.end());
  if (const char* l = std::getenv("SEGRUN_SLURM_LAUNCHER")) options.launcher = l;
  if (const char* m = std::getenv("SEGRUN_SLURM_MPI")) options.mpi = m;
  const auto argv = cluster::build_allocation_command(env, options);
  if (cmd.dry_run) {
    std::cout << process::shell_join(argv) << "\n";
    *exit_code = 0;
    return true;
  }
  log::info("inside Slurm job {} ({} task(s) on {}): $ {}", env.job_id, env.ntasks, env.nodes.size(),
            process::shell_join(argv));
  *exit_code = cluster::run_and_wait(argv, stop_signal);
  return true;
}

// The train a launch starts, planned once (nullopt for another command): its config gives the
// ranks' stop signal, its run folder is marked failed when a rank dies. ConfigError as plan_train.
std::optional<TrainPlan> launched_train(const std::vector<std::string>& command) {
  if (command.empty() || command[0] != "train") return std::nullopt;
  const TrainCommand train = train_command_of({command.begin() + 1, command.end()});
  if (train.config.empty()) return std::nullopt;
  return plan_train(train);
}

// What the launcher forwards as "checkpoint and stop": the train's cluster.slurm.signal, else SIGUSR1.
int stop_signal_for(const std::optional<TrainPlan>& train) {
  return train ? process::local_stop_signal(train->config.cluster.slurm.signal) : SIGUSR1;
}

// After a train whose ranks ended with `exit_code` (not 0 or 75): a run whose status still says
// "running" lost a rank before rank 0 could record why (another rank failed, or was killed); it
// is marked failed, with the first error a rank logged during this launch (`logs_before`: the rank
// logs' sizes before it), as the sweep runner and the Slurm job script mark theirs. A run another
// process trains (it holds the run's lock: this launch was refused) is left as it is.
void mark_run_failed(const std::string& run_dir, int exit_code, const std::map<std::string, uintmax_t>& logs_before) {
  try {
    const RunFolder run(run_dir);
    if (run.read_status().state != RunState::kRunning) return;
    // Our ranks have ended; a holder of the run's lock is another process training it (this
    // launch was refused): its status is its own.
    if (const auto holder = lock_holder(run.lock_path()); holder && !holder->empty()) return;
    std::string ended = "the ranks ended with exit code " + std::to_string(exit_code);
    if (exit_code > 128) ended += " (a rank was killed by signal " + std::to_string(exit_code - 128) + ")";
    const std::string cause = log::first_error_since(run.log_dir(), logs_before);
    run.write_status(RunState::kFailed, cause.empty() ? ended + "; see " + run.log_dir() + "/" : cause + "; " + ended);
  } catch (const std::exception& e) {
    log::warn("could not mark the run failed: {}", first_line(e.what()));
  }
}

int run_launch(const LaunchCommand& cmd) {
  // A typo, a config error or a folder the command must not write is one line here, not one per
  // rank once mpirun has started.
  if (!check_before_launch(cmd.command)) return 0;  // --help: answered once, here
  const std::optional<TrainPlan> train = launched_train(cmd.command);
  const int stop_signal = stop_signal_for(train);
  const std::map<std::string, uintmax_t> logs_before = train && !cmd.dry_run
                                                           ? log::log_sizes(RunFolder(train->request.run_dir).log_dir())
                                                           : std::map<std::string, uintmax_t>();
  const auto ended = [&](int exit_code) {
    // Said here: the relay leaves out Open MPI's notice of a rank ended by SIGUSR1/2 (the stop
    // signal a launcher forwards), which is all that told of one killed so from elsewhere.
    if (exit_code > 128)
      log::warn("the ranks ended with exit code {}: a rank was {}", exit_code,
                process::ExitStatus{0, exit_code - 128}.describe());
    if (train && exit_code != 0 && exit_code != kExitPreempted)
      mark_run_failed(train->request.run_dir, exit_code, logs_before);
    return exit_code;
  };
  int code = 0;
  if (launch_in_allocation(cmd, stop_signal, &code)) return ended(code);
  auto argv = segrun_on_ranks(cmd.ranks, cmd.hosts, cmd.command, cmd.exports);
  if (cmd.dry_run) {
    std::cout << process::shell_join(argv) << "\n";
    return 0;
  }
  log::info("$ {}", process::shell_join(argv));
  bool stop_forwarded = false;
  const int exit_code = cluster::run_and_wait(argv, stop_signal, &stop_forwarded);
  // A stop that reached a training rank before it could handle it (it was still starting up)
  // killed it: the run is as resumable as after a checkpointed stop, from its last checkpoint.
  if (stop_forwarded && exit_code == 128 + stop_signal && train) {
    const RunFolder run(train->request.run_dir);
    bool checkpointed = false;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(run.checkpoint_dir(), ec))
      checkpointed = checkpointed || entry.path().filename().string().rfind("iter_", 0) == 0;
    if (!checkpointed)
      log::warn("stopped while the ranks were starting, before the run began: nothing to resume; start it again");
    else
      log::warn("stopped while the ranks were starting, before they could checkpoint; continue it with {}",
                run.resume_command());  // on the ranks that wrote its checkpoints, whatever this launch asked
    return kExitPreempted;
  }
  // Only training handles the stop signal (it checkpoints); an eval, predict or pack killed by it
  // was interrupted, as a shell says of Ctrl-C.
  if (stop_forwarded && exit_code == 128 + stop_signal && !train) {
    log::warn("interrupted: the ranks were stopped before they finished");
    return 128 + SIGINT;
  }
  return ended(exit_code);
}

}  // namespace

std::vector<std::string> segrun_on_ranks(int ranks, const std::string& hosts, const std::vector<std::string>& args,
                                         const std::vector<std::string>& exports) {
  cluster::LaunchOptions options;
  options.ranks = ranks;
  options.hosts = hosts;
  options.exports = exports;
  options.command.push_back(cluster::self_executable());
  options.command.insert(options.command.end(), args.begin(), args.end());
  return cluster::build_mpirun_command(options);
}

int launched_stop_signal(const std::vector<std::string>& command) { return stop_signal_for(launched_train(command)); }

void add_launch_commands(CommandRegistry& registry) {
  auto launch = std::make_shared<LaunchCommand>();  // shared with the action, alive as long as it is
  CLI::App* launch_command =
      registry.add("launch", "run a segrun subcommand on N MPI ranks: segrun launch -n 2 -- train cfg.toml",
                   [launch](MpiHolder&) { return run_launch(*launch); });
  launch_command->add_option("-n,--ranks", launch->ranks, "number of ranks")->required()->check(int_range(1, 65536));
  launch_command->add_option("--hosts", launch->hosts, "host:slots,host:slots (default: this machine)");
  launch_command
      ->add_option("--export", launch->exports,
                   "NAME=VALUE (or NAME: its value here) exported to every rank, e.g. NCCL_SOCKET_IFNAME=ib0 "
                   "(repeatable; with --hosts, NCCL_* and UCX_* go along anyway)")
      ->allow_extra_args(false);
  launch_command->add_flag("--dry-run", launch->dry_run, "print the mpirun command instead of running it");
  launch_command->add_option("command", launch->command, "the segrun subcommand and its arguments")->required();
  launch_command->positionals_at_end(true);

  auto demo = std::make_shared<DemoOptions>();
  CLI::App* demo_command =
      registry.add("demo", "synthesize ADE20K-layout data, pack it, train the tiny baseline on 2 ranks, print mIoU",
                   [demo](MpiHolder&) { return run_demo(*demo); });
  demo_command->add_option("--dir", demo->dir, "working folder")->capture_default_str()->check(non_empty());
  demo_command->add_option("--ranks", demo->ranks, "ranks")->capture_default_str()->check(int_range(1, 64));
  demo_command->add_option("--iters", demo->iters, "override the training iterations")->check(int_range(1, 100000000));
}

}  // namespace segrun::launcher
