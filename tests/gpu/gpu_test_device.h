#pragma once
// The device the GPU suites test on: cuda:0 -- or the CPU, when they are rehearsed on a machine
// without a GPU (SEGRUN_GPU_TESTS_ON_CPU=1: ctest's gpu_test_on_cpu and gpu_mpi_test_on_cpu, in CI
// and under the sanitizers). A rehearsal runs the tests' own logic -- shapes, lifetimes, every
// path that does not need CUDA -- so that a GPU lease is not spent on a mistake in a test; each
// "CUDA equals CPU" comparison then holds trivially, and what needs CUDA itself (NCCL, streams,
// reduced-precision autocast) is skipped (SEGRUN_SKIP_ON_CPU). Where a GPU is visible, gpu_main.cpp
// clears the variable: the suites always test the GPU they can.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <cstring>
#include <string>

namespace segrun::test {

inline bool gpu_tests_on_cpu() {
  const char* value = std::getenv("SEGRUN_GPU_TESTS_ON_CPU");
  return value != nullptr && std::strcmp(value, "1") == 0;
}

inline torch::Device gpu_test_device() {
  return gpu_tests_on_cpu() ? torch::Device(torch::kCPU) : torch::Device(torch::kCUDA, 0);
}

// What dist::place_on_device is asked for: "cuda", or "cpu" in a rehearsal.
inline std::string gpu_test_device_key() { return gpu_tests_on_cpu() ? "cpu" : "cuda"; }

}  // namespace segrun::test

// In a test body: skips the test in a rehearsal on the CPU, saying what it needs.
#define SEGRUN_SKIP_ON_CPU(needs)                                                                    \
  do {                                                                                               \
    if (::segrun::test::gpu_tests_on_cpu()) GTEST_SKIP() << "rehearsal on the CPU: needs " << needs; \
  } while (false)
