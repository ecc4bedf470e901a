#pragma once
// The shared body of the multi-rank gtest mains (tests/mpi_gtest_main.cpp, tests/gpu/gpu_main.cpp),
// run after MPI and gtest are initialized: logging at warn level tagged with the rank, gtest's
// result printer on rank 0 only, every rank runs every test, and the exit code is agreed across
// ranks (a failure on any rank fails all). `what` names the suite in the failure line.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdio>

#include "core/log.h"
#include "dist/rank_context.h"

namespace segrun::test {

inline void init_rank_logging(const dist::RankContext& context) {
  log::LogOptions options;
  options.rank = context.world_rank;
  options.world = context.world_size;
  options.level = "warn";
  log::init_logging(options);
}

inline int run_tests_on_every_rank(const dist::RankContext& context, const char* what) {
  if (context.world_rank != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  int failed = RUN_ALL_TESTS() != 0 ? 1 : 0;
  int any_failed = 0;
  MPI_Allreduce(&failed, &any_failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (failed) std::fprintf(stderr, "rank %d: %s failed\n", context.world_rank, what);
  return any_failed;
}

}  // namespace segrun::test
