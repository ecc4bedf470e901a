#include "cluster/mpirun_output.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <regex>
#include <utility>

#include "core/error.h"

namespace segrun::cluster {
namespace {

// Open MPI's help blocks open and close with a line of 74 dashes, and are a few lines long.
constexpr size_t kRuleWidth = 74;
constexpr size_t kLongestBlock = 64;

bool is_rule(const std::string& text) {
  return text.size() == kRuleWidth && text.find_first_not_of('-') == std::string::npos;
}

bool is_abort_note(const std::string& text) {
  // "[vm:01234] 1 more process has sent help message help-mpi-api.txt / mpi-abort" and the
  // aggregation hint printed with it; "[vm:01234] [[32694,0],0] ORTE_ERROR_LOG: Out of resource in
  // file ../../../orte/util/show_help.c at line 501" (the help system itself, under load).
  return text.find("help-mpi-api.txt / mpi-abort") != std::string::npos ||
         text.find("\"orte_base_help_aggregate\" to 0 to see all help / error messages") != std::string::npos ||
         (text.find("ORTE_ERROR_LOG") != std::string::npos && text.find("show_help.c") != std::string::npos);
}

}  // namespace

bool MpirunErrFilter::is_said_already(const std::vector<std::string>& block) const {
  const auto has = [&block](const char* words) {
    return std::any_of(block.begin(), block.end(),
                       [words](const std::string& l) { return l.find(words) != std::string::npos; });
  };
  static const std::regex kStopped("^ *Exit code: +75$");  // a rank stopped by request (checkpointed)
  const bool stopped =
      std::any_of(block.begin(), block.end(), [](const std::string& l) { return std::regex_match(l, kStopped); });
  // A rank ended by the stop signal the launcher forwarded (a Ctrl-C of an eval, or of a train
  // before its ranks handle it): the launcher says what happened.
  if (has("exited on signal") && (has("(User defined signal 1)") || has("(User defined signal 2)"))) return true;
  return has("MPI_ABORT was invoked on rank") || has("terminated normally, but") ||
         (has("mpirun detected that one or more processes exited with non-zero status") &&
          (stopped || !rank_errors_.empty()));
}

std::vector<std::string> MpirunErrFilter::line(const std::string& text) {
  if (!held_.empty()) {
    held_.push_back(text);
    if (!is_rule(text) && held_.size() < kLongestBlock) return {};
    std::vector<std::string> block;
    block.swap(held_);
    return is_rule(block.back()) && is_said_already(block) ? std::vector<std::string>{} : block;
  }
  if (is_rule(text)) {
    held_.push_back(text);
    return {};
  }
  if (is_abort_note(text) || text.rfind("mpirun: Forwarding signal ", 0) == 0) return {};
  // "segrun: error on rank <digits>: <message>"
  static const std::string kRankError = "segrun: error on rank ";
  if (text.rfind(kRankError, 0) == 0) {
    const size_t digits_end = text.find_first_not_of("0123456789", kRankError.size());
    if (digits_end != std::string::npos && digits_end > kRankError.size() && text.compare(digits_end, 2, ": ") == 0) {
      const std::string message = text.substr(digits_end + 2);
      if (std::find(rank_errors_.begin(), rank_errors_.end(), message) != rank_errors_.end()) return {};
      rank_errors_.push_back(message);
    }
  }
  return {text};
}

std::vector<std::string> MpirunErrFilter::finish() {
  std::vector<std::string> rest;
  rest.swap(held_);
  return rest;
}

namespace {

// Writes to `fd` until all is written or a write fails (a descriptor the launcher's parent left
// non-blocking is waited on, not given up); after a failure (`*broken`: the terminal or the
// reader gone) nothing more.
void write_all(int fd, const std::string& text, bool* broken) {
  size_t done = 0;
  while (!*broken && done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n > 0) {
      done += static_cast<size_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd writable{fd, POLLOUT, 0};
      ::poll(&writable, 1, -1);
    } else {
      *broken = true;
    }
  }
}

void write_lines(int fd, const std::vector<std::string>& lines, bool* broken) {
  std::string text;
  for (const auto& line : lines) text += line + "\n";
  write_all(fd, text, broken);
}

}  // namespace

void relay_filtered(int in_fd, int out_fd, const std::function<void()>& between_reads) {
  constexpr size_t kLongestLine = 64 * 1024;
  constexpr int kPauseMs = 200;
  MpirunErrFilter filter;
  std::string pending;
  bool broken = false;
  char buffer[4096];
  while (true) {
    pollfd readable{in_fd, POLLIN, 0};
    const int ready = ::poll(&readable, 1, kPauseMs);
    if (between_reads) between_reads();
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) break;
    if (ready == 0) {
      // Quiet for a moment: what is held goes out (a block of dashes that is no help block, a
      // progress line rewritten with '\r' and no newline) instead of waiting for more.
      write_lines(out_fd, filter.finish(), &broken);
      write_all(out_fd, std::exchange(pending, std::string()), &broken);
      continue;
    }
    const ssize_t n = ::read(in_fd, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    pending.append(buffer, static_cast<size_t>(n));
    size_t start = 0;
    for (size_t end; (end = pending.find('\n', start)) != std::string::npos; start = end + 1) {
      std::string line = pending.substr(start, end - start);
      // A rank's terminal progress line ("\r<text>\e[K", no newline) with another rank's line
      // written after it: the progress ends its own line, and the other is filtered as a line.
      const size_t erased = line.rfind("\x1b[K");
      if (erased != std::string::npos && erased + 3 < line.size()) {
        write_lines(out_fd, filter.line(line.substr(0, erased + 3)), &broken);
        line.erase(0, erased + 3);
      }
      write_lines(out_fd, filter.line(line), &broken);
    }
    pending.erase(0, start);
    if (pending.size() > kLongestLine) write_lines(out_fd, filter.line(std::exchange(pending, std::string())), &broken);
  }
  std::vector<std::string> rest = filter.finish();
  if (!pending.empty()) rest.push_back(pending);
  write_lines(out_fd, rest, &broken);
}

pid_t start_stderr_relay(int in_fd, OrphanedRanksStop orphaned_ranks_stop) {
  const pid_t launcher = ::getpid();
  // mpirun named by a descriptor, not its pid: once it has ended and been reaped (a normal end,
  // the relay reading on while an ssh holds the pipe), a signal through it reaches no one, never
  // a later process given the same pid. None on a kernel without pidfds (before Linux 5.3).
  const int mpirun_fd =
      orphaned_ranks_stop.mpirun > 0 ? static_cast<int>(::syscall(SYS_pidfd_open, orphaned_ranks_stop.mpirun, 0)) : -1;
  // Signals wait until the child ignores them: one to the launcher's group right after the fork
  // (a Ctrl-C) must not kill the relay that mpirun will need.
  sigset_t all, before;
  sigfillset(&all);
  ::sigprocmask(SIG_BLOCK, &all, &before);
  const pid_t pid = ::fork();
  if (pid != 0) {
    const int fork_error = errno;
    ::sigprocmask(SIG_SETMASK, &before, nullptr);
    if (mpirun_fd >= 0) ::close(mpirun_fd);
    if (pid < 0)
      throw ProcessError(std::string("cannot start the stderr relay: fork failed: ") + std::strerror(fork_error));
    ::setpgid(pid, pid);  // also done by the child; whichever runs first wins
    return pid;
  }
  ::setpgid(0, 0);
  // The stop signals, and the terminal's job control: a relay in a background group writing to a
  // terminal under `stty tostop` would otherwise be stopped, and mpirun behind it.
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGPIPE, SIGTTOU, SIGTTIN, SIGTSTP})
    ::signal(sig, SIG_IGN);
  ::sigprocmask(SIG_SETMASK, &before, nullptr);
  // Locks and pipes of this process (a run folder's lock, another child's pipe, its stdout: a
  // reader of the launcher's stdout waits for its end) are not the relay's to hold past the
  // launcher's end.
  const int null_fd = ::open("/dev/null", O_WRONLY);
  if (null_fd >= 0) ::dup2(null_fd, STDOUT_FILENO);
  const long most = ::sysconf(_SC_OPEN_MAX);
  for (int fd = 3; fd < (most > 0 && most < 65536 ? most : 65536); ++fd)
    if (fd != in_fd && fd != mpirun_fd) ::close(fd);
  // Once the launcher is gone (this process has another parent), mpirun is sent the ranks' stop
  // signal every second while it lives (see OrphanedRanksStop).
  std::chrono::steady_clock::time_point next_stop{};
  bool mpirun_ended = mpirun_fd < 0;
  const auto stop_orphaned_ranks = [&] {
    if (mpirun_ended || ::getppid() == launcher) return;
    const auto now = std::chrono::steady_clock::now();
    if (now < next_stop) return;
    mpirun_ended = ::syscall(SYS_pidfd_send_signal, mpirun_fd, orphaned_ranks_stop.stop_signal, nullptr, 0) != 0;
    next_stop = now + std::chrono::seconds(1);
  };
  try {
    relay_filtered(in_fd, STDERR_FILENO, stop_orphaned_ranks);
  } catch (...) {  // (out of memory) never unwinds into the launcher's code in this copy of it
  }
  ::_exit(0);
}

}  // namespace segrun::cluster
