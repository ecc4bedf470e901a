#include "core/file_scan.h"

#include <sys/stat.h>

#include <algorithm>
#include <set>
#include <system_error>
#include <utility>

#include "core/error.h"

namespace segrun {

namespace fs = std::filesystem;

std::vector<fs::path> files_in(const fs::path& dir, bool recursive) {
  std::vector<fs::path> files;
  std::set<std::pair<dev_t, ino_t>> entered;  // real folders, so that a link loop ends
  std::vector<fs::path> folders{dir};
  while (!folders.empty()) {
    const fs::path folder = std::move(folders.back());
    folders.pop_back();
    struct stat info {};
    if (::stat(folder.c_str(), &info) != 0 || !entered.insert({info.st_dev, info.st_ino}).second) continue;
    std::error_code ec;
    fs::directory_iterator it(folder, ec);
    if (ec) throw IoError(folder.string() + ": cannot list the folder: " + ec.message());
    for (; it != fs::directory_iterator(); it.increment(ec)) {
      if (it->path().filename().string().rfind('.', 0) == 0) continue;
      std::error_code kind;
      if (it->is_directory(kind)) {  // through a link too
        if (recursive) folders.push_back(it->path());
      } else if (it->is_regular_file(kind)) {
        files.push_back(it->path());
      }
    }
    if (ec) throw IoError(folder.string() + ": cannot list the folder: " + ec.message());
  }
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace segrun
