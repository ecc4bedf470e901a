#include "core/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>

#include "core/error.h"

namespace segrun {
namespace {

namespace fs = std::filesystem;

std::string os_error(int err) { return std::strerror(err); }

void fsync_directory_of(const std::string& path) {
  fs::path dir = fs::absolute(fs::path(path)).parent_path();
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

}  // namespace

std::string temp_path_for(const std::string& final_path) { return final_path + ".tmp-" + std::to_string(::getpid()); }

void write_file_atomic(const std::string& path, std::string_view content) {
  std::string tmp = temp_path_for(path);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw IoError(path + ": cannot create temporary file: " + os_error(errno));
  size_t written = 0;
  while (written < content.size()) {
    ssize_t n = ::write(fd, content.data() + written, content.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      throw IoError(path + ": write failed: " + os_error(err));
    }
    written += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    int err = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    throw IoError(path + ": fsync failed: " + os_error(err));
  }
  if (::close(fd) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    throw IoError(path + ": close failed: " + os_error(err));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    throw IoError(path + ": rename failed: " + os_error(err));
  }
  fsync_directory_of(path);
}

void append_line(const std::string& path, std::string_view line) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) throw IoError(path + ": cannot open for append: " + os_error(errno));
  std::string buffer(line);
  buffer.push_back('\n');
  // A write cut short (a full disk) is retried for the OS's reason, and what it wrote is taken
  // back: the file never ends in a piece of a line that a later append would bury in its middle.
  struct stat before {};
  const bool sized = ::fstat(fd, &before) == 0;
  size_t written = 0;
  int err = 0;
  while (written < buffer.size()) {
    const ssize_t n = ::write(fd, buffer.data() + written, buffer.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      err = n < 0 ? errno : EIO;
      break;
    }
    written += static_cast<size_t>(n);
  }
  if (written != buffer.size() && written > 0 && sized && ::ftruncate(fd, before.st_size) != 0) {
    // the append's own error is the one to report
  }
  ::close(fd);
  if (written != buffer.size()) throw IoError(path + ": append failed: " + os_error(err));
}

bool path_exists(const std::string& path) {
  std::error_code ec;
  return std::filesystem::exists(path, ec);
}

std::string read_file(const std::string& path) {
  // Linux opens a folder for reading and then reads nothing: it would parse as an empty file.
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) throw IoError(path + ": a folder, not a file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError(path + ": cannot open for reading");
  std::ostringstream os;
  os << in.rdbuf();
  if (in.bad()) throw IoError(path + ": read failed");
  return os.str();
}

}  // namespace segrun
