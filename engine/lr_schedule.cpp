#include "engine/lr_schedule.h"

#include <algorithm>
#include <cmath>

#include "core/config.h"
#include "core/error.h"

namespace segrun::engine {

void validate_lr_schedule(const TrainConfig& t) {
  SEGRUN_CHECK(t.iters > 0, ConfigError, "train.iters must be positive, got " << t.iters);
  SEGRUN_CHECK(t.warmup_iters >= 0, ConfigError, "train.warmup_iters must be >= 0, got " << t.warmup_iters);
  SEGRUN_CHECK(t.warmup_ratio >= 0.0 && t.warmup_ratio <= 1.0, ConfigError,
               "train.warmup_ratio must be in [0, 1], got " << t.warmup_ratio);
  SEGRUN_CHECK(t.poly_power >= 0.0, ConfigError, "train.poly_power must be >= 0, got " << t.poly_power);
  SEGRUN_CHECK(t.lr >= 0.0, ConfigError, "train.lr must be >= 0, got " << t.lr);
  SEGRUN_CHECK(t.min_lr >= 0.0, ConfigError, "train.min_lr must be >= 0, got " << t.min_lr);
}

double lr_at(const TrainConfig& t, int64_t iter, double lr_mult) {
  validate_lr_schedule(t);
  SEGRUN_CHECK(iter >= 0, ConfigError, "lr schedule: iteration must be >= 0, got " << iter);
  SEGRUN_CHECK(lr_mult >= 0.0, ConfigError, "lr schedule: a group's lr multiplier must be >= 0, got " << lr_mult);
  if (lr_mult == 0.0) return 0.0;
  const double base_lr = t.lr * lr_mult;
  const int64_t it = std::min(iter, t.iters);
  const double progress = static_cast<double>(it) / static_cast<double>(t.iters);
  const double regular = (base_lr - t.min_lr) * std::pow(1.0 - progress, t.poly_power) + t.min_lr;
  if (it >= t.warmup_iters) return regular;
  const double k = (1.0 - static_cast<double>(it) / static_cast<double>(t.warmup_iters)) * (1.0 - t.warmup_ratio);
  return regular * (1.0 - k);
}

}  // namespace segrun::engine
