// SLURM_* environment parsing: compressed host lists, task counts, the allocation's launch command.
#include "cluster/slurm_env.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "core/error.h"

namespace segrun::cluster {
namespace {

using Strings = std::vector<std::string>;

TEST(HostList, ExpandsRangesWithPaddingAndSingles) {
  EXPECT_EQ(expand_host_list("node[01-03,07]"), (Strings{"node01", "node02", "node03", "node07"}));
  EXPECT_EQ(expand_host_list("vm"), (Strings{"vm"}));
  EXPECT_EQ(expand_host_list("a,b,c"), (Strings{"a", "b", "c"}));
  EXPECT_EQ(expand_host_list("gpu[1-2],cpu[08-10]"), (Strings{"gpu1", "gpu2", "cpu08", "cpu09", "cpu10"}));
  // Unpadded ranges grow in width; padded ones keep their width.
  EXPECT_EQ(expand_host_list("n[9-11]"), (Strings{"n9", "n10", "n11"}));
  EXPECT_EQ(expand_host_list("n[098-101]"), (Strings{"n098", "n099", "n100", "n101"}));
  // Suffixes after the brackets and several bracket groups (cartesian, left group slowest).
  EXPECT_EQ(expand_host_list("r[1-2]n[3,5]-ib"), (Strings{"r1n3-ib", "r1n5-ib", "r2n3-ib", "r2n5-ib"}));
  EXPECT_EQ(expand_host_list("login-1.example.org,c[1]"), (Strings{"login-1.example.org", "c1"}));
  EXPECT_TRUE(expand_host_list("").empty());
  EXPECT_EQ(expand_host_list("node[001-100]").size(), 100u);
}

TEST(HostList, RejectsMalformedLists) {
  for (const char* bad :
       {"node[01-03", "node01-03]", "node[3-1]", "node[a-b]", "node[]", "a,,b", "n[1-2]]", "node[1-2000000]"}) {
    EXPECT_THROW(expand_host_list(bad), ClusterError) << bad;
  }
}

TEST(CountList, ExpandsRepeats) {
  EXPECT_EQ(expand_count_list("2(x3),1"), (std::vector<int>{2, 2, 2, 1}));
  EXPECT_EQ(expand_count_list("4"), (std::vector<int>{4}));
  EXPECT_EQ(expand_count_list("1,8(x2)"), (std::vector<int>{1, 8, 8}));
  EXPECT_TRUE(expand_count_list("").empty());
  for (const char* bad : {"2(x0)", "2(3)", "x", "2(x3", "-1", "2(x)"})
    EXPECT_THROW(expand_count_list(bad), ClusterError) << bad;
}

Environment two_node_job() {
  return {{"SLURM_JOB_ID", "4242"},
          {"SLURM_ARRAY_JOB_ID", "4240"},
          {"SLURM_ARRAY_TASK_ID", "2"},
          {"SLURM_RESTART_COUNT", "1"},
          {"SLURM_NTASKS", "5"},
          {"SLURM_PROCID", "3"},
          {"SLURM_LOCALID", "1"},
          {"SLURM_NODEID", "1"},
          {"SLURM_CPUS_PER_TASK", "6"},
          {"SLURM_JOB_NODELIST", "gpu[07-08],cpu3"},
          {"SLURM_TASKS_PER_NODE", "2(x2),1"}};
}

TEST(SlurmEnv, ParsesAJobArrayTask) {
  const SlurmEnv env = parse_slurm_env(two_node_job());
  EXPECT_TRUE(env.in_allocation);
  EXPECT_FALSE(env.in_step);
  EXPECT_EQ(env.job_id, "4242");
  EXPECT_EQ(env.job_ref(), "4240_2");
  EXPECT_EQ(env.restart_count, 1);
  EXPECT_EQ(env.ntasks, 5);
  EXPECT_EQ(env.procid, 3);
  EXPECT_EQ(env.localid, 1);
  EXPECT_EQ(env.nodeid, 1);
  EXPECT_EQ(env.cpus_per_task, 6);
  EXPECT_EQ(env.nodes, (Strings{"gpu07", "gpu08", "cpu3"}));
  EXPECT_EQ(env.tasks_per_node, (std::vector<int>{2, 2, 1}));
  EXPECT_EQ(allocation_hosts(env), "gpu07:2,gpu08:2,cpu3:1");
}

TEST(SlurmEnv, OutsideAnAllocationAndOlderNames) {
  const SlurmEnv none = parse_slurm_env({});
  EXPECT_FALSE(none.in_allocation);
  EXPECT_EQ(none.ntasks, 0);
  EXPECT_EQ(none.localid, -1);
  EXPECT_THROW(allocation_hosts(none), ClusterError);
  const SlurmEnv old = parse_slurm_env({{"SLURM_JOBID", "7"},
                                        {"SLURM_NPROCS", "3"},
                                        {"SLURM_NODELIST", "a[1-3]"},
                                        {"SLURM_TASKS_PER_NODE", "1(x3)"},
                                        {"SLURM_STEP_ID", "0"}});
  EXPECT_TRUE(old.in_allocation);
  EXPECT_TRUE(old.in_step);
  EXPECT_EQ(old.job_ref(), "7");
  EXPECT_EQ(old.ntasks, 3);
  EXPECT_EQ(allocation_hosts(old), "a1:1,a2:1,a3:1");
}

TEST(SlurmEnv, RejectsInconsistentOrMalformedValues) {
  Environment env = two_node_job();
  env["SLURM_TASKS_PER_NODE"] = "2(x2)";  // 2 counts for 3 nodes
  EXPECT_THROW(parse_slurm_env(env), ClusterError);
  env = two_node_job();
  env["SLURM_NTASKS"] = "five";
  try {
    parse_slurm_env(env);
    FAIL() << "no error";
  } catch (const ClusterError& e) {
    EXPECT_NE(std::string(e.what()).find("SLURM_NTASKS"), std::string::npos) << e.what();
  }
}

TEST(SlurmEnv, AllocationLaunchCommands) {
  const SlurmEnv env = parse_slurm_env(two_node_job());
  AllocationLaunchOptions o;
  o.ranks = 4;
  o.command = {"/opt/segrun", "train", "a b.toml"};
  EXPECT_EQ(build_allocation_command(env, o),
            (Strings{"srun", "--mpi=pmix", "--ntasks=4", "--kill-on-bad-exit=1", "--input=none",
                     "--export=ALL,SEGRUN_LAUNCHED=1,SEGRUN_WORLD_SIZE=4", "/opt/segrun", "train", "a b.toml"}));
  o.launcher = "mpirun";
  const Strings mpirun = build_allocation_command(env, o);
  ASSERT_GE(mpirun.size(), 5u);
  EXPECT_EQ(mpirun[0], "mpirun");
  EXPECT_EQ(mpirun[2], "4");
  const auto host = std::find(mpirun.begin(), mpirun.end(), "--host");
  ASSERT_NE(host, mpirun.end());
  EXPECT_EQ(*(host + 1), "gpu07:2,gpu08:2,cpu3:1");
  EXPECT_NE(std::find(mpirun.begin(), mpirun.end(), "OMP_NUM_THREADS=6"), mpirun.end());  // SLURM_CPUS_PER_TASK
  EXPECT_EQ(std::vector<std::string>(mpirun.end() - 3, mpirun.end()), (Strings{"/opt/segrun", "train", "a b.toml"}));
  // Command-line mistakes: ConfigError (exit 2), as build_mpirun_command's.
  o.ranks = 6;  // more than SLURM_NTASKS
  EXPECT_THROW(build_allocation_command(env, o), ConfigError);
  o.ranks = 0;
  EXPECT_THROW(build_allocation_command(env, o), ConfigError);
  o.ranks = 2;
  o.launcher = "ssh";
  EXPECT_THROW(build_allocation_command(env, o), ConfigError);
  o.launcher = "srun";
  o.command.clear();
  EXPECT_THROW(build_allocation_command(env, o), ConfigError);
}

}  // namespace
}  // namespace segrun::cluster
