#include "core/file_scan.h"

#include <sys/stat.h>

#include <algorithm>
#include <set>
#include <system_error>
#include <utility>

#include "core/error.h"

namespace segrun {

namespace fs = std::filesystem;

namespace {

// Adds the files of `folder` (and of its subfolders when `recursive`) to `files`, visiting the
// entries in sorted order so that which name a folder reached twice is listed under is fixed.
void add_files(const fs::path& folder, bool recursive, std::set<std::pair<dev_t, ino_t>>& entered,
               std::vector<fs::path>& files) {
  struct stat info {};
  if (::stat(folder.c_str(), &info) != 0 || !entered.insert({info.st_dev, info.st_ino}).second) return;
  std::error_code ec;
  std::vector<fs::directory_entry> entries;
  for (fs::directory_iterator it(folder, ec); !ec && it != fs::directory_iterator(); it.increment(ec))
    if (it->path().filename().string().rfind('.', 0) != 0) entries.push_back(*it);
  if (ec) throw IoError(folder.string() + ": cannot list the folder: " + ec.message());
  std::sort(entries.begin(), entries.end());
  for (const fs::directory_entry& entry : entries) {
    std::error_code kind;
    if (entry.is_directory(kind)) {  // through a link too
      if (recursive) add_files(entry.path(), recursive, entered, files);
    } else if (entry.is_regular_file(kind)) {
      files.push_back(entry.path());
    }
  }
}

}  // namespace

std::vector<fs::path> files_in(const fs::path& dir, bool recursive) {
  std::vector<fs::path> files;
  std::set<std::pair<dev_t, ino_t>> entered;  // real folders, so that a link loop ends
  add_files(dir, recursive, entered, files);
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace segrun
