// Single-process checks of dist/: SyncBatchNorm against torch's BatchNorm2d (a world of one must
// compute exactly BatchNorm), and the bucketing of GradientSync.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "dist/grad_sync.h"
#include "dist/sync_batch_norm.h"

namespace segrun::dist {
namespace {

TEST(SyncBatchNorm, WorldOfOneEqualsBatchNorm2d) {
  torch::manual_seed(3);
  auto x = torch::randn({3, 4, 5, 6}) * 3 + 1;
  auto w = torch::randn({3, 4, 5, 6});  // a fixed upstream gradient
  torch::nn::BatchNorm2d reference(4);
  SyncBatchNorm sync(4, nullptr);
  {
    torch::NoGradGuard g;
    auto gamma = torch::rand({4}) + 0.5, beta = torch::randn({4});
    reference->weight.copy_(gamma);
    reference->bias.copy_(beta);
    sync->weight.copy_(gamma);
    sync->bias.copy_(beta);
  }
  auto x1 = x.clone().requires_grad_(true), x2 = x.clone().requires_grad_(true);
  auto y1 = reference->forward(x1), y2 = sync->forward(x2);
  EXPECT_TRUE(torch::allclose(y1, y2, 1e-5, 1e-5));
  (y1 * w).sum().backward();
  (y2 * w).sum().backward();
  EXPECT_TRUE(torch::allclose(x1.grad(), x2.grad(), 1e-4, 1e-5));
  EXPECT_TRUE(torch::allclose(reference->weight.grad(), sync->weight.grad(), 1e-4, 1e-4));
  EXPECT_TRUE(torch::allclose(reference->bias.grad(), sync->bias.grad(), 1e-4, 1e-4));
  EXPECT_TRUE(torch::allclose(reference->running_mean, sync->running_mean, 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(reference->running_var, sync->running_var, 1e-5, 1e-6));
  EXPECT_EQ(sync->num_batches_tracked.item<int64_t>(), 1);
  reference->eval();
  sync->eval();
  EXPECT_TRUE(torch::allclose(reference->forward(x), sync->forward(x), 1e-5, 1e-5));
}

TEST(SyncBatchNorm, HasBatchNormParameterNames) {
  SyncBatchNorm sync(2, nullptr);
  std::vector<std::string> names;
  for (const auto& p : sync->named_parameters()) names.push_back(p.key());
  for (const auto& b : sync->named_buffers()) names.push_back(b.key());
  EXPECT_EQ(names, (std::vector<std::string>{"weight", "bias", "running_mean", "running_var",
                                             "num_batches_tracked"}));
}

TEST(GradientSync, BucketsInReverseOrderUpToTheCap) {
  // 4 float params of 1 MiB, 1 MiB, 0.5 MiB, 2 MiB; cap 2 MiB.
  std::vector<torch::Tensor> params{torch::zeros({262144}, torch::requires_grad()),
                                    torch::zeros({262144}, torch::requires_grad()),
                                    torch::zeros({131072}, torch::requires_grad()),
                                    torch::zeros({524288}, torch::requires_grad())};
  GradientSync sync(params, nullptr, 2.0);
  ASSERT_EQ(sync.bucket_count(), 3u);
  EXPECT_EQ(sync.buckets()[0], (std::vector<size_t>{3}));
  EXPECT_EQ(sync.buckets()[1], (std::vector<size_t>{2, 1}));
  EXPECT_EQ(sync.buckets()[2], (std::vector<size_t>{0}));
}

TEST(GradientSync, ParametersWithoutGradientGetZeros) {
  auto a = torch::ones({3}, torch::requires_grad());
  auto b = torch::ones({2}, torch::requires_grad());
  (a * 2).sum().backward();
  GradientSync sync({a, b}, nullptr);
  sync.synchronize();
  ASSERT_TRUE(b.grad().defined());
  EXPECT_TRUE(torch::equal(b.grad(), torch::zeros({2})));
  EXPECT_TRUE(torch::equal(a.grad(), torch::full({3}, 2.0)));
}

}  // namespace
}  // namespace segrun::dist
