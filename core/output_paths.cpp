#include "core/output_paths.h"

#include <filesystem>
#include <system_error>

#include "core/error.h"
#include "core/run_folder.h"

namespace segrun {

namespace fs = std::filesystem;

fs::path resolved_output_path(const std::string& path) {
  std::error_code ec;
  const fs::path absolute = fs::absolute(path, ec);
  if (ec) return path;
  fs::path resolved = fs::weakly_canonical(absolute, ec);
  if (ec) resolved = absolute.lexically_normal();
  return resolved.has_filename() ? resolved : resolved.parent_path();  // "mine/new/.." is "mine", not "mine/"
}

fs::path resolved_store_folder(const std::string& store) {
  const fs::path folder = resolved_output_path(store);
  return folder.filename() == "manifest.json" ? folder.parent_path() : folder;
}

namespace {

// ConfigError when the folder `where` (resolved, not there yet) cannot be made: the nearest of
// its parents that exists is a file ("--out f.png/sub": f.png is a file).
void require_creatable(const std::string& option, const std::string& path, const fs::path& where) {
  std::error_code ec;
  fs::path parent = where.parent_path();
  while (!parent.empty() && !fs::exists(parent, ec) && parent != parent.parent_path()) parent = parent.parent_path();
  SEGRUN_CHECK(parent.empty() || fs::is_directory(parent, ec), ConfigError,
               option << " " << path << ": " << parent.string() << " is a file, not a folder");
}

}  // namespace

void refuse_dangling_link(const std::string& option, const std::string& path) {
  std::error_code ec;
  const fs::path link = fs::path(path).lexically_normal();
  if (!fs::is_symlink(link, ec) || fs::exists(link, ec)) return;
  throw ConfigError(option + " " + path + ": a symbolic link to " + fs::read_symlink(link, ec).string() +
                    ", which does not exist: give another path");
}

void require_new_or_empty_folder(const std::string& option, const std::string& path, const std::string& purpose) {
  SEGRUN_CHECK(!path.empty(), ConfigError, option << " is required");
  refuse_dangling_link(option, path);
  const fs::path where = resolved_output_path(path);
  std::error_code ec;
  if (!fs::exists(where, ec)) return require_creatable(option, path, where);
  SEGRUN_CHECK(fs::is_directory(where, ec), ConfigError,
               option << " " << path << ": exists and is not a folder (" << purpose << ")");
  SEGRUN_CHECK(fs::is_empty(where, ec), ConfigError,
               option << " " << path << ": exists and is not empty (" << purpose << ")");
}

void require_new_empty_or_run_folder(const std::string& option, const std::string& dir) {
  refuse_dangling_link(option, dir);
  const fs::path where = resolved_output_path(dir);
  std::error_code ec;
  if (!fs::exists(where, ec)) return require_creatable(option, dir, where);
  SEGRUN_CHECK(fs::is_directory(where, ec), ConfigError, option << " " << dir << ": exists and is not a folder");
  SEGRUN_CHECK(fs::is_empty(where, ec) || RunFolder(where.string()).holds_run_files(), ConfigError,
               option << " " << dir
                      << ": not empty and not a segrun run folder (no status, overrides.json, checkpoint or rank log); "
                         "choose a new or empty folder, nothing in this one is overwritten");
}

void require_new_file(const std::string& option, const std::string& path) {
  refuse_dangling_link(option, path);  // the write would replace the link
  std::error_code ec;
  SEGRUN_CHECK(!fs::exists(resolved_output_path(path), ec), ConfigError,
               option << " " << path << ": already exists; nothing is overwritten, choose a new file name");
  const fs::path folder = fs::path(path).parent_path();
  SEGRUN_CHECK(folder.empty() || fs::is_directory(folder, ec), ConfigError,
               option << " " << path << ": the folder " << folder.string() << " does not exist");
}

}  // namespace segrun
