#include "engine/metrics.h"

#include <torch/torch.h>

#include <cmath>
#include <limits>

#include "core/error.h"

namespace segrun::engine {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

bool is_integer_dtype(const torch::Tensor& t) {
  return !t.is_floating_point() && !t.is_complex();
}

double nanmean(const std::vector<double>& values) {
  double sum = 0.0;
  int64_t count = 0;
  for (double v : values) {
    if (!std::isnan(v)) {
      sum += v;
      ++count;
    }
  }
  return count == 0 ? kNaN : sum / static_cast<double>(count);
}

}  // namespace

torch::Tensor intersect_and_union(const torch::Tensor& pred, const torch::Tensor& label,
                                  int num_classes, int ignore_index) {
  SEGRUN_CHECK(num_classes > 0, DataError, "metrics: num_classes must be positive, got "
                                               << num_classes);
  SEGRUN_CHECK(pred.defined() && label.defined(), DataError,
               "metrics: undefined prediction or label tensor");
  SEGRUN_CHECK(pred.sizes() == label.sizes(), DataError,
               "metrics: prediction shape " << pred.sizes() << " differs from label shape "
                                            << label.sizes());
  SEGRUN_CHECK(is_integer_dtype(pred) && is_integer_dtype(label), DataError,
               "metrics: prediction and label must be integer tensors, got "
                   << pred.scalar_type() << " and " << label.scalar_type());

  // One (K+1) x (K+1) confusion matrix whose extra row/column K collects values outside [0, K);
  // ignored pixels go to one more trailing bin that is dropped.
  const int64_t k = num_classes;
  const int64_t k1 = k + 1;
  torch::NoGradGuard no_grad;
  const auto p = pred.reshape({-1}).to(torch::kLong);
  const auto l = label.to(pred.device()).reshape({-1}).to(torch::kLong);
  const auto other = torch::full({}, k, p.options());
  const auto p_bin = torch::where(p.ge(0).logical_and(p.lt(k)), p, other);
  const auto l_bin = torch::where(l.ge(0).logical_and(l.lt(k)), l, other);
  const auto ignored = torch::full({}, k1 * k1, p.options());
  const auto index = torch::where(l.ne(ignore_index), l_bin * k1 + p_bin, ignored);
  const auto counts = torch::bincount(index, {}, k1 * k1 + 1).narrow(0, 0, k1 * k1).view({k1, k1});

  const auto intersect = counts.diagonal().narrow(0, 0, k);
  const auto label_area = counts.sum(1).narrow(0, 0, k);
  const auto pred_area = counts.sum(0).narrow(0, 0, k);
  const auto union_area = pred_area + label_area - intersect;
  return torch::stack({intersect, union_area, pred_area, label_area}).to(torch::kCPU).contiguous();
}

SegMetrics summarize(const torch::Tensor& areas) {
  SEGRUN_CHECK(areas.defined() && areas.dim() == 2 && areas.size(0) == 4, DataError,
               "metrics: areas must be a [4, K] tensor, got "
                   << (areas.defined() ? areas.sizes() : c10::IntArrayRef{}));
  const auto a = areas.to(torch::kCPU).to(torch::kLong).contiguous();
  const int64_t k = a.size(1);
  const auto acc_view = a.accessor<int64_t, 2>();

  SegMetrics m;
  m.iou.resize(k);
  m.acc.resize(k);
  int64_t total_intersect = 0;
  int64_t total_label = 0;
  for (int64_t c = 0; c < k; ++c) {
    const int64_t i = acc_view[kIntersect][c];
    const int64_t u = acc_view[kUnion][c];
    const int64_t lab = acc_view[kLabelArea][c];
    m.iou[c] = u == 0 ? kNaN : static_cast<double>(i) / static_cast<double>(u);
    m.acc[c] = lab == 0 ? kNaN : static_cast<double>(i) / static_cast<double>(lab);
    total_intersect += i;
    total_label += lab;
  }
  m.pixels = total_label;
  m.aAcc = total_label == 0
               ? kNaN
               : 100.0 * static_cast<double>(total_intersect) / static_cast<double>(total_label);
  m.mIoU = 100.0 * nanmean(m.iou);
  m.mAcc = 100.0 * nanmean(m.acc);
  return m;
}

IoUAccumulator::IoUAccumulator(int num_classes, int ignore_index)
    : num_classes_(num_classes), ignore_index_(ignore_index) {
  SEGRUN_CHECK(num_classes > 0, DataError,
               "metrics: num_classes must be positive, got " << num_classes);
  areas_ = torch::zeros({4, num_classes}, torch::kLong);
}

void IoUAccumulator::add(const torch::Tensor& pred, const torch::Tensor& label) {
  areas_ += intersect_and_union(pred, label, num_classes_, ignore_index_);
}

void IoUAccumulator::check_areas(const torch::Tensor& areas, const char* what) const {
  SEGRUN_CHECK(areas.defined() && areas.dim() == 2 && areas.size(0) == 4 &&
                   areas.size(1) == num_classes_ && areas.scalar_type() == torch::kLong,
               DataError,
               "metrics: " << what << " expects int64 areas [4, " << num_classes_ << "], got "
                           << (areas.defined() ? areas.scalar_type() : torch::kLong) << " "
                           << (areas.defined() ? areas.sizes() : c10::IntArrayRef{}));
}

void IoUAccumulator::merge_from(const torch::Tensor& areas) {
  check_areas(areas, "merge_from");
  areas_ += areas.to(torch::kCPU);
}

void IoUAccumulator::set_areas(const torch::Tensor& areas) {
  check_areas(areas, "set_areas");
  areas_ = areas.to(torch::kCPU).clone().contiguous();
}

void IoUAccumulator::reset() { areas_.zero_(); }

}  // namespace segrun::engine
