// Mixed precision (engine/precision.h) on the CPU. Reference: GradScaler's documented rules
// (init 2^16, x0.5 on inf/nan with the step skipped, x2 after growth_interval clean steps).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <limits>

#include "core/error.h"
#include "engine/precision.h"

namespace segrun::engine {
namespace {

TEST(Precision, ParsesNamesAndRefusesReducedPrecisionOnTheCpu) {
  EXPECT_EQ(parse_precision("fp32", torch::kCPU), Precision::kFp32);
  EXPECT_EQ(parse_precision("bf16", torch::Device(torch::kCUDA, 0)), Precision::kBf16);  // no GPU needed to parse
  EXPECT_EQ(precision_name(parse_precision("fp16", torch::Device(torch::kCUDA, 1))), "fp16");
  EXPECT_THROW(parse_precision("fp16", torch::kCPU), ConfigError);
  EXPECT_THROW(parse_precision("bf16", torch::kCPU), ConfigError);
  EXPECT_THROW(parse_precision("half", torch::kCPU), ConfigError);
}

TEST(Precision, AutocastScopeCastsMatmulsAndRestores) {
  const torch::Tensor x = torch::randn({4, 8}), w = torch::randn({8, 3});
  {
    AutocastScope scope(torch::kCPU, Precision::kBf16);
    EXPECT_EQ(torch::matmul(x, w).scalar_type(), torch::kBFloat16);
    {
      AutocastScope inner(torch::kCPU, Precision::kFp32);  // fp32: no change
      EXPECT_EQ(torch::matmul(x, w).scalar_type(), torch::kBFloat16);
    }
  }
  EXPECT_EQ(torch::matmul(x, w).scalar_type(), torch::kFloat32);
}

TEST(LossScaler, SkipsNonFiniteStepsAndAdaptsTheScale) {
  LossScaler scaler(true, LossScalerOptions{1024.0, 2.0, 0.5, 3});
  auto p = torch::zeros({4}).requires_grad_();
  EXPECT_EQ(scaler.scale(torch::full({}, 2.0)).item<double>(), 2048.0);
  p.mutable_grad() = torch::full({4}, 512.0);
  EXPECT_TRUE(scaler.unscale_and_update({p}));
  EXPECT_TRUE(torch::equal(p.grad(), torch::full({4}, 0.5)));  // divided by the scale
  p.mutable_grad()[2] = std::numeric_limits<float>::infinity();
  EXPECT_FALSE(scaler.unscale_and_update({p}));
  EXPECT_EQ(scaler.current_scale(), 512.0);
  EXPECT_EQ(scaler.skipped_steps(), 1);
  for (int i = 0; i < 3; ++i) {
    p.mutable_grad() = torch::ones({4});
    EXPECT_TRUE(scaler.unscale_and_update({p}));
  }
  EXPECT_EQ(scaler.current_scale(), 1024.0);  // three clean steps in a row: x2
  scaler.restore(256.0, 2);
  EXPECT_EQ(scaler.current_scale(), 256.0);
  EXPECT_EQ(scaler.growth_tracker(), 2);

  LossScaler off(false);
  p.mutable_grad() = torch::full({4}, std::numeric_limits<float>::quiet_NaN());
  EXPECT_TRUE(off.unscale_and_update({p}));  // disabled: passes everything through
  EXPECT_EQ(off.scale(torch::full({}, 2.0)).item<double>(), 2.0);
}

}  // namespace
}  // namespace segrun::engine
