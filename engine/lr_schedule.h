#pragma once
// Learning-rate schedule: mmcv's PolyLrUpdaterHook with linear warmup, iteration-based.
// Pure functions, no state: the trainer asks lr_at(train, iter) every iteration, so resuming
// from a checkpoint only needs the iteration counter. Thread-safe.
//
// For a 0-based iteration `iter` (the number of iterations already done, mmcv's runner.iter):
//   regular(iter) = (base_lr - min_lr) * (1 - iter / max_iters)^power + min_lr
//   if iter < warmup_iters (mmcv warmup = 'linear'):
//     k      = (1 - iter / warmup_iters) * (1 - warmup_ratio)
//     lr     = regular(iter) * (1 - k)
//   else lr = regular(iter).
// So lr_at(0) = regular(0) * warmup_ratio, warmup ends continuously at regular(warmup_iters), and
// lr_at(max_iters) = min_lr. Iterations past max_iters are clamped to max_iters (lr = min_lr).
// A parameter group with a multiplier (backbone_lr_mult) has its own schedule, as mmcv's hook
// gives each group: base_lr = train.lr * lr_mult, and the same absolute floor min_lr (DenseCLIP's
// backbone at 0.1x decays from 1e-5 to 1e-6, not to 1e-7). A multiplier of 0 keeps the group at 0
// (mmcv would raise it towards min_lr; a user who writes 0 means frozen).

#include <cstdint>

namespace segrun {
struct TrainConfig;
}

namespace segrun::engine {

// The schedule reads the [train] section itself (TrainConfig: lr, iters, warmup_iters,
// warmup_ratio, poly_power, min_lr); no second options struct.

// Throws ConfigError naming the field when train.iters <= 0, warmup_iters < 0, warmup_ratio
// outside [0, 1], poly_power < 0, lr < 0 or min_lr < 0.
void validate_lr_schedule(const TrainConfig& train);

// The learning rate for 0-based iteration iter (>= 0; ConfigError otherwise) of a parameter group
// whose multiplier is lr_mult (>= 0).
double lr_at(const TrainConfig& train, int64_t iter, double lr_mult = 1.0);

}  // namespace segrun::engine
