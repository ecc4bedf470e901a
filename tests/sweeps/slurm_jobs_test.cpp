// sweeps/slurm_jobs: telling a sweep spec from an experiment config, command-line resource
// overrides over a config's [cluster.slurm], and a run's job record (cluster/job_record.h) read
// back by the status of a run that Slurm no longer knows; a run begun under an older folder name
// is submitted in that folder.
#include "sweeps/slurm_jobs.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <unistd.h>

#include "build_config.h"
#include "cluster/job_record.h"
#include "core/error.h"
#include "sweeps/spec.h"
#include "sweeps_test_util.h"
#include "tests/scratch_dir.h"

namespace segrun::sweeps {
namespace {

TEST(SlurmJobs, SweepSpecsHaveATopLevelBase) {
  segrun::testing::ScratchDir dir("slurmjobs");
  std::ofstream(dir.str("spec.toml")) << "# a sweep\nname = \"s\"\n\"base\" = \"cfg.toml\"\n[grid]\n";
  std::ofstream(dir.str("cfg.toml")) << "name = \"c\"\n[model]\nbase = \"not top level\"\n";
  EXPECT_TRUE(is_sweep_spec(dir.str("spec.toml")));
  EXPECT_FALSE(is_sweep_spec(dir.str("cfg.toml")));
  EXPECT_THROW(is_sweep_spec(dir.str("missing.toml")), ConfigError);
}

TEST(SlurmJobs, OverridesReplaceOnlyWhatWasGiven) {
  SlurmConfig s;
  s.partition = "cpu";
  s.nodes = 2;
  s.signal_grace_s = 300;
  SlurmOverrides o;
  o.partition = "gpu";
  o.signal_grace_s = 60;
  o.apply(s);
  EXPECT_EQ(s.partition, "gpu");
  EXPECT_EQ(s.nodes, 2);
  EXPECT_EQ(s.signal_grace_s, 60);
  EXPECT_EQ(s.signal, "USR1");
}

TEST(SlurmJobs, StatusOfARunWhoseJobSlurmForgot) {
  segrun::testing::ScratchDir dir("slurmjobs-status");
  const std::string run = dir.str("run");
  std::filesystem::create_directories(run);
  std::ofstream(run + "/status") << "preempted stopped by signal at iteration 4\n";
  cluster::write_job_record(run, "4242_1", "job.sbatch", run + "/slurm.log");
  const auto record = cluster::read_job_record(run);
  ASSERT_TRUE(record.has_value());
  EXPECT_EQ(record->job_id, "4242_1");
  EXPECT_EQ(record->script, "job.sbatch");
  EXPECT_FALSE(record->submitted.empty());
  std::ostringstream out;
  EXPECT_EQ(print_run_status(run, out), 0);  // squeue/sacct absent or silent: the job is unknown
  EXPECT_NE(out.str().find("4242_1 (no longer known to squeue/sacct)"), std::string::npos) << out.str();
  EXPECT_NE(out.str().find("preempted"), std::string::npos) << out.str();
  std::ofstream(run + "/slurm_job.json") << "{not json";
  EXPECT_THROW(cluster::read_job_record(run), DataError);
}

TEST(SlurmJobs, StatusRefusesAFolderThatIsNotARun) {
  // A folder of other files, or a store, is not a run that has not started (README: "a folder of
  // other files is never a run directory"): refused like `segrun eval` refuses it (exit 2).
  segrun::testing::ScratchDir dir("slurmjobs-notarun");
  std::filesystem::create_directories(dir.path() / "other");
  std::ofstream(dir.str("other/notes.txt")) << "mine\n";
  std::ostringstream out;
  try {
    print_run_status(dir.str("other"), out);
    ADD_FAILURE() << "status of a folder of other files: " << out.str();
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()),
              dir.str("other") + ": not a run folder (no status, overrides.json, checkpoint or rank log)");
  }
  EXPECT_EQ(out.str(), "");
  // A config.toml alone may be the user's own (train refuses to train into such a folder too).
  std::ofstream(dir.str("other/config.toml")) << "[train]\niters = 10\n";
  EXPECT_THROW(print_run_status(dir.str("other"), out), ConfigError);
  // A run starting (RunFolder::create made checkpoints/ and logs/, no status yet) is a new run.
  std::filesystem::create_directories(dir.path() / "starting" / "checkpoints");
  std::filesystem::create_directories(dir.path() / "starting" / "logs");
  EXPECT_EQ(print_run_status(dir.str("starting"), out), 0);
  EXPECT_NE(out.str().find("state       new\n"), std::string::npos) << out.str();
  out.str("");
  // A run that was only queued (config.toml and status, as `segrun submit` leaves it) is a run.
  std::filesystem::create_directories(dir.path() / "queued");
  std::ofstream(dir.str("queued/config.toml")) << "[train]\niters = 10\nwarmup_iters = 1\n";
  std::ofstream(dir.str("queued/status")) << "queued\n";
  EXPECT_EQ(print_run_status(dir.str("queued"), out), 0);
  EXPECT_NE(out.str().find("state       queued\nprogress    0/10\n"), std::string::npos) << out.str();
}

TEST(SlurmJobs, ASweepIsNotSubmittedWhileALocalSweepRunHasItsRunsFolder) {
  // `sweep run --on local` holds <runs>/.sweep.lock while it trains; submitting the same runs to
  // Slurm then would train them twice at once, into the same folders.
  segrun::testing::ScratchDir dir("slurmjobs-lock");
  std::ofstream(dir.str("base.toml")) << "[train]\niters = 10\nwarmup_iters = 1\n";
  std::ofstream(dir.str("sweep.toml")) << "name = \"s\"\nbase = \"base.toml\"\nruns_dir = \"runs\"\n"
                                       << "[grid]\n\"model.dropout\" = [0.0, 0.1]\n";
  std::filesystem::create_directories(dir.path() / "runs");
  SubmitRequest request;
  request.target = dir.str("sweep.toml");
  std::ostringstream out;
  {
    const RunsLock local(dir.str("runs"), "held by the test");
    try {
      submit_sweep(request, out);
      ADD_FAILURE() << "submitted: " << out.str();
    } catch (const ConfigError& e) {  // exit 2, naming the holder
      EXPECT_NE(std::string(e.what()).find("runs: in use by pid " + std::to_string(::getpid())), std::string::npos)
          << e.what();
      EXPECT_NE(std::string(e.what()).find("; a local `segrun sweep run` is training this sweep's runs; let it "
                                           "finish (or stop it with Ctrl-C) before submitting them to Slurm"),
                std::string::npos)
          << e.what();
    }
  }
  EXPECT_EQ(out.str(), "");
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path() / "runs"), {}), 1);  // only .sweep.lock
}

TEST(SlurmJobs, ARunBegunUnderAnOlderFolderNameIsResumedInThatFolder) {
  // Folder names change when the naming does (a float's spelling, the slug's rules); the plan
  // finds such a run by its overrides.json, and the job array must train it there, not begin it
  // again in a folder of today's name.
  segrun::testing::ScratchDir dir("slurmjobs-oldname");
  std::ofstream(dir.str("base.toml")) << "[train]\niters = 10\nwarmup_iters = 1\n";
  std::ofstream(dir.str("sweep.toml")) << "name = \"s\"\nbase = \"base.toml\"\nruns_dir = \"runs\"\n"
                                       << "[grid]\n\"model.dropout\" = [0.0, 0.1]\n";
  const auto runs = expand_sweep(load_sweep_spec(dir.str("sweep.toml")));
  ASSERT_EQ(runs.size(), 2u);
  const auto old = dir.path() / "runs" / (runs[0].id + "-dropout0_s0");
  testing::fabricate_run(old, {{"model.dropout", "0"}}, 0, "preempted stopped by signal", 0.0);
  std::filesystem::create_directories(old / "checkpoints");
  std::ofstream(old / "checkpoints" / "iter_5.pt") << "x";
  SubmitRequest request;
  request.target = dir.str("sweep.toml");
  request.dry_run = true;
  std::ostringstream out;
  ::testing::internal::CaptureStderr();
  submit_sweep(request, out);
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("  task 0: " + runs[0].id + "-dropout0_s0\n"), std::string::npos) << err;
  EXPECT_NE(err.find("  task 1: " + runs[1].dir_name + "\n"), std::string::npos) << err;
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "runs" / runs[0].dir_name));
}

// A `submit --dry-run` of <dir>/<name>.toml (holding `toml`) into <dir>/runs/<name>.
SubmitRequest dry_run_of(const segrun::testing::ScratchDir& dir, const std::string& toml, const std::string& name,
                         const std::vector<std::string>& overrides) {
  std::ofstream(dir.str(name + ".toml")) << toml;
  SubmitRequest request;
  request.target = dir.str(name + ".toml");
  request.run_dir = dir.str("runs/" + name);
  request.dry_run = true;
  request.overrides = overrides;
  return request;
}

// A GPU job given to a segrun built without CUDA: refused before it queues when its ranks would
// fail (dist.device = "cuda"), a warning when they would train on the CPUs (auto).
TEST(SlurmJobs, AGpuJobFromASegrunWithoutCudaIsRefusedOrWarned) {
  if (SEGRUN_WITH_CUDA) GTEST_SKIP() << "this segrun is built with CUDA";
  segrun::testing::ScratchDir dir("slurmjobs-gpu");
  SubmitRequest request = dry_run_of(dir, "[train]\niters = 10\nwarmup_iters = 1\n[cluster.slurm]\ngpus_per_node = 4\n",
                                     "gpu", {"dist.device=cuda"});
  std::ostringstream out;
  try {
    submit_run(request, out);
    ADD_FAILURE() << "a job whose ranks would all fail was accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(
        std::string(e.what()).find("override 'dist.device=cuda': cluster.slurm.gpus_per_node = 4 but this segrun ("),
        std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("built without CUDA"), std::string::npos) << e.what();
  }
  request.overrides = {"dist.device=auto"};
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(submit_run(request, out), 0);
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("will train on the nodes' CPUs while the GPUs idle"), std::string::npos) << err;
  request.overrides = {"dist.device=cpu"};  // meant: no word
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(submit_run(request, out), 0);
  EXPECT_EQ(::testing::internal::GetCapturedStderr().find("GPUs idle"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "runs" / "gpu"));  // a dry run writes nothing
}

// dist.backend = "nccl" from a segrun built without NCCL: refused before the job queues (every rank
// would fail at its start); a build with NCCL accepts it.
TEST(SlurmJobs, AnNcclJobIsRefusedByASegrunWithoutNccl) {
  segrun::testing::ScratchDir dir("slurmjobs-nccl");
  SubmitRequest request =
      dry_run_of(dir, "[train]\niters = 10\nwarmup_iters = 1\n", "nccl", {"dist.backend=nccl", "dist.device=cpu"});
  std::ostringstream out;
  if (SEGRUN_WITH_NCCL) {
    EXPECT_EQ(submit_run(request, out), 0) << "this segrun is built with NCCL";
    return;
  }
  try {
    submit_run(request, out);
    ADD_FAILURE() << "a job whose ranks would all fail was accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("override 'dist.backend=nccl': dist.backend = \"nccl\" but this segrun ("),
              std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("built without NCCL"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace segrun::sweeps
