#include "core/rank_logs.h"

#include <algorithm>
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

namespace {

// A rank or world size written in decimal (1 to 6 digits), -1 for other text.
int rank_number(const std::string& digits) {
  if (digits.empty() || digits.size() > 6 || digits.find_first_not_of("0123456789") != std::string::npos) return -1;
  return std::stoi(digits);
}

// "<r>" of a logs/rank-<r>.log name (-1 for another name).
int rank_of_log(const std::string& name) {
  const std::string prefix = "rank-", suffix = ".log";
  if (name.size() <= prefix.size() + suffix.size() || name.rfind(prefix, 0) != 0 ||
      name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
    return -1;
  return rank_number(name.substr(prefix.size(), name.size() - prefix.size() - suffix.size()));
}

}  // namespace

int last_world_size(const std::string& log_dir) {
  std::ifstream log(log_dir + "/rank-0.log", std::ios::binary | std::ios::ate);
  if (log) {
    const std::streamoff size = log.tellg();
    const std::streamoff from = std::max<std::streamoff>(0, size - 65536);
    std::string tail(static_cast<size_t>(size - from), '\0');
    log.seekg(from);
    log.read(tail.data(), static_cast<std::streamsize>(tail.size()));
    const std::string field = " r0/";  // core/log.cpp's "%-5l r<rank>/<world>"
    for (size_t at = tail.rfind(field); at != std::string::npos && at > 0; at = tail.rfind(field, at - 1)) {
      const size_t first = at + field.size(), end = tail.find(' ', first);
      const int world = end == std::string::npos ? -1 : rank_number(tail.substr(first, end - first));
      if (world > 0) return world;
    }
  }
  int ranks = 1;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(log_dir, ec))
    ranks = std::max(ranks, rank_of_log(entry.path().filename().string()) + 1);
  return ranks;
}

}  // namespace segrun::log
