// sweeps/slurm_jobs: telling a sweep spec from an experiment config, command-line resource
// overrides over a config's [cluster.slurm], and a run's job record (cluster/job_record.h) read
// back by the status of a run that Slurm no longer knows or could not be asked about (fake
// squeue/sacct/sbatch/scancel scripts first on PATH); a run begun under an older folder name is
// submitted in that folder.
#include "sweeps/slurm_jobs.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include <stdlib.h>
#include <unistd.h>

#include "build_config.h"
#include "cluster/job_record.h"
#include "core/error.h"
#include "sweeps/spec.h"
#include "sweeps_test_util.h"
#include "tests/scratch_dir.h"

namespace segrun::sweeps {
namespace {

// Slurm's query and submit commands as scripts first on PATH while alive: squeue prints
// `squeue_out` (or fails as squeue does when the controller is down), sacct fails (no accounting
// storage), sbatch and scancel record that they ran (in <bin>/sbatch.ran, <bin>/scancel.ran).
class FakeSlurm {
 public:
  FakeSlurm(const segrun::testing::ScratchDir& dir, bool controller_up, const std::string& squeue_out = "")
      : bin_(dir.path() / "fake-slurm-bin"), saved_path_(std::getenv("PATH") ? std::getenv("PATH") : "") {
    std::filesystem::create_directories(bin_);
    write_script("squeue", controller_up ? "cat <<'EOF'\n" + squeue_out + "EOF\n"
                                         : "echo 'squeue: error: Unable to contact slurm controller (connect "
                                           "failure)' >&2\necho 'slurm_load_jobs error: Unable to contact slurm "
                                           "controller (connect failure)' >&2\nexit 1\n");
    write_script("sacct", "echo 'sacct: error: Slurm accounting storage is disabled' >&2\nexit 1\n");
    write_script("sbatch", "echo \"$@\" >> '" + (bin_ / "sbatch.ran").string() + "'\necho 99\n");
    write_script("scancel", "echo \"$@\" >> '" + (bin_ / "scancel.ran").string() + "'\n");
    ::setenv("PATH", (bin_.string() + ":" + saved_path_).c_str(), 1);
  }
  ~FakeSlurm() { ::setenv("PATH", saved_path_.c_str(), 1); }
  bool ran(const std::string& command) const { return std::filesystem::exists(bin_ / (command + ".ran")); }

 private:
  void write_script(const std::string& name, const std::string& body) const {
    std::ofstream(bin_ / name) << "#!/bin/sh\n" << body;
    std::filesystem::permissions(bin_ / name, std::filesystem::perms::owner_all);
  }
  std::filesystem::path bin_;
  std::string saved_path_;
};

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
  const FakeSlurm slurm(dir, /*controller_up=*/true);  // squeue lists no such job; sacct has no accounting
  EXPECT_EQ(print_run_status(run, out), 0);
  EXPECT_NE(out.str().find("4242_1 (no longer known to squeue/sacct)"), std::string::npos) << out.str();
  EXPECT_NE(out.str().find("preempted"), std::string::npos) << out.str();
  std::ofstream(run + "/slurm_job.json") << "{not json";
  EXPECT_THROW(cluster::read_job_record(run), DataError);
}

// A two-run sweep (<dir>/sweep.toml over <dir>/base.toml) whose first runs say "running" and
// record the given Slurm jobs; the plan read after that.
std::vector<PlanEntry> running_with_jobs(const segrun::testing::ScratchDir& dir, const std::vector<std::string>& jobs) {
  std::ofstream(dir.str("base.toml")) << "[train]\niters = 10\nwarmup_iters = 1\n";
  std::ofstream(dir.str("sweep.toml")) << "name = \"s\"\nbase = \"base.toml\"\nruns_dir = \"runs\"\n"
                                       << "[grid]\n\"model.dropout\" = [0.0, 0.1]\n";
  const SweepSpec spec = load_sweep_spec(dir.str("sweep.toml"));
  const auto fresh = plan_sweep(spec, dir.str("runs"));
  for (size_t i = 0; i < jobs.size(); ++i) {
    std::filesystem::create_directories(fresh[i].dir);
    std::ofstream(fresh[i].dir + "/status") << "running\n";
    cluster::write_job_record(fresh[i].dir, jobs[i], "job.sbatch", fresh[i].dir + "/slurm.log");
  }
  auto plan = plan_sweep(spec, dir.str("runs"));
  for (size_t i = 0; i < jobs.size(); ++i) EXPECT_EQ(plan[i].record.state, RunState::kRunning) << plan[i].dir;
  return plan;
}

// A run whose checkpoints another number of ranks wrote is not submitted (the trainer would refuse
// its resume after the job waited in the queue): the command says why and exits 1; a dry run with
// nothing else to submit prints no job script.
TEST(SlurmJobs, ARunCheckpointedByAnotherNumberOfRanksIsNotSubmitted) {
  segrun::testing::ScratchDir dir("slurmjobs-world");
  std::ofstream(dir.str("base.toml")) << "[train]\niters = 10\nwarmup_iters = 1\n";
  std::ofstream(dir.str("sweep.toml")) << "name = \"s\"\nbase = \"base.toml\"\nruns_dir = \"runs\"\n"
                                       << "[grid]\n\"model.dropout\" = [0.0]\n";
  const auto plan = plan_sweep(load_sweep_spec(dir.str("sweep.toml")), dir.str("runs"));
  const std::filesystem::path run = plan[0].dir;
  std::filesystem::create_directories(run / "checkpoints");
  std::filesystem::create_directories(run / "logs");
  std::ofstream(run / "checkpoints" / "iter_4.pt") << "x";
  std::ofstream(run / "status") << "preempted stopped by signal at iteration 4\n";
  std::ofstream(run / "logs" / "rank-0.log")
      << "2026-12-07 10:00:00.000 info  r0/2 checkpoint " << (run / "checkpoints" / "iter_4.pt").string() << "\n";
  const FakeSlurm slurm(dir, /*controller_up=*/true);
  SubmitRequest request;
  request.target = dir.str("sweep.toml");
  request.dry_run = true;
  std::ostringstream out;
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(submit_sweep(request, out), 1);
  const std::string said = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(said.find("not submitted: "), std::string::npos) << said;
  EXPECT_NE(said.find(run.filename().string() +
                      ": its checkpoints were written by 2 rank(s) (global batch 8), the sweep now runs it on 1 "
                      "(global batch 4)"),
            std::string::npos)
      << said;
  EXPECT_NE(said.find("1 not submitted (see above), 0 to submit"), std::string::npos) << said;
  EXPECT_NE(said.find("dry run: nothing to submit"), std::string::npos) << said;
  EXPECT_EQ(out.str(), "");  // no job script for 0 runs
  request.dry_run = false;
  EXPECT_EQ(submit_sweep(request, out), 1);
  EXPECT_FALSE(slurm.ran("sbatch"));
  EXPECT_FALSE(std::filesystem::exists(run / "config.toml"));
}

// squeue cannot be asked (the controller is down, or restarting): a recorded job may still run, so
// nothing acts on it as ended -- submit and cancel refuse naming the run, the job and squeue's
// words; status says the state is unknown; a local sweep leaves the run to that job.
TEST(SlurmJobs, AJobWhoseStateSqueueCannotTellIsNeitherSubmittedAgainNorTrainedLocally) {
  segrun::testing::ScratchDir dir("slurmjobs-squeue-down");
  const auto plan = running_with_jobs(dir, {"77_0"});
  const std::string squeue_words =
      "squeue failed (exit code 1): slurm_load_jobs error: Unable to contact slurm controller (connect failure)";
  const FakeSlurm slurm(dir, /*controller_up=*/false);
  const auto expect_refusal = [&](const std::function<void()>& act, const std::string& consequence) {
    try {
      act();
      ADD_FAILURE() << "acted on a job whose state is unknown";
    } catch (const ClusterError& e) {
      EXPECT_EQ(std::string(e.what()),
                plan[0].dir + ": cannot tell whether Slurm job 77_0 is still pending or running (" + squeue_words +
                    "); " + consequence + " (if that job has ended, remove " + plan[0].dir + "/slurm_job.json)");
    }
  };
  std::ostringstream out;
  SubmitRequest sweep;
  sweep.target = dir.str("sweep.toml");
  expect_refusal([&] { submit_sweep(sweep, out); }, "nothing submitted; try again when squeue answers");
  SubmitRequest one;
  one.target = dir.str("base.toml");
  one.run_dir = plan[0].dir;
  expect_refusal([&] { submit_run(one, out); }, "nothing submitted; try again when squeue answers");
  expect_refusal([&] { cancel_jobs(dir.str("sweep.toml"), "", out); },
                 "nothing cancelled; try again when squeue answers");
  SubmitRequest dry = sweep;  // a dry run still shows the script, with the refusal as a warning
  dry.dry_run = true;
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(submit_sweep(dry, out), 0);
  const std::string warned = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(warned.find("warning: " + plan[0].dir + ": cannot tell whether Slurm job 77_0"), std::string::npos)
      << warned;
  out.str("");
  EXPECT_FALSE(slurm.ran("sbatch"));
  EXPECT_FALSE(slurm.ran("scancel"));
  EXPECT_EQ(out.str(), "");
  EXPECT_EQ(read_run(plan[0].dir).state, RunState::kRunning);  // nothing was rewritten

  const auto left_to_slurm = active_slurm_jobs(plan);  // `sweep run --on local` skips these
  ASSERT_EQ(left_to_slurm.size(), 1u);
  EXPECT_EQ(left_to_slurm.at(plan[0].dir), "77_0 (may still be pending or running: " + squeue_words + ")");
  EXPECT_EQ(slurm_states_of(plan).at(plan[0].dir).state, "running [slurm: state unknown: " + squeue_words + "]");
  EXPECT_EQ(print_run_status(plan[0].dir, out), 0);
  EXPECT_NE(out.str().find("job         77_0 (state unknown: " + squeue_words + ")\n"), std::string::npos) << out.str();
}

// squeue answers: a job it lists as running is live (a sweep skips it), one it does not list has ended.
TEST(SlurmJobs, AJobSqueueListsAsRunningIsLeftToSlurm) {
  segrun::testing::ScratchDir dir("slurmjobs-squeue-up");
  const auto plan = running_with_jobs(dir, {"77_0", "77_1"});
  const FakeSlurm slurm(dir, /*controller_up=*/true, "77_0|RUNNING|None|0|vm|\n");
  const auto left_to_slurm = active_slurm_jobs(plan);
  ASSERT_EQ(left_to_slurm.size(), 1u);
  EXPECT_EQ(left_to_slurm.at(plan[0].dir), "77_0 (running)");
  const auto states = slurm_states_of(plan);
  EXPECT_EQ(states.at(plan[0].dir).state, "running");
  EXPECT_EQ(states.at(plan[1].dir).state, "running");  // no job: the run folder's own word
  std::ostringstream out;
  EXPECT_EQ(cancel_jobs(dir.str("sweep.toml"), "", out), 0);
  EXPECT_EQ(out.str().substr(0, 35), "cancelled 1 Slurm job(s): 77_0\n(run") << out.str();
  EXPECT_TRUE(slurm.ran("scancel"));
}

// `cancel FOLDER` of runs submitted one by one (job records, no overrides.json) cancels their
// jobs; a folder with no run in it is refused instead of "nothing to cancel ... for 0 run(s)".
TEST(SlurmJobs, CancelOfAFolderOfRunsSubmittedOneByOne) {
  segrun::testing::ScratchDir dir("slurmjobs-cancel-folder");
  for (const char* run : {"runs/a", "runs/b"}) {
    std::filesystem::create_directories(dir.path() / run);
    std::ofstream(dir.str(std::string(run) + "/status")) << "queued\n";
  }
  cluster::write_job_record(dir.str("runs/a"), "81", "job.sbatch", dir.str("runs/a/slurm.log"));
  cluster::write_job_record(dir.str("runs/b"), "82", "job.sbatch", dir.str("runs/b/slurm.log"));
  const FakeSlurm slurm(dir, /*controller_up=*/true, "81|PENDING|None|0||\n82|RUNNING|None|0|vm|\n");
  std::ostringstream out;
  EXPECT_EQ(cancel_jobs(dir.str("runs"), "", out), 0);
  EXPECT_EQ(out.str().substr(0, 38), "cancelled 2 Slurm job(s): 81 82\n(runni") << out.str();
  std::filesystem::create_directories(dir.path() / "empty");
  try {
    cancel_jobs(dir.str("empty"), "", out);
    ADD_FAILURE() << "cancel of a folder with no run in it";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()), dir.str("empty") +
                                         ": no run here: neither a run folder nor a folder of runs (give a run "
                                         "folder, a sweep's runs folder or its spec)");
  }
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
