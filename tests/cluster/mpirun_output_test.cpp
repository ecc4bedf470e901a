// What `segrun launch` shows of mpirun's stderr (cluster/mpirun_output.h), on the output of a real
// 2-rank launch whose ranks both failed (Open MPI 4.1, 2026-12-07): one error line is left; the
// other messages of Open MPI and a rank's different error pass unchanged and in order. And the
// relay that applies it: to the end of its input, reading on when its output is gone, and as a
// process of its own that stop signals do not end.
#include "cluster/mpirun_output.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/scratch_dir.h"

namespace segrun::cluster {
namespace {

const std::string kRule(74, '-');

std::vector<std::string> filtered(const std::string& text) {
  MpirunErrFilter filter;
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    for (auto& kept : filter.line(line)) out.push_back(kept);
  for (auto& kept : filter.finish()) out.push_back(kept);
  return out;
}

TEST(MpirunErrFilter, AFailedLaunchEndsOnItsOneErrorLine) {
  const std::string error =
      "r2/checkpoints/iter_2.pt: checkpoint is of another model: model.width = 16 in the "
      "checkpoint, 8 in the config";
  const std::string recorded =
      "2026-12-07 11:34:39.504 info  r0/2 rank 0/2 on vm: device cpu, backend mpi\n"
      "segrun: error on rank 1: " +
      error +
      "\n"
      "[vm:04936] [[32694,0],0] ORTE_ERROR_LOG: Out of resource in file ../../../orte/util/show_help.c at line 501\n" +
      kRule +
      "\nMPI_ABORT was invoked on rank 0 in communicator MPI_COMM_WORLD\nwith errorcode 1.\n\n"
      "NOTE: invoking MPI_ABORT causes Open MPI to kill all MPI processes.\nYou may or may not see output from other "
      "processes, depending on\nexactly when Open MPI kills them.\n" +
      kRule +
      "\n"
      "segrun: error on rank 0: " +
      error +
      "\n"
      "[vm:04936] 1 more process has sent help message help-mpi-api.txt / mpi-abort\n"
      "[vm:04936] Set MCA parameter \"orte_base_help_aggregate\" to 0 to see all help / error messages\n";
  EXPECT_EQ(filtered(recorded),
            (std::vector<std::string>{"2026-12-07 11:34:39.504 info  r0/2 rank 0/2 on vm: device cpu, backend mpi",
                                      "segrun: error on rank 1: " + error}));
}

TEST(MpirunErrFilter, RanksStoppedOnRequestLeaveTheirOwnWordsOnly) {
  // Ctrl-C to `segrun launch -n 2 -- train`: the ranks checkpoint and exit 75 (recorded 2026-12-07).
  const std::string stopped =
      "2026-12-07 11:47:55.390 warning r0/2 stop requested: checkpointed at iteration 162; "
      "continue with --resume auto";
  const std::string detected = kRule +
                               "\nmpirun detected that one or more processes exited with non-zero status, thus "
                               "causing\nthe job to be terminated. The first process to do so was:\n\n  Process name: "
                               "[[28910,1],0]\n  Exit code:    ";
  const std::string recorded = "mpirun: Forwarding signal 10 to job\n" + stopped + "\n" + kRule +
                               "\nPrimary job  terminated normally, but 1 process returned\na non-zero exit code. Per "
                               "user-direction, the job has been aborted.\n" +
                               kRule + "\n" + detected + "75\n" + kRule + "\n";
  EXPECT_EQ(filtered(recorded), std::vector<std::string>{stopped});
  // Another exit code with no error line before it is all there is to read: kept.
  const std::vector<std::string> unexplained = filtered(detected + "3\n" + kRule + "\n");
  ASSERT_EQ(unexplained.size(), 7u);
  EXPECT_EQ(unexplained[5], "  Exit code:    3");
}

TEST(MpirunErrFilter, ARankEndedByTheForwardedStopSignalIsLeftToTheLauncher) {
  // Ctrl-C of `segrun launch -n 2 -- eval ...` (recorded 2026-12-07): the launcher says
  // "interrupted" itself; a rank killed by another signal is still shown (below).
  const std::string stopped = kRule +
                              "\nmpirun noticed that process rank 1 with PID 0 on node vm exited on signal 10 (User "
                              "defined signal 1).\n" +
                              kRule + "\n";
  EXPECT_EQ(filtered("mpirun: Forwarding signal 10 to job\n" + stopped), std::vector<std::string>{});
}

TEST(MpirunErrFilter, OtherMessagesPassInOrder) {
  // A rank killed by the kernel: Open MPI's notice says so, and stays; a second, different error
  // stays; a block of dashes that is no help block is released whole, as is one never closed.
  const std::string killed = kRule +
                             "\nmpirun noticed that process rank 1 with PID 0 on node vm exited on signal 9 "
                             "(Killed).\n" +
                             kRule + "\n";
  const std::vector<std::string> out =
      filtered("segrun: error on rank 0: a\nsegrun: error on rank 1: b\n" + killed + kRule + "\nno help\n");
  EXPECT_EQ(out, (std::vector<std::string>{"segrun: error on rank 0: a", "segrun: error on rank 1: b", kRule,
                                           "mpirun noticed that process rank 1 with PID 0 on node vm exited on signal "
                                           "9 (Killed).",
                                           kRule, kRule, "no help"}));
  // A table rule of another width is no block: nothing is held behind it.
  MpirunErrFilter filter;
  EXPECT_EQ(filter.line(std::string(40, '-')), std::vector<std::string>{std::string(40, '-')});
  EXPECT_EQ(filter.line("after"), std::vector<std::string>{"after"});
}

// Everything `fd` gives until its end.
std::string read_to_end(int fd) {
  std::string text;
  char buffer[4096];
  for (ssize_t n; (n = ::read(fd, buffer, sizeof(buffer))) > 0;) text.append(buffer, static_cast<size_t>(n));
  return text;
}

void write_text(int fd, const std::string& text) {
  ASSERT_EQ(::write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
}

const std::string kAbortBanner =
    kRule + "\nMPI_ABORT was invoked on rank 1 in communicator MPI_COMM_WORLD\nwith " + "errorcode 2.\n" + kRule + "\n";

TEST(StderrRelay, RelaysThroughTheFilterToTheEndOfItsInput) {
  int in[2], out[2];
  ASSERT_EQ(::pipe(in), 0);
  ASSERT_EQ(::pipe(out), 0);
  // The input ends on a line without its newline (a '\r' progress line): it is let out as it is.
  write_text(in[1], "rank 0 log line\nsegrun: error on rank 1: no store\n" + kAbortBanner +
                        "segrun: error on rank 0: no store\niter 3/40\r");
  ::close(in[1]);
  relay_filtered(in[0], out[1]);
  ::close(in[0]);
  ::close(out[1]);
  EXPECT_EQ(read_to_end(out[0]), "rank 0 log line\nsegrun: error on rank 1: no store\niter 3/40\r\n");
  ::close(out[0]);
}

TEST(StderrRelay, ALineWrittenAfterAnotherRanksProgressLineIsALineOfItsOwn) {
  // Rank 0's terminal progress (SEGRUN_PROGRESS=terminal) had no newline when rank 1 failed: the
  // error goes on a line of its own, and the banner after it is still recognised.
  int in[2], out[2];
  ASSERT_EQ(::pipe(in), 0);
  ASSERT_EQ(::pipe(out), 0);
  write_text(in[1],
             "\reval 1/3\x1b[K\reval 2/3\x1b[Ksegrun: error on rank 1: crc\n\reval 3/3\x1b[K" + kAbortBanner + "\n");
  ::close(in[1]);
  relay_filtered(in[0], out[1]);
  ::close(in[0]);
  ::close(out[1]);
  EXPECT_EQ(read_to_end(out[0]),
            "\reval 1/3\x1b[K\reval 2/3\x1b[K\nsegrun: error on rank 1: crc\n\reval 3/3\x1b[K\n\n");
  ::close(out[0]);
}

TEST(StderrRelay, KeepsReadingWhenItsOutputIsGone) {
  // The terminal closed: writes fail, and the writer on the other end (mpirun) must still be read
  // to its end, never blocked on a full pipe.
  int in[2], out[2];
  ASSERT_EQ(::pipe(in), 0);
  ASSERT_EQ(::pipe(out), 0);
  ::close(out[0]);
  struct sigaction ignore {
  }, before{};
  ignore.sa_handler = SIG_IGN;
  ::sigaction(SIGPIPE, &ignore, &before);
  const std::string line(99, 'x');
  size_t written = 0;
  std::thread writer([&] {
    for (int i = 0; i < 4000; ++i)
      written += static_cast<size_t>(std::max<ssize_t>(0, ::write(in[1], (line + "\n").data(), 100)));
    ::close(in[1]);
  });
  relay_filtered(in[0], out[1]);
  writer.join();
  ::sigaction(SIGPIPE, &before, nullptr);
  EXPECT_EQ(written, 400000u);  // 6 pipe buffers' worth, all taken
  ::close(in[0]);
  ::close(out[1]);
}

TEST(StderrRelay, TheRelayProcessOutlivesStopSignalsInItsOwnGroup) {
  int in[2], out[2];
  ASSERT_EQ(::pipe2(in, O_CLOEXEC), 0);
  ASSERT_EQ(::pipe(out), 0);
  // The relay writes to this process's stderr: here the `out` pipe.
  const int saved_stderr = ::dup(STDERR_FILENO);
  ASSERT_GE(saved_stderr, 0);
  ::dup2(out[1], STDERR_FILENO);
  pid_t relay = -1;
  try {
    relay = start_stderr_relay(in[0]);
  } catch (...) {
  }
  ::dup2(saved_stderr, STDERR_FILENO);
  ::close(saved_stderr);
  ::close(out[1]);
  ::close(in[0]);
  ASSERT_GT(relay, 0);
  EXPECT_EQ(::getpgid(relay), relay);  // its own process group: a terminal's Ctrl-C misses it
  write_text(in[1], "before\n");
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2}) ASSERT_EQ(::kill(relay, sig), 0);
  write_text(in[1], kAbortBanner + "after\n");
  ::close(in[1]);
  int status = 0;
  ASSERT_EQ(::waitpid(relay, &status, 0), relay);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_EQ(read_to_end(out[0]), "before\nafter\n");
  ::close(out[0]);
}

// The launcher killed outright while mpirun still starts its ranks: mpirun's parent-death signal
// came too early to reach a rank (here: the fake mpirun ignores the stop signal for its first
// second). The relay, outliving the launcher, sends it again until it is handled.
TEST(StderrRelay, StopsTheRanksOfALauncherKilledOutright) {
  segrun::testing::ScratchDir dir("orphan-stop");
  const std::string pid_file = dir.str("mpirun.pid"), stopped = dir.str("stopped");
  const pid_t launcher = ::fork();
  ASSERT_GE(launcher, 0);
  if (launcher == 0) {
    int err[2];
    if (::pipe(err) != 0) ::_exit(1);
    const pid_t mpirun = ::fork();
    if (mpirun == 0) {
      ::dup2(err[1], STDERR_FILENO);
      ::close(err[0]);
      ::close(err[1]);
      const std::string script = "echo $$ > " + pid_file + "; trap '' USR1; sleep 1; trap 'echo stopped > " + stopped +
                                 "; exit 0' USR1; while :; do sleep 0.05; done";
      ::execl("/bin/sh", "sh", "-c", script.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    ::close(err[1]);
    try {
      start_stderr_relay(err[0], OrphanedRanksStop{mpirun, SIGUSR1});
    } catch (...) {
      ::_exit(1);
    }
    ::close(err[0]);
    for (;;) ::pause();
  }
  const auto waited = [](const std::string& path, int tenths) {
    for (int i = 0; i < tenths && !std::filesystem::exists(path); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    return std::filesystem::exists(path);
  };
  ASSERT_TRUE(waited(pid_file, 50));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  ::kill(launcher, SIGKILL);  // as the kernel would, mpirun gets nothing it can use: the relay must
  ::waitpid(launcher, nullptr, 0);
  const bool stop_reached_mpirun = waited(stopped, 60);
  EXPECT_TRUE(stop_reached_mpirun) << "mpirun was never sent the stop signal once it listened";
  if (!stop_reached_mpirun) {
    std::ifstream in(pid_file);
    pid_t mpirun = 0;
    if (in >> mpirun && mpirun > 0) ::kill(mpirun, SIGKILL);
  }
}

}  // namespace
}  // namespace segrun::cluster
