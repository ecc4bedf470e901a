#pragma once
// Running out of device memory, said as the one line a user can act on. LibTorch's own message
// (CUDA's caching allocator: several sentences about reserved and allocated bytes and an
// environment variable) names no segrun setting; this one names where it happened (a training
// step, an evaluation), the config fields that set the memory there and how to lower it, the
// device and its allocator's peak, and the allocation that failed.
//   training:   data.batch_per_rank, data.crop, train.precision (train.accumulate keeps the
//               global batch when the per-rank batch goes down)
//   evaluation: eval.mode, eval.crop (slide) or data.scale (whole), eval.batch
//   measuring:  one forward pass of one image (`segrun model info`): its size
// The launcher prefixes the rank ("segrun: error on rank 3: ..."). Thread-safe (it reads the
// device's allocator statistics). Host memory runs out too: LibTorch's CPU allocator throws a plain
// c10::Error for it ("DefaultCPUAllocator: can't allocate memory: you tried to allocate N
// bytes"), which is_out_of_memory tells from the other errors, so that catch sites say both alike:
//   catch (const c10::Error& e) { if (!is_out_of_memory(e)) throw; throw out_of_memory_error(...); }

#include <torch/types.h>

#include <string>

#include "core/config.h"
#include "core/error.h"

namespace segrun::engine {

enum class MemoryPhase { kTraining, kEvaluation, kMeasuring };

// A c10::OutOfMemoryError (a device's allocator), or the CPU allocator's failure.
bool is_out_of_memory(const c10::Error& e);

// `where`: "training step 120", "evaluation", "the prediction of a.jpg"; `libtorch_message`:
// the c10::OutOfMemoryError's what_without_backtrace().
Error out_of_memory_error(MemoryPhase phase, const std::string& where, const Config& config,
                          const torch::Device& device, const std::string& libtorch_message);

}  // namespace segrun::engine
