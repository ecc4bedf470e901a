#pragma once
// Segmentation metrics with mmsegmentation semantics (mmseg `intersect_and_union` + the IoU metric).
//
// Per image, pixels whose label equals ignore_index are dropped; for the remaining pixels four
// per-class areas are counted: intersect (pred == label == c), pred (pred == c), label
// (label == c) and union = pred + label - intersect. Values outside [0, K) are counted in no
// class histogram, exactly like mmseg's `histc(bins=K, min=0, max=K-1)`: a pred outside [0, K)
// on a valid pixel is a wrong prediction (it lowers that label's Acc and IoU), a label outside
// [0, K) that is not ignore_index adds nothing to the label areas but its pred is still counted.
// Areas are summed over the whole dataset (and over ranks) before any division:
//   IoU_c  = I_c / U_c            (NaN when U_c == 0: class absent from GT and pred everywhere)
//   Acc_c  = I_c / label_c        (NaN when label_c == 0; a class predicted but absent from GT
//                                  has IoU 0, which counts in mIoU)
//   mIoU   = nanmean(IoU) * 100,  mAcc = nanmean(Acc) * 100,  aAcc = sum I / sum label * 100.
//
// The areas live in one contiguous int64 tensor [4, K] on the accumulator's device (CPU by
// default; rows: intersect, union, pred, label), so ranks can sum them exactly with
// Communicator::allreduce(acc.mutable_areas()).
// Threading: an IoUAccumulator is not thread-safe; use one per thread and merge_from().

#include <torch/types.h>

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace segrun::engine {

// Row indices of the areas tensor.
enum AreaRow : int64_t { kIntersect = 0, kUnion = 1, kPredArea = 2, kLabelArea = 3 };

struct SegMetrics {
  double aAcc = 0.0;        // percent
  double mIoU = 0.0;        // percent (NaN when no class has a defined IoU)
  double mAcc = 0.0;        // percent
  std::vector<double> iou;  // per class, fraction in [0, 1], NaN where undefined
  std::vector<double> acc;  // per class, fraction in [0, 1], NaN where undefined
  int64_t pixels = 0;       // sum of the label areas (valid, in-range GT pixels)
  // Multi-label classification of the images (heads with a label branch, e.g. CLIP-SP), percent;
  // NaN when the model has no label branch. `label_mAP_prior` is the mAP of the trivial predictor
  // that gives every image the same scores (AP = the class's frequency among the images).
  double label_mAP = std::numeric_limits<double>::quiet_NaN();
  double label_mAP_prior = std::numeric_limits<double>::quiet_NaN();
};

// One evaluation of a model (engine/evaluator.h): the single-scale metrics and, when asked for,
// the multi-scale + flip ones.
struct EvalOutcome {
  SegMetrics single;  // eval.scales (+ flip when eval.flip): mIoU, mAcc, aAcc
  SegMetrics multi;   // eval.ms_scales + flip; valid when has_multi
  bool has_multi = false;
  std::vector<double> ms_scales;  // the scales behind `multi`
  // int64 [K, K] on the host, summed over ranks: the confusion matrix (confusion_matrix) of the
  // multi-scale predictions when has_multi, else of the single-scale ones; only when asked for
  // (EvalRequest::confusion).
  torch::Tensor confusion;
  // Validation records left out because they failed their CRC check (data.on_corrupt = "skip"),
  // summed over ranks; the metrics are over the others, so they are not comparable to a full pass.
  int64_t skipped_records = 0;
};

// Multi-label average precision, sklearn `average_precision_score` semantics per class:
// AP = sum_n (R_n - R_{n-1}) P_n over the distinct score thresholds (tied scores form one step).
// scores, targets: [N, K] (targets 0/1). Returns the mean over classes with >= 1 positive, in
// percent, and, in *prior_map when given, the mean of those classes' positive frequencies (the AP
// of any constant predictor), in percent. NaN when no class has a positive.
double mean_average_precision(const torch::Tensor& scores, const torch::Tensor& targets, double* prior_map = nullptr);

// Areas of one prediction/label pair: int64 [4, K] on pred's device. pred and label: integer
// tensors of the same shape ([H, W] or [B, H, W], any integer dtype, any device). Throws DataError on a
// shape mismatch or a floating-point input. CPU tensors are counted in one pass (about 1.3 ms per
// 512x2048 image on one core); tensors on other devices use detail::intersect_and_union_vectorized.
torch::Tensor intersect_and_union(const torch::Tensor& pred, const torch::Tensor& label, int num_classes,
                                  int ignore_index = 255);

namespace detail {
// The same areas computed with tensor ops only (counts of label * (K+1) + pred); used for
// tensors on an accelerator, exposed so tests can check it against the CPU counting loop.
torch::Tensor intersect_and_union_vectorized(const torch::Tensor& pred, const torch::Tensor& label, int num_classes,
                                             int ignore_index = 255);
}  // namespace detail

// Metrics from summed areas (int64 [4, K]).
SegMetrics summarize(const torch::Tensor& areas);

// The confusion matrix of one prediction/label pair (mmseg's tools/confusion_matrix.py):
// int64 [K, K] on pred's device, counts[g][p] = pixels whose label is g and whose prediction is p.
// Ignored pixels and values outside [0, K) are counted nowhere, so the diagonal is
// intersect_and_union's intersections and, when every prediction is a class and every label a
// class or ignore_index (a model's argmax on a checked store), the row sums are its label areas
// and the column sums its pred areas. Inputs as intersect_and_union's.
torch::Tensor confusion_matrix(const torch::Tensor& pred, const torch::Tensor& label, int num_classes,
                               int ignore_index = 255);

// One cell of a confusion matrix off its diagonal: `pixels` of class `truth` predicted as
// `predicted`, `share` of that class's pixels (its row sum).
struct Confusion {
  int64_t truth = 0;
  int64_t predicted = 0;
  int64_t pixels = 0;
  double share = 0.0;
};
// The `top` off-diagonal cells with the largest shares (ties: more pixels first, then by class
// indices); empty cells never. DataError unless counts is [K, K].
std::vector<Confusion> top_confusions(const torch::Tensor& counts, size_t top);
// The matrix as CSV: a header "truth \ prediction,<class names>", then one row per class, its name
// and K counts. Names with a comma, quote or newline are quoted (RFC 4180). DataError when the
// sizes do not match.
std::string confusion_csv(const torch::Tensor& counts, const std::vector<std::string>& class_names);

class IoUAccumulator {
 public:
  // The areas live on `device` (a GPU evaluation accumulates there; summarize() copies them once).
  explicit IoUAccumulator(int num_classes, int ignore_index = 255, const torch::Device& device = torch::kCPU);

  // Adds the areas of one image ([H, W]) or a batch ([B, H, W]); see intersect_and_union.
  void add(const torch::Tensor& pred, const torch::Tensor& label);
  // Adds areas accumulated elsewhere (another thread, a shard): int64 [4, K].
  void merge_from(const torch::Tensor& areas);
  // Replaces the areas (e.g. with the all-reduced sum): int64 [4, K], copied.
  void set_areas(const torch::Tensor& areas);
  void reset();

  // Contiguous int64 [4, K] on the accumulator's device. mutable_areas() is for in-place
  // collectives only.
  const torch::Tensor& areas() const { return areas_; }
  torch::Tensor& mutable_areas() { return areas_; }

  SegMetrics summarize() const { return engine::summarize(areas_); }
  int num_classes() const { return num_classes_; }
  int ignore_index() const { return ignore_index_; }

 private:
  void check_areas(const torch::Tensor& areas, const char* what) const;

  int num_classes_;
  int ignore_index_;
  torch::Tensor areas_;
};

}  // namespace segrun::engine
