#pragma once
// A rank's watch on the local launcher that started its mpirun (`segrun launch`, `segrun sweep
// run`). mpirun gets the ranks' stop signal when its launcher dies (Linux's parent-death signal;
// cluster/local_launch.cpp), but a signal that arrives while mpirun is still starting the ranks
// reaches none of them, and they would train on with nobody attached. So a launcher names itself
// in its mpirun's environment, SEGRUN_LAUNCHER="<host> <boot id> <pid namespace> <pid> <start
// time>" (launcher_environment), and a rank that sees the very same machine and process table (the
// host name, the kernel's boot id and the pid namespace all equal: srun copies the variable to
// other nodes, which may share a host name, and a container has a pid namespace of its own) takes
// the launcher's end as a stop request (LauncherWatch::gone: checkpoint, exit 75). Any other rank,
// and processes started otherwise (srun, a lone `segrun train`), watch nothing. A pid taken by
// another process since is told apart by its start time. Thread-compatible.

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

namespace segrun {

inline constexpr const char* kLauncherEnvName = "SEGRUN_LAUNCHER";

// What identifies the machine and process table a process sees: "<host> <boot id> <pid
// namespace>", "" when some part cannot be read (then nothing is watched).
std::string process_table_identity();
// The start time of process `pid` (field 22 of /proc/<pid>/stat, clock ticks since boot); -1 when
// there is no such process or it cannot be read.
long long process_start_time(pid_t pid);

// {"SEGRUN_LAUNCHER=<identity> <pid> <start time>"} naming this process, for the environment of
// a child it launches (process::SpawnOptions::env); {} when this process's identity cannot be read.
std::vector<std::string> launcher_environment();

class LauncherWatch {
 public:
  // The launcher SEGRUN_LAUNCHER names, when it shares this process's table; else nothing is watched.
  LauncherWatch();
  // The launcher `value` names, seen from a process whose process_table_identity() is `here`,
  // looked at no more often than `check_every` (tests: 0).
  LauncherWatch(const std::string& value, const std::string& here,
                std::chrono::milliseconds check_every = std::chrono::seconds(1));

  bool watching() const { return pid_ > 0; }
  // Whether the watched launcher has ended (its pid is gone, or taken by a process started
  // since); false when not watching. Cheap enough for every iteration: the process table is
  // looked at once per `check_every`, the answer in between is the last one.
  bool gone();
  // "pid 1234 on node7".
  std::string describe() const;

 private:
  pid_t pid_ = -1;
  long long start_time_ = -1;
  std::string host_;
  std::chrono::milliseconds check_every_{0};
  std::chrono::steady_clock::time_point next_check_{};
  bool gone_ = false;
};

}  // namespace segrun
