#pragma once
// The iteration-based trainer (mmsegmentation style). One run trains on every rank of the world:
// the rank is placed on its device (dist.device: cuda:<local rank> or the CPU; batches arrive in
// pinned memory and copy asynchronously), the model is built there from config and rank 0's
// weights are broadcast; each iteration draws this rank's batch, computes the loss, averages
// gradients across ranks, clips, and steps AdamW (backbone lr x train.backbone_lr_mult) under a
// poly schedule with linear warmup. The forward pass and the loss run under autocast when
// train.precision is bf16 or fp16 (fp16 with dynamic loss scaling; skipped steps are counted in
// metrics.jsonl; engine/precision.h). Every log.interval iterations a progress line (iteration,
// loss, lr, images/s, ETA) and a metrics.jsonl record; every train.eval_interval an evaluation;
// every train.checkpoint_interval a checkpoint (rank 0); under train.save_best, rank 0 also keeps
// checkpoints/best.pt, the model of the best validation so far (result.json's best_<metric>).
// Resuming continues the same computation: data order, augmentation and every random draw of the
// model (dropout, batch drop, point sampling; keyed per sample, models/sample_random.h) depend
// only on (seed, iteration, sample), never on the rank: N ranks x batch b compute what 1 rank x
// batch N*b does (docs/distributed.md).
//
// Stopping: SIGINT, SIGTERM, SIGHUP (unless ignored: nohup) and the configured preemption signal (cluster.slurm.signal:
// USR1, USR2 or TERM; with TERM also SIGUSR1, which local launchers send; core/stop_request.h) request a stop; all
// ranks agree on it at the
// end of the iteration, rank 0 writes a checkpoint and marks the run "preempted", and train() reports finished = false
// (exit 75).
//
// `Trainer` holds one run's state; run() is set_up(), resume(), then step() per iteration with
// end_of_iteration() (log, evaluate, checkpoint, agree on a stop), then finish(). The steps are
// public so that tests (or a profiler) can drive them one by one.

#include <memory>
#include <string>
#include <vector>

#include "core/config.h"
#include "dist/rank_context.h"
#include "engine/metrics.h"
#include "engine/train_request.h"

namespace segrun::engine {

struct TrainOutcome {
  bool finished = false;   // false: stopped by a signal (preempted), resumable
  int64_t iterations = 0;  // iterations completed (including those before a resume)
  double seconds = 0.0;    // wall time of this invocation
  bool evaluated = false;
  EvalOutcome evaluation;  // the last evaluation (when a val_store is configured); the final
                           // one has the multi-scale part when eval.report_ms
  std::vector<std::string> class_names;
};

class Trainer {
 public:
  // Checks the request (check_train_request: nothing is overwritten, a resume keeps the run's
  // config); throws ConfigError naming the field, folder or key.
  Trainer(const Config& config, const dist::RankContext& context, TrainRequest request);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  // The whole run (nothing for --resume auto of a done run whose newest checkpoint is at
  // train.iters: finished, nothing written); marks the run folder failed (with the reason) when a step throws, unless
  // it throws before training began in a run folder that already has a status (a mistaken resume leaves a finished or
  // preempted run as it was).
  TrainOutcome run();

  // Run folder, logging, stop handlers, device and communicators, stores, model (rank 0's weights
  // broadcast), optimizer. Writes nothing into the run folder but its logs.
  void set_up();
  // Loads the checkpoint the request names (auto: the newest readable one; ConfigError when it is
  // past train.iters or was trained on another number of ranks: another global batch), then builds the gradient sync
  // and the data loader, positioned after the checkpoint; returns the next iteration (0 when fresh). Training begins
  // here: rank 0 writes config.toml and status "running" and opens the TensorBoard writer.
  int64_t resume();
  // One training iteration `iter`: batch, forward under autocast, backward, gradient all-reduce,
  // clip and optimizer step (or an fp16 skip). Losses accumulate on the device for log_window.
  void step(int64_t iter);
  // After step(iter): the log line and metrics record when due, periodic evaluation and
  // checkpoint; then all ranks agree on a stop request. Returns true when the run must stop.
  bool end_of_iteration(int64_t iter);
  // The loss averaged over the iterations since the last log line and over the ranks; writes the
  // log line and (rank 0) the metrics.jsonl record for iteration `done`.
  double log_window(int64_t done);
  // Validation on data.val_store (no-op without one); final adds multi-scale when eval.report_ms.
  // Under train.save_best, a validation that beats the best so far writes checkpoints/best.pt.
  void evaluate(int64_t iter, bool final_eval);
  // Rank 0 writes checkpoints/iter_<next_iter>.pt; every rank waits for it.
  void checkpoint(int64_t next_iter);
  // True on every rank when any rank received a stop signal.
  bool agree_to_stop();
  // Checkpoint and status: "preempted" after a stop at `next_iter`, else the final evaluation,
  // result.json and "done".
  TrainOutcome finish(int64_t next_iter, bool stopped);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// Trainer(config, context, request).run().
TrainOutcome train(const Config& config, const dist::RankContext& context, const TrainRequest& request);

}  // namespace segrun::engine
