// core/launcher_watch: a rank watches the launcher its SEGRUN_LAUNCHER names only when it sees the
// same machine and process table (host, boot id, pid namespace), and sees it gone once its pid is
// gone or taken by a later process.
#include "core/launcher_watch.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <string>
#include <vector>

#include "core/process.h"

namespace segrun {
namespace {

TEST(LauncherWatch, WatchesALauncherOfThisProcessTableUntilItEnds) {
  const std::string here = process_table_identity();
  ASSERT_FALSE(here.empty());
  ASSERT_EQ(here.rfind(process::host_name() + " ", 0), 0u) << here;
  const long long started = process_start_time(::getpid());
  ASSERT_GT(started, 0);
  const std::vector<std::string> environment = launcher_environment();
  ASSERT_EQ(environment.size(), 1u);
  const std::string& entry = environment[0];
  EXPECT_EQ(entry, std::string(kLauncherEnvName) + "=" + here + " " + std::to_string(::getpid()) + " " +
                       std::to_string(started));
  const std::chrono::milliseconds always(0);
  LauncherWatch alive(entry.substr(entry.find('=') + 1), here, always);
  ASSERT_TRUE(alive.watching());
  EXPECT_FALSE(alive.gone());
  EXPECT_EQ(alive.describe(), "pid " + std::to_string(::getpid()) + " on " + process::host_name());

  // Its pid taken by a process started later: gone.
  LauncherWatch reused(here + " " + std::to_string(::getpid()) + " " + std::to_string(started - 1), here, always);
  EXPECT_TRUE(reused.gone());

  // A child killed and not yet reaped (a zombie), then reaped: gone both times.
  const pid_t child = ::fork();
  if (child == 0) {
    ::pause();
    ::_exit(0);
  }
  ASSERT_GT(child, 0);
  const long long child_started = process_start_time(child);
  LauncherWatch watched(here + " " + std::to_string(child) + " " + std::to_string(child_started), here, always);
  EXPECT_FALSE(watched.gone());
  ::kill(child, SIGKILL);
  for (int i = 0; i < 100 && !watched.gone(); ++i) ::usleep(10000);
  EXPECT_TRUE(watched.gone());  // a zombie
  ::waitpid(child, nullptr, 0);
  EXPECT_TRUE(watched.gone());

  // Another machine or process table (srun copies the variable to other nodes; a container), or
  // no launcher: nothing is watched, nothing is gone.
  const std::string pid_and_start = std::to_string(child) + " " + std::to_string(child_started);
  for (const std::string& other :
       {"node8 " + here.substr(here.find(' ') + 1) + " " + pid_and_start,
        here.substr(0, here.rfind(' ')) + " 1 " + pid_and_start, here + " x 1", here + " 1 5", here, std::string()}) {
    LauncherWatch none(other, here, always);
    EXPECT_FALSE(none.watching()) << other;
    EXPECT_FALSE(none.gone()) << other;
  }
  EXPECT_FALSE(LauncherWatch(here + " " + pid_and_start, "").watching());  // this process's table unknown

  // Looked at once per interval: an end within it is seen at the next look.
  const pid_t later = ::fork();
  if (later == 0) {
    ::pause();
    ::_exit(0);
  }
  ASSERT_GT(later, 0);
  LauncherWatch slow(here + " " + std::to_string(later) + " " + std::to_string(process_start_time(later)), here,
                     std::chrono::milliseconds(300));
  EXPECT_FALSE(slow.gone());
  ::kill(later, SIGKILL);
  ::waitpid(later, nullptr, 0);
  EXPECT_FALSE(slow.gone());  // the last look's answer
  ::usleep(350 * 1000);
  EXPECT_TRUE(slow.gone());
}

}  // namespace
}  // namespace segrun
