// gtest main for multi-rank suites run by ctest under mpirun: every rank runs every test, only
// rank 0 prints, and the exit code is agreed across ranks (a failure on any rank fails all).
#include <gtest/gtest.h>
#include <mpi.h>

#include "core/log.h"
#include "dist/rank_context.h"

int main(int argc, char** argv) {
  segrun::dist::MpiSession session(&argc, &argv, /*threads_override=*/1);
  ::testing::InitGoogleTest(&argc, argv);
  const auto& context = session.context();
  segrun::log::LogOptions options;
  options.rank = context.world_rank;
  options.world = context.world_size;
  options.level = "warn";
  segrun::log::init_logging(options);
  if (context.world_rank != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  int failed = RUN_ALL_TESTS() != 0 ? 1 : 0;
  int any_failed = 0;
  MPI_Allreduce(&failed, &any_failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (failed) std::fprintf(stderr, "rank %d: tests failed\n", context.world_rank);
  return any_failed;
}
