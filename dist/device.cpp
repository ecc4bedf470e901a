#include "dist/device.h"

#include <torch/cuda.h>

#include <cstdio>
#include <string>

#include "build_config.h"
#include "core/error.h"
#if SEGRUN_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#endif

namespace segrun::dist {
namespace {

int visible_cuda_devices() {
#if SEGRUN_WITH_CUDA
  return static_cast<int>(torch::cuda::device_count());
#else
  return 0;  // a CPU-only LibTorch cannot place tensors on a GPU, whatever the node has
#endif
}

}  // namespace

RankContext place_on_device(const RankContext& context, const std::string& setting) {
  SEGRUN_CHECK(setting == "auto" || setting == "cpu" || setting == "cuda", ConfigError,
               "dist.device: '" << setting << "' is not one of auto, cpu, cuda");
  RankContext placed = context;
  placed.device = DeviceKind::kCpu;
  placed.device_index = -1;
  if (setting == "cpu") return placed;
  const int visible = visible_cuda_devices();
  placed.visible_devices = visible;
  if (visible == 0) {
    if (setting == "auto") return placed;
    throw ConfigError(std::string("dist.device = \"cuda\": ") + context.label() + " " +
                      (SEGRUN_WITH_CUDA ? "sees no CUDA device (check CUDA_VISIBLE_DEVICES and the driver)"
                                        : "runs a segrun built without CUDA (a CPU-only LibTorch; see docs/gpu.md)") +
                      "; use dist.device = \"cpu\" or \"auto\"");
  }
  placed.device = DeviceKind::kCuda;
  placed.device_index = context.local_rank % visible;
  return placed;
}

torch::Device torch_device(const RankContext& context) {
  if (context.device == DeviceKind::kCuda)
    return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(context.device_index));
  return torch::Device(torch::kCPU);
}

std::string describe_device(const RankContext& context) {
  if (context.device != DeviceKind::kCuda) return "cpu";
  std::string text = "cuda:" + std::to_string(context.device_index);
#if SEGRUN_WITH_CUDA
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, context.device_index) == cudaSuccess) {
    char memory[32];
    std::snprintf(memory, sizeof(memory), "%.1f GiB", static_cast<double>(prop.totalGlobalMem) / (1 << 30));
    text += std::string(" (") + prop.name + ", " + memory + ")";
  }
#endif
  return text;
}

#if SEGRUN_WITH_CUDA
namespace {
// The CUDA device a torch::Device means: its index, or the thread's current device for a bare
// "cuda" (index -1, which c10::cuda's calls refuse).
c10::DeviceIndex cuda_index(const torch::Device& device) {
  return device.has_index() ? device.index() : c10::cuda::current_device();
}
}  // namespace
#endif

void bind_thread(const torch::Device& device) {
#if SEGRUN_WITH_CUDA
  if (device.is_cuda()) c10::cuda::set_device(cuda_index(device));
#endif
}

void synchronize(const torch::Device& device) {
#if SEGRUN_WITH_CUDA
  if (device.is_cuda()) c10::cuda::getCurrentCUDAStream(cuda_index(device)).synchronize();
#endif
}

torch::Tensor to_device_async(const torch::Tensor& host, const torch::Device& device) {
  if (!device.is_cuda() || host.is_cuda()) return host.to(device);
  return host.pin_memory().to(device, /*non_blocking=*/true);
}

DeviceMemoryStats memory_stats(const torch::Device& device) {
  DeviceMemoryStats stats;
#if SEGRUN_WITH_CUDA
  if (device.is_cuda()) {
    const auto s = c10::cuda::CUDACachingAllocator::getDeviceStats(cuda_index(device));
    stats.peak_allocated_bytes = s.allocated_bytes[0].peak;  // [0]: the aggregate over pools
    stats.peak_reserved_bytes = s.reserved_bytes[0].peak;
  }
#endif
  return stats;
}

void reset_peak_memory_stats(const torch::Device& device) {
#if SEGRUN_WITH_CUDA
  if (device.is_cuda()) c10::cuda::CUDACachingAllocator::resetPeakStats(cuda_index(device));
#endif
}

}  // namespace segrun::dist
