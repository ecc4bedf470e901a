#include "core/folder_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

#include "core/error.h"
#include "core/process.h"

namespace segrun {

namespace {

// flock's answer when the file system does not implement it.
bool flock_unsupported(int error) { return error == ENOSYS || error == EOPNOTSUPP || error == ENOLCK; }

std::string holder_line() {
  const std::string host = process::host_name().empty() ? "?" : process::host_name();
  char when[32] = {};
  const std::time_t now = std::time(nullptr);
  std::tm local{};
  ::localtime_r(&now, &local);
  std::strftime(when, sizeof(when), "%F %T", &local);
  return "pid " + std::to_string(::getpid()) + " on " + host + " since " + when + "\n";
}

}  // namespace

std::optional<FolderLock> FolderLock::try_take(const std::string& lock_path) {
  const int fd = ::open(lock_path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
  if (fd < 0) throw IoError(lock_path + ": cannot open lock file: " + std::strerror(errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int error = errno;
    if (flock_unsupported(error)) return FolderLock(fd);  // nothing to hold; keep the file open
    ::close(fd);
    if (error == EWOULDBLOCK) return std::nullopt;
    throw IoError(lock_path + ": cannot lock: " + std::strerror(error));
  }
  const std::string line = holder_line();
  if (::ftruncate(fd, 0) == 0) {  // the holder line is for messages only: the lock holds without it
    const ssize_t written = ::pwrite(fd, line.data(), line.size(), 0);
    (void)written;
  }
  return FolderLock(fd);
}

FolderLock::FolderLock(FolderLock&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }

FolderLock& FolderLock::operator=(FolderLock&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

FolderLock::~FolderLock() {
  if (fd_ >= 0) ::close(fd_);
}

std::optional<std::string> lock_holder(const std::string& lock_path) {
  const int fd = ::open(lock_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::optional<std::string> holder;
  if (::flock(fd, LOCK_SH | LOCK_NB) == 0) {
    holder = "";
  } else if (errno == EWOULDBLOCK) {
    char text[256] = {};
    const ssize_t n = ::pread(fd, text, sizeof(text) - 1, 0);
    std::string line = n > 0 ? std::string(text, static_cast<size_t>(n)) : std::string();
    line = line.substr(0, line.find('\n'));
    holder = line.empty() ? "another process" : line;
  }
  ::close(fd);
  return holder;
}

}  // namespace segrun
