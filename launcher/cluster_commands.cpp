// `segrun submit | status | cancel`: the CLI of sweeps/slurm_jobs.h (the resource flags bind to
// its SlurmOverrides' optionals). None of them starts MPI in this process.
#include "launcher/command_group.h"

#include <CLI/CLI.hpp>

#include <filesystem>
#include <iostream>
#include <system_error>

#include "core/error.h"
#include "launcher/train_plan.h"
#include "sweeps/slurm_jobs.h"

namespace segrun::launcher {

namespace {

struct ClusterOptions {
  CLI::App* submit = nullptr;
  CLI::App* status = nullptr;
  CLI::App* cancel = nullptr;
  sweeps::SubmitRequest request;
  std::string on = "slurm";
  std::string status_run;
  std::string cancel_target;
  std::string cancel_runs_dir;
};

int run_cluster_command(const ClusterOptions& s, MpiHolder& mpi);

}  // namespace

void add_cluster_commands(CommandRegistry& registry) {
  auto options = std::make_shared<ClusterOptions>();  // shared by the actions, alive as long as they are
  ClusterOptions& s = *options;
  const CommandAction action = [options](MpiHolder& mpi) { return run_cluster_command(*options, mpi); };
  s.submit = registry.add(
      "submit",
      "submit a run (CONFIG [k=v...], or a RUN_DIR: its config.toml) or a sweep (SPEC, as a job array) to Slurm; "
      "preempted runs requeue and resume",
      action);
  s.submit
      ->add_option("target", s.request.target,
                   "experiment config TOML, a run folder (its config.toml), or sweep spec TOML")
      ->required();
  s.submit->add_option("overrides", s.request.overrides, "key=value overrides (with a CONFIG)");
  s.submit->add_option("--on", s.on, "scheduler")->capture_default_str()->check(CLI::IsMember({"slurm"}));
  // Resource flags bind to SlurmOverrides' optionals: a flag not given keeps the config's value.
  sweeps::SlurmOverrides& o = s.request.slurm;
  auto flag = [&](const char* name, auto& target, const char* help) {
    return s.submit->add_option(name, target, help);
  };
  flag("--partition", o.partition, "Slurm partition (cluster.slurm.partition)");
  flag("--account", o.account, "account to charge (cluster.slurm.account)");
  flag("--qos", o.qos, "quality of service (cluster.slurm.qos)");
  flag("--time", o.time, "time limit, e.g. 1-00:00:00 (cluster.slurm.time)");
  flag("--mem", o.mem, "memory per node, e.g. 64G (cluster.slurm.mem)");
  flag("--constraint", o.constraint, "node features (cluster.slurm.constraint)");
  flag("--launcher", o.launcher, "srun | mpirun (cluster.slurm.launcher)")->check(CLI::IsMember({"srun", "mpirun"}));
  flag("--mpi", o.mpi, "srun --mpi plugin (cluster.slurm.mpi)");
  flag("--nodes", o.nodes, "nodes per run (cluster.slurm.nodes)")->check(int_range(1, 65536));
  flag("--gpus-per-node", o.gpus_per_node, "GPUs per node, one rank each (cluster.slurm.gpus_per_node)")
      ->check(int_range(0, 64));
  flag("--cpus-per-task", o.cpus_per_task, "CPUs per rank (cluster.slurm.cpus_per_task)")->check(int_range(0, 4096));
  flag("--tasks-per-node", o.tasks_per_node, "ranks per node on CPU nodes (cluster.slurm.tasks_per_node)")
      ->check(int_range(0, 4096));
  flag("--max-parallel", o.max_parallel, "array tasks at once (cluster.slurm.max_parallel)")
      ->check(int_range(0, 100000));
  flag("--signal-grace", o.signal_grace_s,
       "seconds between the preemption signal and the time limit (cluster.slurm.signal_grace_s)")
      ->check(int_range(1, 65535));
  s.submit
      ->add_option("-n,--ranks", s.request.ranks,
                   "MPI ranks per run (default: the sweep's resources.ranks, or nodes x GPUs per node)")
      ->check(int_range(1, 65536));
  s.submit->add_option("--export", s.request.exports, "NAME=VALUE exported to the ranks (repeatable)")
      ->allow_extra_args(false);
  s.submit
      ->add_option("--run-dir", s.request.run_dir,
                   "with a CONFIG: the run directory (default: the run folder given, or runs/<name>)")
      ->check(non_empty());
  s.submit->add_option("--runs-dir,--sweep-dir", s.request.runs_dir,
                       "with a SPEC: its runs folder (default: the spec's runs_dir, else runs/<name>)");
  s.submit->add_flag("--dry-run", s.request.dry_run, "print the job script, write and submit nothing");

  s.status =
      registry.add("status", "state of one run: its run directory merged with its Slurm job, job id, log", action);
  s.status->add_option("run", s.status_run, "run directory")->required();

  s.cancel = registry.add("cancel", "cancel the pending and running Slurm jobs of a sweep (SPEC) or of a run directory",
                          action);
  s.cancel->add_option("target", s.cancel_target, "sweep spec, run directory or runs folder")->required();
  s.cancel->add_option("--runs-dir", s.cancel_runs_dir, "with a SPEC: its runs folder")->check(non_empty());
}

namespace {

int run_cluster_command(const ClusterOptions& s, MpiHolder&) {
  if (*s.status) return sweeps::print_run_status(s.status_run, std::cout);
  if (*s.cancel) return sweeps::cancel_jobs(s.cancel_target, s.cancel_runs_dir, std::cout);
  std::error_code ec;
  if (std::filesystem::is_directory(s.request.target, ec)) {
    // A run folder (e.g. a preempted run to submit again): its config.toml, into that folder unless
    // --run-dir says otherwise, as `segrun train RUN_DIR` reads it.
    if (!s.request.runs_dir.empty())
      throw ConfigError("submit: --runs-dir is for a sweep spec; one run takes --run-dir");
    const RunSource source = run_source(s.request.target, s.request.run_dir);
    sweeps::SubmitRequest request = s.request;
    request.target = source.config_path;
    request.run_dir = source.run_dir;
    return sweeps::submit_run(request, std::cout);
  }
  if (sweeps::is_sweep_spec(s.request.target)) {
    if (!s.request.overrides.empty())
      throw ConfigError("submit " + s.request.target +
                        ": a sweep spec takes no key=value overrides (put them in [fixed])");
    if (!s.request.run_dir.empty()) throw ConfigError("submit: --run-dir is for one run; a sweep takes --runs-dir");
    return sweeps::submit_sweep(s.request, std::cout);
  }
  if (!s.request.runs_dir.empty()) throw ConfigError("submit: --runs-dir is for a sweep spec; one run takes --run-dir");
  return sweeps::submit_run(s.request, std::cout);
}

}  // namespace

}  // namespace segrun::launcher
