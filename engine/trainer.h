#pragma once
// The iteration-based trainer (mmsegmentation style). One call trains one run on every rank of
// the world: it places the rank on its device (dist.device: cuda:<local rank> or the CPU; batches
// arrive in pinned memory and copy asynchronously), builds the model there from config,
// broadcasts rank 0's weights, and for each
// iteration draws this rank's batch, computes the loss, averages gradients across ranks,
// clips, and steps AdamW (backbone lr x train.backbone_lr_mult) under a poly schedule with linear
// warmup. The forward pass and the loss run under autocast when train.precision is bf16 or fp16
// (fp16 with dynamic loss scaling; skipped steps are counted in metrics.jsonl; engine/precision.h). Every log.interval iterations it logs a progress line (iteration, loss, lr, images/s,
// ETA) and a metrics.jsonl record; every train.eval_interval it evaluates; every
// train.checkpoint_interval it checkpoints (rank 0). Resuming continues the same computation:
// data order, augmentation and every random draw of the model (dropout, batch drop, point
// sampling; keyed per sample, models/sample_random.h) depend only on (seed, iteration, sample),
// never on the rank: N ranks x batch b compute what 1 rank x batch N*b does (docs/distributed.md).
// SIGTERM/SIGUSR1/SIGINT request a stop: all ranks agree on it at the end of the iteration,
// rank 0 writes a checkpoint and marks the run "preempted".

#include <memory>
#include <string>
#include <vector>

#include "core/config.h"
#include "dist/rank_context.h"
#include "engine/metrics.h"

namespace segrun::engine {

struct TrainRequest {
  std::string run_dir;   // required
  std::string resume;    // "" (fresh; refuses a run dir that has checkpoints), "auto", or a path
};

struct TrainOutcome {
  bool finished = false;     // false: stopped by a signal (preempted), resumable
  int64_t iterations = 0;    // iterations completed (including those before a resume)
  double seconds = 0.0;      // wall time of this invocation
  bool evaluated = false;
  EvalOutcome evaluation;    // the last evaluation (when a val_store is configured); the final
                             // one has the multi-scale part when eval.report_ms
  std::vector<std::string> class_names;
};

TrainOutcome train(const Config& config, const dist::RankContext& context, const TrainRequest& request);

// Installs handlers for SIGTERM, SIGUSR1 and SIGINT that request a clean stop (idempotent).
void install_stop_handlers();
bool stop_requested();

}  // namespace segrun::engine
