// squeue / sacct output parsing on recorded samples, job state descriptions, the merge of a run
// directory's state with its Slurm job.
#include "cluster/slurm_client.h"

#include <gtest/gtest.h>

#include <map>

#include "core/error.h"
#include "tests/scratch_dir.h"

namespace segrun::cluster {
namespace {

std::map<std::string, SlurmJobInfo> by_id(const std::vector<SlurmJobInfo>& jobs) {
  std::map<std::string, SlurmJobInfo> out;
  for (const auto& j : jobs) out[j.job_id] = j;
  return out;
}

// Recorded on the one-node test cluster (scripts/slurm-local.sh, Slurm 22.05.8) with
// squeue --noheader --array --states=all --me -O "JobArrayID:|,State:|,Reason:|,RestartCnt:|,NodeList:|"
// during slurm_sweep_test: a finished task, a requeued one waiting for its begin time, a running
// one after a requeue, one just requeued by scontrol (completing), array tasks held back by the %M limit, a cancelled
// one, a plain job.
const char* kSqueueSample =
    "12_0|COMPLETED|None|0|vm|\n"
    "12_1|PENDING|BeginTime|1||\n"
    "12_2|RUNNING|None|1|vm|\n"
    "8_0|COMPLETING|None|1|vm|\n"
    "13_0|PENDING|JobArrayTaskLimit|0||\n"
    "13_1|PENDING|None|0||\n"
    "2_1|CANCELLED|BeginTime|1||\n"
    "1|COMPLETED|None|0|vm|\n";

TEST(Squeue, ParsesRecordedSample) {
  const auto jobs = parse_squeue(kSqueueSample);
  ASSERT_EQ(jobs.size(), 8u);
  const auto m = by_id(jobs);
  EXPECT_EQ(m.at("12_0").state, "COMPLETED");
  EXPECT_EQ(m.at("12_0").reason, "");
  EXPECT_EQ(m.at("12_0").nodes, "vm");
  EXPECT_EQ(m.at("12_1").state, "PENDING");
  EXPECT_EQ(m.at("12_1").reason, "BeginTime");
  EXPECT_EQ(m.at("12_1").restarts, 1);
  EXPECT_EQ(m.at("12_1").nodes, "");
  EXPECT_EQ(m.at("12_2").restarts, 1);
  EXPECT_EQ(m.at("13_0").reason, "JobArrayTaskLimit");
  EXPECT_EQ(m.at("1").state, "COMPLETED");
  EXPECT_EQ(m.at("1").source, "squeue");
  EXPECT_EQ(m.at("1").exit_code, "");

  EXPECT_EQ(describe_job(m.at("12_0")), "completed");
  EXPECT_EQ(describe_job(m.at("12_1")), "requeued (pending: BeginTime)");
  EXPECT_EQ(describe_job(m.at("12_2")), "running (restart 1)");
  EXPECT_EQ(describe_job(m.at("8_0")), "completing (restart 1)");  // just requeued by scontrol
  EXPECT_TRUE(is_active(m.at("8_0")));
  EXPECT_EQ(describe_job(m.at("13_0")), "pending (JobArrayTaskLimit)");
  EXPECT_EQ(describe_job(m.at("13_1")), "pending");
  EXPECT_TRUE(is_active(m.at("12_1")));
  EXPECT_TRUE(is_active(m.at("12_2")));
  EXPECT_FALSE(is_active(m.at("12_0")));
  EXPECT_FALSE(is_active(m.at("2_1")));
}

TEST(Squeue, RejectsOtherFormats) {
  EXPECT_THROW(parse_squeue("JOBID PARTITION NAME\n12 local x\n"), ClusterError);
  EXPECT_TRUE(parse_squeue("\n\n").empty());
}

// sacct --noheader --parsable2 -X --format=JobID,State,ExitCode,Reason,NodeList, in the format of
// Slurm 22.05 on a cluster with accounting (the test cluster keeps none): an array with tasks
// done, failed, cancelled by a user, timed out, running, a step line (only without -X), the
// array's pending remainder in compressed form, and plain jobs.
const char* kSacctSample =
    "1234_0|COMPLETED|0:0|None|gpu07\n"
    "1234_1|FAILED|1:0|NonZeroExitCode|gpu08\n"
    "1234_2|CANCELLED by 1001|0:15|None|gpu07\n"
    "1234_3|TIMEOUT|0:0|TimeLimit|gpu09\n"
    "1234_4|RUNNING|0:0|None|gpu[07-08]\n"
    "1234_4.batch|RUNNING|0:0||gpu07\n"
    "1234_[5-7,9%2]|PENDING|0:0|JobArrayTaskLimit|None assigned\n"
    "1240|OUT_OF_MEMORY|0:125|OutOfMemory|cpu3\n"
    "1241|REQUEUED|0:0|None|cpu4\n";

TEST(Sacct, ParsesRecordedSample) {
  const auto jobs = parse_sacct(kSacctSample);
  const auto m = by_id(jobs);
  ASSERT_EQ(jobs.size(), 11u);  // 5 tasks + 4 pending tasks + 2 jobs; the step is skipped
  EXPECT_EQ(m.at("1234_1").state, "FAILED");
  EXPECT_EQ(m.at("1234_1").exit_code, "1:0");
  EXPECT_EQ(m.at("1234_1").reason, "NonZeroExitCode");
  EXPECT_EQ(m.at("1234_2").state, "CANCELLED");
  EXPECT_EQ(m.at("1234_4").nodes, "gpu[07-08]");
  for (const char* id : {"1234_5", "1234_6", "1234_7", "1234_9"}) {
    ASSERT_TRUE(m.count(id)) << id;
    EXPECT_EQ(m.at(id).state, "PENDING");
    EXPECT_EQ(m.at(id).reason, "JobArrayTaskLimit");
    EXPECT_EQ(m.at(id).nodes, "");
  }
  EXPECT_FALSE(m.count("1234_8"));
  EXPECT_EQ(m.at("1240").source, "sacct");

  EXPECT_EQ(describe_job(m.at("1234_0")), "completed");
  EXPECT_EQ(describe_job(m.at("1234_1")), "failed (exit 1:0, NonZeroExitCode)");
  EXPECT_EQ(describe_job(m.at("1234_2")), "cancelled (exit 0:15)");
  EXPECT_EQ(describe_job(m.at("1234_3")), "timeout (TimeLimit)");
  EXPECT_EQ(describe_job(m.at("1240")), "out_of_memory (exit 0:125, OutOfMemory)");
  EXPECT_EQ(describe_job(m.at("1241")), "requeued");
  EXPECT_TRUE(is_active(m.at("1241")));
  EXPECT_TRUE(is_active(m.at("1234_6")));
  EXPECT_FALSE(is_active(m.at("1234_3")));
}

TEST(MergeRunState, LiveJobWinsThenTheRunDirectory) {
  SlurmJobInfo pending{"5_0", "PENDING", "Priority", "", 0, "", "squeue"};
  SlurmJobInfo requeued{"5_1", "PENDING", "BeginTime", "", 1, "", "squeue"};
  SlurmJobInfo running{"5_2", "RUNNING", "", "", 0, "vm", "squeue"};
  SlurmJobInfo failed{"5_3", "FAILED", "NonZeroExitCode", "1:0", -1, "vm", "sacct"};
  SlurmJobInfo cancelled{"5_4", "CANCELLED", "", "0:15", -1, "vm", "sacct"};
  SlurmJobInfo timeout{"5_5", "TIMEOUT", "TimeLimit", "0:0", -1, "vm", "sacct"};
  SlurmJobInfo completed{"5_6", "COMPLETED", "", "0:0", 0, "vm", "squeue"};
  EXPECT_EQ(merge_run_state(RunState::kQueued, "", &pending), "pending (Priority)");
  EXPECT_EQ(merge_run_state(RunState::kPreempted, "stopped by signal at iteration 6", &requeued),
            "requeued (pending: BeginTime)");
  EXPECT_EQ(merge_run_state(RunState::kPreempted, "", &running), "running");
  EXPECT_EQ(merge_run_state(RunState::kDone, "", &completed), "done");
  EXPECT_EQ(merge_run_state(RunState::kFailed, "data.store: not set", &failed),
            "failed: data.store: not set [slurm: failed (exit 1:0, NonZeroExitCode)]");
  EXPECT_EQ(merge_run_state(RunState::kPreempted, "stopped by signal", &cancelled),
            "cancelled (checkpointed: resumable)");
  EXPECT_EQ(merge_run_state(RunState::kPreempted, "", &timeout),
            "preempted (checkpointed: resumable) [slurm: timeout (TimeLimit)]");
  EXPECT_EQ(merge_run_state(RunState::kRunning, "", &timeout),
            "lost: slurm job timeout (TimeLimit) while the run was running");
  EXPECT_EQ(merge_run_state(RunState::kNew, "", &failed),
            "lost: slurm job failed (exit 1:0, NonZeroExitCode) while the run was not started");
  EXPECT_EQ(merge_run_state(RunState::kNew, "", nullptr), "new");
  // `segrun cancel` of a job still in the queue: cancelled, not lost.
  SlurmJobInfo cancelled_pending{"8", "CANCELLED", "PartitionNodeLimit", "0:0", -1, "", "sacct"};
  EXPECT_EQ(merge_run_state(RunState::kQueued, "", &cancelled_pending),
            "cancelled before it started [slurm: cancelled (PartitionNodeLimit)]");
  SlurmJobInfo held{"6", "PENDING", "BeginTime", "", 0, "", "squeue"};  // sbatch --begin, never ran
  EXPECT_EQ(merge_run_state(RunState::kQueued, "", &held), "pending (BeginTime)");
  SlurmJobInfo requeued_sacct{"7", "PENDING", "BeginTime", "0:0", -1, "", "sacct"};
  EXPECT_EQ(merge_run_state(RunState::kPreempted, "", &requeued_sacct), "requeued (pending: BeginTime)");
  EXPECT_EQ(merge_run_state(RunState::kRunning, "", nullptr), "running");
}

}  // namespace
}  // namespace segrun::cluster
