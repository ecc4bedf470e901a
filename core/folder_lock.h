#pragma once
// Exclusive use of a folder by one process: an flock on a lock file in it, held while the
// FolderLock lives and released by the kernel when the process exits or dies, so a crash leaves
// no stale lock (an NFS client's lock lasts until the server's lease ends). The file names its
// holder ("pid 1234 on node7 since 2026-12-06 10:02:11") for the message of whoever finds it
// taken. Where the file system has no flock (Lustre without -o flock), locking is a no-op and
// lock_holder answers nullopt. Thread-compatible.

#include <optional>
#include <string>

namespace segrun {

class FolderLock {
 public:
  // Takes the lock on `lock_path` (created when missing); nullopt when another open of the file
  // holds it. IoError naming the file when it cannot be created.
  static std::optional<FolderLock> try_take(const std::string& lock_path);

  FolderLock(FolderLock&& other) noexcept;
  FolderLock& operator=(FolderLock&& other) noexcept;
  FolderLock(const FolderLock&) = delete;
  FolderLock& operator=(const FolderLock&) = delete;
  ~FolderLock();

 private:
  explicit FolderLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

// Whether somebody holds `lock_path` now: its holder line ("pid 1234 on node7 since ...", or
// "another process" when the file does not say); "" when nobody does; nullopt when it cannot be
// known (no such file, or no flock on this file system).
std::optional<std::string> lock_holder(const std::string& lock_path);

}  // namespace segrun
