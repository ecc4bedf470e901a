// Multi-rank checks (mpirun -np 2) of the overlapped, bucketed gradient sync and of the
// collective watchdog. References are computed independently: local gradients of an identical
// model without hooks, all-reduced parameter by parameter through a separate communicator.
// (The overlap-vs-synchronous step timings are bench/grad_sync.cpp's.)
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "core/error.h"
#include "dist/communicator.h"
#include "dist/grad_sync.h"

namespace segrun::dist {
namespace {

std::shared_ptr<Communicator> world() {
  static std::shared_ptr<Communicator> comm = make_communicator("mpi", singleton_context());
  return comm;
}

// A small network with an optional second branch; its parameter count spans several buckets.
struct NetImpl : torch::nn::Module {
  NetImpl() {
    a = register_module("a", torch::nn::Linear(8, 16));
    b = register_module("b", torch::nn::Linear(16, 16));
    branch = register_module("branch", torch::nn::Linear(16, 16));
    c = register_module("c", torch::nn::Linear(16, 4));
  }
  torch::Tensor forward(const torch::Tensor& x, bool use_branch) {
    auto h = torch::tanh(a(x));
    h = torch::tanh(b(h));
    if (use_branch) h = h + torch::tanh(branch(h));
    return c(h);
  }
  torch::nn::Linear a{nullptr}, b{nullptr}, branch{nullptr}, c{nullptr};
};
TORCH_MODULE(Net);

Net make_net() {
  torch::manual_seed(42);  // identical weights on every rank
  return Net();
}

torch::Tensor rank_input(int rank, int micro) {
  torch::manual_seed(1000 + 17 * rank + micro);
  return torch::randn({5, 8});
}

// Local gradients of `net` for the given micro-batches, summed (no communication).
std::vector<torch::Tensor> local_grads(int rank, const std::vector<int>& micros, bool use_branch) {
  Net net = make_net();
  for (int m : micros) net->forward(rank_input(rank, m), use_branch).pow(2).sum().backward();
  std::vector<torch::Tensor> out;
  for (auto& p : net->parameters()) out.push_back(p.grad().defined() ? p.grad().clone() : torch::zeros_like(p));
  return out;
}

// Reference: average every parameter's gradient separately over the ranks.
std::vector<torch::Tensor> averaged(std::vector<torch::Tensor> grads) {
  static std::shared_ptr<Communicator> reference = world()->duplicate("reference");
  for (auto& g : grads) {
    reference->allreduce(g);
    g.div_(reference->size());
  }
  return grads;
}

void expect_grads_equal(Net& net, const std::vector<torch::Tensor>& expected) {
  auto params = net->parameters();
  ASSERT_EQ(params.size(), expected.size());
  for (size_t k = 0; k < params.size(); ++k) {
    ASSERT_TRUE(params[k].grad().defined()) << "parameter " << k;
    // Two ranks: a+b in either order is exact, and halving is exact.
    EXPECT_TRUE(torch::equal(params[k].grad(), expected[k]))
        << "parameter " << k << " max diff " << (params[k].grad() - expected[k]).abs().max().item<double>();
  }
}

// Each overlapped case runs with either launcher: buckets started by a communication thread on a
// duplicate communicator, or by backward itself on `comm` (as on GPUs with nccl; here the mpi
// backend's all-reduce_start blocks, which changes the timing, not the result).
class OverlappedGradientSync : public ::testing::TestWithParam<BucketLaunch> {
 protected:
  GradSyncOptions overlapped(double bucket_mb) const {
    GradSyncOptions options;
    options.bucket_mb = bucket_mb;
    options.launch = GetParam();
    return options;
  }
};

INSTANTIATE_TEST_SUITE_P(Launchers, OverlappedGradientSync,
                         ::testing::Values(BucketLaunch::kCommunicationThread, BucketLaunch::kFromBackward),
                         [](const ::testing::TestParamInfo<BucketLaunch>& info) {
                           return info.param == BucketLaunch::kFromBackward ? "FromBackward" : "CommunicationThread";
                         });

TEST_P(OverlappedGradientSync, EqualsPerParameterAllreduce) {
  auto comm = world();
  ASSERT_EQ(comm->size(), 2) << "run under mpirun -np 2";
  Net net = make_net();
  GradientSync sync(net->parameters(), comm, overlapped(0.001));  // ~1 KB buckets: several collectives
  ASSERT_TRUE(sync.overlapping());
  EXPECT_EQ(sync.launches_from_backward(), GetParam() == BucketLaunch::kFromBackward);
  ASSERT_GT(sync.bucket_count(), 3u);
  for (int step = 0; step < 3; ++step) {
    net->zero_grad();
    net->forward(rank_input(comm->rank(), step), true).pow(2).sum().backward();
    sync.synchronize();
    // Every parameter was used: every bucket was launched from the hooks during backward.
    EXPECT_EQ(sync.last_stats().buckets_in_backward, static_cast<int>(sync.bucket_count()));
    auto expected = averaged(local_grads(comm->rank(), {step}, true));
    expect_grads_equal(net, expected);
  }
}

TEST(GradientSyncLaunch, AutoOnTheMpiBackendUsesTheCommunicationThread) {
  Net net = make_net();
  GradientSync sync(net->parameters(), world(), GradSyncOptions{});
  EXPECT_TRUE(sync.overlapping());
  EXPECT_FALSE(sync.launches_from_backward());  // mpi blocks the host: a thread keeps it going
}

TEST(GradientSyncLaunch, SynchronousModeGivesTheSameGradients) {
  auto comm = world();
  Net net = make_net();
  GradSyncOptions options;
  options.bucket_mb = 0.001;
  options.overlap = false;
  GradientSync sync(net->parameters(), comm, options);
  EXPECT_FALSE(sync.overlapping());
  net->forward(rank_input(comm->rank(), 0), true).pow(2).sum().backward();
  sync.synchronize();
  expect_grads_equal(net, averaged(local_grads(comm->rank(), {0}, true)));
}

TEST_P(OverlappedGradientSync, UnusedParametersOnOneRankDoNotHang) {
  auto comm = world();
  Net net = make_net();
  GradientSync sync(net->parameters(), comm, overlapped(0.001));
  // Rank 0 skips the branch, rank 1 uses it: the branch's gradient is (0 + g1) / 2 on both.
  const bool use_branch = comm->rank() == 1;
  for (int step = 0; step < 2; ++step) {
    net->zero_grad();
    net->forward(rank_input(comm->rank(), step), use_branch).pow(2).sum().backward();
    sync.synchronize();
    expect_grads_equal(net, averaged(local_grads(comm->rank(), {step}, use_branch)));
  }
  // And a step where nobody uses it: zeros.
  net->zero_grad();
  net->forward(rank_input(comm->rank(), 9), false).pow(2).sum().backward();
  sync.synchronize();
  EXPECT_TRUE(torch::equal(net->branch->weight.grad(), torch::zeros_like(net->branch->weight)));
}

TEST_P(OverlappedGradientSync, NoSyncAccumulatesThenAveragesTheSum) {
  auto comm = world();
  Net net = make_net();
  GradientSync sync(net->parameters(), comm, overlapped(0.001));
  net->zero_grad();
  {
    auto guard = sync.no_sync();
    for (int micro = 0; micro < 2; ++micro) {
      net->forward(rank_input(comm->rank(), micro), true).pow(2).sum().backward();
      sync.synchronize();  // a no-op inside no_sync
    }
    // Still local: equal to this rank's own sum of two micro-batches.
    auto local = local_grads(comm->rank(), {0, 1}, true);
    auto params = net->parameters();
    for (size_t k = 0; k < params.size(); ++k) EXPECT_TRUE(torch::equal(params[k].grad(), local[k]));
  }
  net->forward(rank_input(comm->rank(), 2), true).pow(2).sum().backward();
  sync.synchronize();
  auto expected = averaged(local_grads(comm->rank(), {0, 1, 2}, true));
  auto params = net->parameters();
  for (size_t k = 0; k < params.size(); ++k)  // accumulation order may differ: allclose
    EXPECT_TRUE(torch::allclose(params[k].grad(), expected[k], 1e-6, 1e-6)) << "parameter " << k;
}

TEST_P(OverlappedGradientSync, BucketsReadyOutOfOrderAreReducedInIndexOrder) {
  auto comm = world();
  // Two 4 KB parameters, one bucket each: bucket 0 = q (registered last), bucket 1 = p.
  auto p = torch::zeros({1024}, torch::requires_grad());
  auto q = torch::zeros({1024}, torch::requires_grad());
  GradientSync sync({p, q}, comm, overlapped(4096.0 / (1024 * 1024)));
  ASSERT_EQ(sync.buckets(), (std::vector<std::vector<size_t>>{{1}, {0}}));
  const float r = static_cast<float>(comm->rank());
  auto grad_p = [&] { (p * (1 + r)).sum().backward(); };
  auto grad_q = [&] { (q * (10 + 10 * r)).sum().backward(); };
  // Rank 0 makes bucket 1 ready first (it must wait for bucket 0), rank 1 the other way round.
  if (comm->rank() == 0) {
    grad_p();
    grad_q();
  } else {
    grad_q();
    grad_p();
  }
  sync.synchronize();
  EXPECT_EQ(sync.last_stats().buckets_in_backward, 2);
  EXPECT_TRUE(torch::equal(p.grad(), torch::full({1024}, 1.5f)));   // (1 + 2) / 2
  EXPECT_TRUE(torch::equal(q.grad(), torch::full({1024}, 15.0f)));  // (10 + 20) / 2
}

TEST_P(OverlappedGradientSync, SecondBackwardWithoutSynchronizeIsAnError) {
  auto comm = world();
  Net net = make_net();
  GradientSync sync(net->parameters(), comm, overlapped(25.0));
  net->forward(rank_input(comm->rank(), 0), true).pow(2).sum().backward();
  try {
    net->forward(rank_input(comm->rank(), 1), true).pow(2).sum().backward();
    FAIL() << "expected an error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("no_sync"), std::string::npos) << e.what();
  }
  sync.synchronize();  // the step still completes on both ranks
}

TEST(Watchdog, LateRankIsNamedAndTheCommunicatorRefusesFurtherWork) {
  auto base = world();
  CommunicatorOptions options;
  options.timeout_s = 1.0;
  options.name = "probe";
  auto comm = make_communicator("mpi", singleton_context(), options);
  // Static: rank 0's abandoned request may write into it after this test returns.
  static torch::Tensor t = torch::ones({1000});
  comm->allreduce(t);  // #1 completes
  EXPECT_EQ(comm->sequence(), 1u);
  if (comm->rank() == 1) {
    // Arrive 3.5 s late at #2, so the collective still completes on the MPI level.
    std::this_thread::sleep_for(std::chrono::milliseconds(3500));
    comm->allreduce(t);
    EXPECT_TRUE(torch::equal(t, torch::full({1000}, 4.0f)));
  } else {
    const auto t0 = std::chrono::steady_clock::now();
    std::string message;
    try {
      comm->allreduce_noted(t, ReduceOp::kSum, "bucket 7 of 9");
    } catch (const TimeoutError& e) {
      message = e.what();
    }
    const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_EQ(message,
              "collective allreduce #2 (bucket 7 of 9, 4.0 KB) on communicator probe timed out "
              "after 1 s on rank 0: rank [1] did not arrive; check rank 1's log "
              "(logs/rank-1.log in the run directory) and whether it was killed or stalled");
    EXPECT_GE(waited, 1.0);
    EXPECT_LT(waited, 3.0);
    EXPECT_THROW(comm->barrier(), DistError);
  }
  base->barrier();  // rank 1 has joined #2: rank 0's abandoned request can complete
}

}  // namespace
}  // namespace segrun::dist
