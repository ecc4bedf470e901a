#include "core/output_paths.h"

#include <filesystem>
#include <system_error>

#include "core/error.h"

namespace segrun {

namespace fs = std::filesystem;

void require_new_or_empty_folder(const std::string& option, const std::string& path, const std::string& purpose) {
  SEGRUN_CHECK(!path.empty(), ConfigError, option << " is required");
  std::error_code ec;
  if (!fs::exists(path, ec)) return;
  SEGRUN_CHECK(fs::is_directory(path, ec), ConfigError,
               option << " " << path << ": exists and is not a folder (" << purpose << ")");
  SEGRUN_CHECK(fs::is_empty(path, ec), ConfigError,
               option << " " << path << ": exists and is not empty (" << purpose << ")");
}

void require_new_file(const std::string& option, const std::string& path) {
  std::error_code ec;
  SEGRUN_CHECK(!fs::exists(path, ec), ConfigError,
               option << " " << path << ": already exists; nothing is overwritten, choose a new file name");
  const fs::path folder = fs::path(path).parent_path();
  SEGRUN_CHECK(folder.empty() || fs::is_directory(folder, ec), ConfigError,
               option << " " << path << ": the folder " << folder.string() << " does not exist");
}

}  // namespace segrun
