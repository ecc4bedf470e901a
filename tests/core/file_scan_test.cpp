// core/file_scan.h: the files a dataset scan sees -- through linked folders, each real folder
// once, hidden names skipped, sorted.
#include "core/file_scan.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "tests/scratch_dir.h"

namespace segrun {
namespace {

namespace fs = std::filesystem;

TEST(FileScan, LinkedFoldersAreEnteredOnceAndHiddenNamesSkipped) {
  segrun::testing::ScratchDir dir("file-scan");
  const fs::path split = dir.path() / "val", shared = dir.path() / "shared" / "lindau";
  fs::create_directories(split / "frankfurt");
  fs::create_directories(shared);
  fs::create_directories(split / ".git");
  std::ofstream(split / "frankfurt" / "b.png") << "x";
  std::ofstream(split / "frankfurt" / "._b.png") << "x";  // macOS resource fork
  std::ofstream(split / ".git" / "c.png") << "x";
  std::ofstream(split / "a.png") << "x";
  std::ofstream(shared / "d.png") << "x";
  fs::create_directory_symlink(shared, split / "lindau");
  fs::create_directory_symlink(split, shared / "loop");       // back up: entered once, then not again
  fs::create_symlink(split / "a.png", split / "e.png");       // a linked file is a file
  fs::create_symlink(split / "absent.png", split / "f.png");  // a dangling link is not
  EXPECT_EQ(files_in(split, /*recursive=*/true),
            (std::vector<fs::path>{split / "a.png", split / "e.png", split / "frankfurt" / "b.png",
                                   split / "lindau" / "d.png"}));
  EXPECT_EQ(files_in(split, /*recursive=*/false), (std::vector<fs::path>{split / "a.png", split / "e.png"}));
  EXPECT_TRUE(files_in(dir.path() / "absent", true).empty());
}

}  // namespace
}  // namespace segrun
