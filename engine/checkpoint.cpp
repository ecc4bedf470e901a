#include "engine/checkpoint.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <regex>
#include <sstream>
#include <system_error>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/latest_checkpoint.h"
#include "core/log.h"
#include "dist/device.h"
#include "engine/model_setup.h"
#include "engine/out_of_memory.h"

namespace segrun::engine {
namespace {

namespace fs = std::filesystem;

const std::regex kCheckpointName(R"(iter_(\d+)\.pt)");

std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& dir) {
  std::vector<std::pair<int64_t, std::string>> found;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return found;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    std::smatch m;
    std::string name = entry.path().filename().string();
    if (std::regex_match(name, m, kCheckpointName)) found.emplace_back(std::stoll(m[1].str()), entry.path().string());
  }
  std::sort(found.begin(), found.end());
  return found;
}

std::string shape_string(const torch::Tensor& t) {
  std::ostringstream os;
  os << t.sizes();
  return os.str();
}

void write_window(torch::serialize::OutputArchive& archive, const OpenLogWindow& window) {
  c10::List<std::string> names;
  c10::List<double> sums;
  names.push_back("total");
  sums.push_back(window.total);
  for (const auto& [name, sum] : window.parts) {
    names.push_back(name);
    sums.push_back(sum);
  }
  archive.write("meta.window_iters", c10::IValue(window.iters));
  archive.write("meta.window_skipped", c10::IValue(window.skipped));
  archive.write("meta.window_first", c10::IValue(window.first));
  archive.write("meta.window_names", c10::IValue(names));
  archive.write("meta.window_sums", c10::IValue(sums));
  if (window.has_grad_norm) archive.write("meta.window_grad_norm", c10::IValue(window.grad_norm));
}

OpenLogWindow read_window(torch::serialize::InputArchive& archive) {
  OpenLogWindow window;
  c10::IValue iters, skipped, first, names, sums, grad_norm;
  if (!archive.try_read("meta.window_iters", iters) || !archive.try_read("meta.window_skipped", skipped) ||
      !archive.try_read("meta.window_first", first) || !archive.try_read("meta.window_names", names) ||
      !archive.try_read("meta.window_sums", sums))
    return window;
  const auto name_list = names.toList();
  const auto sum_list = sums.toList();
  if (name_list.size() != sum_list.size() || name_list.size() == 0) return window;
  window.iters = iters.toInt();
  window.skipped = skipped.toInt();
  window.first = first.toInt();
  window.total = sum_list.get(0).toDouble();
  for (size_t i = 1; i < name_list.size(); ++i)
    window.parts.emplace_back(name_list.get(i).toStringRef(), sum_list.get(i).toDouble());
  if (archive.try_read("meta.window_grad_norm", grad_norm)) {
    window.has_grad_norm = true;
    window.grad_norm = grad_norm.toDouble();
  }
  return window;
}

// The whole checkpoint archive, serialized in memory: LibTorch's file writer aborts the process
// when the disk fills (its destructor throws), while write_file_atomic reports ENOSPC as IoError,
// removes its temp file and leaves every earlier checkpoint untouched.
std::string serialize_checkpoint(const std::string& path, const CheckpointMeta& meta, torch::nn::Module& model,
                                 torch::optim::Optimizer& optimizer) {
  std::ostringstream buffer;
  try {
    torch::serialize::OutputArchive archive;
    archive.write("meta.next_iter", c10::IValue(meta.next_iter));
    archive.write("meta.seed", c10::IValue(static_cast<int64_t>(meta.seed)));
    archive.write("meta.world_size", c10::IValue(static_cast<int64_t>(meta.world_size)));
    archive.write("meta.model_signature", c10::IValue(meta.model_signature));
    archive.write("meta.loss_scale", c10::IValue(meta.loss_scale));
    archive.write("meta.loss_scale_growth", c10::IValue(meta.loss_scale_growth));
    archive.write("meta.seconds", c10::IValue(meta.seconds));
    if (meta.best.recorded()) {
      archive.write("meta.best_metric", c10::IValue(meta.best.metric));
      archive.write("meta.best_value", c10::IValue(meta.best.value));
      archive.write("meta.best_iter", c10::IValue(meta.best.iter));
    }
    if (meta.window.iters > 0) write_window(archive, meta.window);
    for (const auto& p : model.named_parameters())
      archive.write("model." + p.key(), p.value().detach().to(torch::kCPU), false);
    for (const auto& b : model.named_buffers()) archive.write("model." + b.key(), b.value().to(torch::kCPU), true);
    torch::serialize::OutputArchive optimizer_archive;
    optimizer.save(optimizer_archive);
    archive.write("optimizer", optimizer_archive);
    archive.save_to(buffer);
  } catch (const c10::Error& e) {
    throw CheckpointError(path + ": cannot serialize checkpoint: " + e.what_without_backtrace());
  }
  return buffer.str();
}

// Writes <dir>/<name> atomically (creating dir) and returns its path.
std::string write_checkpoint_file(const std::string& dir, const std::string& name, const CheckpointMeta& meta,
                                  torch::nn::Module& model, torch::optim::Optimizer& optimizer) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  const std::string path = dir + "/" + name;
  write_file_atomic(path, serialize_checkpoint(path, meta, model, optimizer));
  return path;
}

}  // namespace

bool BestValidation::offer(const std::string& metric_name, double candidate, int64_t at_iter) {
  if (std::isnan(candidate)) return false;
  if (recorded() && metric == metric_name && !(candidate > value)) return false;
  metric = metric_name;
  value = candidate;
  iter = at_iter;
  return true;
}

std::string save_checkpoint(const std::string& dir, const CheckpointMeta& meta, torch::nn::Module& model,
                            torch::optim::Optimizer& optimizer, int keep) {
  const std::string name = "iter_" + std::to_string(meta.next_iter) + ".pt";
  const std::string path = write_checkpoint_file(dir, name, meta, model, optimizer);
  write_file_atomic(dir + "/" + kLatestCheckpointFile, name + "\n");
  std::error_code ec;
  auto all = list_checkpoints(dir);
  for (size_t i = 0; i + static_cast<size_t>(std::max(keep, 1)) < all.size(); ++i) fs::remove(all[i].second, ec);
  return path;
}

std::string save_best_checkpoint(const std::string& dir, const CheckpointMeta& meta, torch::nn::Module& model,
                                 torch::optim::Optimizer& optimizer) {
  return write_checkpoint_file(dir, kBestCheckpointName, meta, model, optimizer);
}

namespace {

// A checkpoint that does not fit in the device's memory is not a broken checkpoint: an Error, not
// a CheckpointError, so that resuming does not fall back to an older one and set this one aside.
[[noreturn]] void throw_out_of_memory(const std::string& path, const std::string& what, const c10::Error& e) {
  throw Error(path + ": out of memory loading " + what + " (" + first_line(e.what_without_backtrace()) + ")");
}

void open_archive(torch::serialize::InputArchive& archive, const std::string& path, const torch::Device& device) {
  std::error_code ec;
  if (fs::is_directory(path, ec))  // --resume auto falls back to the previous one, as for a cut file
    throw UnreadableCheckpointError(path + ": a folder, not a segrun checkpoint");
  if (!fs::is_regular_file(path, ec)) throw CheckpointError(path + ": checkpoint not found");
  try {
    archive.load_from(path, device);
  } catch (const c10::Error& e) {
    if (is_out_of_memory(e)) throw_out_of_memory(path, "it onto " + device.str(), e);
    throw UnreadableCheckpointError(path + ": not a readable segrun checkpoint (truncated or foreign file)");
  }
}

CheckpointMeta read_meta(torch::serialize::InputArchive& archive, const std::string& path) {
  CheckpointMeta meta;
  c10::IValue value;
  auto required = [&](const char* key) -> c10::IValue {
    c10::IValue v;
    if (!archive.try_read(key, v))
      throw UnreadableCheckpointError(path + ": missing '" + key + "' (not a segrun checkpoint)");
    return v;
  };
  meta.next_iter = required("meta.next_iter").toInt();
  meta.seed = static_cast<uint64_t>(required("meta.seed").toInt());
  meta.world_size = static_cast<int>(required("meta.world_size").toInt());
  meta.model_signature = required("meta.model_signature").toStringRef();
  if (archive.try_read("meta.loss_scale", value)) meta.loss_scale = value.toDouble();
  if (archive.try_read("meta.loss_scale_growth", value)) meta.loss_scale_growth = value.toInt();
  if (archive.try_read("meta.seconds", value)) meta.seconds = value.toDouble();
  if (archive.try_read("meta.best_metric", value)) {
    meta.best.metric = value.toStringRef();
    meta.best.value = required("meta.best_value").toDouble();
    meta.best.iter = required("meta.best_iter").toInt();
  }
  meta.window = read_window(archive);
  return meta;
}

}  // namespace

CheckpointMeta load_checkpoint(const std::string& path, const std::string& expected_signature, torch::nn::Module& model,
                               torch::optim::Optimizer* optimizer) {
  torch::serialize::InputArchive archive;
  const torch::Device device = dist::module_device(model);
  // Every tensor, optimizer state included, lands on the model's device.
  open_archive(archive, path, device);
  const CheckpointMeta meta = read_meta(archive, path);
  if (!expected_signature.empty() && meta.model_signature != expected_signature) {
    const std::string difference = describe_model_difference(meta.model_signature, expected_signature);
    throw CheckpointError(path + ": checkpoint is of another model" +
                          (difference.empty() ? std::string() : ": " + difference) + " (it is '" +
                          meta.model_signature + "', the config builds '" + expected_signature + "')");
  }
  torch::NoGradGuard no_grad;
  auto load_tensor = [&](const std::string& name, torch::Tensor& target, bool is_buffer) {
    torch::Tensor stored;
    if (!archive.try_read("model." + name, stored, is_buffer))
      throw CheckpointError(path + ": " + (is_buffer ? "buffer" : "parameter") + " '" + name +
                            "' is missing (checkpoint from a different model?)");
    if (!stored.sizes().equals(target.sizes()))
      throw CheckpointError(path + ": '" + name + "' has shape " + shape_string(stored) + ", the model expects " +
                            shape_string(target));
    target.copy_(stored);
  };
  for (auto& p : model.named_parameters()) load_tensor(p.key(), p.value(), false);
  for (auto& b : model.named_buffers()) load_tensor(b.key(), b.value(), true);
  if (optimizer) {
    torch::serialize::InputArchive optimizer_archive;
    if (!archive.try_read("optimizer", optimizer_archive)) throw CheckpointError(path + ": optimizer state is missing");
    try {
      optimizer->load(optimizer_archive);
    } catch (const c10::Error& e) {
      if (is_out_of_memory(e)) throw_out_of_memory(path, "the optimizer state", e);
      throw CheckpointError(path + ": optimizer state does not match the model: " + e.what_without_backtrace());
    }
  }
  return meta;
}

BestValidation best_to_resume(const std::string& dir, const BestValidation& recorded, const std::string& metric,
                              int64_t abandoned_after) {
  const std::string path = dir + "/" + kBestCheckpointName;
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return recorded;
  BestValidation on_disk;
  try {
    torch::serialize::InputArchive archive;
    open_archive(archive, path, torch::kCPU);
    on_disk = read_meta(archive, path).best;
  } catch (const CheckpointError& e) {
    log::warn("{}; the best validation continues from the checkpoint's record", e.what());
    return recorded;
  }
  if (abandoned_after >= 0 && on_disk.iter > abandoned_after) return recorded;
  if (on_disk.recorded() && on_disk.metric == metric && (recorded.metric != metric || on_disk.value > recorded.value))
    return on_disk;
  return recorded;
}

std::vector<int64_t> checkpoints_after(const std::string& dir, int64_t iter) {
  std::vector<int64_t> later;
  for (const auto& [n, path] : list_checkpoints(dir))
    if (n > iter) later.push_back(n);
  return later;
}

std::string set_aside_checkpoints_after(const std::string& dir, int64_t iter) {
  std::vector<fs::path> moving;
  for (const auto& [n, path] : list_checkpoints(dir))
    if (n > iter) moving.emplace_back(path);
  std::error_code ec;
  const std::string best = dir + "/" + kBestCheckpointName;
  if (fs::is_regular_file(best, ec)) {
    try {
      torch::serialize::InputArchive archive;
      open_archive(archive, best, torch::kCPU);
      if (read_meta(archive, best).best.iter > iter) moving.emplace_back(best);
    } catch (const CheckpointError&) {
      // unreadable: best_to_resume has warned; it stays where the user left it
    }
  }
  if (moving.empty()) return "";
  const std::string base = dir + "/abandoned-at-" + std::to_string(iter);
  std::string folder = base;
  for (int k = 2; fs::exists(folder, ec); ++k) folder = base + "-" + std::to_string(k);
  fs::create_directories(folder, ec);
  if (ec) throw CheckpointError(folder + ": cannot create: " + ec.message());
  for (const fs::path& from : moving) {
    fs::rename(from, fs::path(folder) / from.filename(), ec);
    if (ec) throw CheckpointError(from.string() + ": cannot move to " + folder + ": " + ec.message());
  }
  return folder;
}

std::vector<std::string> checkpoints_newest_first(const std::string& dir) {
  std::vector<std::string> paths;
  auto all = list_checkpoints(dir);
  for (auto it = all.rbegin(); it != all.rend(); ++it) paths.push_back(it->second);
  return paths;
}

int remove_stale_temp_files(const std::string& dir) {
  int removed = 0;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return 0;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.path().filename().string().find(".tmp-") != std::string::npos && fs::remove(entry.path(), ec)) ++removed;
  }
  return removed;
}

}  // namespace segrun::engine
