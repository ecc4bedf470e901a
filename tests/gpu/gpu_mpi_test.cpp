// GPU checks with 2 ranks sharing cuda:0 through the MPI backend (CUDA tensors staged through
// pinned host memory), run by ctest under mpirun -np 2 (label gpu; skipped without a GPU).
// Reference: on every rank, the same network on the whole global batch in a world of one.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "dist/communicator.h"
#include "dist/device.h"
#include "dist/grad_sync.h"
#include "dist/rank_context.h"
#include "dist/sync_batch_norm.h"
#include "engine/precision.h"
#include "tests/dist/communicator_conformance.h"
#include "tests/gpu/gpu_test_device.h"
#include "tests/gpu/sync_bn_net.h"

namespace segrun::dist {
namespace {

// cuda:0, or the CPU in a rehearsal (gpu_test_device.h).
torch::Device test_device() { return test::gpu_test_device(); }

Net make_net(std::shared_ptr<Communicator> comm) { return make_sync_bn_net(std::move(comm), test_device()); }

// 2 ranks x batch 3 with SyncBatchNorm and the overlapped, bucketed gradient sync equal 1 rank x
// batch 6: outputs, averaged gradients and running statistics; with the buckets started by the
// communication thread and by backward (LibTorch's autograd device thread) on the communicator
// SyncBatchNorm uses, as with nccl on several GPUs.
class GpuMpi : public ::testing::TestWithParam<BucketLaunch> {};

INSTANTIATE_TEST_SUITE_P(Launchers, GpuMpi,
                         ::testing::Values(BucketLaunch::kCommunicationThread, BucketLaunch::kFromBackward),
                         [](const ::testing::TestParamInfo<BucketLaunch>& info) {
                           return info.param == BucketLaunch::kFromBackward ? "FromBackward" : "CommunicationThread";
                         });

// The Communicator contract with 2 ranks and CUDA tensors (staged through pinned host memory).
TEST(GpuMpiCommunicator, KeepsTheCommunicatorContractOnCudaTensors) {
  RankContext context = place_on_device(singleton_context(), test::gpu_test_device_key());
  auto world = make_communicator("mpi", context);
  ASSERT_EQ(world->size(), 2);
  bind_thread(test_device());
  conformance::expect_communicator_contract(*world, test_device());
}

TEST_P(GpuMpi, SyncBnAndGradSyncOnSharedGpuEqualTheDoubledBatch) {
  RankContext context = place_on_device(singleton_context(), test::gpu_test_device_key());
  auto world = std::shared_ptr<Communicator>(make_communicator("mpi", context));
  ASSERT_EQ(world->size(), 2);
  bind_thread(test_device());
  // Full float32 convolutions: the comparison is of two computations (cuDNN BatchNorm over 6
  // images, SyncBN over 2 x 3) at 1e-5, which TF32's 10-bit mantissa would exceed.
  engine::set_math_modes(/*tf32=*/false, /*cudnn_benchmark=*/false);
  torch::manual_seed(5);
  const torch::Tensor images = torch::randn({6, 3, 12, 12}).to(test_device());
  const torch::Tensor targets = torch::randn({6, 4}).to(test_device());
  const int rank = world->rank();

  Net reference = make_net(nullptr);
  torch::Tensor ref_out = reference->forward(images);
  torch::nn::functional::mse_loss(ref_out, targets).backward();

  Net net = make_net(world);
  GradSyncOptions options;
  options.bucket_mb = 0.002;  // several buckets
  options.overlap = true;
  options.launch = GetParam();
  GradientSync sync(net->parameters(), world, options);
  const torch::Tensor mine = images.slice(0, 3 * rank, 3 * rank + 3);
  torch::Tensor out = net->forward(mine);
  torch::nn::functional::mse_loss(out, targets.slice(0, 3 * rank, 3 * rank + 3)).backward();
  sync.synchronize();
  EXPECT_GT(sync.bucket_count(), 1u);
  EXPECT_TRUE(sync.overlapping());
  EXPECT_EQ(sync.launches_from_backward(), GetParam() == BucketLaunch::kFromBackward);
  EXPECT_EQ(sync.last_stats().buckets_in_backward, static_cast<int>(sync.bucket_count()));

  EXPECT_EQ(out.device(), test_device());
  EXPECT_LT((out - ref_out.slice(0, 3 * rank, 3 * rank + 3)).abs().max().item<double>(), 1e-5);
  const auto mine_params = net->named_parameters(), ref_params = reference->named_parameters();
  for (const auto& p : mine_params) {
    const torch::Tensor expected = ref_params[p.key()].grad();
    ASSERT_EQ(p.value().grad().device(), test_device()) << p.key();
    EXPECT_LT((p.value().grad() - expected).abs().max().item<double>(),
              1e-5 * std::max(1.0, expected.abs().max().item<double>()))
        << p.key();
  }
  for (const auto& b : net->named_buffers()) {
    if (b.key().find("running_") == std::string::npos) continue;
    EXPECT_LT((b.value() - reference->named_buffers()[b.key()]).abs().max().item<double>(), 1e-5) << b.key();
  }
  // Broadcast and allgather of CUDA tensors through the staged path.
  torch::Tensor value = torch::full({3}, static_cast<float>(rank + 1), test_device());
  world->broadcast(value, 1);
  EXPECT_TRUE(torch::equal(value.cpu(), torch::full({3}, 2.0f)));
  torch::Tensor gathered = world->allgather(torch::full({2}, static_cast<float>(rank), test_device()));
  EXPECT_EQ(gathered.device(), test_device());
  EXPECT_EQ(gathered.sum().item<float>(), 2.0f);
}

}  // namespace
}  // namespace segrun::dist
