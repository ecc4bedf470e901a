#pragma once
// Running out of device memory, said as the one line a user can act on. LibTorch's own message
// (CUDA's caching allocator: several sentences about reserved and allocated bytes and an
// environment variable) names no segrun setting; this one names where it happened (a training
// step, an evaluation), the config fields that set the memory there and how to lower it, the
// device and its allocator's peak, and the allocation that failed.
//   training:   data.batch_per_rank, data.crop, train.precision (train.accumulate keeps the
//               global batch when the per-rank batch goes down)
//   evaluation: eval.mode, eval.crop (slide) or data.scale (whole), eval.batch
// The launcher prefixes the rank ("segrun: error on rank 3: ..."). Thread-safe (it reads the
// device's allocator statistics).

#include <torch/types.h>

#include <string>

#include "core/config.h"
#include "core/error.h"

namespace segrun::engine {

enum class MemoryPhase { kTraining, kEvaluation };

// `where`: "training step 120", "evaluation", "the prediction of a.jpg"; `libtorch_message`:
// the c10::OutOfMemoryError's what_without_backtrace().
Error out_of_memory_error(MemoryPhase phase, const std::string& where, const Config& config,
                          const torch::Device& device, const std::string& libtorch_message);

}  // namespace segrun::engine
