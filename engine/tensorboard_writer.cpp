// TensorBoard event files (engine/tensorboard_writer.h).
#include "engine/tensorboard_writer.h"

#include <isa-l/crc.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <filesystem>
#include <map>
#include <system_error>

#include "core/error.h"
#include "core/process.h"
#include "engine/tensorboard_event.h"

namespace segrun::engine {

uint32_t crc32c(const void* data, size_t size) {
  // ISA-L's crc32_iscsi is the reflected CRC-32C without the standard's pre- and post-inversion.
  uint32_t crc = 0xffffffffu;
  auto* bytes = static_cast<unsigned char*>(const_cast<void*>(data));
  while (size > 0) {
    const int chunk = static_cast<int>(std::min<size_t>(size, INT_MAX));
    crc = crc32_iscsi(bytes, chunk, crc);
    bytes += chunk;
    size -= static_cast<size_t>(chunk);
  }
  return crc ^ 0xffffffffu;
}

uint32_t masked_crc32c(const void* data, size_t size) {
  const uint32_t crc = crc32c(data, size);
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

namespace {

double unix_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

TensorBoardWriter::TensorBoardWriter(const std::string& dir, std::optional<int64_t> purge_step) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw IoError(dir + ": cannot create the TensorBoard folder: " + ec.message());
  const std::string prefix = "events.out.tfevents.";
  const std::string host = process::host_name().empty() ? "localhost" : process::host_name();
  const std::string suffix = "." + host + "." + std::to_string(static_cast<long long>(getpid()));
  // TensorBoard reads a folder's event files in name order: this one must come after the earlier
  // runs' (a resume within the second the previous process wrote its file, or a clock set back).
  auto seconds = static_cast<long long>(unix_seconds());
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(prefix, 0) != 0 || name < prefix + std::to_string(seconds) + suffix) continue;
    const std::string digits = name.substr(prefix.size(), name.find('.', prefix.size()) - prefix.size());
    if (!digits.empty() && digits.size() <= 12 && digits.find_first_not_of("0123456789") == std::string::npos)
      seconds = std::max(seconds, std::stoll(digits) + 1);
  }
  path_ = dir + "/" + prefix + std::to_string(seconds) + suffix;
  out_.open(path_, std::ios::binary | std::ios::trunc);
  if (!out_) throw IoError(path_ + ": cannot create the TensorBoard event file");
  write_record(encode_file_version_event(unix_seconds()));
  if (purge_step) write_record(encode_session_start_event(unix_seconds(), *purge_step));
}

void TensorBoardWriter::add_scalar(const std::string& tag, double value, int64_t step) {
  add_scalars({{tag, value}}, step);
}

void TensorBoardWriter::add_scalars(const std::vector<std::pair<std::string, double>>& values, int64_t step) {
  if (values.empty()) return;
  std::vector<std::pair<std::string, float>> simple_values;
  simple_values.reserve(values.size());
  for (const auto& [tag, value] : values) simple_values.emplace_back(tag, static_cast<float>(value));
  write_record(encode_scalars_event(unix_seconds(), step, simple_values));
}

void TensorBoardWriter::add_png(const std::string& tag, const std::vector<uint8_t>& png, int width, int height,
                                int channels, int64_t step) {
  const TensorBoardImage image{height, width, channels, std::string(png.begin(), png.end())};
  write_record(encode_image_event(unix_seconds(), step, tag, image));
}

void TensorBoardWriter::write_record(const std::string& data) {
  std::string header;
  append_little_endian(header, data.size(), 8);
  std::string record = header;
  append_little_endian(record, masked_crc32c(header.data(), header.size()), 4);
  record += data;
  append_little_endian(record, masked_crc32c(data.data(), data.size()), 4);
  out_.write(record.data(), static_cast<std::streamsize>(record.size()));
  out_.flush();
  if (!out_) throw IoError(path_ + ": cannot write a TensorBoard record (disk full?)");
}

void add_metrics_record(TensorBoardWriter& writer, const nlohmann::ordered_json& record) {
  const std::string mode = record.value("mode", "");
  if (mode != "train" && mode != "val" && mode != "eval") return;
  const std::string prefix = mode == "train" ? "train/" : "val/";
  const std::map<std::string, std::string> per_class{
      {"per_class", "IoU."}, {"per_class_acc", "Acc."}, {"per_class_ms", "IoU_ms."}};
  std::vector<std::pair<std::string, double>> scalars;
  for (const auto& [key, value] : record.items()) {
    if (key == "iter") continue;
    if (value.is_number()) scalars.emplace_back(prefix + key, value.get<double>());
    const auto names = per_class.find(key);
    if (names == per_class.end() || !value.is_object()) continue;
    for (const auto& [name, class_value] : value.items())
      if (class_value.is_number()) scalars.emplace_back(prefix + names->second + name, class_value.get<double>());
  }
  writer.add_scalars(scalars, record.value("iter", int64_t{0}));
}

}  // namespace segrun::engine
