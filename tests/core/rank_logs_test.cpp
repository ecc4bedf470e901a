// core/rank_logs.h: the first error the ranks logged after a launch began, by time across the
// files, with its rank; what the files held before is not this launch's.
#include "core/rank_logs.h"

#include <gtest/gtest.h>

#include <fstream>

#include "tests/scratch_dir.h"

namespace segrun::log {
namespace {

TEST(RankLogs, TheEarliestNewErrorNamesItsRank) {
  segrun::testing::ScratchDir dir("rank-logs");
  const std::string r0 = dir.str("rank-0.log"), r1 = dir.str("rank-1.log");
  std::ofstream(r0) << "2026-12-06 09:00:00.000 error r0/2 an earlier launch's error\n";
  std::ofstream(r1) << "";
  const auto before = log_sizes(dir.str());
  EXPECT_EQ(before.at(r1), 0u);
  EXPECT_EQ(first_error_since(dir.str(), before), "");
  std::ofstream(r0, std::ios::app) << "2026-12-06 10:00:01.500 info  r0/2 a word about an error r9/9 here\n"
                                   << "2026-12-06 10:00:02.000 error r0/2 watchdog: rank [1] did not arrive\n";
  std::ofstream(r1, std::ios::app) << "2026-12-06 10:00:01.000 error r1/2 shard-1.h5: record 10: CRC mismatch\n"
                                   << "2026-12-06 10:00:03.000 error r1/2 a later line\n";
  EXPECT_EQ(first_error_since(dir.str(), before), "rank 1: shard-1.h5: record 10: CRC mismatch (" + r1 + ")");
  EXPECT_EQ(first_error_since(dir.str(), {}), "rank 0: an earlier launch's error (" + r0 + ")");
}

// The world that wrote the latest checkpoint is what a resume needs, whatever a failed attempt on
// another world logged after it; found however far back its line lies.
TEST(RankLogs, TheCheckpointsWorldIsTheOneThatWroteTheLastCheckpoint) {
  segrun::testing::ScratchDir dir("rank-logs");
  const std::string r0 = dir.str("rank-0.log");
  EXPECT_EQ(checkpoint_world_size(dir.str()), 0);  // no log
  EXPECT_EQ(last_world_size(dir.str()), 1);
  std::ofstream(r0) << "2026-12-07 10:00:00.000 info  r0/1 iter 10/20 loss 1.0\n"
                    << "2026-12-07 10:00:01.000 info  r0/1 a checkpoint is not named here\n";
  EXPECT_EQ(checkpoint_world_size(dir.str()), 0);
  {
    std::ofstream log(r0, std::ios::app);
    log << "2026-12-07 10:00:02.000 info  r0/1 checkpoint runs/a/checkpoints/iter_10.pt\n";
    // Far more than one 64 KiB read of later lines, one of them longer than a read.
    for (int i = 0; i < 3000; ++i) log << "2026-12-07 10:00:03.000 info  r0/1 iter " << i << " loss 1.0\n";
    log << "2026-12-07 10:00:04.000 info  r0/1 " << std::string(150000, 'x') << "\n";
    log << "2026-12-07 11:00:00.000 error r0/2 the resume on 2 ranks was refused\n"
        << "  a continuation line of that error";  // no final line break
  }
  EXPECT_EQ(checkpoint_world_size(dir.str()), 1);
  EXPECT_EQ(last_world_size(dir.str()), 2);
  std::ofstream(r0, std::ios::app) << "\n2026-12-07 12:00:00.000 info  r0/4 checkpoint runs/a/checkpoints/iter_20.pt\n";
  EXPECT_EQ(checkpoint_world_size(dir.str()), 4);
  std::ofstream(r0) << "2026-12-07 10:00:02.000 info  r0/3 checkpoint iter_10.pt";  // the file's only line
  EXPECT_EQ(checkpoint_world_size(dir.str()), 3);
}

// A log holding megabytes without a line break (garbage, a binary written into it) is read past,
// each byte once, to the lines before it.
TEST(RankLogs, ALineOfManyReadsIsReadPastWhole) {
  segrun::testing::ScratchDir dir("rank-logs-long");
  {
    std::ofstream log(dir.str("rank-0.log"));
    log << "2026-12-07 10:00:02.000 info  r0/2 checkpoint runs/a/checkpoints/iter_10.pt\n";
    log << std::string(8 << 20, '\x01') << "\n2026-12-07 10:00:03.000 info  r0/1 stop\n";
  }
  EXPECT_EQ(checkpoint_world_size(dir.str()), 2);
  EXPECT_EQ(last_world_size(dir.str()), 1);
  std::ofstream(dir.str("rank-0.log"), std::ios::app) << std::string(3 << 20, 'x');
  EXPECT_EQ(last_world_size(dir.str()), 1);
}

}  // namespace
}  // namespace segrun::log
