#include "dist/device.h"

#include <c10/util/Exception.h>
#include <torch/cuda.h>
#include <torch/version.h>

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

torch::Device module_device(const torch::nn::Module& module) {
  const std::vector<torch::Tensor> parameters = module.parameters();
  return parameters.empty() ? torch::Device(torch::kCPU) : parameters.front().device();
}

torch::Tensor to_device_async(const torch::Tensor& host, const torch::Device& device) {
  if (!device.is_cuda() || host.is_cuda()) return host.to(device);
  // A pinned copy of its own: pin_memory() would hand back an already pinned `host` itself, which
  // the caller may write again before the device has read it.
  const torch::Tensor staged =
      host.is_pinned() ? torch::empty(host.sizes(), host.options().pinned_memory(true)).copy_(host) : host.pin_memory();
  return staged.to(device, /*non_blocking=*/true);
}

// The warning that CUDA's sync debug mode "warn" issues at every wait (c10/cuda/CUDAFunctions.cpp).
constexpr const char* kWaitWarning = "called a synchronizing CUDA operation";

// Counts the wait warnings of its thread and hands every other warning to the handler before it.
// LibTorch 2.0 passes a Warning object (c10::WarningUtils); 1.13 its parts (c10::Warning).
struct HostWaitCounter::Handler : c10::WarningHandler {
  c10::WarningHandler* previous = nullptr;
  int previous_mode = 0;  // c10::cuda::SyncDebugMode before the counter
  int64_t waits = 0;
#if TORCH_VERSION_MAJOR >= 2
  void process(const c10::Warning& warning) override {
    if (warning.msg().find(kWaitWarning) != std::string::npos)
      ++waits;
    else
      previous->process(warning);
  }
#else
  void process(const c10::SourceLocation& where, const std::string& message, const bool verbatim) override {
    if (message.find(kWaitWarning) != std::string::npos)
      ++waits;
    else
      previous->process(where, message, verbatim);
  }
#endif
};

HostWaitCounter::HostWaitCounter() : handler_(std::make_unique<Handler>()) {
#if TORCH_VERSION_MAJOR >= 2
  handler_->previous = c10::WarningUtils::get_warning_handler();
  c10::WarningUtils::set_warning_handler(handler_.get());
#else
  handler_->previous = c10::Warning::get_warning_handler();
  c10::Warning::set_warning_handler(handler_.get());
#endif
#if SEGRUN_WITH_CUDA
  handler_->previous_mode = static_cast<int>(c10::cuda::warning_state().get_sync_debug_mode());
  c10::cuda::warning_state().set_sync_debug_mode(c10::cuda::SyncDebugMode::L_WARN);
#endif
}

HostWaitCounter::~HostWaitCounter() {
#if SEGRUN_WITH_CUDA
  c10::cuda::warning_state().set_sync_debug_mode(static_cast<c10::cuda::SyncDebugMode>(handler_->previous_mode));
#endif
#if TORCH_VERSION_MAJOR >= 2
  c10::WarningUtils::set_warning_handler(handler_->previous);
#else
  c10::Warning::set_warning_handler(handler_->previous);
#endif
}

int64_t HostWaitCounter::waits() const { return handler_->waits; }

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
