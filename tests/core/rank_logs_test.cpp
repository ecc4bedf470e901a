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

}  // namespace
}  // namespace segrun::log
