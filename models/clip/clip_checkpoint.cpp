// Pretrained CLIP weight import: see clip_checkpoint.h.
#include "models/clip/clip_checkpoint.h"

#include <torch/script.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <set>
#include <utility>
#include <vector>

#include "core/error.h"

namespace segrun::models {
namespace {

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

// [S*S+1, C] -> [H*W+1, C]: class row kept, grid resized bilinearly.
torch::Tensor resize_positional_embedding(const torch::Tensor& source, int64_t target_rows) {
  const int64_t channels = source.size(1);
  const auto side = [](int64_t rows) {
    const auto s = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(rows - 1))));
    return s * s == rows - 1 ? s : int64_t{-1};
  };
  const int64_t from = side(source.size(0)), to = side(target_rows);
  if (from <= 0 || to <= 0) return torch::Tensor();
  torch::Tensor grid = source.slice(0, 1).to(torch::kFloat).reshape({1, from, from, channels}).permute({0, 3, 1, 2});
  namespace F = torch::nn::functional;
  grid = F::interpolate(
      grid, F::InterpolateFuncOptions().size(std::vector<int64_t>{to, to}).mode(torch::kBilinear).align_corners(false));
  return torch::cat({source.slice(0, 0, 1).to(torch::kFloat), grid.permute({0, 2, 3, 1}).reshape({to * to, channels})},
                    0);
}

}  // namespace

WeightImportReport import_torchscript_weights(const WeightImportOptions& options, torch::nn::Module& target) {
  const std::string& path = options.path;
  SEGRUN_CHECK(std::filesystem::is_regular_file(path), ModelError, "model.pretrained: " << path << ": no such file");
  torch::jit::Module archive;
  try {
    archive = torch::jit::load(path, torch::kCPU);
  } catch (const std::exception& e) {
    std::string what = e.what();
    what = what.substr(0, what.find('\n'));
    SEGRUN_THROW(ModelError, "model.pretrained: " << path << ": not a TorchScript archive (" << what << ")");
  }
  std::map<std::string, torch::Tensor> source;
  for (const auto& item : archive.named_parameters(/*recurse=*/true)) {
    if (starts_with(item.name, options.prefix)) source[item.name.substr(options.prefix.size())] = item.value;
  }
  for (const auto& item : archive.named_buffers(/*recurse=*/true)) {
    if (starts_with(item.name, options.prefix)) source[item.name.substr(options.prefix.size())] = item.value;
  }
  SEGRUN_CHECK(!source.empty(), ModelError,
               "model.pretrained: " << path << ": no tensors under '" << options.prefix << "' (not a CLIP archive?)");

  // In registration order, so the first problem reported is the one nearest the input.
  std::vector<std::pair<std::string, torch::Tensor>> destination;
  std::set<std::string> destination_keys;
  for (const auto& item : target.named_parameters()) destination.emplace_back(item.key(), item.value());
  for (const auto& item : target.named_buffers()) destination.emplace_back(item.key(), item.value());
  for (const auto& item : destination) destination_keys.insert(item.first);

  WeightImportReport report;
  for (const auto& item : source) {
    if (destination_keys.count(item.first)) continue;
    bool skip = false;
    for (const auto& prefix : options.skip_prefixes) skip = skip || starts_with(item.first, prefix);
    SEGRUN_CHECK(skip, ModelError,
                 "model.pretrained: " << path << ": " << options.prefix << item.first << " " << item.second.sizes()
                                      << " has no counterpart in the model (check model.backbone)");
    ++report.skipped;
  }

  torch::NoGradGuard no_grad;
  for (auto& item : destination) {
    const std::string& key = item.first;
    torch::Tensor& dst = item.second;
    bool target_only = false;
    for (const auto& prefix : options.target_only_prefixes) target_only = target_only || starts_with(key, prefix);
    if (target_only) {
      ++report.own_init;
      continue;
    }
    auto it = source.find(key);
    if (it == source.end()) {
      SEGRUN_CHECK(key.size() >= 19 && key.compare(key.size() - 19, 19, "num_batches_tracked") == 0, ModelError,
                   "model.pretrained: " << path << ": missing " << options.prefix << key << " " << dst.sizes());
      continue;
    }
    torch::Tensor value = it->second;
    const bool grid_key = std::find(options.grid_keys.begin(), options.grid_keys.end(), key) != options.grid_keys.end();
    if (value.sizes() != dst.sizes() && grid_key && value.dim() == 2 && dst.dim() == 2 &&
        value.size(1) == dst.size(1)) {
      torch::Tensor resized = resize_positional_embedding(value, dst.size(0));
      if (resized.defined()) {
        value = resized;
        report.resized.push_back(key);
      }
    }
    if (value.sizes() != dst.sizes() && !grid_key && key == "positional_embedding" && value.dim() == 2 &&
        dst.dim() == 2 && value.size(1) == dst.size(1) && value.size(0) > dst.size(0)) {
      value = value.slice(0, 0, dst.size(0));  // text context truncated to the model's (DenseCLIP)
      report.resized.push_back(key);
    }
    SEGRUN_CHECK(value.sizes() == dst.sizes(), ModelError,
                 "model.pretrained: " << path << ": " << options.prefix << key << " has shape " << value.sizes()
                                      << " but the model expects " << dst.sizes()
                                      << " (check model.backbone and model.width)");
    dst.copy_(value.to(dst.dtype()));
    ++report.loaded;
  }
  return report;
}

}  // namespace segrun::models
