// Collectives and the layers built on them at world sizes 1-8 in one process, over the
// in-process communicator (dist/inprocess_communicator.h): the Communicator contract
// (tests/dist/communicator_conformance.h), duplicates independent of their parent, SyncBatchNorm over
// uneven per-rank batches against BatchNorm2d over the global batch, and the overlapped gradient
// sync against the gradient of the whole batch in one process.
#include "dist/inprocess_communicator.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <atomic>
#include <cstdint>
#include <vector>

#include "dist/grad_sync.h"
#include "dist/sync_batch_norm.h"
#include "tests/dist/communicator_conformance.h"

namespace segrun::dist {
namespace {

// A non-owning shared_ptr to a thread's communicator, for APIs that take one.
std::shared_ptr<Communicator> view(Communicator& comm) {
  return {&comm, [](Communicator*) {}};
}

TEST(InProcessWorld, CollectivesAtEveryWorldSizeUpToEight) {
  for (int world = 1; world <= 8; ++world) {
    SCOPED_TRACE("world " + std::to_string(world));
    std::atomic<int> checked{0};
    run_inprocess_world(world, [&](Communicator& comm) {
      EXPECT_EQ(comm.size(), world);
      EXPECT_EQ(comm.backend_name(), "inprocess");
      conformance::expect_communicator_contract(comm, torch::kCPU);
      // Every collective counts once, whatever its size.
      const uint64_t before = comm.sequence();
      torch::Tensor t = torch::ones({5});
      comm.allreduce(t);
      comm.barrier();
      EXPECT_EQ(comm.sequence(), before + 2);
      ++checked;
    });
    EXPECT_EQ(checked.load(), world);
  }
}

TEST(InProcessWorld, DuplicatesRunBesideTheirParent) {
  run_inprocess_world(3, [](Communicator& comm) {
    std::unique_ptr<Communicator> side = comm.duplicate("side");
    std::unique_ptr<Communicator> other = comm.duplicate("side");  // a second one of the same name
    torch::Tensor a = torch::ones({1}), b = torch::full({1}, 2.0), c = torch::full({1}, 3.0);
    // Different orders on the three communicators cannot mix: each has its own group.
    side->allreduce(b);
    comm.allreduce(a);
    other->allreduce(c);
    EXPECT_EQ(a.item<double>(), 3.0);
    EXPECT_EQ(b.item<double>(), 6.0);
    EXPECT_EQ(c.item<double>(), 9.0);
  });
}

// SyncBatchNorm over the in-process world equals BatchNorm2d over the global batch of 7 samples,
// split unevenly (rank r holds a slice whose size depends on r).
TEST(InProcessWorld, SyncBatchNormEqualsBatchNormOverTheGlobalBatch) {
  torch::manual_seed(11);
  const torch::Tensor x = torch::randn({7, 3, 4, 4}) * 2 + 0.5;
  const torch::Tensor upstream = torch::randn({7, 3, 4, 4});
  const torch::Tensor gamma = torch::rand({3}) + 0.5, beta = torch::randn({3});
  torch::nn::BatchNorm2d reference(3);
  {
    torch::NoGradGuard no_grad;
    reference->weight.copy_(gamma);
    reference->bias.copy_(beta);
  }
  const torch::Tensor x_ref = x.clone().requires_grad_(true);
  (reference->forward(x_ref) * upstream).sum().backward();

  for (int world : {1, 2, 3, 4}) {
    SCOPED_TRACE("world " + std::to_string(world));
    run_inprocess_world(world, [&](Communicator& comm) {
      // Slices of the 7 samples: sizes 7 / (3, 4) / (2, 2, 3) / (1, 2, 2, 2).
      const int r = comm.rank(), n = comm.size();
      const int64_t begin = r * 7 / n, end = (r + 1) * 7 / n;
      SyncBatchNorm sync(3, view(comm));
      {
        torch::NoGradGuard no_grad;
        sync->weight.copy_(gamma);
        sync->bias.copy_(beta);
      }
      const torch::Tensor x_local = x.slice(0, begin, end).clone().requires_grad_(true);
      (sync->forward(x_local) * upstream.slice(0, begin, end)).sum().backward();
      torch::Tensor wg = sync->weight.grad().clone(), bg = sync->bias.grad().clone();
      comm.allreduce(wg);
      comm.allreduce(bg);
      EXPECT_TRUE(torch::allclose(x_local.grad(), x_ref.grad().slice(0, begin, end), 1e-4, 1e-5));
      EXPECT_TRUE(torch::allclose(wg, reference->weight.grad(), 1e-4, 1e-4));
      EXPECT_TRUE(torch::allclose(bg, reference->bias.grad(), 1e-4, 1e-4));
      EXPECT_TRUE(torch::allclose(sync->running_mean, reference->running_mean, 1e-5, 1e-6));
      EXPECT_TRUE(torch::allclose(sync->running_var, reference->running_var, 1e-5, 1e-6));
    });
  }
}

// The overlapped, bucketed gradient sync averages to the gradient of the whole batch computed in
// one process, at every world size that divides the batch of 8.
TEST(InProcessWorld, OverlappedGradientSyncEqualsTheWholeBatchGradient) {
  torch::manual_seed(3);
  const torch::Tensor x = torch::randn({8, 16}), target = torch::randn({8, 4});
  auto make_net = [] {
    return torch::nn::Sequential(torch::nn::Linear(16, 32), torch::nn::Functional(torch::tanh),
                                 torch::nn::Linear(32, 4));
  };
  torch::nn::Sequential reference = make_net();
  std::vector<torch::Tensor> weights;
  for (const auto& p : reference->parameters()) weights.push_back(p.detach().clone());
  torch::mse_loss(reference->forward(x), target).backward();
  std::vector<torch::Tensor> expected;
  for (const auto& p : reference->parameters()) expected.push_back(p.grad().clone());

  for (int world : {1, 2, 4, 8}) {
    SCOPED_TRACE("world " + std::to_string(world));
    run_inprocess_world(world, [&](Communicator& comm) {
      // The reference's weights (the threads share LibTorch's global generator, so each rank
      // copies them instead of drawing its own).
      torch::nn::Sequential net = make_net();
      {
        torch::NoGradGuard no_grad;
        const std::vector<torch::Tensor> params = net->parameters();
        for (size_t i = 0; i < params.size(); ++i) params[i].copy_(weights[i]);
      }
      GradSyncOptions options;
      options.bucket_mb = 0.001;  // several buckets
      options.overlap = true;
      GradientSync sync(net->parameters(), view(comm), options);
      const int64_t per_rank = 8 / comm.size(), begin = comm.rank() * per_rank;
      torch::mse_loss(net->forward(x.slice(0, begin, begin + per_rank)), target.slice(0, begin, begin + per_rank))
          .backward();
      sync.synchronize();
      const std::vector<torch::Tensor> params = net->parameters();
      for (size_t i = 0; i < params.size(); ++i)
        EXPECT_TRUE(torch::allclose(params[i].grad(), expected[i], 1e-5, 1e-6)) << "parameter " << i;
      EXPECT_GT(sync.bucket_count(), 1u);
    });
  }
}

}  // namespace
}  // namespace segrun::dist
