#pragma once
// A rank's watch on the local launcher that started its mpirun (`segrun launch`, `segrun sweep
// run`). mpirun gets the ranks' stop signal when its launcher dies (Linux's parent-death signal;
// cluster/local_launch.cpp), but a signal that arrives while mpirun is still starting the ranks
// reaches none of them, and they would train on with nobody attached. So a launcher names itself
// in its mpirun's environment, SEGRUN_LAUNCHER="<host> <pid>" (launcher_env_entry), which the
// ranks on this machine inherit, and a rank on that host takes the launcher's end as a stop
// request (LauncherWatch::gone: checkpoint, exit 75). Ranks on other hosts (a hostfile's), and
// processes started otherwise (srun, a lone `segrun train`), watch nothing. Thread-compatible.

#include <sys/types.h>

#include <string>

namespace segrun {

inline constexpr const char* kLauncherEnvName = "SEGRUN_LAUNCHER";

// "SEGRUN_LAUNCHER=<host> <pid>" naming this process, for the environment of a child it launches.
std::string launcher_env_entry();

class LauncherWatch {
 public:
  // The launcher SEGRUN_LAUNCHER names, when it runs on this host; else nothing is watched.
  LauncherWatch();
  // The launcher `value` ("<host> <pid>") names, seen from `this_host` (tests).
  LauncherWatch(const std::string& value, const std::string& this_host);

  bool watching() const { return pid_ > 0; }
  // Whether the watched launcher has ended (no process of its pid is left); false when not watching.
  bool gone() const;
  // "pid 1234 on node7".
  std::string describe() const;

 private:
  pid_t pid_ = -1;
  std::string host_;
};

}  // namespace segrun
