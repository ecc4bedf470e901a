// core/launcher_watch: a rank watches the launcher its SEGRUN_LAUNCHER names only on that host,
// and sees it gone once no process of its pid is left.
#include "core/launcher_watch.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "core/process.h"

namespace segrun {
namespace {

TEST(LauncherWatch, WatchesALauncherOfThisHostUntilItEnds) {
  const std::string entry = launcher_env_entry();
  const std::string value = entry.substr(entry.find('=') + 1);
  EXPECT_EQ(entry, std::string(kLauncherEnvName) + "=" + process::host_name() + " " + std::to_string(::getpid()));
  const LauncherWatch alive(value, process::host_name());
  ASSERT_TRUE(alive.watching());
  EXPECT_FALSE(alive.gone());
  EXPECT_EQ(alive.describe(), "pid " + std::to_string(::getpid()) + " on " + process::host_name());

  const pid_t ended = ::fork();
  if (ended == 0) ::_exit(0);
  ASSERT_GT(ended, 0);
  ::waitpid(ended, nullptr, 0);
  const LauncherWatch gone("node7 " + std::to_string(ended), "node7");
  EXPECT_TRUE(gone.watching());
  EXPECT_TRUE(gone.gone());

  // Another host's launcher, or no launcher: nothing is watched, nothing is gone.
  for (const std::string& other : {"node8 " + std::to_string(ended), std::string("node7"), std::string("node7 x"),
                                   std::string("node7 1"), std::string()}) {
    const LauncherWatch none(other, "node7");
    EXPECT_FALSE(none.watching()) << other;
    EXPECT_FALSE(none.gone()) << other;
  }
}

}  // namespace
}  // namespace segrun
