#pragma once
// What `segrun launch` lets through of mpirun's standard error. A rank that fails writes one line,
// "segrun: error on rank R: <message>", and aborts the MPI world; Open MPI then adds its own
// banner (a dashed block "MPI_ABORT was invoked on rank R ... NOTE: invoking MPI_ABORT causes Open
// MPI to kill all MPI processes ..."), its help-aggregation notes about that banner, sometimes an
// "ORTE_ERROR_LOG ... show_help.c" line, and every other rank that met the same error writes the
// same line again. Ranks that stop on request (Ctrl-C, preemption: checkpointed, exit 75) get two
// blocks ("Primary job terminated normally, but 1 process returned a non-zero exit code", "mpirun
// detected that one or more processes exited with non-zero status ... Exit code: 75") after
// "mpirun: Forwarding signal 10 to job". MpirunErrFilter drops exactly those (the "mpirun
// detected" block only when its exit code is 75 or a rank's error line came first), so that a
// launch ends on the lines that say what happened; everything else passes unchanged and in order
// (rank logs, warnings, Open MPI's other messages such as "mpirun noticed that process rank 1 ...
// exited on signal 9 (Killed)", a rank's different error). Each rank's log keeps its error line.
// Not thread-safe: one reader feeds it.

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

}  // namespace segrun::cluster
