#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "engine/metrics.h"
#include "tests/engine/test_util.h"

namespace segrun::engine {
namespace {

// The hand example (K = 4, ignore 255), shared with label_io_test.cpp.
//   label            pred
//   0   0   1   1    0 1 1 1
//   0   0   1   1    0 0 2 1
//   255 255 0   0    2 2 0 1
//   0   1   1   255  0 1 2 0
// Valid pixels: 13. Confusion (rows = label, cols = pred):
//   label 0: [5, 2, 0, 0]   label 1: [0, 4, 2, 0]   labels 2, 3: none
// intersect [5,4,0,0], pred [5,6,2,0] (the ignored pixels' preds 2,2,0 are not counted),
// label [7,6,0,0], union [7,8,2,0].
// IoU = [5/7, 1/2, 0 (predicted, absent from GT: counted), NaN (absent everywhere)]
// Acc = [5/7, 4/6, NaN, NaN]
// mIoU = (5/7 + 1/2 + 0) / 3 * 100, mAcc = (5/7 + 2/3) / 2 * 100, aAcc = 9/13 * 100.
torch::Tensor hand_label() {
  return torch::tensor({0, 0, 1, 1, 0, 0, 1, 1, 255, 255, 0, 0, 0, 1, 1, 255}, torch::kLong).view({4, 4});
}
torch::Tensor hand_pred() {
  return torch::tensor({0, 1, 1, 1, 0, 0, 2, 1, 2, 2, 0, 1, 0, 1, 2, 0}, torch::kLong).view({4, 4});
}

void expect_areas(const torch::Tensor& areas, const std::vector<std::vector<int64_t>>& expected) {
  ASSERT_EQ(areas.scalar_type(), torch::kLong);
  ASSERT_EQ(areas.dim(), 2);
  ASSERT_EQ(areas.size(0), 4);
  for (int64_t r = 0; r < 4; ++r) {
    ASSERT_EQ(areas.size(1), static_cast<int64_t>(expected[r].size()));
    for (int64_t c = 0; c < areas.size(1); ++c) {
      EXPECT_EQ(areas[r][c].item<int64_t>(), expected[r][c]) << "row " << r << " class " << c;
    }
  }
}

TEST(Metrics, HandComputedConfusionMatrix) {
  const auto areas = intersect_and_union(hand_pred(), hand_label(), 4);
  expect_areas(areas, {{5, 4, 0, 0}, {7, 8, 2, 0}, {5, 6, 2, 0}, {7, 6, 0, 0}});

  const SegMetrics m = summarize(areas);
  ASSERT_EQ(m.iou.size(), 4u);
  EXPECT_DOUBLE_EQ(m.iou[0], 5.0 / 7.0);
  EXPECT_DOUBLE_EQ(m.iou[1], 0.5);
  EXPECT_DOUBLE_EQ(m.iou[2], 0.0);
  EXPECT_TRUE(std::isnan(m.iou[3]));
  EXPECT_DOUBLE_EQ(m.acc[0], 5.0 / 7.0);
  EXPECT_DOUBLE_EQ(m.acc[1], 4.0 / 6.0);
  EXPECT_TRUE(std::isnan(m.acc[2]));
  EXPECT_TRUE(std::isnan(m.acc[3]));
  EXPECT_NEAR(m.mIoU, 40.476190476190474, 1e-12);
  EXPECT_NEAR(m.mAcc, 69.04761904761905, 1e-12);
  EXPECT_NEAR(m.aAcc, 69.23076923076923, 1e-12);
  EXPECT_EQ(m.pixels, 13);
}

// The hand example's confusion matrix (see above), its relation to the areas, and what is
// printed and written of it.
TEST(Metrics, ConfusionMatrixOfTheHandExample) {
  const torch::Tensor expected =
      torch::tensor({5, 2, 0, 0, 0, 4, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0}, torch::kLong).view({4, 4});
  const torch::Tensor confusion = confusion_matrix(hand_pred(), hand_label(), 4);
  EXPECT_TRUE(torch::equal(confusion, expected)) << confusion;
  const torch::Tensor areas = intersect_and_union(hand_pred(), hand_label(), 4);
  EXPECT_TRUE(torch::equal(confusion.diagonal(), areas[kIntersect]));
  EXPECT_TRUE(torch::equal(confusion.sum(1), areas[kLabelArea]));
  EXPECT_TRUE(torch::equal(confusion.sum(0), areas[kPredArea]));
  EXPECT_TRUE(torch::equal(confusion_matrix(torch::stack({hand_pred(), hand_pred()}).to(torch::kUInt8),
                                            torch::stack({hand_label(), hand_label()}), 4),
                           expected * 2));
  // Values outside [0, K) are counted nowhere (K = 3): pred 9 on label 1, label 5.
  EXPECT_TRUE(torch::equal(confusion_matrix(torch::tensor({0, 9, 2, 1}), torch::tensor({0, 1, 2, 5}), 3),
                           torch::tensor({1, 0, 0, 0, 0, 0, 0, 0, 1}, torch::kLong).view({3, 3})));

  // Off the diagonal: 1 -> 2 is 2 of class 1's 6 pixels, 0 -> 1 is 2 of class 0's 7.
  std::vector<Confusion> top = top_confusions(confusion, 10);
  ASSERT_EQ(top.size(), 2u);
  EXPECT_EQ(std::make_pair(top[0].truth, top[0].predicted), std::make_pair(int64_t{1}, int64_t{2}));
  EXPECT_EQ(top[0].pixels, 2);
  EXPECT_DOUBLE_EQ(top[0].share, 2.0 / 6.0);
  EXPECT_EQ(std::make_pair(top[1].truth, top[1].predicted), std::make_pair(int64_t{0}, int64_t{1}));
  EXPECT_DOUBLE_EQ(top[1].share, 2.0 / 7.0);
  EXPECT_EQ(top_confusions(confusion, 1).size(), 1u);
  // Equal shares and pixels: by class indices.
  top = top_confusions(torch::ones({2, 2}, torch::kLong), 10);
  ASSERT_EQ(top.size(), 2u);
  EXPECT_EQ(top[0].truth, 0);
  EXPECT_EQ(top[1].truth, 1);
  EXPECT_THROW(top_confusions(torch::zeros({2, 3}, torch::kLong), 1), DataError);

  const torch::Tensor small = torch::tensor({3, 1, 0, 2}, torch::kLong).view({2, 2});
  EXPECT_EQ(confusion_csv(small, {"wall", "chest, of \"drawers\""}),
            "truth \\ prediction,wall,\"chest, of \"\"drawers\"\"\"\n"
            "wall,3,1\n"
            "\"chest, of \"\"drawers\"\"\",0,2\n");
  EXPECT_THROW(confusion_csv(small, {"wall"}), DataError);
}

TEST(Metrics, OutOfRangeValues) {
  // K = 3. A pred outside [0, K) on a valid pixel is wrong and counted in no pred area.
  auto areas = intersect_and_union(torch::tensor({0, 9, 2}), torch::tensor({0, 1, 2}), 3);
  expect_areas(areas, {{1, 0, 1}, {1, 1, 1}, {1, 0, 1}, {1, 1, 1}});
  const auto m = summarize(areas);
  EXPECT_DOUBLE_EQ(m.iou[1], 0.0);
  EXPECT_NEAR(m.aAcc, 200.0 / 3.0, 1e-12);
  // A label outside [0, K) that is not ignore_index adds no label area; its pred still counts.
  areas = intersect_and_union(torch::tensor({1, -1}), torch::tensor({5, 255}), 3);
  expect_areas(areas, {{0, 0, 0}, {0, 1, 0}, {0, 1, 0}, {0, 0, 0}});
  // A custom ignore index.
  areas = intersect_and_union(torch::tensor({1, 1}), torch::tensor({1, 0}), 3, /*ignore=*/0);
  expect_areas(areas, {{0, 1, 0}, {0, 1, 0}, {0, 1, 0}, {0, 1, 0}});
}

TEST(Metrics, AcceptsAnyIntegerDtypeAndBatches) {
  IoUAccumulator a(4);
  a.add(hand_pred().to(torch::kUInt8), hand_label().to(torch::kUInt8));
  a.add(hand_pred().to(torch::kInt), hand_label());
  IoUAccumulator b(4);
  b.add(torch::stack({hand_pred(), hand_pred()}), torch::stack({hand_label(), hand_label()}));
  EXPECT_TRUE(torch::equal(a.areas(), b.areas()));
  expect_areas(b.areas(), {{10, 8, 0, 0}, {14, 16, 4, 0}, {10, 12, 4, 0}, {14, 12, 0, 0}});
  EXPECT_TRUE(b.areas().is_contiguous());
}

TEST(Metrics, MergeSetResetAndValidation) {
  IoUAccumulator a(4);
  a.add(hand_pred(), hand_label());
  IoUAccumulator total(4);
  total.merge_from(a.areas());
  total.merge_from(a.areas());
  EXPECT_TRUE(torch::equal(total.areas(), a.areas() * 2));
  total.set_areas(a.areas());
  EXPECT_TRUE(torch::equal(total.areas(), a.areas()));
  // Summed areas in place, as an all-reduce would do.
  total.mutable_areas().mul_(3);
  EXPECT_EQ(total.areas()[0][0].item<int64_t>(), 15);
  EXPECT_NEAR(total.summarize().mIoU, 40.476190476190474, 1e-12);  // ratios unchanged
  total.reset();
  EXPECT_EQ(total.areas().sum().item<int64_t>(), 0);
  const auto empty = total.summarize();
  EXPECT_TRUE(std::isnan(empty.mIoU));
  EXPECT_TRUE(std::isnan(empty.aAcc));

  EXPECT_THROW(total.merge_from(torch::zeros({4, 3}, torch::kLong)), DataError);
  EXPECT_THROW(total.set_areas(torch::zeros({4, 4}, torch::kFloat)), DataError);
  EXPECT_THROW(total.add(hand_pred(), hand_label().view({2, 8})), DataError);
  EXPECT_THROW(total.add(hand_pred().to(torch::kFloat), hand_label()), DataError);
  EXPECT_THROW(IoUAccumulator(0), DataError);
}

// Independent reference: mmseg's intersect_and_union re-implemented in numpy (histograms with
// bins=K over [0, K-1], as torch.histc does) and run by /usr/bin/python3 on the same arrays.
constexpr const char* kReferenceScript = R"PY(
import sys
import numpy as np
path, k, ignore = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
data = np.fromfile(path, dtype=np.int64)
n = data.size // 2
pred, label = data[:n], data[n:]
mask = label != ignore
pred, label = pred[mask], label[mask]
intersect = pred[pred == label]
def hist(x):
    return np.histogram(x, bins=k, range=(0, k - 1))[0].astype(np.int64)
ai, ap, al = hist(intersect), hist(pred), hist(label)
au = ap + al - ai
for row in (ai, au, ap, al):
    print(" ".join(str(int(v)) for v in row))
)PY";

torch::Tensor run_reference(const torch::Tensor& pred, const torch::Tensor& label, int k, int ignore,
                            const std::filesystem::path& dir) {
  const auto script = dir / "reference.py";
  const auto input = dir / "input.bin";
  const auto output = dir / "areas.txt";
  std::ofstream(script) << kReferenceScript;
  {
    const auto both = torch::cat({pred.reshape({-1}), label.reshape({-1})}).to(torch::kLong).contiguous();
    std::ofstream out(input, std::ios::binary);
    out.write(reinterpret_cast<const char*>(both.data_ptr<int64_t>()),
              static_cast<std::streamsize>(both.numel() * sizeof(int64_t)));
  }
  std::ostringstream cmd;
  cmd << SEGRUN_TEST_PYTHON << " " << script << " " << input << " " << k << " " << ignore << " > " << output;
  EXPECT_EQ(std::system(cmd.str().c_str()), 0) << cmd.str();
  std::ifstream in(output);
  auto areas = torch::zeros({4, k}, torch::kLong);
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < k; ++c) {
      int64_t v = -1;
      in >> v;
      areas[r][c] = v;
    }
  EXPECT_TRUE(static_cast<bool>(in)) << "could not parse " << output;
  return areas;
}

TEST(Metrics, MultiLabelAveragePrecisionHandComputed) {
  // Class 0: positives ranked 1st and 3rd -> AP = 0.5 * 1 + 0.5 * 2/3.
  // Class 1: all scores tied -> one step at recall 1 with precision 2/4 = its frequency.
  // Class 2: no positive -> not averaged.
  torch::Tensor scores = torch::tensor({{0.9, 0.5, 0.1}, {0.8, 0.5, 0.2}, {0.7, 0.5, 0.3}, {0.6, 0.5, 0.4}});
  torch::Tensor targets = torch::tensor({{1., 1., 0.}, {0., 0., 0.}, {1., 0., 0.}, {0., 1., 0.}});
  double prior = 0;
  const double map = mean_average_precision(scores, targets, &prior);
  EXPECT_NEAR(map, 100.0 * ((0.5 + 0.5 * 2.0 / 3.0) + 0.5) / 2.0, 1e-9);
  EXPECT_NEAR(prior, 100.0 * (0.5 + 0.5) / 2.0, 1e-9);
  // A perfect ranking scores 100; no positives at all -> NaN.
  EXPECT_NEAR(mean_average_precision(targets, targets), 100.0, 1e-9);
  EXPECT_TRUE(std::isnan(mean_average_precision(scores, torch::zeros({4, 3}))));
  EXPECT_THROW(mean_average_precision(scores, torch::zeros({4, 2})), DataError);
}

TEST(Metrics, MatchesNumpyReferenceOnRandomArrays) {
  testing::ScratchDir dir("metrics-ref");
  torch::manual_seed(1234);
  struct Case {
    int k;
    std::vector<int64_t> shape;
  };
  for (const Case& c : {Case{150, {2, 37, 53}}, Case{19, {64, 96}}, Case{2, {3, 5, 7}}}) {
    const int k = c.k;
    // Preds mostly in range plus a few past it; labels in range, ~10% ignore, a few past K.
    auto pred = torch::randint(0, k + 2, c.shape, torch::kLong);
    auto label = torch::randint(0, k, c.shape, torch::kLong);
    label = torch::where(torch::rand(c.shape).lt(0.1), torch::full({}, 255, torch::kLong), label);
    label = torch::where(torch::rand(c.shape).lt(0.02), torch::full({}, k + 1, torch::kLong), label);
    // Make some predictions right so the intersections are not tiny.
    pred = torch::where(torch::rand(c.shape).lt(0.5), label, pred);
    const auto expected = run_reference(pred, label, k, 255, dir.path());
    IoUAccumulator acc(k);
    acc.add(pred, label);
    EXPECT_TRUE(torch::equal(acc.areas(), expected)) << "K=" << k << "\nours:\n"
                                                     << acc.areas() << "\nreference:\n"
                                                     << expected;
    // The tensor-op path (used on accelerators) agrees with the CPU counting loop.
    EXPECT_TRUE(torch::equal(detail::intersect_and_union_vectorized(pred, label, k), expected)) << "K=" << k;
    // The confusion matrix: the reference's intersections on its diagonal, and every pixel whose
    // label and prediction are both classes counted once.
    const auto confusion = confusion_matrix(pred, label, k);
    EXPECT_TRUE(torch::equal(confusion.diagonal(), expected[kIntersect])) << "K=" << k;
    EXPECT_EQ(confusion.sum().item<int64_t>(),
              (label.ge(0) & label.lt(k) & pred.ge(0) & pred.lt(k)).sum().item<int64_t>())
        << "K=" << k;
    // uint8 inputs (PNG label maps) take the in-place path: same areas where values fit.
    const auto fits = pred.lt(256);
    const auto p8 = torch::where(fits, pred, label).to(torch::kUInt8);
    const auto l8 = label.to(torch::kUInt8);
    EXPECT_TRUE(
        torch::equal(intersect_and_union(p8, l8, k), intersect_and_union(p8.to(torch::kLong), l8.to(torch::kLong), k)))
        << "K=" << k;
  }
}

}  // namespace
}  // namespace segrun::engine
