#pragma once
// What a process learns from Slurm's environment inside an allocation (sbatch, salloc, srun):
// job and array ids, the task layout (SLURM_NTASKS, SLURM_PROCID, SLURM_LOCALID, SLURM_NODEID)
// and the nodes, with Slurm's compressed forms expanded: host lists like "node[01-03,07],gpu5"
// (zero padding kept, several bracket groups multiply) and task counts like "2(x3),1" (= 2,2,2,1).
// `segrun launch` uses it inside an allocation to start its ranks with srun (or with mpirun and an
// explicit host:slots list built from these variables).
// Pure functions over an environment map; read_slurm_env() reads the process environment.
// Malformed values throw ClusterError naming the variable.

#include <map>
#include <string>
#include <vector>

namespace segrun::cluster {

using Environment = std::map<std::string, std::string>;

// "node[01-03,07],login" -> node01 node02 node03 node07 login. Throws ClusterError on bad syntax
// (unbalanced brackets, a descending range, more than 1,000,000 hosts).
std::vector<std::string> expand_host_list(const std::string& list);
// "2(x3),1" -> 2 2 2 1 (SLURM_TASKS_PER_NODE, SLURM_JOB_CPUS_PER_NODE).
std::vector<int> expand_count_list(const std::string& list);

struct SlurmEnv {
  bool in_allocation = false;       // SLURM_JOB_ID is set
  bool in_step = false;             // SLURM_STEP_ID is set (this process is a task of srun)
  std::string job_id;               // SLURM_JOB_ID
  std::string array_job_id;         // SLURM_ARRAY_JOB_ID ("" when not an array task)
  std::string array_task_id;        // SLURM_ARRAY_TASK_ID
  int restart_count = 0;            // SLURM_RESTART_COUNT: times the job was requeued
  int ntasks = 0;                   // SLURM_NTASKS (or SLURM_NPROCS); 0 = unknown
  int procid = -1;                  // SLURM_PROCID: this task's rank in the step
  int localid = -1;                 // SLURM_LOCALID: this task's rank on its node
  int nodeid = -1;                  // SLURM_NODEID
  int cpus_per_task = 0;            // SLURM_CPUS_PER_TASK; 0 = not set
  std::vector<std::string> nodes;   // SLURM_JOB_NODELIST (or SLURM_NODELIST), expanded
  std::vector<int> tasks_per_node;  // SLURM_TASKS_PER_NODE expanded, one entry per node
  // The job id scontrol/scancel accept for this job: "<array job>_<task>" or "<job>".
  std::string job_ref() const;
};

SlurmEnv parse_slurm_env(const Environment& env);
SlurmEnv read_slurm_env();  // from the process environment

// "host:slots,host:slots" (Open MPI --host syntax) for the allocation's nodes and tasks per node.
// Throws ClusterError when the node and task lists disagree in length or are missing.
std::string allocation_hosts(const SlurmEnv& env);

struct AllocationLaunchOptions {
  int ranks = 1;
  std::vector<std::string> command;  // the program and its arguments, run on every rank
  std::string launcher = "srun";     // srun | mpirun
  std::string mpi = "pmix";          // srun --mpi=<mpi>
};
// The command that starts `ranks` ranks inside the allocation: `srun --mpi=pmix --ntasks=R
// --kill-on-bad-exit=1 ...`, or mpirun with --host built from allocation_hosts(). ConfigError (a
// command-line mistake, exit 2, as build_mpirun_command's) for -n < 1, no command, more ranks
// than the allocation's tasks, or a launcher other than srun or mpirun.
std::vector<std::string> build_allocation_command(const SlurmEnv& env, const AllocationLaunchOptions& options);

}  // namespace segrun::cluster
