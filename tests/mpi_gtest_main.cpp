// gtest main for multi-rank suites run by ctest under mpirun: every rank runs every test, only
// rank 0 prints, and the exit code is agreed across ranks (a failure on any rank fails all).
#include <gtest/gtest.h>

#include "dist/rank_context.h"
#include "tests/mpi_test_main.h"

int main(int argc, char** argv) {
  segrun::dist::MpiSession session(&argc, &argv, /*threads_override=*/1);
  ::testing::InitGoogleTest(&argc, argv);
  segrun::test::init_rank_logging(session.context());
  return segrun::test::run_tests_on_every_rank(session.context(), "tests");
}
