// gtest main of the GPU suites (ctest label gpu). Without a CUDA device -- a CPU machine, or a
// segrun built against a CPU-only LibTorch -- every rank prints why and exits 77, which ctest
// reports as skipped. Otherwise as tests/mpi_gtest_main.cpp: every rank runs every test, rank 0
// prints, and the exit code is agreed across ranks.
#include <gtest/gtest.h>

#include <cstdio>

#include "build_config.h"
#include "dist/device.h"
#include "dist/rank_context.h"
#include "tests/mpi_test_main.h"

int main(int argc, char** argv) {
  segrun::dist::MpiSession session(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  const auto& context = session.context();
  segrun::test::init_rank_logging(context);
  if (!SEGRUN_WITH_CUDA || context.visible_devices == 0) {
    if (context.is_root())
      std::printf("GPU tests skipped: %s\n",
                  SEGRUN_WITH_CUDA ? "no CUDA device is visible" : "this build's LibTorch has no CUDA (docs/gpu.md)");
    return 77;
  }
  return segrun::test::run_tests_on_every_rank(context, "GPU tests");
}
