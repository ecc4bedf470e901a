#pragma once
// Evaluation with mmsegmentation semantics. Each rank takes the validation records r::world (no
// padding, so no record is counted twice), predicts, and accumulates int64 intersection/union
// areas; the areas are then all-reduced, so every rank returns the same metrics.
// Prediction: the image at the test scale (keep-ratio resize, data.scale), for every scale in
// eval.scales (relative to that) and, with eval.flip, its mirror: logits from whole-image or
// sliding-window inference (eval.crop / eval.stride, overlaps averaged), resized bilinearly to
// the label's original size, softmaxed and summed; the argmax is the prediction.
// The model is put in eval mode and inference runs without autograd.

#include <torch/torch.h>

#include <string>
#include <vector>

#include "core/config.h"
#include "dist/communicator.h"
#include "engine/metrics.h"

namespace segrun::data {
class StoreReader;
}
namespace segrun::models {
class SegmentorImpl;
}

namespace segrun::engine {

struct EvalRequest {
  std::string save_pred_dir;  // when set, each prediction is written as <dir>/<name>.png (train ids)
  int64_t limit = -1;         // evaluate only the first `limit` records (-1 = all)
};

SegMetrics evaluate(models::SegmentorImpl& model, const data::StoreReader& store, const Config& config,
                    dist::Communicator& comm, const EvalRequest& request = {});

struct CheckpointEvaluation {
  SegMetrics metrics;
  std::vector<std::string> class_names;
};

// `segrun eval`: opens config.data.val_store (checked against data.layout), builds the model of
// `config`, loads `checkpoint` (its model signature must match) and evaluates on every rank.
CheckpointEvaluation evaluate_checkpoint(const Config& config, const dist::RankContext& context,
                                         const std::string& checkpoint, const EvalRequest& request);

// Logits [1, K, h, w] for one normalized image [1, 3, h, w]: whole or sliding window.
torch::Tensor infer_logits(models::SegmentorImpl& model, const torch::Tensor& image,
                           const EvalConfig& eval);

}  // namespace segrun::engine
