// gtest main for single-process suites: quiet logging so test output stays readable.
#include <gtest/gtest.h>

#include "core/log.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  segrun::log::LogOptions options;
  options.level = "warn";
  segrun::log::init_logging(options);
  return RUN_ALL_TESTS();
}
