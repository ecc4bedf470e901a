// core/folder_lock.h: one holder at a time, named to whoever finds the lock taken; released when
// the holder lets go or its process dies (no stale lock after a crash).
#include "core/folder_lock.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <string>

namespace segrun {
namespace {

namespace fs = std::filesystem;

class FolderLockTest : public ::testing::Test {
 protected:
  FolderLockTest() : dir_(fs::temp_directory_path() / ("segrun-folder-lock-" + std::to_string(::getpid()))) {
    fs::create_directories(dir_);
  }
  ~FolderLockTest() override { fs::remove_all(dir_); }
  std::string lock_path() const { return (dir_ / ".lock").string(); }

 private:
  fs::path dir_;
};

TEST_F(FolderLockTest, OneHolderAtATimeNamedToTheOthers) {
  EXPECT_EQ(lock_holder(lock_path()), std::nullopt);  // no file: cannot be known
  {
    std::optional<FolderLock> held = FolderLock::try_take(lock_path());
    ASSERT_TRUE(held);
    EXPECT_FALSE(FolderLock::try_take(lock_path()));  // a second open of the file is refused
    const std::optional<std::string> holder = lock_holder(lock_path());
    ASSERT_TRUE(holder);
    EXPECT_EQ(holder->rfind("pid " + std::to_string(::getpid()) + " on ", 0), 0u) << *holder;
    EXPECT_NE(holder->find(" since 20"), std::string::npos) << *holder;
    FolderLock moved = std::move(*held);  // moving keeps it held
    held.reset();
    EXPECT_FALSE(FolderLock::try_take(lock_path()));
  }
  EXPECT_EQ(lock_holder(lock_path()), "");  // let go: nobody holds it
  EXPECT_TRUE(FolderLock::try_take(lock_path()));
}

TEST_F(FolderLockTest, AProcessThatDiesReleasesIt) {
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t child = ::fork();
  if (child == 0) {
    std::optional<FolderLock> lock = FolderLock::try_take(lock_path());
    const char ok = lock ? '1' : '0';
    (void)!::write(ready[1], &ok, 1);
    ::pause();  // killed while holding it
    ::_exit(0);
  }
  char ok = 0;
  ASSERT_EQ(::read(ready[0], &ok, 1), 1);
  ASSERT_EQ(ok, '1');
  EXPECT_EQ(lock_holder(lock_path()).value_or("").rfind("pid " + std::to_string(child) + " on ", 0), 0u);
  EXPECT_FALSE(FolderLock::try_take(lock_path()));
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  EXPECT_EQ(lock_holder(lock_path()), "");
  EXPECT_TRUE(FolderLock::try_take(lock_path()));
  ::close(ready[0]);
  ::close(ready[1]);
}

}  // namespace
}  // namespace segrun
