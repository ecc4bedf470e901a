#pragma once
// A scratch directory for tests, removed with everything in it on destruction. The name carries
// a tag and the process id, so concurrent test processes never share one.

#include <unistd.h>

#include <filesystem>
#include <string>

namespace segrun::testing {

class ScratchDir {
 public:
  explicit ScratchDir(const std::string& tag = "scratch")
      : path_(std::filesystem::temp_directory_path() / ("segrun-" + tag + "-" + std::to_string(::getpid()))) {
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::string str(const std::string& name = "") const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

}  // namespace segrun::testing
