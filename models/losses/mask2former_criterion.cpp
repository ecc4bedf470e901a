// Mask2Former matching and losses: see mask2former_criterion.h.
#include "models/losses/mask2former_criterion.h"

#include <c10/core/DispatchKeySet.h>
#include <c10/core/impl/LocalDispatchKeySet.h>

#include <algorithm>

#include "core/error.h"
#include "dist/device.h"
#include "models/losses/seg_losses.h"

namespace segrun::models {

namespace F = torch::nn::functional;

torch::Tensor point_sample(const torch::Tensor& input, const torch::Tensor& coords) {
  SEGRUN_CHECK(
      input.dim() == 4 && coords.dim() == 3 && coords.size(2) == 2, ModelError,
      "point_sample: expected input [R,C,H,W] and coords [R,P,2], got " << input.sizes() << ", " << coords.sizes());
  torch::Tensor grid = (coords * 2.0 - 1.0).unsqueeze(2);  // [R, P, 1, 2]
  return F::grid_sample(
             input, grid,
             F::GridSampleFuncOptions().mode(torch::kBilinear).padding_mode(torch::kZeros).align_corners(false))
      .squeeze(3);
}

PointCounts point_counts(int64_t num_points, double oversample, double importance) {
  SEGRUN_CHECK(oversample >= 1.0 && importance >= 0.0 && importance <= 1.0, ModelError,
               "point sampling: oversample must be >= 1 and importance in [0, 1] (got " << oversample << ", "
                                                                                        << importance << ")");
  PointCounts counts;
  counts.sampled = static_cast<int64_t>(static_cast<double>(num_points) * oversample);
  counts.uncertain = static_cast<int64_t>(importance * static_cast<double>(num_points));
  return counts;
}

torch::Tensor uncertain_point_coords(const torch::Tensor& logits, int64_t num_points, double oversample,
                                     double importance, const torch::Tensor& oversampled, const torch::Tensor& fill) {
  const PointCounts counts = point_counts(num_points, oversample, importance);
  const int64_t rows = logits.size(0);
  torch::Tensor coords = oversampled.defined() ? oversampled : torch::rand({rows, counts.sampled, 2}, logits.options());
  torch::Tensor uncertainty = -point_sample(logits, coords).abs();                                // [R, 1, sampled]
  torch::Tensor index = std::get<1>(torch::topk(uncertainty.select(1, 0), counts.uncertain, 1));  // [R, uncertain]
  torch::Tensor picked = torch::gather(coords, 1, index.unsqueeze(-1).expand({rows, counts.uncertain, 2}));
  if (num_points - counts.uncertain > 0)
    picked = torch::cat(
        {picked, fill.defined() ? fill : torch::rand({rows, num_points - counts.uncertain, 2}, logits.options())}, 1);
  return picked;
}

torch::Tensor sigmoid_bce_point_loss(const torch::Tensor& logits, const torch::Tensor& targets,
                                     const torch::Tensor& num_masks) {
  torch::Tensor per_point = F::binary_cross_entropy_with_logits(
      logits, targets, F::BinaryCrossEntropyWithLogitsFuncOptions().reduction(torch::kNone));
  return per_point.mean(1).sum() / num_masks;
}

torch::Tensor dice_point_loss(const torch::Tensor& logits, const torch::Tensor& targets,
                              const torch::Tensor& num_masks) {
  torch::Tensor s = logits.sigmoid();
  torch::Tensor numerator = 2.0 * (s * targets).sum(-1);
  torch::Tensor denominator = s.sum(-1) + targets.sum(-1);
  return (1.0 - (numerator + 1.0) / (denominator + 1.0)).sum() / num_masks;
}

torch::Tensor pairwise_sigmoid_bce_cost(const torch::Tensor& logits, const torch::Tensor& targets) {
  const double points = static_cast<double>(logits.size(1));
  // BCE(x, 1) = softplus(-x), BCE(x, 0) = softplus(x).
  torch::Tensor pos = F::softplus(-logits), neg = F::softplus(logits);
  return (torch::matmul(pos, targets.t()) + torch::matmul(neg, (1.0 - targets).t())) / points;
}

torch::Tensor pairwise_dice_cost(const torch::Tensor& logits, const torch::Tensor& targets) {
  torch::Tensor s = logits.sigmoid();
  torch::Tensor numerator = 2.0 * torch::matmul(s, targets.t());
  torch::Tensor denominator = s.sum(-1).unsqueeze(1) + targets.sum(-1).unsqueeze(0);
  return 1.0 - (numerator + 1.0) / (denominator + 1.0);
}

SemanticTargets semantic_targets(const torch::Tensor& labels, int64_t num_classes) {
  SEGRUN_CHECK(
      labels.dim() == 2 && labels.scalar_type() == torch::kLong, DataError,
      "Mask2Former targets: labels must be int64 [H, W], got " << labels.sizes() << " " << labels.scalar_type());
  return batch_semantic_targets(labels.unsqueeze(0), num_classes)[0];
}

std::vector<SemanticTargets> batch_semantic_targets(const torch::Tensor& labels, int64_t num_classes) {
  SEGRUN_CHECK(
      labels.dim() == 3 && !labels.is_floating_point() && !labels.is_complex(), DataError,
      "Mask2Former targets: labels must be integer [B, H, W], got " << labels.sizes() << " " << labels.scalar_type());
  const int64_t batch = labels.size(0);
  const torch::Tensor maps = labels.to(torch::kLong);
  const torch::Tensor flat = maps.reshape({batch, -1});
  const torch::Tensor valid = flat.ne(kIgnoreIndex);
  // On a GPU this check would read the range back; there the labels are the loader's, which
  // checks every label map it reads (as seg_losses.cpp's cross-entropy).
  if (!labels.is_cuda()) {
    const torch::Tensor bad = valid & (flat.lt(0) | flat.ge(num_classes));
    SEGRUN_CHECK(!bad.any().item<bool>(), DataError,
                 "Mask2Former targets: label values must be in [0, " << num_classes << ") or " << kIgnoreIndex
                                                                     << "; found "
                                                                     << flat.masked_select(bad)[0].item<int64_t>());
  }
  // Which classes each image holds ([B, K + 1]; the last column collects the ignored pixels), read
  // back in one copy; the class lists (ascending) go back in one.
  torch::Tensor present = torch::zeros({batch, num_classes + 1}, flat.options().dtype(torch::kUInt8));
  present.scatter_(1, flat.masked_fill(~valid, num_classes), 1);
  const torch::Tensor host = present.slice(1, 0, num_classes).to(torch::kCPU).contiguous();
  const auto held = host.accessor<uint8_t, 2>();
  std::vector<int64_t> classes, starts{0};
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t c = 0; c < num_classes; ++c)
      if (held[b][c] != 0) classes.push_back(c);
    starts.push_back(static_cast<int64_t>(classes.size()));
  }
  const torch::Tensor all = dist::to_device_async(torch::tensor(classes, torch::kLong), labels.device());
  std::vector<SemanticTargets> targets(static_cast<size_t>(batch));
  for (int64_t b = 0; b < batch; ++b) {
    SemanticTargets& t = targets[static_cast<size_t>(b)];
    t.classes = all.slice(0, starts[static_cast<size_t>(b)], starts[static_cast<size_t>(b) + 1]);
    t.masks = maps[b].unsqueeze(0).eq(t.classes.view({-1, 1, 1})).to(torch::kFloat32);
  }
  return targets;
}

Mask2FormerCriterion::Mask2FormerCriterion(const Mask2FormerLossOptions& options)
    : options_(options), random_(options.random ? options.random : std::make_shared<const SampleRandom>()) {
  SEGRUN_CHECK(options.num_classes > 0 && options.config.num_points > 0, ModelError,
               "Mask2Former criterion: num_classes and num_points must be > 0");
}

Assignment Mask2FormerCriterion::match(const torch::Tensor& class_logits, const torch::Tensor& mask_logits,
                                       const SemanticTargets& targets, const torch::Tensor& points) const {
  const int64_t queries = class_logits.size(0), count = targets.classes.numel();
  if (count == 0) return {};
  const torch::Tensor cost = matching_cost(class_logits, mask_logits, targets, points);
  torch::Tensor flat = cost.to(torch::kCPU, torch::kFloat64).contiguous();
  std::vector<double> values(flat.data_ptr<double>(), flat.data_ptr<double>() + flat.numel());
  return linear_sum_assignment(values, queries, count);
}

torch::Tensor Mask2FormerCriterion::matching_cost(const torch::Tensor& class_logits, const torch::Tensor& mask_logits,
                                                  const SemanticTargets& targets, const torch::Tensor& points) const {
  torch::NoGradGuard no_grad;
  // Autocast off for every device type: its keys back in this thread's excluded set, as
  // autocast's own kernels do while they run.
  const c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
  const int64_t queries = class_logits.size(0), count = targets.classes.numel();
  torch::Tensor prob = class_logits.to(torch::kFloat32).softmax(-1);
  torch::Tensor cost_class = -prob.index_select(1, targets.classes);  // [Q, T]
  torch::Tensor coords =
      points.defined() ? points.to(mask_logits.device(), torch::kFloat32)
                       : torch::rand({1, options_.config.num_points, 2}, mask_logits.options().dtype(torch::kFloat32));
  torch::Tensor pred = point_sample(mask_logits.to(torch::kFloat32).unsqueeze(1),
                                    coords.expand({queries, options_.config.num_points, 2}))
                           .squeeze(1);
  torch::Tensor tgt =
      point_sample(targets.masks.to(pred.options()).unsqueeze(1), coords.expand({count, options_.config.num_points, 2}))
          .squeeze(1);
  return options_.config.mask_weight * pairwise_sigmoid_bce_cost(pred, tgt) +
         options_.config.class_weight * cost_class + options_.config.dice_weight * pairwise_dice_cost(pred, tgt);
}

std::vector<std::vector<ImageMatch>> Mask2FormerCriterion::match_batch(const std::vector<torch::Tensor>& class_logits,
                                                                       const std::vector<torch::Tensor>& mask_logits,
                                                                       const std::vector<SemanticTargets>& targets,
                                                                       const std::vector<uint64_t>& keys) const {
  const int64_t queries = class_logits[0].size(1);
  // Every cost matrix on the device, then all of them to the host in one copy.
  std::vector<torch::Tensor> costs;
  for (size_t p = 0; p < class_logits.size(); ++p) {
    const torch::Tensor& masks = mask_logits[p];
    for (size_t b = 0; b < targets.size(); ++b) {
      if (targets[b].classes.numel() == 0) continue;
      torch::Generator match_points =
          SampleRandom::generator(keys[b], stream_id(RandomSite::kMatchPoints, p), masks.device());
      const torch::Tensor points =
          torch::rand({1, options_.config.num_points, 2}, match_points, masks.options().dtype(torch::kFloat32));
      costs.push_back(
          matching_cost(class_logits[p][static_cast<int64_t>(b)], masks[static_cast<int64_t>(b)], targets[b], points)
              .flatten());
    }
  }
  const torch::Tensor host = costs.empty() ? torch::zeros({0}, torch::kFloat64)
                                           : torch::cat(costs).to(torch::kCPU, torch::kFloat64).contiguous();
  // Solved on the host; every matched index back to the device in one copy: per matching, its
  // rows, then its cols.
  std::vector<std::vector<ImageMatch>> matching(class_logits.size(), std::vector<ImageMatch>(targets.size()));
  std::vector<int64_t> indices;
  const double* cost = host.data_ptr<double>();
  for (auto& per_image : matching) {
    for (size_t b = 0; b < targets.size(); ++b) {
      const int64_t count = targets[b].classes.numel();
      if (count == 0) continue;
      const std::vector<double> values(cost, cost + queries * count);
      cost += queries * count;
      Assignment& pairs = per_image[b].pairs;
      pairs = linear_sum_assignment(values, queries, count);
      indices.insert(indices.end(), pairs.rows.begin(), pairs.rows.end());
      indices.insert(indices.end(), pairs.cols.begin(), pairs.cols.end());
    }
  }
  const torch::Tensor on_device = dist::to_device_async(torch::tensor(indices, torch::kLong), class_logits[0].device());
  int64_t offset = 0;
  for (auto& per_image : matching) {
    for (ImageMatch& m : per_image) {
      const auto matched = static_cast<int64_t>(m.pairs.rows.size());
      m.rows = on_device.slice(0, offset, offset + matched);
      m.cols = on_device.slice(0, offset + matched, offset + 2 * matched);
      offset += 2 * matched;
    }
  }
  return matching;
}

LossTerms Mask2FormerCriterion::loss(const std::vector<torch::Tensor>& class_logits,
                                     const std::vector<torch::Tensor>& mask_logits,
                                     const std::vector<SemanticTargets>& targets,
                                     const std::shared_ptr<dist::Communicator>& comm,
                                     std::vector<std::vector<ImageMatch>>* matches) const {
  SEGRUN_CHECK(
      !class_logits.empty() && class_logits.size() == mask_logits.size(), ModelError,
      "Mask2Former criterion: " << class_logits.size() << " class and " << mask_logits.size() << " mask predictions");
  const int64_t batch = class_logits[0].size(0), queries = class_logits[0].size(1);
  SEGRUN_CHECK(static_cast<int64_t>(targets.size()) == batch, ModelError,
               "Mask2Former criterion: " << targets.size() << " targets for a batch of " << batch);
  const int64_t k = options_.num_classes;
  SEGRUN_CHECK(
      class_logits[0].size(2) == k + 1, ModelError,
      "Mask2Former criterion: class logits have " << class_logits[0].size(2) << " entries, expected " << k + 1);

  torch::Tensor class_weight = torch::ones({k + 1}, class_logits[0].options().dtype(torch::kFloat32));
  class_weight[k] = options_.config.no_object_weight;

  // Pass 1: every prediction's matching, its class targets and its points.
  struct Supervision {
    torch::Tensor target_classes;                            // [B, Q]
    std::vector<torch::Tensor> src, tgt, oversampled, fill;  // matched masks and their random points
    int64_t matched = 0;
  };
  std::vector<Supervision> layers(class_logits.size());
  const std::vector<uint64_t> keys = random_->keys(batch);  // one per image, whatever its rank
  std::vector<std::vector<ImageMatch>> matching = match_batch(class_logits, mask_logits, targets, keys);
  const PointCounts counts =
      point_counts(options_.config.num_points, options_.config.oversample, options_.config.importance);
  for (size_t p = 0; p < class_logits.size(); ++p) {
    const torch::Tensor& masks = mask_logits[p];
    const auto float_options = masks.options().dtype(torch::kFloat32);
    Supervision& s = layers[p];
    s.target_classes = torch::full({batch, queries}, k, class_logits[p].options().dtype(torch::kLong));
    for (int64_t b = 0; b < batch; ++b) {
      const SemanticTargets& t = targets[static_cast<size_t>(b)];
      const ImageMatch& m = matching[p][static_cast<size_t>(b)];
      if (m.pairs.rows.empty()) continue;
      s.target_classes[b].index_put_({m.rows}, t.classes.index_select(0, m.cols));
      s.src.push_back(masks[b].index_select(0, m.rows));
      s.tgt.push_back(t.masks.index_select(0, m.cols));
      // This image's loss points: its matched masks' rows in matching order, from its own stream.
      const auto matched = static_cast<int64_t>(m.pairs.rows.size());
      torch::Generator loss_points =
          SampleRandom::generator(keys[static_cast<size_t>(b)], stream_id(RandomSite::kLossPoints, p), masks.device());
      s.oversampled.push_back(torch::rand({matched, counts.sampled, 2}, loss_points, float_options));
      s.fill.push_back(
          torch::rand({matched, options_.config.num_points - counts.uncertain, 2}, loss_points, float_options));
      s.matched += matched;
    }
  }
  if (matches != nullptr) *matches = std::move(matching);

  // The normalizers, averaged over ranks in one all-reduce, so that N ranks x b train as 1 x N*b:
  // the number of target masks (Mask2Former's num_masks, which its code all-reduces too) and,
  // per prediction, the sum of the class weights of the B x Q queries (the denominator of the
  // weighted cross-entropy, which Mask2Former's code takes per rank).
  int64_t local_masks = 0;
  for (const auto& t : targets) local_masks += t.classes.numel();
  std::vector<double> counts_local{static_cast<double>(local_masks)};
  for (const Supervision& s : layers) {
    const double unmatched = static_cast<double>(batch * queries - s.matched);
    counts_local.push_back(static_cast<double>(s.matched) + options_.config.no_object_weight * unmatched);
  }
  // On the loss's device and never read back: no wait for the GPU, whatever the number of ranks.
  const torch::Tensor counts_mean =
      dist::mean_over_ranks(counts_local, comm.get(), class_logits[0].device()).to(torch::kFloat32);
  const torch::Tensor num_masks = counts_mean[0].clamp_min(1.0);

  // Pass 2: the losses.
  torch::Tensor loss_cls = torch::zeros({}, class_logits[0].options());
  torch::Tensor loss_mask = torch::zeros({}, class_logits[0].options());
  torch::Tensor loss_dice = torch::zeros({}, class_logits[0].options());
  for (size_t p = 0; p < class_logits.size(); ++p) {
    const torch::Tensor& masks = mask_logits[p];
    const Supervision& s = layers[p];
    torch::Tensor weighted =
        F::cross_entropy(class_logits[p].flatten(0, 1).to(torch::kFloat32), s.target_classes.flatten(),
                         F::CrossEntropyFuncOptions().weight(class_weight).reduction(torch::kNone));
    loss_cls = loss_cls + weighted.sum() / counts_mean[1 + p].clamp_min(1e-12);
    if (s.src.empty()) {
      // No target mask in this batch: keep every mask logit in the graph with a zero loss.
      loss_mask = loss_mask + zero_attached(masks);
      loss_dice = loss_dice + zero_attached(masks);
      continue;
    }
    torch::Tensor src_masks = torch::cat(s.src, 0).unsqueeze(1).to(torch::kFloat32);     // [M, 1, h, w]
    torch::Tensor tgt_masks = torch::cat(s.tgt, 0).unsqueeze(1).to(src_masks.device());  // [M, 1, H, W]
    torch::Tensor coords, labels;
    {
      torch::NoGradGuard no_grad;
      coords = uncertain_point_coords(src_masks.detach(), options_.config.num_points, options_.config.oversample,
                                      options_.config.importance, torch::cat(s.oversampled, 0), torch::cat(s.fill, 0));
      labels = point_sample(tgt_masks, coords).squeeze(1);
    }
    torch::Tensor point_logits = point_sample(src_masks, coords).squeeze(1);
    const torch::Tensor mask_norm =
        (options_.config.mask_loss_norm == "class_weight_sum") ? counts_mean[1 + p].clamp_min(1.0) : num_masks;
    loss_mask = loss_mask + sigmoid_bce_point_loss(point_logits, labels, mask_norm);
    loss_dice = loss_dice + dice_point_loss(point_logits, labels, mask_norm);
  }
  LossTerms terms;
  torch::Tensor cls_term = options_.config.class_weight * loss_cls;
  torch::Tensor mask_term = options_.config.mask_weight * loss_mask;
  torch::Tensor dice_term = options_.config.dice_weight * loss_dice;
  terms.add("loss_cls", cls_term);
  terms.add("loss_mask", mask_term);
  terms.add("loss_dice", dice_term);
  return terms;
}

}  // namespace segrun::models
