// core/process: spawning with captured, appended or discarded output, exit statuses (codes and
// signal deaths, described and in shell terms), start failures as exceptions naming the program
// or folder (never exit code 127), signal forwarding with the first stop translated, signal
// counting, core count and shell quoting (checked by bash itself).
#include "core/process.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <fstream>
#include <sstream>
#include <thread>

#include "core/error.h"
#include "tests/scratch_dir.h"

namespace segrun::process {
namespace {

TEST(Process, CapturesOutputsExitCodeAndWorkingDirectory) {
  segrun::testing::ScratchDir dir("process");
  const Captured r = run_captured({"bash", "-c", "pwd; echo err >&2; exit 3"}, dir.path().string());
  EXPECT_EQ(r.status.code, 3);
  EXPECT_EQ(r.status.signal, 0);
  EXPECT_FALSE(r.status.ok());
  EXPECT_EQ(r.status.describe(), "exit code 3");
  EXPECT_EQ(r.out, dir.path().string() + "\n");
  EXPECT_EQ(r.err, "err\n");
  // Large outputs on both pipes do not deadlock.
  const Captured big = run_captured({"bash", "-c", "head -c 300000 /dev/zero; head -c 300000 /dev/zero >&2"});
  EXPECT_TRUE(big.status.ok());
  EXPECT_EQ(big.out.size(), 300000u);
  EXPECT_EQ(big.err.size(), 300000u);
  // stdin is /dev/null: cat ends at once.
  EXPECT_EQ(run_captured({"cat"}).out, "");
}

TEST(Process, ASignalDeathIsNamedAndIs128PlusTheSignalInShellTerms) {
  const Captured r = run_captured({"bash", "-c", "kill -9 $$"});
  EXPECT_EQ(r.status.signal, SIGKILL);
  EXPECT_EQ(r.status.shell_code(), 128 + 9);
  EXPECT_EQ(r.status.describe(), "killed by SIGKILL");
  // A program's own exit code 127 stays an exit code.
  EXPECT_EQ(run_captured({"bash", "-c", "exit 127"}).status.shell_code(), 127);
}

TEST(Process, StartFailuresThrowNamingTheProgramOrFolder) {
  try {
    run_captured({"segrun-no-such-command-xyz", "--flag"});
    FAIL() << "no exception";
  } catch (const ProcessError& e) {
    EXPECT_EQ(std::string(e.what()),
              "cannot run segrun-no-such-command-xyz: No such file or directory (not installed, or not in PATH?)");
  }
  try {
    run_captured({"true"}, "/nonexistent/folder");
    FAIL() << "no exception";
  } catch (const ProcessError& e) {
    EXPECT_EQ(std::string(e.what()), "cannot run true in /nonexistent/folder: No such file or directory");
  }
  SpawnOptions unlogged;
  unlogged.argv = {"true"};
  unlogged.out = Output::kAppendFile;
  unlogged.log_path = "/nonexistent/folder/x.log";
  EXPECT_THROW(spawn(unlogged), ProcessError);
  EXPECT_THROW(spawn(SpawnOptions{}), ProcessError);
}

TEST(Process, AppendsBothStreamsToTheLogInItsOwnProcessGroup) {
  segrun::testing::ScratchDir dir("process-log");
  const std::string log = dir.str("job.log");
  std::ofstream(log) << "before\n";
  SpawnOptions o;
  o.argv = {"bash", "-c", "echo out; echo err >&2; ps -o pgid= -p $$ | tr -d ' '; echo $$"};
  o.out = Output::kAppendFile;
  o.err = Output::kAppendFile;
  o.log_path = log;
  o.new_process_group = true;
  const Child child = spawn(o);
  EXPECT_TRUE(wait(child.pid).ok());
  std::ifstream in(log);
  std::string before, out, err, pgid, pid;
  std::getline(in, before);
  std::getline(in, out);
  std::getline(in, err);
  std::getline(in, pgid);
  std::getline(in, pid);
  EXPECT_EQ(before, "before");
  EXPECT_EQ(out, "out");
  EXPECT_EQ(err, "err");
  EXPECT_EQ(pgid, pid);  // the child leads its own group
  EXPECT_EQ(pid, std::to_string(child.pid));
}

// A bash child that runs `trap` ("trap 'exit 12' USR2") and says so before it loops: once this
// returns, the trap is in place.
Child spawn_with_trap(const std::string& trap) {
  SpawnOptions o;
  o.argv = {"bash", "-c", trap + "; echo ready; while :; do sleep 0.05; done"};
  o.out = Output::kCapture;
  const Child child = spawn(o);
  char c = 0;
  EXPECT_EQ(::read(child.out_fd, &c, 1), 1);  // "r" of ready
  ::close(child.out_fd);
  return child;
}

TEST(Process, ForwardsTheFirstStopAsTheGivenSignalThenSignalsAsThemselves) {
  const Child child = spawn_with_trap("trap 'exit 12' USR2");
  {
    ScopedSignalForwarding forwarding(child.pid, SIGUSR2);
    ::kill(::getpid(), SIGINT);  // becomes SIGUSR2 for the child
    const ExitStatus s = wait(child.pid);
    EXPECT_EQ(s.code, 12) << s.describe();
  }
  // The second stop goes as itself: a child that ignores USR1 is killed by SIGTERM.
  const Child second = spawn_with_trap("trap '' USR1");
  {
    ScopedSignalForwarding forwarding(second.pid, SIGUSR1, /*force_after_seconds=*/0);
    ::kill(::getpid(), SIGTERM);  // -> SIGUSR1, ignored
    ::kill(::getpid(), SIGTERM);  // -> SIGTERM
    EXPECT_EQ(wait(second.pid).signal, SIGTERM);
  }
}

// A second stop right after the first is dropped with a notice (mpirun, tearing the job down once
// its ranks stopped, crashes on it); one after the wait forces the stop.
TEST(Process, ASecondStopForcesOnlyAfterTheWait) {
  const Child child = spawn_with_trap("trap '' USR1");
  ScopedSignalForwarding forwarding(child.pid, SIGUSR1, /*force_after_seconds=*/0.5);
  ::testing::internal::CaptureStderr();
  ::kill(::getpid(), SIGTERM);  // -> SIGUSR1, ignored
  ::kill(::getpid(), SIGTERM);  // dropped
  const std::string notice = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(notice, kStopNotForcedNotice);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_FALSE(try_wait(child.pid));
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  ::kill(::getpid(), SIGTERM);  // 0.6 s after the first: forwarded as itself
  EXPECT_EQ(wait(child.pid).signal, SIGTERM);
}

// A closed terminal (SIGHUP) stops like Ctrl-C; under nohup (SIGHUP ignored) it stays ignored.
TEST(Process, AHangupIsAStopUnlessIgnored) {
  const Child child = spawn_with_trap("trap 'exit 12' USR2");
  {
    ScopedSignalForwarding forwarding(child.pid, SIGUSR2);
    ::kill(::getpid(), SIGHUP);  // becomes SIGUSR2 for the child
    EXPECT_EQ(wait(child.pid).code, 12);
  }
  struct sigaction ignore {
  }, previous{};
  ignore.sa_handler = SIG_IGN;
  sigemptyset(&ignore.sa_mask);
  ::sigaction(SIGHUP, &ignore, &previous);
  {
    ScopedSignalCounter counter;
    ::kill(::getpid(), SIGHUP);
    EXPECT_EQ(counter.count(), 0);
  }
  struct sigaction after {};
  ::sigaction(SIGHUP, &previous, &after);
  EXPECT_EQ(after.sa_handler, SIG_IGN);  // the counter left nohup's choice in place
}

// A child started with parent_death_signal gets it when its parent dies, however it dies (the
// launcher's mpirun, when the launcher is killed).
TEST(Process, AChildLearnsOfItsParentsDeath) {
  segrun::testing::ScratchDir dir("pdeath");
  const std::string ready = dir.str("ready"), stopped = dir.str("stopped");
  const pid_t middle = ::fork();
  if (middle == 0) {
    SpawnOptions inner;
    inner.argv = {"bash", "-c",
                  "trap 'touch " + stopped + "; exit 7' USR1; touch " + ready + "; while :; do sleep 0.05; done"};
    inner.parent_death_signal = SIGUSR1;
    spawn(inner);
    ::pause();
    ::_exit(0);
  }
  const auto appears = [](const std::string& path) {
    for (int i = 0; i < 200; ++i) {
      if (::access(path.c_str(), F_OK) == 0) return true;
      ::usleep(50 * 1000);
    }
    return false;
  };
  ASSERT_TRUE(appears(ready));
  ::kill(middle, SIGKILL);
  ::waitpid(middle, nullptr, 0);
  EXPECT_TRUE(appears(stopped)) << "the orphaned child did not get SIGUSR1";
}

// The environment a child gets: this process's, with SpawnOptions::env added or replacing.
TEST(Process, AChildGetsTheGivenEnvironmentEntries) {
  ::setenv("SEGRUN_TEST_KEPT", "kept", 1);
  ::setenv("SEGRUN_TEST_REPLACED", "old", 1);
  SpawnOptions o;
  o.argv = {"sh", "-c", "echo $SEGRUN_TEST_KEPT $SEGRUN_TEST_REPLACED $SEGRUN_TEST_ADDED; env | grep -c ^SEGRUN_TEST_"};
  o.env = {"SEGRUN_TEST_REPLACED=new", "SEGRUN_TEST_ADDED=a b"};
  o.out = Output::kCapture;
  const Child child = spawn(o);
  std::string out;
  char buffer[256];
  for (ssize_t n; (n = ::read(child.out_fd, buffer, sizeof(buffer))) > 0;) out.append(buffer, static_cast<size_t>(n));
  ::close(child.out_fd);
  EXPECT_TRUE(wait(child.pid).ok());
  EXPECT_EQ(out, "kept new a b\n3\n");
  ::unsetenv("SEGRUN_TEST_KEPT");
  ::unsetenv("SEGRUN_TEST_REPLACED");
}

TEST(Process, CountsStopSignalsWhileAlive) {
  ScopedSignalCounter counter;
  EXPECT_EQ(counter.count(), 0);
  ::kill(::getpid(), SIGUSR1);
  ::kill(::getpid(), SIGINT);
  EXPECT_EQ(counter.count(), 2);
  EXPECT_EQ(ScopedSignalCounter::last_count(), 2);
}

TEST(Process, TryWaitSeesARunningThenAnEndedChild) {
  SpawnOptions o;
  o.argv = {"sleep", "0.2"};
  const Child child = spawn(o);
  EXPECT_FALSE(try_wait(child.pid).has_value());
  std::optional<ExitStatus> s;
  for (int i = 0; i < 100 && !s; ++i) {
    ::usleep(20000);
    s = try_wait(child.pid);
  }
  ASSERT_TRUE(s.has_value());
  EXPECT_TRUE(s->ok());
}

TEST(Process, CoresAndShellQuoting) {
  EXPECT_GE(usable_cores(), 1);
  EXPECT_EQ(shell_quote("plain-arg_1.0=x:y,z+@%/"), "plain-arg_1.0=x:y,z+@%/");
  EXPECT_EQ(shell_quote("plain", /*always=*/true), "'plain'");
  EXPECT_EQ(shell_quote(""), "''");
  EXPECT_EQ(shell_quote("it's"), "'it'\\''s'");
  const std::vector<std::string> argv{"echo", "a b", "it's", "$(id)", "`id`", "x\ny", ""};
  const Captured r = run_captured({"bash", "-c", "printf '%s|' " + shell_join({argv.begin() + 1, argv.end()})});
  EXPECT_EQ(r.out, "a b|it's|$(id)|`id`|x\ny||");
}

}  // namespace
}  // namespace segrun::process
