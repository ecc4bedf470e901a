#include "core/rank_logs.h"

#include <filesystem>
#include <fstream>
#include <system_error>

namespace segrun::log {

namespace fs = std::filesystem;

std::map<std::string, uintmax_t> log_sizes(const std::string& log_dir) {
  std::map<std::string, uintmax_t> sizes;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(log_dir, ec)) sizes[entry.path().string()] = entry.file_size(ec);
  return sizes;
}

std::string first_error_since(const std::string& log_dir, const std::map<std::string, uintmax_t>& before) {
  const size_t time_width = std::string("2026-12-06 10:13:31.123").size();  // core/log.cpp's "%Y-%m-%d %H:%M:%S.%e"
  const std::string level = " error r";                                     // "%-5l r<rank>/<world>"
  std::string first_time, found;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(log_dir, ec)) {
    const std::string path = entry.path().string();
    std::ifstream in(path);
    if (const auto it = before.find(path); it != before.end()) in.seekg(static_cast<std::streamoff>(it->second));
    for (std::string line; std::getline(in, line);) {
      if (line.compare(time_width, level.size(), level) != 0) continue;
      const size_t rank = time_width + level.size();
      const size_t slash = line.find('/', rank), space = line.find(' ', rank);
      if (slash == std::string::npos || space == std::string::npos) continue;
      const std::string time = line.substr(0, time_width);
      if (found.empty() || time < first_time) {
        first_time = time;
        found = "rank " + line.substr(rank, slash - rank) + ": " + line.substr(space + 1) + " (" + path + ")";
      }
      break;  // a file's first error is its rank's cause
    }
  }
  return found;
}

}  // namespace segrun::log
