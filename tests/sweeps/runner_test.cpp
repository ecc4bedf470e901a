// The sweep runner with stand-ins for mpirun and segrun (shell scripts), so that the paths the
// real trainer never takes are covered in a second: a run that crashes without writing a status
// is marked failed with segrun's first error line in its log (not Open MPI's lines after it; the
// log's last line when there is none), a trainer's own failure reason is kept, the
// other runs finish, a re-run reuses what is done and retries the failures, and a second runner
// on the same runs folder is refused.
#include "sweeps/runner.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "core/config.h"
#include "core/config_changes.h"
#include "core/error.h"
#include "core/folder_lock.h"
#include "sweeps/registry.h"
#include "sweeps_test_util.h"

namespace segrun::sweeps {
namespace {

namespace fs = std::filesystem;
using testing::fabricate_run;
using testing::ScratchDir;
using testing::write_text;

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class RunnerTest : public ::testing::Test {
 protected:
  RunnerTest() : dir_("runner") {
    const auto root = dir_.path();
    write_text(root / "base.toml", "[train]\niters = 10\nwarmup_iters = 1\n");
    write_text(root / "sweep.toml",
               "name = \"fake\"\nbase = \"base.toml\"\nruns_dir = \"runs\"\n"
               "[grid]\n\"model.dropout\" = [0.0, 0.1, 0.2]\n");
    // mpirun stand-in: drop everything up to the last -x, run the command.
    write_text(root / "mpirun",
               "#!/bin/sh\nwhile [ \"$#\" -gt 0 ] && [ \"${1#SEGRUN_WORLD_SIZE=}\" = \"$1\" ]; do shift; done\n"
               "shift\nexec \"$@\"\n");
    // segrun stand-in: dropout 0.0 trains, 0.1 crashes before writing a status, 0.2 fails like
    // the trainer does (status "failed <reason>").
    write_text(root / "segrun",
               "#!/bin/sh\n"
               "dir=\"\"; prev=\"\"; for a in \"$@\"; do [ \"$prev\" = --run-dir ] && dir=\"$a\"; prev=\"$a\"; done\n"
               "case \" $* \" in\n"
               "  *\" model.dropout=0.0 \"*) echo done > \"$dir/status\"; echo '{\"mIoU\": 12.5}' > "
               "\"$dir/result.json\"; exit 0;;\n"
               "  *\" model.dropout=0.1 \"*) echo 'loading...'; echo 'segrun: error: boom in the loader' >&2;"
               " echo '-----' >&2; echo '[vm:00407] Set MCA parameter \"orte_base_help_aggregate\" to 0 to see all"
               " help / error messages' >&2; exit 3;;\n"
               "  *) echo 'failed data.store: not set' > \"$dir/status\"; exit 1;;\n"
               "esac\n");
    std::filesystem::permissions(root / "mpirun", std::filesystem::perms::owner_all);
    std::filesystem::permissions(root / "segrun", std::filesystem::perms::owner_all);
    options_.cores = 2;
    options_.mpirun = (root / "mpirun").string();
    options_.program = (root / "segrun").string();
  }
  ScratchDir dir_;
  SweepRunOptions options_;
};

TEST_F(RunnerTest, FailuresAreMarkedAndDoNotStopTheOthers) {
  const SweepSpec spec = load_sweep_spec(dir_.str("sweep.toml"));
  const auto runs = expand_sweep(spec);
  std::ostringstream out;
  SweepRunSummary s = run_sweep(spec, options_, out);
  EXPECT_EQ(s.finished, 1);
  EXPECT_EQ(s.failed, 2);
  EXPECT_EQ(s.exit_code(), 1);
  const auto runs_dir = dir_.path() / "runs";
  EXPECT_EQ(slurp(runs_dir / runs[0].dir_name / "status"), "done\n");
  EXPECT_EQ(slurp(runs_dir / runs[1].dir_name / "status"), "failed exit code 3: segrun: error: boom in the loader\n");
  EXPECT_EQ(slurp(runs_dir / runs[2].dir_name / "status"), "failed data.store: not set\n");
  const std::string manifest = slurp(runs_dir / runs[1].dir_name / "overrides.json");
  EXPECT_NE(manifest.find("\"model.dropout\": \"0.1\""), std::string::npos) << manifest;
  EXPECT_NE(manifest.find("\"--run-dir\""), std::string::npos) << manifest;
  EXPECT_NE(out.str().find("fake: 1/3 done (0 reused), 2 failed"), std::string::npos) << out.str();

  // Again: the done run is reused, the two failures are retried (and fail again).
  std::ostringstream again;
  s = run_sweep(spec, options_, again);
  EXPECT_EQ(s.reused, 1);
  EXPECT_EQ(s.failed, 2);
  EXPECT_NE(again.str().find("3 runs, 1 done, 2 to run"), std::string::npos) << again.str();

  // A second runner on the same folder is refused while the first holds the lock, naming the
  // holder as a second `segrun train` of one run does (a ConfigError: exit 2).
  const std::string lock = (runs_dir / ".sweep.lock").string();
  const int fd = ::open(lock.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::flock(fd, LOCK_EX | LOCK_NB), 0);
  ASSERT_EQ(::ftruncate(fd, 0), 0);
  const std::string holder = "pid 1234 on node7 since 2026-12-06 10:02:11\n";
  ASSERT_EQ(::pwrite(fd, holder.data(), holder.size(), 0), static_cast<ssize_t>(holder.size()));
  std::ostringstream refused;
  try {
    run_sweep(spec, options_, refused);
    ADD_FAILURE() << "a second runner was not refused";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()), runs_dir.string() +
                                         ": in use by pid 1234 on node7 since 2026-12-06 10:02:11; one `segrun sweep "
                                         "run` uses a runs folder at a time (segrun sweep status " +
                                         spec.path + ")");
  }
  EXPECT_EQ(refused.str(), "");
  ::close(fd);
}

// A run another process trains (a `segrun train --resume auto` by hand): the sweep's train is
// refused by the run's lock, and the sweep leaves the live run's status as it is (it wrote
// "failed exit code 2" over it).
TEST_F(RunnerTest, ARunAnotherProcessTrainsKeepsItsStatus) {
  write_text(dir_.path() / "segrun", "#!/bin/sh\necho 'segrun: error: already being trained' >&2\nexit 2\n");
  const SweepSpec spec = load_sweep_spec(dir_.str("sweep.toml"));
  const auto run = dir_.path() / "runs" / expand_sweep(spec)[0].dir_name;
  write_text(run / "status", "running\n");
  const auto lock = FolderLock::try_take(RunFolder(run.string()).lock_path());
  ASSERT_TRUE(lock.has_value());
  std::ostringstream out;
  const SweepRunSummary s = run_sweep(spec, options_, out);
  EXPECT_EQ(s.failed, 3);
  EXPECT_EQ(slurp(run / "status"), "running\n");
  EXPECT_NE(out.str().find("another process trains the run (pid " + std::to_string(::getpid())), std::string::npos)
      << out.str();
}

// A user removes run folders while the sweep goes on (to redo a run, or to drop it): a folder gone
// before its run starts is begun afresh; a run whose folder goes while it trains is reported
// failed, with its status unwritable said; the sweep finishes the others either way.
TEST_F(RunnerTest, RunFoldersRemovedDuringTheSweepDoNotStopIt) {
  const auto root = dir_.path();
  const SweepSpec spec = load_sweep_spec(dir_.str("sweep.toml"));
  const auto runs = expand_sweep(spec);
  const auto runs_dir = root / "runs";
  // dropout 0.0 removes the folder of 0.1 (queued, not started: one run at a time); 0.1 trains;
  // 0.2 removes its own folder and fails.
  write_text(
      root / "segrun",
      "#!/bin/sh\n"
      "dir=\"\"; prev=\"\"; for a in \"$@\"; do [ \"$prev\" = --run-dir ] && dir=\"$a\"; prev=\"$a\"; done\n"
      "case \" $* \" in\n"
      "  *\" model.dropout=0.0 \"*) rm -rf '" +
          (runs_dir / runs[1].dir_name).string() +
          "'; echo done > "
          "\"$dir/status\"; exit 0;;\n"
          "  *\" model.dropout=0.1 \"*) test -f \"$dir/overrides.json\" && echo done > \"$dir/status\"; exit 0;;\n"
          "  *) rm -rf \"$dir\"; exit 1;;\n"
          "esac\n");
  options_.max_parallel = 1;
  std::ostringstream out;
  const SweepRunSummary s = run_sweep(spec, options_, out);
  EXPECT_EQ(s.finished, 2) << out.str();
  EXPECT_EQ(s.failed, 1) << out.str();
  EXPECT_EQ(slurp(runs_dir / runs[1].dir_name / "status"), "done\n");
  EXPECT_NE(out.str().find("start " + runs[1].dir_name +
                           " (model.dropout=0.1, seed 0)\n  (its folder was removed since "
                           "the sweep started: begun afresh)\n"),
            std::string::npos)
      << out.str();
  EXPECT_NE(out.str().find("failed " + runs[2].dir_name), std::string::npos) << out.str();
  EXPECT_NE(out.str().find(") (its folder was removed: no status written)\n"), std::string::npos) << out.str();
  EXPECT_FALSE(fs::exists(runs_dir / runs[2].dir_name));  // not made again after its run removed it
  EXPECT_NE(out.str().find("fake: 2/3 done (0 reused), 1 failed"), std::string::npos) << out.str();
}

TEST_F(RunnerTest, AMissingStoreIsRefusedBeforeAnyRunStarts) {
  // As `segrun submit SPEC` refuses it (exit 2), not every run started, failed and marked failed.
  const std::string store = dir_.str("nostore/train");
  write_text(dir_.path() / "sweep.toml",
             "name = \"fake\"\nbase = \"base.toml\"\nruns_dir = \"runs\"\n[fixed]\n\"data.store\" = \"" + store +
                 "\"\n[grid]\n\"model.dropout\" = [0.0, 0.1]\n");
  const SweepSpec spec = load_sweep_spec(dir_.str("sweep.toml"));
  const auto runs = expand_sweep(spec);
  const std::string expected =
      spec.path + ": run " + runs[0].dir_name + ": data.store = " + store + ": no such store folder";
  {
    std::ostringstream out;
    try {
      run_sweep(spec, options_, out);
      ADD_FAILURE() << "a sweep on a missing store ran: " << out.str();
    } catch (const ConfigError& e) {
      EXPECT_EQ(std::string(e.what()), expected);
    }
    EXPECT_EQ(out.str(), "");
    for (const auto& run : runs) EXPECT_FALSE(fs::exists(dir_.path() / "runs" / run.dir_name)) << run.dir_name;
  }
  // A dry run still shows the commands (a plan made where the stores are not) and warns.
  {
    SweepRunOptions dry = options_;
    dry.dry_run = true;
    std::ostringstream out;
    ::testing::internal::CaptureStderr();
    run_sweep(spec, dry, out);
    EXPECT_NE(::testing::internal::GetCapturedStderr().find(expected + " (and 1 more run(s))"), std::string::npos);
    EXPECT_NE(out.str().find("mpirun"), std::string::npos) << out.str();
    for (const auto& run : runs) EXPECT_FALSE(fs::exists(dir_.path() / "runs" / run.dir_name)) << run.dir_name;
  }
  // `sweep plan` lists the same problem for every run it would start (and warns of it).
  const std::vector<std::string> missing = missing_inputs_of_plan(spec, plan_sweep(spec, dir_.str("runs")));
  ASSERT_EQ(missing.size(), 2u);
  EXPECT_EQ(missing[0], expected);
  // Once the store is there, the sweep runs.
  fs::create_directories(store);
  write_text(fs::path(store) / "manifest.json", "{}");
  std::ostringstream out;
  EXPECT_EQ(run_sweep(spec, options_, out).finished, 1) << out.str();
}

TEST_F(RunnerTest, ACrashIsExplainedBySegrunsFirstErrorLineElseTheLogsLastLine) {
  // What mpirun leaves in sweep.log when a rank fails: segrun's line (one per rank that saw the
  // error), then Open MPI's own lines, which mention errors too but not the cause. Without a
  // segrun line (a rank killed), the last line says the most.
  write_text(
      dir_.path() / "segrun",
      "#!/bin/sh\n"
      "case \" $* \" in\n"
      "  *\" model.dropout=0.0 \"*) echo 'segrun: error on rank 0: stores/train: store not found' >&2;"
      " echo '  segrun: error on rank 1: stores/train: store not found too' >&2;"
      " echo 'MPI_ABORT was invoked on rank 0 in communicator MPI_COMM_WORLD with errorcode 2.' >&2;"
      " echo '[vm:00407] 1 more process has sent help message help-mpi-api.txt / mpi-abort' >&2;"
      " echo '[vm:00407] Set MCA parameter \"orte_base_help_aggregate\" to 0 to see all help / error messages'"
      " >&2; exit 2;;\n"
      "  *\" model.dropout=0.1 \"*) echo 'iter 10 loss 1.5'; echo '[vm:00592] ORTE_ERROR_LOG: error in file x.c' >&2;"
      " echo 'mpirun noticed that process rank 1 with PID 7 on node vm exited on signal 9 (Killed).' >&2;"
      " echo '-----------' >&2; exit 137;;\n"
      "  *) echo '   segrun: error: model.clip_sp.top_k: 200 exceeds the 150 classes' >&2;"
      " echo 'with errorcode 2.' >&2; exit 2;;\n"
      "esac\n");
  std::filesystem::permissions(dir_.path() / "segrun", std::filesystem::perms::owner_all);
  const SweepSpec spec = load_sweep_spec(dir_.str("sweep.toml"));
  const auto runs = expand_sweep(spec);
  std::ostringstream out;
  const SweepRunSummary s = run_sweep(spec, options_, out);
  EXPECT_EQ(s.failed, 3);
  const auto runs_dir = dir_.path() / "runs";
  EXPECT_EQ(slurp(runs_dir / runs[0].dir_name / "status"),
            "failed exit code 2: segrun: error on rank 0: stores/train: store not found\n");
  EXPECT_EQ(slurp(runs_dir / runs[1].dir_name / "status"),
            "failed exit code 137: mpirun noticed that process rank 1 with PID 7 on node vm exited on signal 9 "
            "(Killed).\n");
  EXPECT_EQ(slurp(runs_dir / runs[2].dir_name / "status"),
            "failed exit code 2: segrun: error: model.clip_sp.top_k: 200 exceeds the 150 classes\n");
  EXPECT_NE(out.str().find("failed " + runs[0].dir_name + " after "), std::string::npos) << out.str();
  EXPECT_NE(out.str().find(": exit code 2: segrun: error on rank 0: stores/train: store not found (log: "),
            std::string::npos)
      << out.str();
}

TEST_F(RunnerTest, RunsThatALiveSlurmJobHasAreLeftToIt) {
  // `sweep run --on slurm`, then `--on local`: the run whose recorded job is pending or running is
  // neither started nor written to; the others run.
  const SweepSpec spec = load_sweep_spec(dir_.str("sweep.toml"));
  const auto runs = expand_sweep(spec);
  const auto slurm_dir = dir_.path() / "runs" / runs[1].dir_name;
  std::vector<std::string> asked;
  SweepRunOptions options = options_;
  options.slurm_jobs = [&](const std::vector<PlanEntry>& plan) {
    for (const auto& e : plan) asked.push_back(e.dir);
    return std::map<std::string, std::string>{{slurm_dir.string(), "77_1 (running)"}};
  };
  std::ostringstream out;
  const SweepRunSummary s = run_sweep(spec, options, out);
  EXPECT_EQ(asked.size(), 3u);
  EXPECT_EQ(s.finished, 1);
  EXPECT_EQ(s.failed, 1);
  EXPECT_EQ(s.on_slurm, 1);
  EXPECT_FALSE(std::filesystem::exists(slurm_dir)) << out.str();
  EXPECT_NE(out.str().find("skipping " + runs[1].dir_name + ": Slurm job 77_1 (running) has it"), std::string::npos)
      << out.str();
  EXPECT_NE(out.str().find("3 runs, 0 done, 1 on Slurm, 2 to run"), std::string::npos) << out.str();
  EXPECT_NE(out.str().find(", 1 left to Slurm\n"), std::string::npos) << out.str();

  // `sweep plan` shows it as Slurm's.
  auto plan = plan_sweep(spec, sweep_runs_dir(spec, ""));
  mark_slurm_jobs(plan, {{slurm_dir.string(), "77_1 (pending (Priority))"}});
  EXPECT_EQ(plan[0].action, PlanAction::kReuse);  // done runs stay done
  EXPECT_EQ(plan[1].action, PlanAction::kOnSlurm);
  const std::string text = format_plan(plan, TableFormat::kText);
  EXPECT_NE(text.find("on slurm (job 77_1 (pending (Priority)))"), std::string::npos) << text;
  EXPECT_NE(text.find("to retry, 1 on Slurm\n"), std::string::npos) << text;
}

// A "running" status says who trains the run, or that nobody does any more (the process was
// killed without updating it); progress counts the checkpoint a resume continues from.
TEST(RunRecord, ARunningRunSaysWhoTrainsItOrThatNobodyDoes) {
  ScratchDir dir("running");
  const fs::path run = dir.path() / "r";
  fabricate_run(run, {{"train.lr", "0.1"}}, 0, "running", 0.0);
  write_text(run / "metrics.jsonl", "{\"iter\": 10, \"mode\": \"train\", \"loss\": 1.0}\n");
  write_text(run / "checkpoints" / "iter_12.pt", "x");
  EXPECT_EQ(describe_run_state(read_run(run.string())), "running");  // no lock file: cannot be known
  EXPECT_EQ(run_progress(read_run(run.string())), 12);
  {
    std::optional<FolderLock> lock = FolderLock::try_take((run / ".lock").string());
    ASSERT_TRUE(lock);
    EXPECT_EQ(
        describe_run_state(read_run(run.string())).rfind("running (pid " + std::to_string(::getpid()) + " on ", 0), 0u);
  }
  EXPECT_EQ(describe_run_state(read_run(run.string())),
            "stale: the status says running but no process trains the run (killed?); continue it with segrun train " +
                run.string() + " --resume auto");
  write_text(run / "status", "failed disk full\n");
  EXPECT_EQ(describe_run_state(read_run(run.string())), "failed");
}

TEST(ResumeRefusal, OnlyARunWithCheckpointsWhoseTrainingConfigOrWorldChangedIsRefused) {
  ScratchDir dir("refusal");
  const auto run = dir.path() / "run";
  std::filesystem::create_directories(run / "checkpoints");
  const Config trained = parse_config("[model]\nwidth = 8\n", "trained");
  write_text(run / "config.toml", to_toml(trained));
  RunRecord record;
  record.dir = run.string();
  record.has_checkpoint = false;
  Config wider = trained;
  wider.model.width = 16;
  EXPECT_EQ(resume_refusal(record, wider, 1, "the sweep now"), "");  // nothing to resume: it starts afresh
  record.has_checkpoint = true;
  const std::string refusal = resume_refusal(record, wider, 1, "the sweep now");
  EXPECT_NE(refusal.find("model.width = 8, the sweep now gives 16"), std::string::npos) << refusal;
  // One run (`segrun submit CONFIG k=v --run-dir D`): no sweep to name.
  const std::string one = resume_refusal(record, wider, 1, "this command");
  EXPECT_NE(one.find("model.width = 8, this command gives 16;"), std::string::npos) << one;
  EXPECT_EQ(one.find("sweep"), std::string::npos) << one;
  Config watched = trained;
  watched.eval.flip = true;
  watched.train.eval_interval = 5;
  EXPECT_EQ(resume_refusal(record, watched, 1, "the sweep now"), "");  // how it is evaluated may change
  // Its checkpoints' world: 2 ranks of batch 4 (the default data.batch_per_rank) wrote them.
  std::filesystem::create_directories(run / "logs");
  write_text(run / "logs" / "rank-0.log",
             "2026-12-07 10:00:00.000 info  r0/2 checkpoint " + (run / "checkpoints" / "iter_10.pt").string() +
                 "\n2026-12-07 10:05:00.000 error r0/1 a resume on 1 rank, refused by the trainer\n");
  write_text(run / "checkpoints" / "iter_10.pt", "x");
  write_text(run / "status", "preempted stopped by signal at iteration 10\n");
  record = read_run(run.string());  // reads the world from the log, as plan_sweep's records do
  EXPECT_EQ(record.checkpoint_world, 2);
  EXPECT_EQ(resume_refusal(record, trained, 2, "the sweep now"), "");
  EXPECT_EQ(
      resume_refusal(record, trained, 1, "the sweep now"),
      run.string() +
          ": its checkpoints were written by 2 rank(s) (global batch 8), the sweep now runs it on 1 (global batch "
          "4): a run resumes only at its global batch: give it 2 rank(s) to finish it, or delete the run folder "
          "to start it afresh");
  EXPECT_NE(resume_refusal(record, wider, 1, "the sweep now").find("model.width"), std::string::npos);  // config first
}

// A run's thread count does not depend on how many runs are left (its figures would): with 2
// cores and 2 runs at a time, the last run left still gets 1 thread per rank.
TEST_F(RunnerTest, ThreadsPerRankDoNotDependOnTheRunsLeft) {
  write_text(dir_.path() / "one.toml",
             "name = \"one\"\nbase = \"base.toml\"\nruns_dir = \"runs_one\"\n[grid]\n\"model.dropout\" = [0.0]\n");
  SweepRunOptions dry = options_;
  dry.dry_run = true;
  std::ostringstream out;
  run_sweep(load_sweep_spec(dir_.str("one.toml")), dry, out);
  EXPECT_NE(out.str().find("1 to run (1 at a time x 1 rank(s) x 1 thread(s))"), std::string::npos) << out.str();
  EXPECT_NE(out.str().find("OMP_NUM_THREADS=1"), std::string::npos) << out.str();
}

TEST_F(RunnerTest, DryRunPrintsQuotedCommandsAndWritesNothing) {
  const SweepSpec spec = load_sweep_spec(dir_.str("sweep.toml"));
  SweepRunOptions dry = options_;
  dry.dry_run = true;
  dry.max_parallel = 1;
  std::ostringstream out;
  run_sweep(spec, dry, out);
  EXPECT_NE(out.str().find("3 to run (1 at a time x 1 rank(s) x 2 thread(s))"), std::string::npos) << out.str();
  EXPECT_NE(out.str().find(" -np 1 "), std::string::npos) << out.str();
  EXPECT_NE(out.str().find(" train " + spec.base + " model.dropout=0.1 train.seed=0 --run-dir "), std::string::npos)
      << out.str();
  EXPECT_FALSE(std::filesystem::exists(dir_.path() / "runs"));
}

}  // namespace
}  // namespace segrun::sweeps
