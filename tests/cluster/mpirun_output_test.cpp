// What `segrun launch` shows of mpirun's stderr (cluster/mpirun_output.h), on the output of a real
// 2-rank launch whose ranks both failed (Open MPI 4.1, 2026-12-07): one error line is left; the
// other messages of Open MPI and a rank's different error pass unchanged and in order.
#include "cluster/mpirun_output.h"

#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <vector>

namespace segrun::cluster {
namespace {

const std::string kRule(74, '-');

std::vector<std::string> filtered(const std::string& text) {
  MpirunErrFilter filter;
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    for (auto& kept : filter.line(line)) out.push_back(kept);
  for (auto& kept : filter.finish()) out.push_back(kept);
  return out;
}

TEST(MpirunErrFilter, AFailedLaunchEndsOnItsOneErrorLine) {
  const std::string error =
      "r2/checkpoints/iter_2.pt: checkpoint is of another model: model.width = 16 in the "
      "checkpoint, 8 in the config";
  const std::string recorded =
      "2026-12-07 11:34:39.504 info  r0/2 rank 0/2 on vm: device cpu, backend mpi\n"
      "segrun: error on rank 1: " +
      error +
      "\n"
      "[vm:04936] [[32694,0],0] ORTE_ERROR_LOG: Out of resource in file ../../../orte/util/show_help.c at line 501\n" +
      kRule +
      "\nMPI_ABORT was invoked on rank 0 in communicator MPI_COMM_WORLD\nwith errorcode 1.\n\n"
      "NOTE: invoking MPI_ABORT causes Open MPI to kill all MPI processes.\nYou may or may not see output from other "
      "processes, depending on\nexactly when Open MPI kills them.\n" +
      kRule +
      "\n"
      "segrun: error on rank 0: " +
      error +
      "\n"
      "[vm:04936] 1 more process has sent help message help-mpi-api.txt / mpi-abort\n"
      "[vm:04936] Set MCA parameter \"orte_base_help_aggregate\" to 0 to see all help / error messages\n";
  EXPECT_EQ(filtered(recorded),
            (std::vector<std::string>{"2026-12-07 11:34:39.504 info  r0/2 rank 0/2 on vm: device cpu, backend mpi",
                                      "segrun: error on rank 1: " + error}));
}

TEST(MpirunErrFilter, RanksStoppedOnRequestLeaveTheirOwnWordsOnly) {
  // Ctrl-C to `segrun launch -n 2 -- train`: the ranks checkpoint and exit 75 (recorded 2026-12-07).
  const std::string stopped =
      "2026-12-07 11:47:55.390 warning r0/2 stop requested: checkpointed at iteration 162; "
      "continue with --resume auto";
  const std::string detected = kRule +
                               "\nmpirun detected that one or more processes exited with non-zero status, thus "
                               "causing\nthe job to be terminated. The first process to do so was:\n\n  Process name: "
                               "[[28910,1],0]\n  Exit code:    ";
  const std::string recorded = "mpirun: Forwarding signal 10 to job\n" + stopped + "\n" + kRule +
                               "\nPrimary job  terminated normally, but 1 process returned\na non-zero exit code. Per "
                               "user-direction, the job has been aborted.\n" +
                               kRule + "\n" + detected + "75\n" + kRule + "\n";
  EXPECT_EQ(filtered(recorded), std::vector<std::string>{stopped});
  // Another exit code with no error line before it is all there is to read: kept.
  const std::vector<std::string> unexplained = filtered(detected + "3\n" + kRule + "\n");
  ASSERT_EQ(unexplained.size(), 7u);
  EXPECT_EQ(unexplained[5], "  Exit code:    3");
}

TEST(MpirunErrFilter, OtherMessagesPassInOrder) {
  // A rank killed by the kernel: Open MPI's notice says so, and stays; a second, different error
  // stays; a block of dashes that is no help block is released whole, as is one never closed.
  const std::string killed = kRule +
                             "\nmpirun noticed that process rank 1 with PID 0 on node vm exited on signal 9 "
                             "(Killed).\n" +
                             kRule + "\n";
  const std::vector<std::string> out =
      filtered("segrun: error on rank 0: a\nsegrun: error on rank 1: b\n" + killed + kRule + "\nno help\n");
  EXPECT_EQ(out, (std::vector<std::string>{"segrun: error on rank 0: a", "segrun: error on rank 1: b", kRule,
                                           "mpirun noticed that process rank 1 with PID 0 on node vm exited on signal "
                                           "9 (Killed).",
                                           kRule, kRule, "no help"}));
  // A table rule of another width is no block: nothing is held behind it.
  MpirunErrFilter filter;
  EXPECT_EQ(filter.line(std::string(40, '-')), std::vector<std::string>{std::string(40, '-')});
  EXPECT_EQ(filter.line("after"), std::vector<std::string>{"after"});
}

}  // namespace
}  // namespace segrun::cluster
