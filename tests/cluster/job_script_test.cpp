// Slurm job scripts: golden files, quoting of hostile values (checked by bash itself), refusal of
// values that cannot go into #SBATCH lines, and the generated script run under bash against fake
// srun / scontrol commands: argument passing, requeue after USR1, no requeue after TERM, failure
// status.
#include "cluster/job_script.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <thread>

#include "cluster/slurm_client.h"
#include "core/error.h"
#include "core/process.h"
#include "tests/scratch_dir.h"

namespace segrun::cluster {
namespace {

namespace fs = std::filesystem;

// Every kind of shell metacharacter, a newline and a quote.
const std::string kHostile = "it's a \"$(touch PWNED)\" `touch PWNED2` ${HOME} $HOME;x|y&z\nline2 \\ * ?";

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void spit(const fs::path& p, const std::string& text, fs::perms mode = fs::perms::owner_all) {
  std::ofstream(p, std::ios::binary) << text;
  fs::permissions(p, mode);
}

fs::path golden_dir() { return fs::path(SEGRUN_TEST_SOURCE_DIR) / "tests" / "cluster" / "golden"; }

// Compares with a golden file; SEGRUN_UPDATE_GOLDEN=1 rewrites it (review the diff!).
void expect_golden(const std::string& text, const std::string& name) {
  const fs::path path = golden_dir() / name;
  if (std::getenv("SEGRUN_UPDATE_GOLDEN"))
    spit(path, text, fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read | fs::perms::others_read);
  EXPECT_EQ(text, slurp(path)) << "golden " << path << " differs";
}

JobScriptOptions gpu_array() {
  JobScriptOptions o;
  o.slurm.partition = "gpu";
  o.slurm.account = "proj-42";
  o.slurm.qos = "normal";
  o.slurm.time = "1-00:00:00";
  o.slurm.mem = "200G";
  o.slurm.constraint = "a100|h100";
  o.slurm.nodes = 2;
  o.slurm.gpus_per_node = 4;
  o.slurm.cpus_per_task = 8;
  o.slurm.max_parallel = 3;
  o.slurm.signal_grace_s = 600;
  o.slurm.max_requeues = 5;
  o.job_name = "ade20k_ablation";
  o.ranks = 8;
  o.program = "/shared/bin/segrun";
  o.env = {{"NCCL_SOCKET_IFNAME", "ib0"}, {"SEGRUN_NOTE", kHostile}};
  o.description = "sweep ade20k_ablation (/home/u/sweep.toml), 7 run(s) of 8 rank(s)";
  o.runs_dir = "/scratch/u/runs/ade20k_ablation";
  o.tasks_file = "/scratch/u/runs/ade20k_ablation/slurm/submit-1.tasks";
  o.array_size = 7;
  o.output = "submit-1_%A_%a.out";
  return o;
}

JobScriptOptions cpu_single() {
  JobScriptOptions o;
  o.slurm.launcher = "mpirun";
  o.slurm.tasks_per_node = 2;
  o.slurm.nodes = 1;
  o.job_name = "tiny-run_1.0";
  o.program = "/opt/my tools/segrun";  // a space: quoted
  o.description = "run tiny-run_1.0 from /home/u/cfg.toml";
  o.run_dir = "/home/u/" + kHostile + "/tiny-run_1.0";
  o.output = "slurm.log";
  return o;
}

TEST(JobScript, GoldenGpuArray) { expect_golden(render_job_script(gpu_array()), "gpu_array_srun.sbatch"); }

TEST(JobScript, GoldenCpuSingleRunWithMpirun) {
  expect_golden(render_job_script(cpu_single()), "cpu_single_mpirun.sbatch");
}

TEST(JobScript, TasksFile) {
  EXPECT_EQ(render_tasks_file({"a1-lr0.1_s0", "b2-lr0.2_s0"}), "a1-lr0.1_s0\nb2-lr0.2_s0\n");
  EXPECT_THROW(render_tasks_file({"ok", "bad name"}), ClusterError);
  EXPECT_THROW(render_tasks_file({"x\ny"}), ClusterError);
  EXPECT_THROW(render_tasks_file({".."}), ClusterError);
}

TEST(JobScript, SingleQuoteRoundTripsThroughBash) {
  segrun::testing::ScratchDir dir("quote");
  const std::vector<std::string> values{kHostile, "", "'", "''", "a'b'c", "$(id)", "`id`", "\n", "-n", "\\'"};
  std::string script = "cd " + process::shell_quote(dir.str(), true) + "\n";
  for (const auto& v : values) script += "printf '%s\\0' " + process::shell_quote(v, true) + "\n";
  spit(dir.path() / "q.sh", script);
  const process::Captured r = process::run_captured({"bash", (dir.path() / "q.sh").string()});
  ASSERT_TRUE(r.status.ok()) << r.err;
  std::string expected;
  for (const auto& v : values) expected += v + std::string(1, '\0');
  EXPECT_EQ(r.out, expected);
  EXPECT_FALSE(fs::exists(dir.path() / "PWNED"));
  EXPECT_FALSE(fs::exists(dir.path() / "PWNED2"));
  EXPECT_EQ(process::shell_quote("it's", true), "'it'\\''s'");
}

TEST(JobScript, RefusesValuesThatCannotGoIntoSbatchLines) {
  auto expect_refused = [](const std::function<void(JobScriptOptions&)>& edit, const std::string& field) {
    JobScriptOptions o = gpu_array();
    edit(o);
    try {
      render_job_script(o);
      ADD_FAILURE() << field << ": accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
    }
  };
  expect_refused([](auto& o) { o.slurm.partition = "gpu\n#SBATCH --wrap=reboot"; }, "partition");
  expect_refused([](auto& o) { o.slurm.partition = "gpu cpu"; }, "partition");
  expect_refused([](auto& o) { o.slurm.account = "a'b"; }, "account");
  expect_refused([](auto& o) { o.slurm.qos = "$(id)"; }, "qos");
  expect_refused([](auto& o) { o.slurm.constraint = "a100\nrm"; }, "constraint");
  expect_refused([](auto& o) { o.slurm.time = "1 day"; }, "time");
  expect_refused([](auto& o) { o.slurm.time = "10:00:00;id"; }, "time");
  expect_refused([](auto& o) { o.slurm.mem = "64G --wrap"; }, "mem");
  expect_refused([](auto& o) { o.slurm.mpi = "pmix --x"; }, "mpi");
  expect_refused([](auto& o) { o.slurm.launcher = "ssh"; }, "launcher");
  expect_refused([](auto& o) { o.job_name = "a b"; }, "job name");
  expect_refused([](auto& o) { o.output = "/abs/out.log"; }, "output");
  expect_refused([](auto& o) { o.output = "a b.log"; }, "output");
  expect_refused([](auto& o) { o.env = {{"BAD NAME", "x"}}; }, "--export");
  expect_refused([](auto& o) { o.env = {{"A=B", "x"}}; }, "--export");
  expect_refused([](auto& o) { o.ranks = 3; }, "rank");  // 2 nodes x 4 GPUs = 8
  // Accepted forms of time and mem.
  for (const char* t : {"30", "30:00", "4:00:00", "2-12", "2-12:30", "2-12:30:00"}) {
    JobScriptOptions o = gpu_array();
    o.slurm.time = t;
    EXPECT_NO_THROW(render_job_script(o)) << t;
  }
}

TEST(JobScript, Layouts) {
  SlurmConfig s;
  auto layout = resolve_layout(s, 3);  // CPU, ranks from the sweep
  EXPECT_EQ(layout.ntasks, 3);
  EXPECT_EQ(layout.tasks_per_node, 0);
  layout = resolve_layout(s, 0);
  EXPECT_EQ(layout.ntasks, 1);
  s.gpus_per_node = 4;
  s.nodes = 2;
  layout = resolve_layout(s, 0);  // one rank per GPU
  EXPECT_EQ(layout.ntasks, 8);
  EXPECT_EQ(layout.tasks_per_node, 4);
  EXPECT_THROW(resolve_layout(s, 4), ConfigError);
  s.tasks_per_node = 2;  // disagrees with 4 GPUs per node
  EXPECT_THROW(resolve_layout(s, 0), ConfigError);
  SlurmConfig cpu;
  cpu.nodes = 3;
  EXPECT_THROW(resolve_layout(cpu, 2), ConfigError);  // more nodes than ranks
  cpu.tasks_per_node = 4;
  EXPECT_EQ(resolve_layout(cpu, 12).ntasks, 12);
}

// ---- the script under bash, with fake srun and scontrol on PATH ----

struct FakeCluster {
  segrun::testing::ScratchDir scratch{"jobscript"};
  fs::path bin, runs, run, log_dir;

  FakeCluster() {
    bin = scratch.path() / "bin";
    // The runs folder has a hostile name: it only ever appears single-quoted in the script.
    runs = scratch.path() / ("runs " + kHostile);
    run = runs / "r0-lr0.1_s0";
    log_dir = scratch.path() / "calls";
    fs::create_directories(bin);
    fs::create_directories(run);
    fs::create_directories(log_dir);
    fs::create_directories(runs / "r1-lr0.2_s0");
    // srun: records its argv (NUL-separated), then behaves as FAKE_MODE says.
    spit(bin / "srun",
         "#!/bin/bash\n"
         "printf '%s\\0' \"$@\" > \"$FAKE_LOG/srun.args\"\n"
         "case \"$FAKE_MODE\" in\n"
         "  exit0) echo done > \"$FAKE_RUN/status\"; echo {} > \"$FAKE_RUN/result.json\"; exit 0 ;;\n"
         "  killed) echo 'srun: error: vm: task 1: Killed' >&2; exit 137 ;;\n"
         "  error) echo 'segrun: error on rank 1: disk full'; echo 'srun: error: vm: task 1: Exited with exit code 1' "
         ">&2; exit 1 ;;\n"
         "  exit*) exit \"${FAKE_MODE#exit}\" ;;\n"
         "  nolaunch) echo attempt >> \"$FAKE_LOG/srun.launches\"; exit 0 ;;\n"
         "  doneonly) echo attempt >> \"$FAKE_LOG/srun.launches\"; echo done > \"$FAKE_RUN/status\"; exit 0 ;;\n"
         "  wait) for sig in USR1 USR2 TERM; do trap \"echo $sig > \\\"\\$FAKE_LOG/srun.signal\\\"; exit 75\" $sig; "
         "done\n"
         "        touch \"$FAKE_LOG/srun.started\"; for i in $(seq 1 100); do sleep 0.05; done; exit 9 ;;\n"
         "esac\n");
    spit(bin / "scontrol", "#!/bin/bash\nprintf '%s\\0' \"$@\" > \"$FAKE_LOG/scontrol.args\"\n");
  }

  JobScriptOptions options() const {
    JobScriptOptions o;
    o.job_name = "sweep";
    o.ranks = 2;
    o.program = (scratch.path() / "segrun").string();
    o.env = {{"SEGRUN_NOTE", kHostile}};
    o.description = "test";
    o.runs_dir = runs.string();
    o.tasks_file = (scratch.path() / "submit-1.tasks").string();
    o.array_size = 2;
    o.output = "submit-1_%A_%a.out";
    spit(o.tasks_file, render_tasks_file({"r1-lr0.2_s0", "r0-lr0.1_s0"}));
    return o;
  }

  // Starts the script (task 1 -> r0-lr0.1_s0) under bash; returns its pid.
  pid_t start(const std::string& mode, int restart_count = 0, const std::string& signal = "USR1") const {
    const fs::path script = scratch.path() / "job.sbatch";
    JobScriptOptions o = options();
    o.slurm.signal = signal;
    spit(script, render_job_script(o));
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::chdir(scratch.str().c_str());
      const std::string path = bin.string() + ":/usr/bin:/bin";
      ::setenv("PATH", path.c_str(), 1);
      ::setenv("FAKE_LOG", log_dir.c_str(), 1);
      ::setenv("FAKE_MODE", mode.c_str(), 1);
      ::setenv("FAKE_RUN", run.c_str(), 1);
      ::setenv("SLURM_JOB_ID", "78", 1);
      ::setenv("SLURM_ARRAY_JOB_ID", "77", 1);
      ::setenv("SLURM_ARRAY_TASK_ID", "1", 1);
      ::setenv("SLURM_RESTART_COUNT", std::to_string(restart_count).c_str(), 1);
      ::setenv("SLURM_JOB_NODELIST", "vm", 1);
      ::unsetenv("SLURM_CPUS_PER_TASK");
      ::execl("/bin/bash", "bash", script.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    return pid;
  }

  static int wait_exit(pid_t pid) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

  bool wait_for(const fs::path& p) const {
    for (int i = 0; i < 200 && !fs::exists(p); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    return fs::exists(p);
  }

  std::vector<std::string> args(const std::string& name) const {
    const std::string text = slurp(log_dir / name);
    std::vector<std::string> out;
    size_t start = 0;
    for (size_t i = 0; i < text.size(); ++i)
      if (text[i] == '\0') {
        out.push_back(text.substr(start, i - start));
        start = i + 1;
      }
    return out;
  }
};

TEST(JobScriptRun, SuccessPassesEveryArgumentVerbatim) {
  FakeCluster c;
  EXPECT_EQ(FakeCluster::wait_exit(c.start("exit0")), 0);
  const std::vector<std::string> expected{"--mpi=pmix",
                                          "--kill-on-bad-exit=1",
                                          (c.scratch.path() / "segrun").string(),
                                          "train",
                                          (c.run / "config.toml").string(),
                                          "--run-dir",
                                          c.run.string(),
                                          "--resume",
                                          "auto"};
  EXPECT_EQ(c.args("srun.args"), expected);
  EXPECT_FALSE(fs::exists(c.log_dir / "scontrol.args"));
  const std::string log = slurp(c.run / "slurm.log");
  EXPECT_NE(log.find("segrun job 77_1 (slurm job 78, restart 0) on vm"), std::string::npos) << log;
  EXPECT_NE(log.find("ranks exited with code 0"), std::string::npos) << log;
  for (const fs::path& dir : {c.scratch.path(), c.runs, c.run}) {
    EXPECT_FALSE(fs::exists(dir / "PWNED")) << dir;
    EXPECT_FALSE(fs::exists(dir / "PWNED2")) << dir;
  }
}

TEST(JobScriptRun, AStepThatEndsWithoutFinishingTheRunIsLaunchedAgain) {
  // srun can exit 0 when its step never launched (seen right after a requeue): the script launches
  // again, 3 times, then fails the run instead of leaving it looking finished.
  FakeCluster c;
  EXPECT_EQ(FakeCluster::wait_exit(c.start("nolaunch")), 1);
  EXPECT_EQ(slurp(c.log_dir / "srun.launches"), "attempt\nattempt\nattempt\n");
  const std::string log = slurp(c.run / "slurm.log");
  EXPECT_NE(log.find("the step ended without finishing the run (attempt 3); launching again"), std::string::npos)
      << log;
  EXPECT_EQ(slurp(c.run / "status").rfind("failed slurm job 77_1: ranks exited with code 1", 0), 0u);
}

TEST(JobScriptRun, ARunMarkedDoneWithoutItsResultIsNotFinished) {
  // A run whose status says done but whose result.json is missing is being evaluated again
  // (sweeps/registry.h): a step that leaves it so has not finished it.
  FakeCluster c;
  EXPECT_EQ(FakeCluster::wait_exit(c.start("doneonly")), 1);
  EXPECT_EQ(slurp(c.log_dir / "srun.launches"), "attempt\nattempt\nattempt\n");
}

TEST(JobScriptRun, PreemptedByUsr1RequeuesItself) {
  FakeCluster c;
  const pid_t pid = c.start("wait");
  ASSERT_TRUE(c.wait_for(c.log_dir / "srun.started"));
  ::kill(pid, SIGUSR1);  // what --signal=B:USR1@grace sends to the batch shell
  EXPECT_EQ(FakeCluster::wait_exit(pid), 0);
  EXPECT_TRUE(fs::exists(c.log_dir / "srun.signal"));  // forwarded to the step
  EXPECT_EQ(c.args("scontrol.args"), (std::vector<std::string>{"requeue", "77_1"}));
  const std::string log = slurp(c.run / "slurm.log");
  EXPECT_NE(log.find("SIGUSR1 received"), std::string::npos) << log;
  EXPECT_NE(log.find("checkpointed; requeueing"), std::string::npos) << log;
}

TEST(JobScriptRun, TheConfiguredSignalIsForwardedAndRequeues) {
  for (const std::string signal : {"USR2", "TERM"}) {
    SCOPED_TRACE(signal);
    FakeCluster c;
    const pid_t pid = c.start("wait", 0, signal);
    ASSERT_TRUE(c.wait_for(c.log_dir / "srun.started"));
    ::kill(pid, signal == "USR2" ? SIGUSR2 : SIGTERM);  // --signal=B:<signal>@grace
    EXPECT_EQ(FakeCluster::wait_exit(pid), 0);
    EXPECT_EQ(slurp(c.log_dir / "srun.signal"), signal + "\n");  // the step got the same signal
    EXPECT_EQ(c.args("scontrol.args"), (std::vector<std::string>{"requeue", "77_1"}));
    EXPECT_NE(slurp(c.run / "slurm.log").find("SIG" + signal + " received"), std::string::npos);
  }
  // With USR2 configured, a TERM is still a cancel: forwarded as USR2, no requeue.
  FakeCluster c;
  const pid_t pid = c.start("wait", 0, "USR2");
  ASSERT_TRUE(c.wait_for(c.log_dir / "srun.started"));
  ::kill(pid, SIGTERM);
  EXPECT_EQ(FakeCluster::wait_exit(pid), 75);
  EXPECT_EQ(slurp(c.log_dir / "srun.signal"), "USR2\n");
  EXPECT_FALSE(fs::exists(c.log_dir / "scontrol.args"));
}

TEST(JobScript, SignalDirectiveAndRefusals) {
  FakeCluster c;
  JobScriptOptions o = c.options();
  o.slurm.signal = "USR2";
  o.slurm.signal_grace_s = 90;
  EXPECT_NE(render_job_script(o).find("#SBATCH --signal=B:USR2@90\n"), std::string::npos);
  o.slurm.signal = "HUP";
  EXPECT_THROW(render_job_script(o), ConfigError);
  o.slurm.signal = "TERM";
  o.slurm.launcher = "mpirun";
  try {
    render_job_script(o);
    FAIL() << "TERM with mpirun accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("cluster.slurm.launcher = \"srun\""), std::string::npos) << e.what();
  }
}

TEST(JobScriptRun, TermStopsWithoutRequeue) {
  FakeCluster c;
  const pid_t pid = c.start("wait");
  ASSERT_TRUE(c.wait_for(c.log_dir / "srun.started"));
  ::kill(pid, SIGTERM);  // scancel, or Slurm's own requeue / preemption
  EXPECT_EQ(FakeCluster::wait_exit(pid), 75);
  EXPECT_TRUE(fs::exists(c.log_dir / "srun.signal"));
  EXPECT_FALSE(fs::exists(c.log_dir / "scontrol.args"));
  EXPECT_NE(slurp(c.run / "slurm.log").find("not requeued by this script"), std::string::npos);
}

TEST(JobScriptRun, GivesUpAfterMaxRequeues) {
  FakeCluster c;
  EXPECT_EQ(FakeCluster::wait_exit(c.start("exit75", 20)), 75);  // default max_requeues = 20
  EXPECT_FALSE(fs::exists(c.log_dir / "scontrol.args"));
  EXPECT_NE(slurp(c.run / "slurm.log").find("already requeued 20 times"), std::string::npos);
}

TEST(JobScriptRun, FailureIsWrittenToTheRunStatus) {
  FakeCluster c;
  EXPECT_EQ(FakeCluster::wait_exit(c.start("exit3")), 3);
  EXPECT_EQ(slurp(c.run / "status"),
            "failed slurm job 77_1: ranks exited with code 3 (log " + (c.run / "slurm.log").string() + ")\n");
  // A reason the trainer wrote itself is kept.
  spit(c.run / "status", "failed data.store: not set\n");
  EXPECT_EQ(FakeCluster::wait_exit(c.start("exit2")), 2);
  EXPECT_EQ(slurp(c.run / "status"), "failed data.store: not set\n");
}

TEST(JobScriptRun, AFailedStatusNamesTheRankThatDied) {
  FakeCluster c;
  // An earlier job's failure in the same log is not this one's.
  spit(c.run / "slurm.log", "srun: error: vm: task 0: Terminated\nsegrun: error on rank 0: old\n");
  EXPECT_EQ(FakeCluster::wait_exit(c.start("killed")), 137);
  EXPECT_EQ(slurp(c.run / "status"),
            "failed slurm job 77_1: ranks exited with code 137: srun: error: vm: task 1: "
            "Killed (log " +
                (c.run / "slurm.log").string() + ")\n");
  // A rank's own error line, where there is one, says why.
  ::unlink((c.run / "status").c_str());
  EXPECT_EQ(FakeCluster::wait_exit(c.start("error")), 1);
  EXPECT_EQ(slurp(c.run / "status"),
            "failed slurm job 77_1: ranks exited with code 1: segrun: error on rank 1: "
            "disk full (log " +
                (c.run / "slurm.log").string() + ")\n");
}

TEST(JobScriptRun, RefusesATasksFileLineThatIsNotARunName) {
  FakeCluster c;
  JobScriptOptions o = c.options();
  spit(o.tasks_file, "ok\n../../etc\n");
  spit(c.scratch.path() / "job.sbatch", render_job_script(o));
  const process::Captured r =
      process::run_captured({"env", "SLURM_ARRAY_TASK_ID=1", "SLURM_ARRAY_JOB_ID=5", "SLURM_JOB_ID=6",
                             "PATH=" + c.bin.string() + ":/usr/bin:/bin", "FAKE_LOG=" + c.log_dir.string(), "bash",
                             (c.scratch.path() / "job.sbatch").string()});
  EXPECT_EQ(r.status.code, 2);
  EXPECT_NE(r.err.find("is not a run name"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(c.log_dir / "srun.args"));
}

}  // namespace
}  // namespace segrun::cluster
