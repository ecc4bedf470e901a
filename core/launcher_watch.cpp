// A rank's watch on its local launcher: see launcher_watch.h.
#include "core/launcher_watch.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "core/process.h"

namespace segrun {

std::string process_table_identity() {
  const std::string host = process::host_name();
  std::string boot_id;
  std::ifstream("/proc/sys/kernel/random/boot_id") >> boot_id;
  struct stat ns {};
  if (host.empty() || host.find(' ') != std::string::npos || boot_id.empty() || ::stat("/proc/self/ns/pid", &ns) != 0)
    return "";
  return host + " " + boot_id + " " + std::to_string(static_cast<unsigned long long>(ns.st_ino));
}

namespace {

// Fields 3 (state) and 22 (start time) of /proc/<pid>/stat; false when it cannot be read.
bool read_process_stat(pid_t pid, char* state, long long* start_time) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses; the fields follow the last ')'.
  const size_t paren = text.rfind(')');
  if (paren == std::string::npos) return false;
  std::istringstream fields(text.substr(paren + 1));
  std::string field;
  for (int index = 3; fields >> field; ++index) {
    if (index == 3) *state = field[0];
    if (index == 22) {
      *start_time = std::atoll(field.c_str());
      return true;
    }
  }
  return false;
}

}  // namespace

long long process_start_time(pid_t pid) {
  char state = 0;
  long long start_time = -1;
  return read_process_stat(pid, &state, &start_time) ? start_time : -1;
}

std::vector<std::string> launcher_environment() {
  const std::string identity = process_table_identity();
  if (identity.empty()) return {};
  return {std::string(kLauncherEnvName) + "=" + identity + " " + std::to_string(::getpid()) + " " +
          std::to_string(process_start_time(::getpid()))};
}

LauncherWatch::LauncherWatch() {
  const char* value = std::getenv(kLauncherEnvName);
  if (value != nullptr) *this = LauncherWatch(value, process_table_identity());
}

LauncherWatch::LauncherWatch(const std::string& value, const std::string& here, std::chrono::milliseconds check_every)
    : check_every_(check_every) {
  std::istringstream in(value);
  std::string host, boot_id, pid_namespace;
  long long pid = 0, start_time = -1;
  if (here.empty() || !(in >> host >> boot_id >> pid_namespace >> pid >> start_time) || pid <= 1 || start_time < 0 ||
      host + " " + boot_id + " " + pid_namespace != here)
    return;  // another machine's or process table's launcher, or no launcher's
  pid_ = static_cast<pid_t>(pid);
  start_time_ = start_time;
  host_ = host;
}

bool LauncherWatch::gone() {
  const auto now = std::chrono::steady_clock::now();
  if (!watching() || gone_ || now < next_check_) return gone_;
  next_check_ = now + check_every_;
  char state = 0;
  long long start_time = -1;
  if (::kill(pid_, 0) != 0)
    gone_ = errno == ESRCH;  // EPERM: a process of another user has it: alive
  else if (read_process_stat(pid_, &state, &start_time))
    gone_ = state == 'Z' || start_time != start_time_;  // a zombie, or the pid taken by a later process
  return gone_;
}

std::string LauncherWatch::describe() const { return "pid " + std::to_string(pid_) + " on " + host_; }

}  // namespace segrun
