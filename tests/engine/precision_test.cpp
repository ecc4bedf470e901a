// Mixed precision (engine/precision.h) and the multi-tensor AdamW (engine/optimizer.h) on the CPU.
// References: LibTorch's own per-parameter AdamW (bitwise), and GradScaler's documented rules
// (init 2^16, x0.5 on inf/nan with the step skipped, x2 after growth_interval clean steps).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <limits>

#include "core/error.h"
#include "engine/optimizer.h"
#include "engine/precision.h"

namespace segrun::engine {
namespace {

TEST(MultiTensorAdamW, EqualsLibTorchsAdamWBitForBit) {
  torch::manual_seed(3);
  std::vector<torch::Tensor> a, b;
  for (auto shape : {std::vector<int64_t>{5}, {3, 4}, {2, 3, 3, 3}}) {
    a.push_back(torch::randn(shape).requires_grad_());
    b.push_back(a.back().detach().clone().requires_grad_());
  }
  const auto options = torch::optim::AdamWOptions(1e-2).weight_decay(0.05).betas({0.8, 0.99}).eps(1e-6);
  torch::optim::AdamW reference(a, options);
  MultiTensorAdamW multi(b, options);
  for (int step = 0; step < 4; ++step) {
    for (size_t i = 0; i < a.size(); ++i) {
      if (step == 2 && i == 1) {  // a parameter without gradient this step: its step count lags
        a[i].mutable_grad() = torch::Tensor();
        b[i].mutable_grad() = torch::Tensor();
        continue;
      }
      const torch::Tensor g = torch::randn(a[i].sizes());
      a[i].mutable_grad() = g.clone();
      b[i].mutable_grad() = g.clone();
    }
    reference.step();
    multi.step();
  }
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i])) << "parameter " << i;
}

TEST(MultiTensorAdamW, StateSerializesLikeAdamW) {
  torch::manual_seed(4);
  auto p = torch::randn({6}).requires_grad_();
  MultiTensorAdamW multi({p}, torch::optim::AdamWOptions(1e-3));
  p.mutable_grad() = torch::ones({6});
  multi.step();
  torch::serialize::OutputArchive out;
  multi.save(out);
  std::ostringstream bytes;
  out.save_to(bytes);
  auto q = p.detach().clone().requires_grad_();
  torch::optim::AdamW plain({q}, torch::optim::AdamWOptions(1e-3));
  torch::serialize::InputArchive in;
  std::istringstream stream(bytes.str());
  in.load_from(stream);
  plain.load(in);
  q.mutable_grad() = torch::ones({6});
  p.mutable_grad() = torch::ones({6});
  plain.step();
  multi.step();
  EXPECT_TRUE(torch::equal(p, q));
}

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
