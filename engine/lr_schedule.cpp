#include "engine/lr_schedule.h"

#include <algorithm>
#include <cmath>

#include "core/config.h"
#include "core/error.h"

namespace segrun::engine {

void validate(const LrScheduleOptions& o) {
  SEGRUN_CHECK(o.max_iters > 0, ConfigError, "train.iters must be positive, got " << o.max_iters);
  SEGRUN_CHECK(o.warmup_iters >= 0, ConfigError,
               "train.warmup_iters must be >= 0, got " << o.warmup_iters);
  SEGRUN_CHECK(o.warmup_ratio >= 0.0 && o.warmup_ratio <= 1.0, ConfigError,
               "train.warmup_ratio must be in [0, 1], got " << o.warmup_ratio);
  SEGRUN_CHECK(o.power >= 0.0, ConfigError, "train.poly_power must be >= 0, got " << o.power);
  SEGRUN_CHECK(o.base_lr >= 0.0, ConfigError, "train.lr must be >= 0, got " << o.base_lr);
  SEGRUN_CHECK(o.min_lr >= 0.0, ConfigError, "train.min_lr must be >= 0, got " << o.min_lr);
}

double lr_at(const LrScheduleOptions& o, int64_t iter) {
  validate(o);
  SEGRUN_CHECK(iter >= 0, ConfigError, "lr schedule: iteration must be >= 0, got " << iter);
  const int64_t it = std::min(iter, o.max_iters);
  const double progress = static_cast<double>(it) / static_cast<double>(o.max_iters);
  const double regular = (o.base_lr - o.min_lr) * std::pow(1.0 - progress, o.power) + o.min_lr;
  if (it >= o.warmup_iters) return regular;
  const double k = (1.0 - static_cast<double>(it) / static_cast<double>(o.warmup_iters)) *
                   (1.0 - o.warmup_ratio);
  return regular * (1.0 - k);
}

LrScheduleOptions lr_schedule_options(const TrainConfig& train) {
  LrScheduleOptions o;
  o.base_lr = train.lr;
  o.max_iters = train.iters;
  o.warmup_iters = train.warmup_iters;
  o.warmup_ratio = train.warmup_ratio;
  o.power = train.poly_power;
  o.min_lr = train.min_lr;
  return o;
}

}  // namespace segrun::engine
