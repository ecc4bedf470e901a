#include "engine/metrics.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <utility>

#include "core/error.h"

namespace segrun::engine {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

bool is_integer_dtype(const torch::Tensor& t) { return !t.is_floating_point() && !t.is_complex(); }

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

namespace {

void check_inputs(const torch::Tensor& pred, const torch::Tensor& label, int num_classes) {
  SEGRUN_CHECK(num_classes > 0, DataError, "metrics: num_classes must be positive, got " << num_classes);
  SEGRUN_CHECK(pred.defined() && label.defined(), DataError, "metrics: undefined prediction or label tensor");
  SEGRUN_CHECK(pred.sizes() == label.sizes(), DataError,
               "metrics: prediction shape " << pred.sizes() << " differs from label shape " << label.sizes());
  SEGRUN_CHECK(is_integer_dtype(pred) && is_integer_dtype(label), DataError,
               "metrics: prediction and label must be integer tensors, got " << pred.scalar_type() << " and "
                                                                             << label.scalar_type());
}

// Areas [4, K] from a (K+1) x (K+1) confusion matrix whose last row/column holds out-of-range
// values.
torch::Tensor areas_from_confusion(const torch::Tensor& counts, int64_t k) {
  const auto intersect = counts.diagonal().narrow(0, 0, k);
  const auto label_area = counts.sum(1).narrow(0, 0, k);
  const auto pred_area = counts.sum(0).narrow(0, 0, k);
  const auto union_area = pred_area + label_area - intersect;
  return torch::stack({intersect, union_area, pred_area, label_area}).contiguous();  // on the counts' device
}

// CPU: one pass over the pixels filling the confusion matrix (about 20x faster than the
// equivalent chain of tensor ops on one core).
template <typename P, typename L>
void count_pixels(const P* pred, const L* label, int64_t n, int64_t k, int64_t ignore, int64_t* counts) {
  const int64_t k1 = k + 1;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t l = static_cast<int64_t>(label[i]);
    if (l == ignore) continue;
    const int64_t p = static_cast<int64_t>(pred[i]);
    const int64_t lb = (l >= 0 && l < k) ? l : k;
    const int64_t pb = (p >= 0 && p < k) ? p : k;
    ++counts[lb * k1 + pb];
  }
}

template <typename P>
void count_with_label(const P* pred, const torch::Tensor& label, int64_t n, int64_t k, int64_t ignore,
                      int64_t* counts) {
  if (label.scalar_type() == torch::kByte) {
    count_pixels(pred, label.data_ptr<uint8_t>(), n, k, ignore, counts);
  } else {
    count_pixels(pred, label.data_ptr<int64_t>(), n, k, ignore, counts);
  }
}

torch::Tensor intersect_and_union_cpu(const torch::Tensor& pred, const torch::Tensor& label, int64_t k,
                                      int64_t ignore) {
  // uint8 (PNG label maps) and int64 (argmax) are read in place; other dtypes widen to int64.
  auto narrow_or_long = [](const torch::Tensor& t) {
    return (t.scalar_type() == torch::kByte ? t : t.to(torch::kLong)).contiguous();
  };
  const auto p = narrow_or_long(pred);
  const auto l = narrow_or_long(label);
  const int64_t k1 = k + 1;
  auto counts = torch::zeros({k1, k1}, torch::kLong);
  int64_t* c = counts.data_ptr<int64_t>();
  if (p.scalar_type() == torch::kByte) {
    count_with_label(p.data_ptr<uint8_t>(), l, p.numel(), k, ignore, c);
  } else {
    count_with_label(p.data_ptr<int64_t>(), l, p.numel(), k, ignore, c);
  }
  return areas_from_confusion(counts, k);
}

// The [K+1, K+1] confusion counts of the valid pixels: row = label, column = pred, the last row /
// column for values outside [0, K). One count per bin of label * (K+1) + pred; ignored pixels go
// to one trailing bin that is dropped.
torch::Tensor confusion_with_out_of_range(const torch::Tensor& pred, const torch::Tensor& label, int num_classes,
                                          int ignore_index) {
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
  // index_add_, not bincount: on a GPU bincount reads the index range back to the host (one
  // synchronization per image), and the number of bins is known.
  torch::Tensor counts = torch::zeros({k1 * k1 + 1}, p.options());
  counts.index_add_(0, index, torch::ones_like(index));
  return counts.narrow(0, 0, k1 * k1).view({k1, k1});
}

}  // namespace

namespace detail {

torch::Tensor intersect_and_union_vectorized(const torch::Tensor& pred, const torch::Tensor& label, int num_classes,
                                             int ignore_index) {
  check_inputs(pred, label, num_classes);
  return areas_from_confusion(confusion_with_out_of_range(pred, label, num_classes, ignore_index), num_classes);
}

}  // namespace detail

torch::Tensor confusion_matrix(const torch::Tensor& pred, const torch::Tensor& label, int num_classes,
                               int ignore_index) {
  check_inputs(pred, label, num_classes);
  return confusion_with_out_of_range(pred, label, num_classes, ignore_index)
      .narrow(0, 0, num_classes)
      .narrow(1, 0, num_classes)
      .contiguous();
}

std::vector<Confusion> top_confusions(const torch::Tensor& counts, size_t top) {
  SEGRUN_CHECK(
      counts.defined() && counts.dim() == 2 && counts.size(0) == counts.size(1), DataError,
      "metrics: a confusion matrix must be [K, K], got " << (counts.defined() ? counts.sizes() : c10::IntArrayRef{}));
  const auto c = counts.to(torch::kCPU, torch::kLong).contiguous();
  const auto m = c.accessor<int64_t, 2>();
  std::vector<Confusion> all;
  for (int64_t g = 0; g < c.size(0); ++g) {
    int64_t row = 0;
    for (int64_t p = 0; p < c.size(1); ++p) row += m[g][p];
    for (int64_t p = 0; p < c.size(1); ++p)
      if (p != g && m[g][p] > 0)
        all.push_back({g, p, m[g][p], static_cast<double>(m[g][p]) / static_cast<double>(row)});
  }
  // Largest share first; ties by pixels, then by class indices (a stable, documented order).
  std::sort(all.begin(), all.end(), [](const Confusion& a, const Confusion& b) {
    if (a.share != b.share) return a.share > b.share;
    if (a.pixels != b.pixels) return a.pixels > b.pixels;
    return std::make_pair(a.truth, a.predicted) < std::make_pair(b.truth, b.predicted);
  });
  if (all.size() > top) all.resize(top);
  return all;
}

std::string confusion_csv(const torch::Tensor& counts, const std::vector<std::string>& class_names) {
  SEGRUN_CHECK(counts.defined() && counts.dim() == 2 && counts.size(0) == counts.size(1) &&
                   static_cast<size_t>(counts.size(0)) == class_names.size(),
               DataError,
               "metrics: a confusion matrix of " << class_names.size() << " classes must be [" << class_names.size()
                                                 << ", " << class_names.size() << "]");
  const auto quoted = [](const std::string& text) {
    if (text.find_first_of(",\"\n") == std::string::npos) return text;
    std::string out = "\"";
    for (char ch : text) out += ch == '"' ? std::string("\"\"") : std::string(1, ch);
    return out + "\"";
  };
  const auto c = counts.to(torch::kCPU, torch::kLong).contiguous();
  const auto m = c.accessor<int64_t, 2>();
  std::string csv = "truth \\ prediction";
  for (const auto& name : class_names) csv += "," + quoted(name);
  csv += "\n";
  for (int64_t g = 0; g < c.size(0); ++g) {
    csv += quoted(class_names[static_cast<size_t>(g)]);
    for (int64_t p = 0; p < c.size(1); ++p) csv += "," + std::to_string(m[g][p]);
    csv += "\n";
  }
  return csv;
}

torch::Tensor intersect_and_union(const torch::Tensor& pred, const torch::Tensor& label, int num_classes,
                                  int ignore_index) {
  check_inputs(pred, label, num_classes);
  if (pred.device().is_cpu() && label.device().is_cpu()) {
    torch::NoGradGuard no_grad;
    return intersect_and_union_cpu(pred, label, num_classes, ignore_index);
  }
  return detail::intersect_and_union_vectorized(pred, label, num_classes, ignore_index);
}

SegMetrics summarize(const torch::Tensor& areas) {
  SEGRUN_CHECK(
      areas.defined() && areas.dim() == 2 && areas.size(0) == 4, DataError,
      "metrics: areas must be a [4, K] tensor, got " << (areas.defined() ? areas.sizes() : c10::IntArrayRef{}));
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
  m.aAcc = total_label == 0 ? kNaN : 100.0 * static_cast<double>(total_intersect) / static_cast<double>(total_label);
  m.mIoU = 100.0 * nanmean(m.iou);
  m.mAcc = 100.0 * nanmean(m.acc);
  return m;
}

IoUAccumulator::IoUAccumulator(int num_classes, int ignore_index, const torch::Device& device)
    : num_classes_(num_classes), ignore_index_(ignore_index) {
  SEGRUN_CHECK(num_classes > 0, DataError, "metrics: num_classes must be positive, got " << num_classes);
  areas_ = torch::zeros({4, num_classes}, torch::TensorOptions().dtype(torch::kLong).device(device));
}

void IoUAccumulator::add(const torch::Tensor& pred, const torch::Tensor& label) {
  areas_ += intersect_and_union(pred, label, num_classes_, ignore_index_).to(areas_.device());
}

void IoUAccumulator::check_areas(const torch::Tensor& areas, const char* what) const {
  SEGRUN_CHECK(areas.defined() && areas.dim() == 2 && areas.size(0) == 4 && areas.size(1) == num_classes_ &&
                   areas.scalar_type() == torch::kLong,
               DataError,
               "metrics: " << what << " expects int64 areas [4, " << num_classes_ << "], got "
                           << (areas.defined() ? areas.scalar_type() : torch::kLong) << " "
                           << (areas.defined() ? areas.sizes() : c10::IntArrayRef{}));
}

void IoUAccumulator::merge_from(const torch::Tensor& areas) {
  check_areas(areas, "merge_from");
  areas_ += areas.to(areas_.device());
}

void IoUAccumulator::set_areas(const torch::Tensor& areas) {
  check_areas(areas, "set_areas");
  areas_ = areas.to(areas_.device()).clone().contiguous();
}

void IoUAccumulator::reset() { areas_.zero_(); }

double mean_average_precision(const torch::Tensor& scores, const torch::Tensor& targets, double* prior_map) {
  SEGRUN_CHECK(scores.dim() == 2 && scores.sizes() == targets.sizes(), DataError,
               "mAP: scores " << scores.sizes() << " and targets " << targets.sizes() << " must both be [N, K]");
  torch::Tensor s = scores.to(torch::kFloat64).contiguous().cpu();
  torch::Tensor t = targets.to(torch::kFloat64).contiguous().cpu();
  const int64_t n = s.size(0), k = s.size(1);
  double ap_sum = 0, prior_sum = 0;
  int64_t classes = 0;
  for (int64_t c = 0; c < k; ++c) {
    torch::Tensor column = s.select(1, c);
    torch::Tensor order = std::get<1>(column.sort(0, /*descending=*/true));
    torch::Tensor sorted_scores = column.index_select(0, order);
    torch::Tensor sorted_targets = t.select(1, c).index_select(0, order);
    const double positives = sorted_targets.sum().item<double>();
    if (positives <= 0) continue;
    auto sc = sorted_scores.accessor<double, 1>();
    auto tg = sorted_targets.accessor<double, 1>();
    double true_positives = 0, ap = 0, previous_recall = 0;
    for (int64_t i = 0; i < n; ++i) {
      true_positives += tg[i];
      if (i + 1 < n && sc[i + 1] == sc[i]) continue;  // one step per distinct threshold
      const double recall = true_positives / positives;
      ap += (recall - previous_recall) * (true_positives / static_cast<double>(i + 1));
      previous_recall = recall;
    }
    ap_sum += ap;
    prior_sum += positives / static_cast<double>(n);
    ++classes;
  }
  const double nan = std::numeric_limits<double>::quiet_NaN();
  if (prior_map) *prior_map = classes > 0 ? 100.0 * prior_sum / classes : nan;
  return classes > 0 ? 100.0 * ap_sum / classes : nan;
}

}  // namespace segrun::engine
