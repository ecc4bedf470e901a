#include "core/latest_checkpoint.h"

#include <cstdint>
#include <filesystem>
#include <system_error>

#include "core/atomic_file.h"
#include "core/error.h"

namespace segrun {

std::string resolved_checkpoint_path(const std::string& option, const std::string& path) {
  namespace fs = std::filesystem;
  constexpr std::uintmax_t kLongestPointer = 4096;  // a checkpoint is megabytes: anything this small is no archive
  std::error_code ec;
  const fs::path file(path);
  if (file.filename() != kLatestCheckpointFile || !fs::is_regular_file(file, ec)) return path;
  const std::uintmax_t size = fs::file_size(file, ec);
  if (ec || size > kLongestPointer) return path;
  std::string name = read_file(path);
  while (!name.empty() && (name.back() == '\n' || name.back() == '\r' || name.back() == ' ')) name.pop_back();
  SEGRUN_CHECK(!name.empty() && name.find('/') == std::string::npos && name.find('\n') == std::string::npos,
               ConfigError,
               option << " " << path << ": a `latest` file names one checkpoint of its folder, this one does not");
  const fs::path named = file.parent_path() / name;
  SEGRUN_CHECK(fs::is_regular_file(named, ec), ConfigError,
               option << " " << path << ": names " << named.string()
                      << ", which is gone (train.keep_checkpoints prunes old ones); give an iter_<n>.pt that exists");
  return named.string();
}

}  // namespace segrun
