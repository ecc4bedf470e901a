#include "cluster/job_script.h"

#include <algorithm>
#include <regex>
#include <sstream>

#include "core/error.h"
#include "core/process.h"
#include "core/run_folder.h"

namespace segrun::cluster {
namespace {

bool all_of_set(const std::string& text, const char* allowed) {
  return !text.empty() && text.find_first_not_of(allowed) == std::string::npos;
}

constexpr const char* kAlnum = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

// A value of an #SBATCH line: sbatch reads it up to the end of the line and splits at blanks, so
// whitespace, quotes and control characters are refused outright.
void check_directive(const std::string& field, const std::string& value, const std::string& extra_chars,
                     const std::string& example) {
  const std::string allowed = std::string(kAlnum) + extra_chars;
  if (!all_of_set(value, allowed.c_str()))
    throw ConfigError(field + " '" + value + "': may only contain letters, digits and '" + extra_chars +
                      "' (it is written into an #SBATCH line), e.g. " + example);
}

void check_time(const std::string& value) {
  // minutes, minutes:seconds, hours:minutes:seconds, days-hours, days-hours:minutes, days-hours:minutes:seconds
  static const std::regex pattern(R"(^(\d+-\d+(:\d+){0,2}|\d+(:\d+){0,2})$)");
  if (!std::regex_match(value, pattern))
    throw ConfigError("cluster.slurm.time '" + value +
                      "': expected MINUTES, H:MM:SS or D-HH[:MM[:SS]] (sbatch --time), e.g. 1-00:00:00");
}

void check_mem(const std::string& value) {
  static const std::regex pattern(R"(^\d+[KMGT]?$)");
  if (!std::regex_match(value, pattern))
    throw ConfigError("cluster.slurm.mem '" + value + "': expected a size like 64G or 32000M (sbatch --mem)");
}

std::string one_line(std::string text) {
  std::replace(text.begin(), text.end(), '\n', ' ');
  std::replace(text.begin(), text.end(), '\r', ' ');
  return text;
}

}  // namespace

bool is_safe_name(const std::string& name) {
  return all_of_set(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") && name != "." &&
         name != "..";
}

TaskLayout resolve_layout(const SlurmConfig& slurm, int ranks) {
  TaskLayout layout;
  layout.nodes = slurm.nodes;
  if (slurm.nodes < 1) throw ConfigError("--nodes must be at least 1");
  int per_node = slurm.tasks_per_node;
  if (slurm.gpus_per_node > 0) {
    // One rank per GPU.
    if (per_node > 0 && per_node != slurm.gpus_per_node)
      throw ConfigError("cluster.slurm.tasks_per_node " + std::to_string(per_node) + " differs from --gpus-per-node " +
                        std::to_string(slurm.gpus_per_node) + " (segrun runs one rank per GPU)");
    per_node = slurm.gpus_per_node;
  }
  if (per_node > 0) {
    layout.tasks_per_node = per_node;
    layout.ntasks = slurm.nodes * per_node;
    if (ranks > 0 && ranks != layout.ntasks)
      throw ConfigError("a run has " + std::to_string(ranks) + " rank(s) but --nodes " + std::to_string(slurm.nodes) +
                        " x " + std::to_string(per_node) + (slurm.gpus_per_node > 0 ? " GPUs" : " tasks") +
                        " per node gives " + std::to_string(layout.ntasks));
    return layout;
  }
  layout.ntasks = ranks > 0 ? ranks : slurm.nodes;
  if (layout.ntasks < slurm.nodes)
    throw ConfigError("--nodes " + std::to_string(slurm.nodes) + " is more than the run's " +
                      std::to_string(layout.ntasks) + " rank(s)");
  return layout;
}

std::string render_tasks_file(const std::vector<std::string>& run_names) {
  std::string out;
  for (const auto& name : run_names) {
    if (!is_safe_name(name)) throw ClusterError("run name '" + one_line(name) + "': may only contain [A-Za-z0-9._-]");
    out += name + "\n";
  }
  return out;
}

namespace {

// Every option checked (ConfigError naming the key, or ClusterError for a caller's mistake);
// returns the task layout.
TaskLayout check_job_options(const JobScriptOptions& o) {
  const SlurmConfig& s = o.slurm;
  if (!is_safe_name(o.job_name))
    throw ConfigError("job name '" + one_line(o.job_name) + "': may only contain [A-Za-z0-9._-]");
  if (o.program.empty()) throw ClusterError("job script: no segrun executable given");
  const bool array = o.array_size > 0;
  if (array && (o.runs_dir.empty() || o.tasks_file.empty()))
    throw ClusterError("job script: a job array needs the runs folder and the tasks file");
  if (!array && o.run_dir.empty()) throw ClusterError("job script: no run directory given");
  if (!s.partition.empty()) check_directive("cluster.slurm.partition", s.partition, "._-,", "gpu");
  if (!s.account.empty()) check_directive("cluster.slurm.account", s.account, "._-", "proj123");
  if (!s.qos.empty()) check_directive("cluster.slurm.qos", s.qos, "._-", "normal");
  if (!s.constraint.empty()) check_directive("cluster.slurm.constraint", s.constraint, "._-,&|*[]():!", "a100|h100");
  if (!s.time.empty()) check_time(s.time);
  if (!s.mem.empty()) check_mem(s.mem);
  // Relative to the job's working directory (where sbatch runs): no user path in any #SBATCH line.
  if (o.output.empty() || o.output[0] == '/')
    throw ClusterError("job script: the output file must be relative to the submission directory");
  check_directive("output file", o.output, "._-%", "slurm.log");
  if (s.launcher != "srun" && s.launcher != "mpirun")
    throw ConfigError("cluster.slurm.launcher '" + s.launcher + "': expected srun or mpirun");
  check_directive("cluster.slurm.mpi", s.mpi, "_", "pmix");
  if (s.signal != "USR1" && s.signal != "USR2" && s.signal != "TERM")
    throw ConfigError("cluster.slurm.signal '" + one_line(s.signal) + "': expected USR1, USR2 or TERM");
  if (s.signal == "TERM" && s.launcher == "mpirun")
    throw ConfigError(
        "cluster.slurm.signal = \"TERM\" needs cluster.slurm.launcher = \"srun\": mpirun kills its "
        "ranks on SIGTERM instead of passing it on (use USR1 or USR2 with mpirun)");
  for (const auto& [name, value] : o.env)
    if (!process::is_environment_name(name))
      throw ConfigError("--export '" + one_line(name) + "': not a valid environment variable name");
  return resolve_layout(s, o.ranks);
}

// The shebang, the description and the #SBATCH lines.
void write_directives(std::ostringstream& sh, const JobScriptOptions& o, const TaskLayout& layout) {
  const SlurmConfig& s = o.slurm;
  const bool array = o.array_size > 0;
  sh << "#!/bin/bash\n";
  sh << "# segrun job script (written by `segrun submit`): " << one_line(o.description) << "\n";
  sh << "# Submit from its own folder (relative output file): cd <this folder> && sbatch <this file>\n";
  sh << "#SBATCH --job-name=" << o.job_name << "\n";
  if (array) {
    sh << "#SBATCH --array=0-" << o.array_size - 1;
    if (s.max_parallel > 0) sh << "%" << s.max_parallel;
    sh << "\n";
  }
  sh << "#SBATCH --nodes=" << layout.nodes << "\n";
  sh << "#SBATCH --ntasks=" << layout.ntasks << "\n";
  if (layout.tasks_per_node > 0) sh << "#SBATCH --ntasks-per-node=" << layout.tasks_per_node << "\n";
  if (s.gpus_per_node > 0) sh << "#SBATCH --gpus-per-node=" << s.gpus_per_node << "\n";
  if (s.cpus_per_task > 0) sh << "#SBATCH --cpus-per-task=" << s.cpus_per_task << "\n";
  if (!s.partition.empty()) sh << "#SBATCH --partition=" << s.partition << "\n";
  if (!s.account.empty()) sh << "#SBATCH --account=" << s.account << "\n";
  if (!s.qos.empty()) sh << "#SBATCH --qos=" << s.qos << "\n";
  if (!s.time.empty()) sh << "#SBATCH --time=" << s.time << "\n";
  if (!s.mem.empty()) sh << "#SBATCH --mem=" << s.mem << "\n";
  if (!s.constraint.empty()) sh << "#SBATCH --constraint=" << s.constraint << "\n";
  sh << "#SBATCH --signal=B:" << s.signal << "@" << s.signal_grace_s << "\n";
  sh << "#SBATCH --requeue\n";
  sh << "#SBATCH --open-mode=append\n";
  sh << "#SBATCH --output=" << o.output << "\n";
}

// The program, the requeue budget and the run folder: the job's own, or (array) the task's line of
// the tasks file, whose output then goes to the run's slurm.log.
void write_run_selection(std::ostringstream& sh, const JobScriptOptions& o) {
  sh << "set -u\n";
  sh << "segrun=" << process::shell_quote(o.program, true) << "\n";
  sh << "max_requeues=" << o.slurm.max_requeues << "\n";
  if (o.array_size > 0) {
    sh << "runs_dir=" << process::shell_quote(o.runs_dir, true) << "\n";
    sh << "tasks_file=" << process::shell_quote(o.tasks_file, true) << "\n";
    sh << "task=\"${SLURM_ARRAY_TASK_ID:?segrun job: not a job array task}\"\n";
    sh << "job=\"${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}\"\n";
    sh << "run_name=\"$(sed -n \"$((task + 1))p\" \"$tasks_file\")\"\n";
    sh << "case \"$run_name\" in\n";
    sh << "  '' | . | .. | *[!A-Za-z0-9._-]*)\n";
    sh << "    echo \"segrun job $job: line $((task + 1)) of $tasks_file is not a run name\" >&2\n";
    sh << "    exit 2 ;;\n";
    sh << "esac\n";
    sh << "run_dir=\"$runs_dir/$run_name\"\n";
    sh << "echo \"segrun job $job: run $run_dir, output in $run_dir/slurm.log\"\n";
    sh << "exec >> \"$run_dir/slurm.log\" 2>&1\n";
  } else {
    sh << "run_dir=" << process::shell_quote(o.run_dir, true) << "\n";
    sh << "job=\"$SLURM_JOB_ID\"\n";
  }
  sh << "echo \"segrun job $job (slurm job $SLURM_JOB_ID, restart ${SLURM_RESTART_COUNT:-0}) on "
        "${SLURM_JOB_NODELIST:-?} at $(date '+%F %T'): $run_dir\"\n";
}

// The environment of the ranks.
void write_rank_environment(std::ostringstream& sh, const JobScriptOptions& o) {
  const SlurmConfig& s = o.slurm;
  sh << "export SEGRUN_LAUNCHED=1\n";
  // srun (Slurm >= 22.05) no longer inherits --cpus-per-task from the batch job: SRUN_CPUS_PER_TASK.
  sh << "if [ -n \"${SLURM_CPUS_PER_TASK:-}\" ]; then\n";
  sh << "  export OMP_NUM_THREADS=\"$SLURM_CPUS_PER_TASK\" SRUN_CPUS_PER_TASK=\"$SLURM_CPUS_PER_TASK\"\n";
  sh << "fi\n";
  sh << "export NCCL_DEBUG=\"${NCCL_DEBUG:-WARN}\"\n";
  if (s.gpus_per_node > 0) sh << "export CUDA_DEVICE_ORDER=PCI_BUS_ID\n";
  for (const auto& [name, value] : o.env) sh << "export " << name << "=" << process::shell_quote(value, true) << "\n";
}

// The launch command, as a bash array.
void write_launch_command(std::ostringstream& sh, const JobScriptOptions& o) {
  const SlurmConfig& s = o.slurm;
  if (s.launcher == "srun") {
    sh << "launch=(srun --mpi=" << process::shell_quote(s.mpi, true) << " --kill-on-bad-exit=1)\n";
  } else {
    sh << "launch=(mpirun -np \"$SLURM_NTASKS\" --stdin none --bind-to none -x SEGRUN_LAUNCHED -x SEGRUN_WORLD_SIZE -x "
          "NCCL_DEBUG";
    if (s.gpus_per_node > 0) sh << " -x CUDA_DEVICE_ORDER";
    for (const auto& [name, value] : o.env) sh << " -x " << name;
    sh << ")\n";
    sh << "if [ -n \"${OMP_NUM_THREADS:-}\" ]; then launch+=(-x OMP_NUM_THREADS); fi\n";
    sh << "if [ \"$(id -u)\" = 0 ]; then launch+=(--allow-run-as-root); fi\n";
  }
}

// Signals: forward cluster.slurm.signal to the ranks (checkpoint and exit 75). The configured
// signal before the time limit requeues; TERM (scancel, preemption) does not. With signal =
// TERM the two cannot be told apart: a TERM requeues (a cancelled job refuses the requeue).
void write_signal_traps(std::ostringstream& sh, const JobScriptOptions& o) {
  const SlurmConfig& s = o.slurm;
  sh << "stop_signal=''\n";
  sh << "stop_kind=''\n";
  sh << "step=''\n";
  sh << "on_signal() {\n";
  sh << "  if [ -z \"$stop_signal\" ] || [ \"$2\" = cancel ]; then stop_signal=\"$1\" stop_kind=\"$2\"; fi\n";
  sh << "  echo \"segrun job $job: SIG$1 received: the ranks checkpoint and stop\"\n";
  sh << "  if [ -n \"$step\" ]; then kill -" << s.signal << " \"$step\" 2> /dev/null; fi\n";
  sh << "}\n";
  if (s.signal == "TERM") {
    sh << "trap 'on_signal TERM requeue' TERM\n";
  } else {
    sh << "trap 'on_signal " << s.signal << " requeue' " << s.signal << "\n";
    sh << "trap 'on_signal TERM cancel' TERM\n";
  }
}

void write_launch_loop(std::ostringstream& sh) {
  // A step can end with status 0 without having run (srun: "task 0 launch failed ... aborted
  // before step completely launched", seen right after a requeue while the previous step was still
  // terminating): unless the run says done, or a signal asked to stop, launch again (3 tries).
  // Where this job's output starts in the run's log: a failure is explained from that part only.
  sh << "log_from=\"$(stat -c %s \"$run_dir/slurm.log\" 2> /dev/null || echo 0)\"\n";
  sh << "for attempt in 1 2 3; do\n";
  // SEGRUN_WORLD_SIZE: every rank checks that MPI started all the tasks as one world (a plugin
  // mismatch would start worlds of one, each training its own copy).
  sh << "  SEGRUN_WORLD_SIZE=\"${SLURM_NTASKS:-}\" \"${launch[@]}\" \"$segrun\" train \"$run_dir/config.toml\" "
        "--run-dir "
        "\"$run_dir\" --resume auto &\n";
  sh << "  step=$!\n";
  // wait returns > 128 when a trapped signal interrupts it: wait again while the step lives; once
  // it is gone, a last wait returns its status (127 if it was collected already).
  sh << "  while :; do\n";
  sh << "    wait \"$step\"\n";
  sh << "    rc=$?\n";
  sh << "    if [ \"$rc\" -le 128 ]; then break; fi\n";
  sh << "    if ! kill -0 \"$step\" 2> /dev/null; then\n";
  sh << "      wait \"$step\"\n";
  sh << "      last=$?\n";
  sh << "      if [ \"$last\" -ne 127 ]; then rc=\"$last\"; fi\n";
  sh << "      break\n";
  sh << "    fi\n";
  sh << "  done\n";
  // Done means its result.json too: a run marked done without one is being evaluated again.
  sh << "  if [ \"$rc\" -ne 0 ] || [ -n \"$stop_signal\" ] || { [ \"$(head -c 4 \"$run_dir/status\" 2> /dev/null)\" = "
        "done ] && [ -f \"$run_dir/result.json\" ]; }; then break; fi\n";
  sh << "  echo \"segrun job $job: the step ended without finishing the run (attempt $attempt); launching again\"\n";
  sh << "  rc=1\n";
  sh << "  if [ \"$attempt\" -lt 3 ]; then sleep 5; fi\n";
  sh << "done\n";
}

// The ranks' exit code turned into the job's: done, requeued after a checkpoint, or failed with
// the first error line of this job's output in the run's status.
void write_exit_handling(std::ostringstream& sh) {
  sh << "echo \"segrun job $job: ranks exited with code $rc at $(date '+%F %T')\"\n";
  sh << "if [ \"$rc\" -eq 0 ]; then exit 0; fi\n";
  sh << "if [ \"$rc\" -eq " << kExitPreempted << " ]; then\n";
  sh << "  if [ \"$stop_kind\" = cancel ]; then\n";
  sh << "    echo \"segrun job $job: stopped by SIGTERM (cancel or preemption): checkpointed, not requeued by this "
        "script\"\n";
  sh << "    exit " << kExitPreempted << "\n";
  sh << "  fi\n";
  sh << "  if [ \"${SLURM_RESTART_COUNT:-0}\" -ge \"$max_requeues\" ]; then\n";
  sh << "    echo \"segrun job $job: checkpointed; not requeued: already requeued $max_requeues times\"\n";
  sh << "    exit " << kExitPreempted << "\n";
  sh << "  fi\n";
  sh << "  echo \"segrun job $job: checkpointed; requeueing\"\n";
  sh << "  if scontrol requeue \"$job\"; then exit 0; fi\n";
  sh << "  echo \"segrun job $job: scontrol requeue failed; resubmit with segrun submit\"\n";
  sh << "  exit " << kExitPreempted << "\n";
  sh << "fi\n";
  sh << "state=\"$(head -c 6 \"$run_dir/status\" 2> /dev/null)\"\n";
  sh << "if [ \"$state\" != failed ]; then\n";
  // Why, in the status line: this job's first segrun error line, else the first line where the
  // launcher names a rank that died (srun "task 1: Killed", Open MPI "process rank 1 ... signal").
  sh << "  output() { tail -c +\"$((log_from + 1))\" \"$run_dir/slurm.log\" 2> /dev/null; }\n";
  sh << "  cause=\"$(output | grep -m 1 -E 'segrun: error')\"\n";
  sh << "  if [ -z \"$cause\" ]; then\n";
  sh << "    cause=\"$(output | grep -m 1 -E 'task [0-9]+: [A-Z]|process rank [0-9]+ .*(signal|exited)')\"\n";
  sh << "  fi\n";
  sh << "  cause=\"$(printf '%s' \"$cause\" | tr -d '\\r' | cut -c 1-300)\"\n";
  sh << "  printf 'failed slurm job %s: ranks exited with code %s%s (log %s)\\n' \"$job\" \"$rc\" \"${cause:+: "
        "$cause}\" "
        "\"$run_dir/slurm.log\" > \"$run_dir/status.tmp-$$\" && mv -f \"$run_dir/status.tmp-$$\" \"$run_dir/status\"\n";
  sh << "fi\n";
  sh << "exit \"$rc\"\n";
}

}  // namespace

std::string render_job_script(const JobScriptOptions& o) {
  const TaskLayout layout = check_job_options(o);
  std::ostringstream sh;
  write_directives(sh, o, layout);
  write_run_selection(sh, o);
  write_rank_environment(sh, o);
  write_launch_command(sh, o);
  write_signal_traps(sh, o);
  write_launch_loop(sh);
  write_exit_handling(sh);
  return sh.str();
}

}  // namespace segrun::cluster
