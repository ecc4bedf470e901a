#pragma once
// What `segrun launch` lets through of mpirun's standard error. A rank that fails writes one line,
// "segrun: error on rank R: <message>", and aborts the MPI world; Open MPI then adds its own
// banner (a dashed block "MPI_ABORT was invoked on rank R ... NOTE: invoking MPI_ABORT causes Open
// MPI to kill all MPI processes ..."), its help-aggregation notes about that banner, sometimes an
// "ORTE_ERROR_LOG ... show_help.c" line, and every other rank that met the same error writes the
// same line again. Ranks that stop on request (Ctrl-C, preemption: checkpointed, exit 75) get two
// blocks ("Primary job terminated normally, but 1 process returned a non-zero exit code", "mpirun
// detected that one or more processes exited with non-zero status ... Exit code: 75") after
// "mpirun: Forwarding signal 10 to job"; a rank that does not handle that stop signal (an eval, a
// train still starting) gets "mpirun noticed that process rank R ... exited on signal 10 (User
// defined signal 1)". MpirunErrFilter drops exactly those (the "mpirun
// detected" block only when its exit code is 75 or a rank's error line came first), so that a
// launch ends on the lines that say what happened; everything else passes unchanged and in order
// (rank logs, warnings, Open MPI's other messages such as "mpirun noticed that process rank 1 ...
// exited on signal 9 (Killed)", a rank's different error). Each rank's log keeps its error line.
// Not thread-safe: one reader feeds it.
//
// The filter runs in a process of its own (start_stderr_relay), forked from the launcher and
// reading mpirun's stderr from a pipe: it outlives the launcher, so a launcher killed outright
// (SIGKILL, OOM) leaves mpirun a reader while its ranks checkpoint (Open MPI's mpirun aborts the job
// after 10 writes to a pipe without one, SIGPIPE or not). It ignores the stop and job-control
// signals (in its own process group, a terminal's Ctrl-C does not reach it) and ends when the pipe
// does, that is when mpirun and whatever it started holding the pipe (ssh to other hosts) have ended.

#include <sys/types.h>

#include <functional>
#include <string>
#include <vector>

namespace segrun::cluster {

class MpirunErrFilter {
 public:
  // One line of mpirun's stderr (without its '\n'); returns the lines to write now, in order
  // (a block opened by Open MPI's rule of 74 dashes is held until it closes, or grows past 64
  // lines and is no help block, then dropped or released whole).
  std::vector<std::string> line(const std::string& text);
  // The end of the stream, or a pause in it: what is still held (an unclosed block); the filter
  // goes on after it.
  std::vector<std::string> finish();

 private:
  // A closed block that repeats what a segrun line said, or says nothing a user needs.
  bool is_said_already(const std::vector<std::string>& block) const;

  std::vector<std::string> held_;         // an open dashed block
  std::vector<std::string> rank_errors_;  // messages of the "segrun: error on rank R:" lines passed
};

// Copies `in_fd` to `out_fd` through MpirunErrFilter until `in_fd` ends (both stay open). A line
// longer than 64 KiB goes out in pieces; after 200 ms without input, what the filter holds and an
// unfinished line (a '\r' progress line) go out as they are. A failing write (the terminal gone)
// stops the writing, not the reading: the writer on the other end is never left without a reader.
// `between_reads`, when given, is called after each read and each quiet 200 ms.
void relay_filtered(int in_fd, int out_fd, const std::function<void()>& between_reads = nullptr);

// What the relay does for the ranks when the launcher that forked it dies (SIGKILL, OOM) while
// mpirun runs. mpirun's parent-death signal (local_launch.cpp) reaches it once, and one that comes
// while mpirun is still starting the ranks reaches none of them: they would train on with nobody
// attached. So the relay sends `stop_signal` to `mpirun` itself, at once and then every second
// while mpirun lives, until mpirun's stderr ends; the ranks checkpoint at their next iteration
// and exit 75. Nothing is sent while the launcher lives (it forwards stops itself), nor after
// mpirun has ended (it is held by a pidfd: a later process given its pid is never signalled).
// mpirun <= 0, or a kernel without pidfds: none of this.
struct OrphanedRanksStop {
  pid_t mpirun = -1;
  int stop_signal = 0;
};

// Forks the relay process: in a process group of its own, ignoring SIGINT, SIGTERM, SIGHUP,
// SIGQUIT, SIGUSR1, SIGUSR2, SIGPIPE, SIGTTOU, SIGTTIN and SIGTSTP (blocked from before the fork
// until then), with no descriptor of this process but `in_fd`, stdin and stderr (stdout is
// /dev/null), it runs relay_filtered(in_fd, stderr) and exits. This process keeps its copy of
// `in_fd` (close it). Returns the relay's pid; throws ProcessError when fork fails. No exec: the
// child uses nothing another thread of this process could hold locked but malloc, which glibc
// keeps usable after fork.
pid_t start_stderr_relay(int in_fd, OrphanedRanksStop orphaned_ranks_stop = {});

}  // namespace segrun::cluster
