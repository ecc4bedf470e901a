// Out-of-memory messages (engine/out_of_memory.h). gpu_test checks that a real CUDA allocation
// failure is the c10::OutOfMemoryError the trainer, the evaluator and predict catch.
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

}  // namespace
}  // namespace segrun::engine
