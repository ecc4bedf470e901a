#pragma once
// Mask2Former's training objective for semantic segmentation (Cheng et al. 2022, SetCriterion +
// HungarianMatcher), independent of the network:
//  - targets: one binary mask per class present in an image's label map (255 = ignore belongs to
//    no mask), at the label map's resolution;
//  - matching, per image and per supervised prediction: cost = class_w * (-softmax prob of the
//    target class) + mask_w * sigmoid-BCE + dice_w * dice, the mask costs on `num_points`
//    uniformly random points shared by predictions and targets, solved by
//    linear_sum_assignment (hungarian_matcher.h);
//  - losses: cross-entropy over all queries (unmatched -> "no object" = class K, whose weight is
//    no_object_weight; weighted mean), and for matched pairs sigmoid-BCE and dice on
//    `num_points` importance-sampled points (PointRend: oversample x random points, keep the
//    importance fraction most uncertain by -|logit|, fill with fresh random points), each summed
//    over pairs and divided by the number of target masks (averaged over ranks, at least 1), or,
//    with mask_loss_norm = "class_weight_sum" (MTA-CLIP's code), by the prediction's sum of class
//    weights.
// Random points are keyed per image (sample_random.h): image b's matching points of prediction p
// come from its key and stream (kMatchPoints, p), its loss points from (kLossPoints, p), so they do
// not depend on which rank or batch the image is in. Point sampling is grid_sample with
// align_corners = false on coordinates in [0, 1]. Not thread-safe (generators, communicator).

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "core/config.h"
#include "dist/communicator.h"
#include "models/losses/hungarian_matcher.h"
#include "models/sample_random.h"
#include "models/segmentor.h"

namespace segrun::models {

// input [R, C, H, W], coords [R, P, 2] as (x, y) in [0, 1] -> [R, C, P].
torch::Tensor point_sample(const torch::Tensor& input, const torch::Tensor& coords);

// PointRend's get_uncertain_point_coords_with_randomness with uncertainty -|logit|:
// logits [R, 1, H, W] -> coords [R, num_points, 2]. The random coordinates are given --
// `oversampled` [R, num_points * oversample, 2] and `fill` [R, num_points - uncertain, 2], uniform
// in [0, 1) (point_counts() gives the sizes) -- or drawn from LibTorch's default generator.
struct PointCounts {
  int64_t sampled = 0;    // oversampled candidates per row
  int64_t uncertain = 0;  // kept by uncertainty; the rest of num_points are fresh random points
};
PointCounts point_counts(int64_t num_points, double oversample, double importance);
torch::Tensor uncertain_point_coords(const torch::Tensor& logits, int64_t num_points, double oversample,
                                     double importance, const torch::Tensor& oversampled = {},
                                     const torch::Tensor& fill = {});

// Point losses over rows of [R, P] logits and {0, 1} targets, summed over rows / num_masks:
// BCE-with-logits averaged over points; dice 1 - (2 sum(s t) + 1) / (sum s + sum t + 1), s = sigmoid.
// num_masks is a 0-dim tensor on the logits' device (of their dtype or float32), as the criterion's
// rank-averaged normalizers are: dividing by it needs no host value.
torch::Tensor sigmoid_bce_point_loss(const torch::Tensor& logits, const torch::Tensor& targets,
                                     const torch::Tensor& num_masks);
torch::Tensor dice_point_loss(const torch::Tensor& logits, const torch::Tensor& targets,
                              const torch::Tensor& num_masks);

// Pairwise matching costs: logits [Q, P], targets [T, P] -> [Q, T] (BCE averaged over points).
torch::Tensor pairwise_sigmoid_bce_cost(const torch::Tensor& logits, const torch::Tensor& targets);
torch::Tensor pairwise_dice_cost(const torch::Tensor& logits, const torch::Tensor& targets);

struct SemanticTargets {
  torch::Tensor classes;  // int64 [T], ascending
  torch::Tensor masks;    // float [T, H, W] in {0, 1}
};
// labels int64 [H, W] (255 = ignore) -> one mask per present class; labels outside [0, K) other
// than 255 throw DataError on the CPU (on a GPU, where the check would read the range back, the
// labels are the loader's, which checks every label map it reads).
SemanticTargets semantic_targets(const torch::Tensor& labels, int64_t num_classes);
// The same for each image of labels [B, H, W] (any integer type). Which classes each image holds
// comes to the host in one copy for the batch, and the class lists go back in one asynchronous
// copy: on a GPU the host waits once per batch, not once per image.
std::vector<SemanticTargets> batch_semantic_targets(const torch::Tensor& labels, int64_t num_classes);

// One prediction's matching of one image: its pairs on the host and, as int64 [M] on the
// prediction's device, the same rows (query indices) and cols (indices into the image's targets).
struct ImageMatch {
  Assignment pairs;
  torch::Tensor rows;
  torch::Tensor cols;
};

// The loss weights, point sampling and mask-loss normalization are the [model.mask2former] table
// itself (class_weight, mask_weight, dice_weight, no_object_weight, num_points, oversample,
// importance, mask_loss_norm); no field is copied.
struct Mask2FormerLossOptions {
  int64_t num_classes = 150;
  Mask2FormerConfig config;
  std::shared_ptr<const SampleRandom> random;  // the segmentor's keyed draws (null: unkeyed)
};

class Mask2FormerCriterion {
 public:
  explicit Mask2FormerCriterion(const Mask2FormerLossOptions& options);

  // One image: class_logits [Q, K + 1], mask_logits [Q, h, w], targets -> (query, target) pairs.
  // `coords` [1, num_points, 2] are the image's random points (drawn from the default generator
  // when undefined).
  Assignment match(const torch::Tensor& class_logits, const torch::Tensor& mask_logits, const SemanticTargets& targets,
                   const torch::Tensor& coords = {}) const;
  // match()'s cost matrix [Q, T] (float32, on the logits' device): the weighted class, sigmoid-BCE
  // and dice costs at the points. Computed in float32 with autocast off, as Mask2Former's
  // HungarianMatcher (`autocast(enabled=False)`): under fp16 the BCE summed over 12544 points
  // passes 65504 and turns inf; under bf16 the costs keep 8 bits.
  torch::Tensor matching_cost(const torch::Tensor& class_logits, const torch::Tensor& mask_logits,
                              const SemanticTargets& targets, const torch::Tensor& coords = {}) const;

  // Losses of every prediction in `class_logits` / `mask_logits` ([B, Q, K+1] / [B, Q, h, w]
  // each), each matched on its own; parts "loss_cls", "loss_mask", "loss_dice" are weighted and
  // summed over the predictions; total is their sum. `comm` (may be null) averages the target
  // count over ranks (a collective: every rank must call loss with the same predictions count).
  // With `matches` non-null it receives the matchings: (*matches)[p][b] for prediction p and
  // image b (pairs.rows = query indices, pairs.cols = indices into targets[b].classes), for
  // losses built on the same matching (MTA-CLIP's mask-to-text contrastive loss).
  // On a GPU the matching makes the host wait for the device once per call: every cost matrix of
  // every prediction and image comes to the host in one copy, and every matched index goes back in
  // one asynchronous copy (Mask2Former's matcher copies each image's matrix on its own). The
  // normalizers are averaged over ranks on the device and never read back: no wait more with
  // several NCCL ranks.
  LossTerms loss(const std::vector<torch::Tensor>& class_logits, const std::vector<torch::Tensor>& mask_logits,
                 const std::vector<SemanticTargets>& targets, const std::shared_ptr<dist::Communicator>& comm,
                 std::vector<std::vector<ImageMatch>>* matches = nullptr) const;

  const Mask2FormerLossOptions& options() const { return options_; }

 private:
  // Every prediction's matching of every image ([p][b]), from their keyed matching points.
  std::vector<std::vector<ImageMatch>> match_batch(const std::vector<torch::Tensor>& class_logits,
                                                   const std::vector<torch::Tensor>& mask_logits,
                                                   const std::vector<SemanticTargets>& targets,
                                                   const std::vector<uint64_t>& keys) const;

  Mask2FormerLossOptions options_;
  std::shared_ptr<const SampleRandom> random_;
};

}  // namespace segrun::models
