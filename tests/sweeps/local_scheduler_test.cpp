// The cluster layer's local scheduler (the engine of `segrun sweep run --on local`), driven with
// small shell jobs: packing onto the core budget, exit codes, logs, and a Ctrl-C that stops the
// running jobs with SIGUSR1 and starts no new one.
#include "cluster/local_scheduler.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include "core/error.h"
#include "sweeps_test_util.h"

namespace segrun::cluster {
namespace {

using segrun::sweeps::testing::ScratchDir;

LocalJob sh(const std::string& name, const std::string& script, int slots = 1, const std::string& log = "") {
  return LocalJob{name, {"/bin/sh", "-c", script}, slots, log};
}

// Tracks slots in flight through the callbacks.
struct Tracker {
  int slots = 0;
  int max_slots = 0;
  int running = 0;
  int max_running = 0;
  std::vector<size_t> started;
  void attach(LocalSchedulerOptions& o) {
    o.on_start = [this](size_t i, const LocalJob& job) {
      slots += job.slots;
      ++running;
      max_slots = std::max(max_slots, slots);
      max_running = std::max(max_running, running);
      started.push_back(i);
    };
    o.on_finish = [this](size_t, const LocalJob& job, const LocalJobResult&) {
      slots -= job.slots;
      --running;
    };
  }
};

TEST(LocalScheduler, PacksOntoCoresAndReportsExitCodes) {
  ScratchDir dir("sched");
  std::vector<LocalJob> jobs{
      sh("ok", "sleep 0.2; echo hello from job", 1, dir.str("ok.log")),
      sh("three", "sleep 0.2; exit 3"),
      sh("killed", "kill -9 $$"),
      sh("ok2", "sleep 0.2"),
      LocalJob{"missing", {"/nonexistent/segrun-program"}, 1, dir.str("missing.log")},
  };
  LocalSchedulerOptions options;
  options.cores = 2;
  Tracker t;
  t.attach(options);
  auto results = run_local_jobs(jobs, options);
  ASSERT_EQ(results.size(), 5u);
  EXPECT_EQ(results[0].exit_code, 0);
  EXPECT_EQ(results[1].exit_code, 3);
  EXPECT_EQ(results[2].exit_code, 128 + 9);
  EXPECT_EQ(results[3].exit_code, 0);
  EXPECT_EQ(results[4].exit_code, 127);
  for (const auto& r : results) EXPECT_TRUE(r.started);
  EXPECT_EQ(t.max_slots, 2);
  EXPECT_EQ(t.started, (std::vector<size_t>{0, 1, 2, 3, 4}));  // queue order
  EXPECT_GE(results[0].seconds, 0.2);
  std::ifstream log(dir.str("ok.log"));
  std::stringstream text;
  text << log.rdbuf();
  EXPECT_EQ(text.str(), "hello from job\n");
  std::ifstream missing(dir.str("missing.log"));
  std::stringstream mtext;
  mtext << missing.rdbuf();
  EXPECT_NE(mtext.str().find("cannot run /nonexistent/segrun-program"), std::string::npos) << mtext.str();
}

TEST(LocalScheduler, WideJobsRunAloneAndMaxParallelLimits) {
  LocalSchedulerOptions options;
  options.cores = 2;
  Tracker t;
  t.attach(options);
  // A 2-slot job fills the budget; a 3-slot job is wider than it and runs alone.
  auto results = run_local_jobs(
      {sh("a", "sleep 0.1", 2), sh("b", "sleep 0.1", 1), sh("c", "sleep 0.1", 1), sh("wide", "sleep 0.1", 3)}, options);
  for (const auto& r : results) EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(t.max_slots, 3);  // only when "wide" runs alone
  EXPECT_EQ(t.max_running, 2);

  LocalSchedulerOptions serial;
  serial.cores = 8;
  serial.max_parallel = 1;
  Tracker s;
  s.attach(serial);
  run_local_jobs({sh("a", "sleep 0.05"), sh("b", "sleep 0.05"), sh("c", "sleep 0.05")}, serial);
  EXPECT_EQ(s.max_running, 1);
  EXPECT_THROW(run_local_jobs({LocalJob{"empty", {}, 1, ""}}, serial), ClusterError);
}

TEST(LocalScheduler, InterruptStopsRunningJobsAndStartsNoNewOne) {
  struct sigaction before {};
  sigaction(SIGINT, nullptr, &before);
  // Each job exits 75 when it receives SIGUSR1, like a trainer that checkpointed.
  const std::string job = "trap \"exit 75\" USR1; sleep 20 & wait";
  LocalSchedulerOptions options;
  options.cores = 2;
  options.max_parallel = 1;
  std::thread interrupter([] {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    ::kill(::getpid(), SIGINT);
  });
  const auto t0 = std::chrono::steady_clock::now();
  auto results = run_local_jobs({sh("a", job), sh("b", job), sh("c", job)}, options);
  interrupter.join();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(seconds, 10.0);
  EXPECT_TRUE(local_stop_requested());
  EXPECT_TRUE(results[0].started);
  EXPECT_TRUE(results[0].stop_sent);
  EXPECT_EQ(results[0].exit_code, 75);
  EXPECT_FALSE(results[1].started);
  EXPECT_FALSE(results[2].started);
  EXPECT_EQ(results[2].exit_code, -1);
  // The previous SIGINT disposition is back.
  struct sigaction after {};
  sigaction(SIGINT, nullptr, &after);
  EXPECT_EQ(after.sa_handler, before.sa_handler);
}

// A second Ctrl-C right after the first is dropped (the ranks are checkpointing, and mpirun crashes
// on a signal while it tears a stopped job down); one after the wait sends SIGTERM.
TEST(LocalScheduler, ASecondInterruptForcesTheStopOnlyAfterTheWait) {
  LocalSchedulerOptions options;
  options.force_stop_after_seconds = 0.5;
  std::thread interrupter([] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    ::kill(::getpid(), SIGINT);  // the jobs' stop signal, which this one ignores
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    ::kill(::getpid(), SIGINT);  // dropped
    // Well past the wait, however late a loaded machine's poll sees the first.
    std::this_thread::sleep_for(std::chrono::milliseconds(2400));
    ::kill(::getpid(), SIGINT);  // SIGTERM
  });
  ::testing::internal::CaptureStderr();
  const auto results = run_local_jobs({sh("a", "trap '' USR1; sleep 20 & wait")}, options);
  const std::string said = ::testing::internal::GetCapturedStderr();
  interrupter.join();
  EXPECT_EQ(results[0].exit_code, 128 + SIGTERM);
  EXPECT_GE(results[0].seconds, 2.5);  // not ended by the second
  EXPECT_LT(results[0].seconds, 10.0);
  EXPECT_EQ(said, process::kStopNotForcedNotice);
}

}  // namespace
}  // namespace segrun::cluster
