// gtest main of the GPU suites (ctest label gpu). Without a CUDA device -- a CPU machine, or a
// segrun built against a CPU-only LibTorch -- every rank prints why and exits 77, which ctest
// reports as skipped; unless SEGRUN_GPU_TESTS_ON_CPU=1 asks for a rehearsal on the CPU
// (gpu_test_device.h). Otherwise as tests/mpi_gtest_main.cpp: every rank runs every test, rank 0
// prints, and the exit code is agreed across ranks.
#include <gtest/gtest.h>

#include <stdlib.h>

#include <cstdio>

#include "build_config.h"
#include "dist/device.h"
#include "dist/rank_context.h"
#include "tests/gpu/gpu_test_device.h"
#include "tests/mpi_test_main.h"

int main(int argc, char** argv) {
  segrun::dist::MpiSession session(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  const auto& context = session.context();
  segrun::test::init_rank_logging(context);
  const bool gpu = SEGRUN_WITH_CUDA && context.visible_devices > 0;
  if (gpu) {
    ::unsetenv("SEGRUN_GPU_TESTS_ON_CPU");  // a GPU is here: test it (gpu_test_device.h)
  } else if (!segrun::test::gpu_tests_on_cpu()) {
    if (context.is_root())
      std::printf("GPU tests skipped: %s\n",
                  SEGRUN_WITH_CUDA ? "no CUDA device is visible" : "this build's LibTorch has no CUDA (docs/gpu.md)");
    return 77;
  } else if (context.is_root()) {
    std::printf("GPU tests rehearsed on the CPU (SEGRUN_GPU_TESTS_ON_CPU=1): the tests' own logic, not a GPU\n");
  }
  return segrun::test::run_tests_on_every_rank(context, gpu ? "GPU tests" : "GPU tests (rehearsal on the CPU)");
}
