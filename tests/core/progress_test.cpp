// Progress text, the rate and ETA it shows, when it prints in each style, and the style's choice.
#include "core/progress.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"

namespace segrun {
namespace {

TEST(Progress, DurationsAreHoursMinutesSeconds) {
  EXPECT_EQ(format_duration(0), "0:00:00");
  EXPECT_EQ(format_duration(59.6), "0:01:00");
  EXPECT_EQ(format_duration(3723), "1:02:03");
  EXPECT_EQ(format_duration(-1), "?");
}

TEST(Progress, TextHasCountPercentRateAndEta) {
  // 120 of 500 in 4 s: 30/s, 380 left -> 12.67 s -> 0:00:13.
  EXPECT_EQ(progress_text("pack", 120, 500, "records", 4.0), "pack 120/500 records (24%) 30/s eta 0:00:13");
  EXPECT_EQ(progress_text("pack", 0, 500, "records", 0.0), "pack 0/500 records (0%) 0/s eta ?");
  EXPECT_EQ(progress_text("submit", 7, 0, "runs", 2.0), "submit 7 runs 3.5/s");
  EXPECT_EQ(progress_text("sweep", 2, 8, "runs", 3600.0), "sweep 2/8 runs (25%) 2/h eta 3:00:00");
  // Three significant digits, never an exponent.
  EXPECT_EQ(progress_text("pack", 14600, 0, "records", 10.0), "pack 14600 records 1460/s");
  EXPECT_EQ(progress_text("pack", 1234, 0, "records", 10.0), "pack 1234 records 123/s");
  EXPECT_EQ(progress_text("pack", 10, 0, "records", 3.0), "pack 10 records 3.33/s");
  EXPECT_EQ(progress_text("pack", 9997, 0, "records", 10.0), "pack 9997 records 1000/s");
}

// A loop an exception leaves has no summary line (count, time, rate) above the error; the line the
// terminal shows ends as it stands.
TEST(Progress, ALoopLeftByAnExceptionHasNoSummary) {
  for (const ProgressStyle style : {ProgressStyle::kLines, ProgressStyle::kTerminal}) {
    std::vector<std::pair<std::string, bool>> lines;
    double now = 0;
    try {
      Progress p(
          "eval", 10, "images", style, 30.0, [&] { return now; },
          [&](const std::string& text, bool final_line) { lines.emplace_back(text, final_line); });
      now += 40;
      p.advance();
      throw std::runtime_error("image 2 cannot be read");
    } catch (const std::runtime_error&) {
    }
    ASSERT_EQ(lines.size(), style == ProgressStyle::kTerminal ? 2u : 1u);
    EXPECT_EQ(lines[0].first, "eval 1/10 images (10%) 1.5/min eta 0:06:00");
    if (style == ProgressStyle::kTerminal) {
      EXPECT_EQ(lines[1], std::make_pair(lines[0].first, true));
    }
  }
}

struct Recorded {
  std::vector<std::pair<std::string, bool>> lines;
  double now = 100.0;
};

TEST(Progress, LinesStylePrintsEveryIntervalAndOnceAtTheEnd) {
  Recorded r;
  {
    Progress p(
        "eval", 10, "images", ProgressStyle::kLines, 30.0, [&] { return r.now; },
        [&](const std::string& text, bool final_line) { r.lines.emplace_back(text, final_line); });
    for (int i = 0; i < 10; ++i) {
      r.now += 10.0;  // one image every 10 s: a line at 30 s and at 60 s and 90 s
      p.advance();
    }
  }  // the destructor writes the final line
  ASSERT_EQ(r.lines.size(), 4u);
  EXPECT_EQ(r.lines[0].first, "eval 3/10 images (30%) 6/min eta 0:01:10");
  EXPECT_FALSE(r.lines[0].second);
  EXPECT_EQ(r.lines[2].first, "eval 9/10 images (90%) 6/min eta 0:00:10");
  EXPECT_EQ(r.lines[3].first, "eval 10 images in 0:01:40 (6/min)");
  EXPECT_TRUE(r.lines[3].second);
}

TEST(Progress, TerminalStyleRedrawsAtMostFiveTimesASecond) {
  Recorded r;
  Progress p(
      "pack", 1000, "records", ProgressStyle::kTerminal, 30.0, [&] { return r.now; },
      [&](const std::string& text, bool final_line) { r.lines.emplace_back(text, final_line); });
  for (int i = 0; i < 1000; ++i) {
    r.now += 0.001;  // 1 s in all
    p.advance();
  }
  p.finish();
  p.finish();  // once only
  EXPECT_GE(r.lines.size(), 5u);
  EXPECT_LE(r.lines.size(), 6u);
  EXPECT_TRUE(r.lines.back().second);
}

TEST(Progress, OffPrintsNothing) {
  Recorded r;
  {
    Progress p(
        "x", 3, "items", ProgressStyle::kOff, 0.0, [&] { return r.now; },
        [&](const std::string& text, bool final_line) { r.lines.emplace_back(text, final_line); });
    p.advance(3);
  }
  EXPECT_TRUE(r.lines.empty());
}

TEST(Progress, TheEnvironmentChoosesTheStyleAndAWrongValueIsNamed) {
  setenv("SEGRUN_PROGRESS", "lines", 1);
  EXPECT_EQ(progress_style(), ProgressStyle::kLines);
  setenv("SEGRUN_PROGRESS", "off", 1);
  EXPECT_EQ(progress_style(), ProgressStyle::kOff);
  setenv("SEGRUN_PROGRESS", "bars", 1);
  try {
    progress_style();
    ADD_FAILURE() << "accepted bars";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("SEGRUN_PROGRESS"), std::string::npos);
  }
  unsetenv("SEGRUN_PROGRESS");
  setenv("SLURM_JOB_ID", "42", 1);  // under Slurm: log lines, even on a terminal
  EXPECT_EQ(progress_style(), ProgressStyle::kLines);
  unsetenv("SLURM_JOB_ID");
}

}  // namespace
}  // namespace segrun
