// A rank's watch on its local launcher: see launcher_watch.h.
#include "core/launcher_watch.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <sstream>

#include "core/process.h"

namespace segrun {

std::string launcher_env_entry() {
  return std::string(kLauncherEnvName) + "=" + process::host_name() + " " + std::to_string(::getpid());
}

LauncherWatch::LauncherWatch() {
  const char* value = std::getenv(kLauncherEnvName);
  if (value != nullptr) *this = LauncherWatch(value, process::host_name());
}

LauncherWatch::LauncherWatch(const std::string& value, const std::string& this_host) {
  std::istringstream in(value);
  std::string host;
  long long pid = 0;
  if (!(in >> host >> pid) || pid <= 1 || host != this_host) return;  // another host's, or not a launcher's
  pid_ = static_cast<pid_t>(pid);
  host_ = host;
}

bool LauncherWatch::gone() const { return watching() && ::kill(pid_, 0) != 0 && errno == ESRCH; }

std::string LauncherWatch::describe() const { return "pid " + std::to_string(pid_) + " on " + host_; }

}  // namespace segrun
