// Out-of-memory messages: see out_of_memory.h.
#include "engine/out_of_memory.h"

#include <array>
#include <regex>
#include <sstream>

#include "dist/device.h"

namespace segrun::engine {
namespace {

std::string pair_text(const std::array<int, 2>& value) {
  return "[" + std::to_string(value[0]) + ", " + std::to_string(value[1]) + "]";
}

std::string gib(int64_t bytes) {
  std::ostringstream out;
  out.precision(1);
  out << std::fixed << static_cast<double>(bytes) / (1024.0 * 1024.0 * 1024.0) << " GiB";
  return out.str();
}

// ", allocating 2.00 GiB failed" from CUDA's "Tried to allocate 2.00 GiB" or the CPU allocator's
// "you tried to allocate 2147483648 bytes", else LibTorch's first line.
std::string failed_allocation(const std::string& libtorch_message) {
  static const std::regex sized("[Tt]ried to allocate ([0-9.]+ ?[KMGTP]?i?B)");
  static const std::regex bytes("[Tt]ried to allocate ([0-9]+) bytes");
  std::smatch match;
  if (std::regex_search(libtorch_message, match, sized)) return ", allocating " + match[1].str() + " failed";
  if (std::regex_search(libtorch_message, match, bytes))
    return ", allocating " + gib(std::stoll(match[1].str())) + " failed";
  return " (LibTorch: " + first_line(libtorch_message) + ")";
}

}  // namespace

bool is_out_of_memory(const c10::Error& e) {
  if (dynamic_cast<const c10::OutOfMemoryError*>(&e)) return true;
  const std::string what = e.what_without_backtrace();
  return what.find("DefaultCPUAllocator") != std::string::npos &&
         (what.find("can't allocate memory") != std::string::npos ||
          what.find("not enough memory") != std::string::npos);
}

Error out_of_memory_error(MemoryPhase phase, const std::string& where, const Config& config,
                          const torch::Device& device, const std::string& libtorch_message) {
  std::ostringstream line;
  line << "out of " << (device.is_cuda() ? "GPU " : "") << "memory in " << where << " on " << device.str();
  if (device.is_cuda()) line << " (peak allocated " << gib(dist::memory_stats(device).peak_allocated_bytes) << ")";
  line << failed_allocation(libtorch_message) << ": ";
  if (phase == MemoryPhase::kTraining) {
    line << "data.batch_per_rank = " << config.data.batch_per_rank << ", data.crop = " << pair_text(config.data.crop)
         << ", train.precision = \"" << config.train.precision
         << "\"; lower data.batch_per_rank (raise train.accumulate, now " << config.train.accumulate
         << ", by the same factor to keep the global batch) or data.crop";
    if (config.train.precision == "fp32") line << ", or train.precision = \"bf16\"";
  } else if (phase == MemoryPhase::kMeasuring) {
    line << "measure a smaller image";
  } else {
    line << "eval.mode = \"" << config.eval.mode << "\", ";
    if (config.eval.mode == "slide")
      line << "eval.crop = " << pair_text(config.eval.crop) << ", ";
    else
      line << "data.scale = " << pair_text(config.data.scale) << ", ";
    line << "eval.batch = " << config.eval.batch << "; lower eval.batch";
    if (config.eval.mode == "slide")
      line << " or eval.crop";
    else
      line << ", or use eval.mode = \"slide\"";
  }
  return Error(line.str());
}

}  // namespace segrun::engine
