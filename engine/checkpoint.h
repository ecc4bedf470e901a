#pragma once
// Training checkpoints: everything needed to resume bit-for-bit. A checkpoint holds the model's
// parameters and buffers by name, the optimizer state, the next iteration, and the run's identity
// (seed, world size, model signature). The data order and every random draw are functions of
// (seed, iteration, sample), so the iteration is the whole sampler/RNG position.
// save_checkpoint writes "<dir>/iter_<n>.pt" through a temp file + fsync + rename (a crash never
// leaves a partial file under the final name), updates "<dir>/latest", and keeps the newest
// `keep` checkpoints. save_best_checkpoint writes "<dir>/best.pt" the same way (train.save_best)
// and touches neither `latest` nor the iter_<n>.pt files, which never prune it. Only rank 0 calls
// them. Loading checks every name and shape and throws CheckpointError naming the file and the
// first mismatch.
// Checkpoints are device-independent: model tensors are written from host copies, and loading
// maps every stored tensor (optimizer state too) onto the device of the model's parameters, so a
// GPU run's checkpoint evaluates on a CPU-only machine and a CPU checkpoint resumes on a GPU.

#include <torch/torch.h>

#include "core/error.h"

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace segrun::engine {

inline constexpr const char* kBestCheckpointName = "best.pt";

// The best validation so far under train.save_best (a metric name: mIoU, mAcc or aAcc). Every
// checkpoint carries it, so that a resumed run keeps comparing against the validations before the
// stop (mmseg's save_best starts over on resume, mmseg#2428).
struct BestValidation {
  std::string metric;  // "" = none recorded
  double value = std::numeric_limits<double>::quiet_NaN();
  int64_t iter = -1;  // the iteration the validated model had completed

  bool recorded() const { return iter >= 0; }
  // Records (metric, value, iter) and returns true when `value` beats the best so far: the first
  // non-NaN value does, and so does any value of another metric than the recorded one (a run
  // resumed under another train.save_best starts over); NaN never does; a tie keeps the earlier
  // iteration.
  bool offer(const std::string& metric_name, double value, int64_t at_iter);
};

// The log window open when a checkpoint was written (iterations since the last log line, which a
// stop can interrupt), its loss sums averaged over the ranks: a resumed run logs the line the
// uninterrupted run logs. Empty (iters 0) at a log line and in older checkpoints.
struct OpenLogWindow {
  int64_t iters = 0;                                  // steps in the window, skipped ones included
  int64_t skipped = 0;                                // fp16 steps skipped for inf/nan gradients
  int64_t first = 0;                                  // the window's first iteration
  double total = 0;                                   // the summed loss
  std::vector<std::pair<std::string, double>> parts;  // the summed loss parts, in the model's order
  bool has_grad_norm = false;
  double grad_norm = 0;  // the summed gradient norms (train.grad_clip > 0)
};

struct CheckpointMeta {
  int64_t next_iter = 0;  // the iteration training continues from
  uint64_t seed = 0;
  int world_size = 1;
  std::string model_signature;  // e.g. "clip_rn50/w16/fpn/K150"
  double loss_scale = 0;        // fp16 loss scaler state (0: none; absent in older checkpoints)
  int64_t loss_scale_growth = 0;
  BestValidation best = {};  // absent in older checkpoints: none recorded
  OpenLogWindow window = {};
  // Wall seconds the run's starts spent up to this checkpoint, summed over the stops before it
  // (result.json's "seconds"); 0 in older checkpoints.
  double seconds = 0;
};

std::string save_checkpoint(const std::string& dir, const CheckpointMeta& meta, torch::nn::Module& model,
                            torch::optim::Optimizer& optimizer, int keep);
// Writes <dir>/best.pt (meta.next_iter = the validated iteration); returns its path.
std::string save_best_checkpoint(const std::string& dir, const CheckpointMeta& meta, torch::nn::Module& model,
                                 torch::optim::Optimizer& optimizer);

// A file that is not a complete segrun checkpoint (truncated, foreign, missing its meta).
class UnreadableCheckpointError : public CheckpointError {
 public:
  using CheckpointError::CheckpointError;
};

// Loads into model (and optimizer when given). Returns the stored meta. Throws
// UnreadableCheckpointError before touching the model when the file is not a complete checkpoint.
CheckpointMeta load_checkpoint(const std::string& path, const std::string& expected_signature, torch::nn::Module& model,
                               torch::optim::Optimizer* optimizer);

// The best validation a run resumed from a checkpoint (whose record is `recorded`) continues
// from, under train.save_best = `metric`: <dir>/best.pt's own record when it is of `metric` and
// higher -- written after that checkpoint by a run that died before the next one -- so that
// best.pt and result.json always name the same model; else `recorded`. An unreadable best.pt is
// a warning and leaves `recorded`.
// `abandoned_after` >= 0: the resume starts a new line of training at that iteration (see
// set_aside_checkpoints_after), so a best.pt recording a later iteration is of the old line and
// does not count.
BestValidation best_to_resume(const std::string& dir, const BestValidation& recorded, const std::string& metric,
                              int64_t abandoned_after = -1);

// The iteration numbers of the iter_<n>.pt files in dir with n > iter, lowest first.
std::vector<int64_t> checkpoints_after(const std::string& dir, int64_t iter);
// A resume at `iter` below the run's newest checkpoint (--resume of an older one, or a newer one
// unreadable), or one that changes train.iters, starts a new line of training: the old line's
// iter_<n>.pt with n > iter, and best.pt when it records a validation after iter, move into
// <dir>/abandoned-at-<iter>/ (-2, -3... when taken), kept for the user but out of the way: pruning
// keeps the highest numbers and --resume auto takes the highest, which would otherwise be the old
// line's. Returns the folder, "" when nothing moved. Only rank 0 calls it.
std::string set_aside_checkpoints_after(const std::string& dir, int64_t iter);

// Every iter_<n>.pt in dir, highest n first (for --resume auto's fallback).
std::vector<std::string> checkpoints_newest_first(const std::string& dir);
// Removes temp files a writer killed mid-write left behind ("*.tmp-<pid>"); returns how many.
int remove_stale_temp_files(const std::string& dir);

}  // namespace segrun::engine
