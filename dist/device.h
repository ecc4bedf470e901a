#pragma once
// Where a rank computes, and the few CUDA facilities segrun needs beyond LibTorch's tensor API.
// place_on_device() resolves `dist.device` for one rank:
//   "cpu"   every tensor stays on the host;
//   "cuda"  the rank binds cuda:<local_rank mod visible GPUs>; a rank that sees no GPU, or a
//           build without CUDA (SEGRUN_WITH_CUDA off: a CPU-only LibTorch), is a ConfigError
//           naming the rank, the host and the reason;
//   "auto"  cuda when it can be had, else cpu.
// Every function here is valid in every build; on the CPU they do nothing, so callers need no
// #if. Threading: the current CUDA device is per thread; bind_thread() makes a device current for
// the calling thread (threads that allocate pinned memory or launch work call it). A device
// without an index (torch::Device("cuda")) means the calling thread's current device.

#include <torch/nn/module.h>
#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <string>

#include "dist/rank_context.h"

namespace segrun::dist {

// `setting`: "auto" | "cpu" | "cuda". Returns `context` with device and device_index filled in.
RankContext place_on_device(const RankContext& context, const std::string& setting);

// cpu, or cuda:<device_index>.
torch::Device torch_device(const RankContext& context);

// "cpu", or "cuda:1 (NVIDIA H200, 139.8 GiB)": for the first log lines of a run.
std::string describe_device(const RankContext& context);

// Makes `device` the calling thread's current CUDA device (no-op for the CPU).
void bind_thread(const torch::Device& device);

// The device of `module`'s parameters (the first one's: segrun places a model whole); CPU for a
// module without any.
torch::Device module_device(const torch::nn::Module& module);

// Blocks the calling thread until the work queued so far on the current stream of `device` is
// done (no-op on CPU). For timing and for handing device memory to libraries that are not
// stream-aware (a CUDA-aware MPI).
void synchronize(const torch::Device& device);

// `host` (a small CPU tensor: indices, normalizers) on `device`, without making the calling thread
// wait for the device: on a GPU it goes through a pinned copy of its own and is copied
// asynchronously on the current stream (LibTorch's pinned-memory allocator keeps the block until
// the copy is done), so `host` may be written again at once; a pageable copy would wait for every
// kernel queued before it. On the CPU: `host` itself.
torch::Tensor to_device_async(const torch::Tensor& host, const torch::Device& device);

// Counts how often the calling thread makes the host wait for a CUDA device while the counter
// lives: a blocking copy to or from the device, .item(), nonzero, a stream synchronize -- what
// torch.cuda.set_sync_debug_mode("warn") reports, backward's included (autograd replays the
// warnings of its device threads in the thread that called backward). What that mode does not
// see (a cudaFree or cudaHostAlloc of an allocator, thrust's internal waits, event waits) is not
// counted. The mode is process-wide while the counter lives (the previous one is restored after):
// waits in other threads are then printed as LibTorch warnings, not counted. One counter at a
// time. Always 0 in a build without CUDA.
class HostWaitCounter {
 public:
  HostWaitCounter();
  ~HostWaitCounter();
  HostWaitCounter(const HostWaitCounter&) = delete;
  HostWaitCounter& operator=(const HostWaitCounter&) = delete;
  int64_t waits() const;

 private:
  struct Handler;
  std::unique_ptr<Handler> handler_;
};

// Caching-allocator statistics of a CUDA device (zeros on CPU), as torch.cuda reports them.
struct DeviceMemoryStats {
  int64_t peak_allocated_bytes = 0;  // torch.cuda.max_memory_allocated
  int64_t peak_reserved_bytes = 0;   // torch.cuda.max_memory_reserved
};
DeviceMemoryStats memory_stats(const torch::Device& device);
void reset_peak_memory_stats(const torch::Device& device);

}  // namespace segrun::dist
