// Out-of-memory messages (engine/out_of_memory.h), and a real CPU allocation failure told from
// other LibTorch errors. gpu_test checks that a real CUDA allocation failure is the
// c10::OutOfMemoryError the trainer, the evaluator and predict catch.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>

#include "core/config.h"
#include "engine/out_of_memory.h"

namespace segrun::engine {
namespace {

// CUDA's caching allocator's message (LibTorch 2.x), abridged.
const char* kCudaMessage =
    "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.19 GiB of which 1.06 GiB is "
    "free. Of the allocated memory 75.10 GiB is allocated by PyTorch, and 2.01 GiB is reserved by PyTorch but "
    "unallocated. If reserved but unallocated memory is large try setting "
    "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation.";

TEST(OutOfMemory, TrainingNamesTheStepTheFieldsAndTheFailedAllocation) {
  Config config;
  config.data.batch_per_rank = 16;
  config.data.crop = {512, 512};
  config.train.precision = "fp32";
  config.train.accumulate = 1;
  const Error error = out_of_memory_error(MemoryPhase::kTraining, "training step 0", config, torch::kCPU, kCudaMessage);
  EXPECT_EQ(std::string(error.what()),
            "out of memory in training step 0 on cpu, allocating 2.00 GiB failed: data.batch_per_rank = 16, "
            "data.crop = [512, 512], train.precision = \"fp32\"; lower data.batch_per_rank (raise "
            "train.accumulate, now 1, by the same factor to keep the global batch) or data.crop, or "
            "train.precision = \"bf16\"");
  config.train.precision = "bf16";  // no advice to use what is already used
  const std::string bf16 =
      out_of_memory_error(MemoryPhase::kTraining, "training step 7", config, torch::kCPU, kCudaMessage).what();
  EXPECT_EQ(bf16.find("or train.precision"), std::string::npos) << bf16;
}

TEST(OutOfMemory, EvaluationNamesTheWindowOrTheScaleAndTheBatch) {
  Config config;
  config.eval.mode = "slide";
  config.eval.crop = {512, 512};
  config.eval.batch = 8;
  EXPECT_EQ(std::string(
                out_of_memory_error(MemoryPhase::kEvaluation, "evaluation", config, torch::kCPU, kCudaMessage).what()),
            "out of memory in evaluation on cpu, allocating 2.00 GiB failed: eval.mode = \"slide\", eval.crop = "
            "[512, 512], eval.batch = 8; lower eval.batch or eval.crop");
  config.eval.mode = "whole";
  config.data.scale = {2048, 1024};
  EXPECT_EQ(std::string(out_of_memory_error(MemoryPhase::kEvaluation, "the prediction of a.jpg", config, torch::kCPU,
                                            "some other allocator\nsecond line")
                            .what()),
            "out of memory in the prediction of a.jpg on cpu (LibTorch: some other allocator): eval.mode = \"whole\", "
            "data.scale = [2048, 1024], eval.batch = 8; lower eval.batch, or use eval.mode = \"slide\"");
}

// LibTorch's CPU allocator fails with a plain c10::Error (1.13); it is an out-of-memory all the
// same, said with the allocation's size, while a shape error is not one.
TEST(OutOfMemory, AHostAllocationFailureIsToldFromOtherErrors) {
  // LibTorch 1.13's words, as a real failure below prints them (AddressSanitizer aborts on such
  // an allocation instead of failing it, so that build checks these words only).
  std::string message =
      "[enforce fail at alloc_cpu.cpp:75] err == 0. DefaultCPUAllocator: can't allocate memory: you tried to allocate "
      "1125899906842624 bytes. Error code 12 (Cannot allocate memory)";
  EXPECT_TRUE(is_out_of_memory(c10::Error(message, {})));  // {}: the backtrace (a string in 1.13, a pointer in 2.x)
#if !defined(__SANITIZE_ADDRESS__)
  try {
    torch::empty({int64_t{1} << 48}, torch::kFloat32);  // 1 PiB: more than any machine maps
    ADD_FAILURE() << "a 1 PiB tensor was allocated";
  } catch (const c10::Error& e) {
    EXPECT_TRUE(is_out_of_memory(e)) << e.what_without_backtrace();
    message = e.what_without_backtrace();
  }
#endif
  try {
    torch::matmul(torch::ones({2, 3}), torch::ones({2, 3}));
    ADD_FAILURE() << "mismatched shapes multiplied";
  } catch (const c10::Error& e) {
    EXPECT_FALSE(is_out_of_memory(e)) << e.what_without_backtrace();
  }
  Config config;
  const std::string line =
      out_of_memory_error(MemoryPhase::kMeasuring, "a forward pass", config, torch::kCPU, message).what();
  EXPECT_EQ(line, "out of memory in a forward pass on cpu, allocating 1048576.0 GiB failed: measure a smaller image");
}

}  // namespace
}  // namespace segrun::engine
