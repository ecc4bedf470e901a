// The fused upsample + cross-entropy (models/losses/upsampled_cross_entropy.h) against the unfused LibTorch
// ops it replaces (F::interpolate bilinear, align_corners = false, then F::cross_entropy with
// ignore_index and the mean over all pixels): values and gradients on up- and down-scaling, odd
// sizes, ignored pixels, 150 classes; bad labels; and the no-grad path.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>
#include <tuple>
#include <vector>

#include "core/error.h"
#include "models/losses/seg_losses.h"
#include "models/losses/upsampled_cross_entropy.h"

namespace segrun::models {
namespace {

namespace F = torch::nn::functional;

torch::Tensor unfused(const torch::Tensor& logits, const torch::Tensor& labels) {
  torch::Tensor resized = F::interpolate(logits, F::InterpolateFuncOptions()
                                                     .size(std::vector<int64_t>{labels.size(1), labels.size(2)})
                                                     .mode(torch::kBilinear)
                                                     .align_corners(false));
  return F::cross_entropy(resized, labels, F::CrossEntropyFuncOptions().ignore_index(255).reduction(torch::kNone))
      .mean();
}

TEST(UpsampledCrossEntropy, EqualsInterpolateThenCrossEntropy) {
  // (batch, classes, h, w, H, W): x4 as the decode heads, odd ratios, downscaling, one class.
  const std::vector<std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t>> cases{{2, 150, 16, 16, 64, 64},
                                                                                            {3, 7, 13, 9, 50, 37},
                                                                                            {1, 5, 20, 24, 8, 10},
                                                                                            {2, 1, 4, 4, 16, 16},
                                                                                            {1, 19, 1, 1, 5, 7}};
  torch::manual_seed(0);
  for (const auto& [b, k, h, w, out_h, out_w] : cases) {
    const std::string what = std::to_string(b) + "x" + std::to_string(k) + "x" + std::to_string(h) + "x" +
                             std::to_string(w) + " -> " + std::to_string(out_h) + "x" + std::to_string(out_w);
    torch::Tensor base = torch::randn({b, k, h, w}) * 3.0;
    torch::Tensor labels = torch::randint(0, k, {b, out_h, out_w}, torch::kLong);
    labels.masked_fill_(torch::rand({b, out_h, out_w}).lt(0.2), 255);
    torch::Tensor a = base.clone().requires_grad_(true), c = base.clone().requires_grad_(true);
    torch::Tensor fused = upsampled_cross_entropy(a, labels, 255);
    torch::Tensor reference = unfused(c, labels);
    EXPECT_NEAR(fused.item<double>(), reference.item<double>(), 1e-5 * std::max(1.0, reference.item<double>())) << what;
    (2.5 * fused).backward();
    (2.5 * reference).backward();
    const double scale = c.grad().abs().max().item<double>();
    EXPECT_LE((a.grad() - c.grad()).abs().max().item<double>(), 1e-5 * scale + 1e-9) << what;
    // The public loss (which dispatches to the fused path here) keeps the unfused value.
    EXPECT_NEAR(seg_cross_entropy(base, labels).item<double>(), reference.item<double>(),
                1e-5 * std::max(1.0, reference.item<double>()))
        << what;
  }
}

TEST(UpsampledCrossEntropy, AllIgnoredBadLabelsAndNoGrad) {
  torch::Tensor logits = torch::randn({2, 4, 3, 3}, torch::requires_grad());
  torch::Tensor ignored = torch::full({2, 12, 12}, 255, torch::kLong);
  torch::Tensor zero = upsampled_cross_entropy(logits, ignored, 255);
  EXPECT_EQ(zero.item<double>(), 0.0);
  zero.backward();
  EXPECT_EQ(logits.grad().abs().max().item<double>(), 0.0);

  torch::Tensor bad = torch::zeros({2, 12, 12}, torch::kLong);
  bad[1][5][7] = 4;
  try {
    upsampled_cross_entropy(logits, bad, 255);
    FAIL() << "label 4 of 4 classes accepted";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("label values must be in [0, 4) or 255; found 4"), std::string::npos)
        << e.what();
  }
  bad[1][5][7] = -3;
  EXPECT_THROW(seg_cross_entropy(logits, bad), DataError);

  torch::NoGradGuard no_grad;
  torch::Tensor labels = torch::randint(0, 4, {2, 12, 12}, torch::kLong);
  EXPECT_NEAR(upsampled_cross_entropy(logits, labels, 255).item<double>(), unfused(logits, labels).item<double>(),
              1e-5);
}

}  // namespace
}  // namespace segrun::models
