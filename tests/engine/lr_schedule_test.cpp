#include <gtest/gtest.h>

#include <string>

#include "core/config.h"
#include "core/error.h"
#include "engine/lr_schedule.h"

namespace segrun::engine {
namespace {

TrainConfig linear_options() {
  // power 1 and min_lr 0 keep the expected values hand-computable:
  // regular(i) = 0.01 * (1 - i/100); warmup k = (1 - i/10) * 0.9; lr = regular * (1 - k).
  TrainConfig o;
  o.lr = 0.01;
  o.iters = 100;
  o.warmup_iters = 10;
  o.warmup_ratio = 0.1;
  o.poly_power = 1.0;
  o.min_lr = 0.0;
  return o;
}

TEST(LrSchedule, LinearWarmupHandValues) {
  const auto o = linear_options();
  EXPECT_NEAR(lr_at(o, 0), 0.001, 1e-15);     // 0.01 * (1 - 0.9)
  EXPECT_NEAR(lr_at(o, 5), 0.005225, 1e-15);  // 0.0095 * (1 - 0.45)
  EXPECT_NEAR(lr_at(o, 9), 0.008281, 1e-15);  // 0.0091 * (1 - 0.09)
  EXPECT_NEAR(lr_at(o, 10), 0.009, 1e-15);    // warmup over: regular(10)
  EXPECT_NEAR(lr_at(o, 50), 0.005, 1e-15);
  EXPECT_NEAR(lr_at(o, 99), 0.0001, 1e-15);
  EXPECT_NEAR(lr_at(o, 100), 0.0, 1e-15);
  EXPECT_NEAR(lr_at(o, 1000), 0.0, 1e-15);  // clamped past the end
}

TEST(LrSchedule, PolyPowerWithMinLr) {
  auto o = linear_options();
  o.poly_power = 0.9;
  o.min_lr = 1e-4;
  // Reference values from an independent Python evaluation of mmcv's formulas.
  EXPECT_NEAR(lr_at(o, 0), 0.001, 1e-15);  // regular(0) = base_lr, times warmup_ratio
  EXPECT_NEAR(lr_at(o, 3), 0.003600948990443528, 1e-15);
  EXPECT_NEAR(lr_at(o, 10), 0.009104372503221327, 1e-15);
  EXPECT_NEAR(lr_at(o, 50), 0.005405278639554652, 1e-15);  // 0.0099 * 0.5^0.9 + 1e-4
  EXPECT_NEAR(lr_at(o, 99), 0.00025690442605365033, 1e-15);
  EXPECT_DOUBLE_EQ(lr_at(o, 100), 1e-4);
}

// mmcv's hook gives each parameter group its own schedule from its initial lr (train.lr x the
// group's multiplier) down to the same absolute min_lr: DenseCLIP's backbone (0.1x) ends at
// min_lr, not at a tenth of it. Reference values: mmcv's formulas in Python with base_lr = 0.001.
TEST(LrSchedule, AGroupWithAMultiplierDecaysToTheSameFloor) {
  auto o = linear_options();
  o.poly_power = 0.9;
  o.min_lr = 1e-4;
  EXPECT_NEAR(lr_at(o, 0, 0.1), 9.999999999999998e-05, 1e-18);
  EXPECT_NEAR(lr_at(o, 3, 0.1), 0.0003609953627675935, 1e-18);
  EXPECT_NEAR(lr_at(o, 50, 0.1), 0.0005822980581413319, 1e-18);
  EXPECT_NEAR(lr_at(o, 99, 0.1), 0.00011426403873215003, 1e-18);
  EXPECT_DOUBLE_EQ(lr_at(o, 100, 0.1), 1e-4);
  EXPECT_DOUBLE_EQ(lr_at(o, 50, 1.0), lr_at(o, 50));
  EXPECT_EQ(lr_at(o, 50, 0.0), 0.0);  // a group meant frozen stays frozen
  EXPECT_THROW(lr_at(o, 50, -1.0), ConfigError);
}

TEST(LrSchedule, NoWarmupAndContinuity) {
  auto o = linear_options();
  o.warmup_iters = 0;
  EXPECT_NEAR(lr_at(o, 0), 0.01, 1e-15);
  o = linear_options();
  o.poly_power = 0.9;
  for (int64_t i = 1; i < o.iters; ++i) {
    // Monotone ramp during warmup, monotone decay after it.
    if (i <= o.warmup_iters)
      EXPECT_GT(lr_at(o, i), lr_at(o, i - 1)) << i;
    else
      EXPECT_LT(lr_at(o, i), lr_at(o, i - 1)) << i;
  }
}

TEST(LrSchedule, RejectsBadOptions) {
  auto o = linear_options();
  EXPECT_THROW(lr_at(o, -1), ConfigError);
  o.iters = 0;
  EXPECT_THROW(lr_at(o, 0), ConfigError);
  o = linear_options();
  o.warmup_ratio = 1.5;
  EXPECT_THROW(validate_lr_schedule(o), ConfigError);
  o = linear_options();
  o.warmup_iters = -3;
  EXPECT_THROW(validate_lr_schedule(o), ConfigError);
}

TEST(LrSchedule, ErrorsNameTheTrainField) {
  auto message_of = [](const TrainConfig& t) {
    try {
      validate_lr_schedule(t);
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  auto o = linear_options();
  o.poly_power = -1;
  EXPECT_EQ(message_of(o), "train.poly_power must be >= 0, got -1");
  o = linear_options();
  o.min_lr = -1e-3;
  EXPECT_EQ(message_of(o).rfind("train.min_lr must be >= 0", 0), 0u);
  EXPECT_EQ(message_of(linear_options()), "");
}

}  // namespace
}  // namespace segrun::engine
