// gtest main of the GPU suites (ctest label gpu). Without a CUDA device -- a CPU machine, or a
// segrun built against a CPU-only LibTorch -- every rank prints why and exits 77, which ctest
// reports as skipped. Otherwise as tests/mpi_gtest_main.cpp: every rank runs every test, rank 0
// prints, and the exit code is agreed across ranks.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdio>

#include "build_config.h"
#include "core/log.h"
#include "dist/device.h"
#include "dist/rank_context.h"

int main(int argc, char** argv) {
  segrun::dist::MpiSession session(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  const auto& context = session.context();
  segrun::log::LogOptions options;
  options.rank = context.world_rank;
  options.world = context.world_size;
  options.level = "warn";
  segrun::log::init_logging(options);
  if (!SEGRUN_WITH_CUDA || context.visible_devices == 0) {
    if (context.is_root())
      std::printf("GPU tests skipped: %s\n", SEGRUN_WITH_CUDA ? "no CUDA device is visible"
                                                              : "this build's LibTorch has no CUDA (docs/gpu.md)");
    return 77;
  }
  if (context.world_rank != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  int failed = RUN_ALL_TESTS() != 0 ? 1 : 0;
  int any_failed = 0;
  MPI_Allreduce(&failed, &any_failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (failed) std::fprintf(stderr, "rank %d: GPU tests failed\n", context.world_rank);
  return any_failed;
}
