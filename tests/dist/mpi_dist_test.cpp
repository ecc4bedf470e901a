// Multi-rank checks under mpirun -np 2: collectives, SyncBatchNorm against single-process
// BatchNorm over the global batch (uneven per-rank batches), gradient averaging, and the
// data-parallel invariant: 2 ranks x batch b compute the same gradients as 1 rank x batch 2b,
// and ranks hold identical weights after training steps.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "build_config.h"
#include "core/config.h"
#include "core/error.h"
#include "data/loader.h"
#include "data/pack.h"
#include "data/store.h"
#include "data/synth.h"
#include "dist/communicator.h"
#include "dist/device.h"
#include "dist/grad_sync.h"
#include "dist/sync_batch_norm.h"
#include "models/segmentor.h"
#include "tests/dist/communicator_conformance.h"

namespace segrun::dist {
namespace {

namespace fs = std::filesystem;

std::shared_ptr<Communicator> world() {
  static std::shared_ptr<Communicator> comm = make_communicator("mpi", singleton_context());
  return comm;
}

TEST(MpiCommunicator, KeepsTheCommunicatorContract) {
  auto comm = world();
  ASSERT_EQ(comm->size(), 2) << "run under mpirun -np 2";
  conformance::expect_communicator_contract(*comm, torch::kCPU);
}

// MPI counts are int, so a tensor above the per-call limit goes as several calls; with the limit
// lowered to 7 elements, 20 elements go as 7 + 7 + 6, each a collective of its own (an allgather:
// 7 received elements per call).
TEST(MpiCommunicator, TensorsAboveTheCountLimitGoInOrderedChunks) {
  CommunicatorOptions options;
  options.name = "chunked";
  options.mpi_max_elements_per_call = 7;
  auto comm = make_communicator("mpi", singleton_context(), options);
  ASSERT_EQ(comm->size(), 2) << "run under mpirun -np 2";
  const int r = comm->rank();
  const uint64_t before = comm->sequence();
  auto t = torch::arange(20, torch::kFloat64) * (r + 1);  // rank 0: i, rank 1: 2i
  comm->allreduce(t);
  EXPECT_TRUE(torch::equal(t, torch::arange(20, torch::kFloat64) * 3));
  EXPECT_EQ(comm->sequence() - before, 3u);
  auto b = torch::full({15}, static_cast<int64_t>(r + 1));
  b[14] = 100 + r;
  comm->broadcast(b, 1);
  auto want = torch::full({15}, int64_t{2});
  want[14] = 101;
  EXPECT_TRUE(torch::equal(b, want));
  EXPECT_EQ(comm->sequence() - before, 6u);
  // allgather receives at most 7 elements per call (2 ranks x 3): [2, 4] goes as 3 + 3 + 2 elements.
  auto gathered = comm->allgather(torch::arange(8, torch::kInt64).view({2, 4}) + 10 * r);
  EXPECT_TRUE(torch::equal(gathered, torch::stack({torch::arange(8, torch::kInt64).view({2, 4}),
                                                   torch::arange(8, torch::kInt64).view({2, 4}) + 10})));
  EXPECT_EQ(comm->sequence() - before, 9u);
  CommunicatorOptions bad;
  bad.mpi_max_elements_per_call = 0;
  EXPECT_THROW(make_communicator("mpi", singleton_context(), bad), DistError);
}

TEST(MpiCommunicator, AutoBackendIsMpiOnCpuRanks) {
  if (SEGRUN_WITH_CUDA && torch::cuda::device_count() > 0) GTEST_SKIP() << "a GPU is visible";
  auto comm = make_communicator("auto", place_on_device(singleton_context(), "auto"));
  EXPECT_EQ(comm->backend_name(), "mpi");
  EXPECT_EQ(comm->size(), 2);
}

// A backend name that is not compiled in (or not a backend) is refused with the list of those
// that are; nccl is compiled in where NCCL was found, and then needs a GPU.
TEST(MpiCommunicator, UnknownOrMissingBackendsListTheCompiledOnes) {
  const std::vector<std::string> compiled = compiled_backends();
  EXPECT_EQ(compiled.front(), "mpi");
  EXPECT_EQ(compiled.size(), SEGRUN_WITH_NCCL ? 2u : 1u);
  const std::string list = SEGRUN_WITH_NCCL ? "mpi, nccl" : "mpi";
  for (const std::string name : {"gloo", SEGRUN_WITH_NCCL ? "" : "nccl"}) {
    if (name.empty()) continue;
    try {
      make_communicator(name, singleton_context());
      ADD_FAILURE() << name << " was accepted";
    } catch (const ConfigError& e) {
      EXPECT_EQ(std::string(e.what()),
                "dist.backend: '" + name + "' is not a backend of this build (compiled in: " + list + ", or auto)");
    }
  }
}

TEST(SyncBatchNorm, TwoRanksEqualOneProcessOverTheGlobalBatch) {
  auto comm = world();
  const int r = comm->rank();
  torch::manual_seed(11);  // same global data on both ranks
  auto x = torch::randn({5, 3, 4, 4}) * 2 + 0.5;
  auto upstream = torch::randn({5, 3, 4, 4});
  auto gamma = torch::rand({3}) + 0.5, beta = torch::randn({3});
  // Uneven split: rank 0 holds samples 0..3, rank 1 holds sample 4.
  const int64_t begin = r == 0 ? 0 : 4, end = r == 0 ? 4 : 5;

  torch::nn::BatchNorm2d reference(3);
  SyncBatchNorm sync(3, comm);
  {
    torch::NoGradGuard g;
    reference->weight.copy_(gamma);
    reference->bias.copy_(beta);
    sync->weight.copy_(gamma);
    sync->bias.copy_(beta);
  }
  auto x_ref = x.clone().requires_grad_(true);
  auto y_ref = reference->forward(x_ref);
  (y_ref * upstream).sum().backward();

  auto x_local = x.slice(0, begin, end).clone().requires_grad_(true);
  auto y_local = sync->forward(x_local);
  (y_local * upstream.slice(0, begin, end)).sum().backward();

  EXPECT_TRUE(torch::allclose(y_local, y_ref.slice(0, begin, end), 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(x_local.grad(), x_ref.grad().slice(0, begin, end), 1e-4, 1e-5));
  // Weight/bias gradients are local; their sum over ranks is the global gradient.
  auto wg = sync->weight.grad().clone(), bg = sync->bias.grad().clone();
  comm->allreduce(wg);
  comm->allreduce(bg);
  EXPECT_TRUE(torch::allclose(wg, reference->weight.grad(), 1e-4, 1e-4));
  EXPECT_TRUE(torch::allclose(bg, reference->bias.grad(), 1e-4, 1e-4));
  EXPECT_TRUE(torch::allclose(sync->running_mean, reference->running_mean, 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(sync->running_var, reference->running_var, 1e-5, 1e-6));
}

TEST(GradientSync, AveragesAcrossRanks) {
  auto comm = world();
  auto a = torch::zeros({4}, torch::requires_grad());
  auto b = torch::zeros({2, 2}, torch::requires_grad());
  a.mutable_grad() = torch::full({4}, static_cast<float>(comm->rank() + 1));
  b.mutable_grad() = torch::full({2, 2}, static_cast<float>(10 * comm->rank()));
  GradientSync sync({a, b}, comm, 25.0);
  sync.synchronize();
  EXPECT_TRUE(torch::equal(a.grad(), torch::full({4}, 1.5f)));
  EXPECT_TRUE(torch::equal(b.grad(), torch::full({2, 2}, 5.0f)));
}

// A tiny store shared by the training tests (rank 0 synthesizes, both ranks pack).
std::string tiny_store() {
  static std::string path = [] {
    auto comm = world();
    fs::path dir = fs::temp_directory_path() / "segrun_mpi_dist_test";
    if (comm->rank() == 0) {
      fs::remove_all(dir);
      data::SynthOptions synth;
      synth.out = (dir / "raw").string();
      synth.train = 8;
      synth.val = 2;
      synth.height = 64;
      synth.width = 64;
      data::synthesize(synth);
    }
    comm->barrier();
    data::PackOptions pack;
    pack.root = (dir / "raw").string();
    pack.split = "training";
    pack.out = (dir / "train").string();
    pack.shards = 2;
    data::pack_store(pack, *comm);
    return pack.out;
  }();
  return path;
}

Config tiny_config(int batch) {
  Config c = parse_config("", "tiny",
                          {"data.crop=[64,64]", "data.scale=[128,64]", "data.workers=1", "model.width=8",
                           "model.fpn_channels=16", "model.dropout=0", "train.seed=5"});
  c.data.batch_per_rank = batch;
  return c;
}

std::shared_ptr<models::SegmentorImpl> tiny_model(const Config& c, std::shared_ptr<Communicator> comm,
                                                  int num_classes) {
  models::BuildOptions build;
  build.config = c.model;
  build.num_classes = num_classes;
  build.comm = std::move(comm);
  build.crop_size = 64;
  torch::manual_seed(1);
  return models::build_segmentor(build);
}

torch::Tensor flat_grads(models::SegmentorImpl& model) {
  std::vector<torch::Tensor> parts;
  for (auto& p : model.parameters()) parts.push_back(p.grad().reshape({-1}));
  return torch::cat(parts);
}

TEST(DataParallel, TwoRanksBatch2EqualOneRankBatch4) {
  auto comm = world();
  auto store = std::make_shared<data::StoreReader>(tiny_store());
  // Distributed: 2 ranks x batch 2, SyncBN, gradients averaged.
  Config dist_cfg = tiny_config(2);
  auto model = tiny_model(dist_cfg, comm, store->num_classes());
  broadcast_module_state(*model, *comm);
  GradientSync sync(model->parameters(), comm, 25.0);
  data::TrainLoader loader(store, dist_cfg.data, comm->rank(), comm->size(), dist_cfg.train.seed, 0);
  auto batch = loader.next();
  auto loss = model->loss(batch.images, batch.labels.to(torch::kLong));
  loss.total.backward();
  sync.synchronize();
  torch::Tensor distributed = flat_grads(*model);

  // Reference on every rank: one process, batch 4, plain BN over the same 4 samples.
  Config ref_cfg = tiny_config(4);
  auto reference = tiny_model(ref_cfg, nullptr, store->num_classes());
  data::TrainLoader ref_loader(store, ref_cfg.data, 0, 1, ref_cfg.train.seed, 0);
  auto ref_batch = ref_loader.next();
  auto ref_loss = reference->loss(ref_batch.images, ref_batch.labels.to(torch::kLong));
  ref_loss.total.backward();
  torch::Tensor single = flat_grads(*reference);

  // The two ranks' samples together are the reference batch.
  auto seen = comm->allgather(torch::tensor(batch.indices));
  std::vector<int64_t> union_indices(seen.data_ptr<int64_t>(), seen.data_ptr<int64_t>() + seen.numel());
  std::sort(union_indices.begin(), union_indices.end());
  std::vector<int64_t> ref_indices = ref_batch.indices;
  std::sort(ref_indices.begin(), ref_indices.end());
  EXPECT_EQ(union_indices, ref_indices);

  ASSERT_EQ(distributed.numel(), single.numel());
  const double scale = single.abs().max().item<double>();
  const double max_diff = (distributed - single).abs().max().item<double>();
  EXPECT_LT(max_diff, 1e-4 * scale) << "max |grad diff| " << max_diff << " vs max |grad| " << scale;
  auto loss_sum = loss.total.detach().reshape({1}).clone();
  comm->allreduce(loss_sum);
  EXPECT_NEAR(loss_sum.item<double>() / 2, ref_loss.total.item<double>(), 1e-4);
}

TEST(DataParallel, RanksHoldIdenticalWeightsAfterSteps) {
  auto comm = world();
  auto store = std::make_shared<data::StoreReader>(tiny_store());
  Config c = tiny_config(2);
  c.model.dropout = 0.1;  // rank-dependent dropout draws must not desynchronize the weights
  auto model = tiny_model(c, comm, store->num_classes());
  // Start from different weights on purpose: the broadcast must align them.
  {
    torch::NoGradGuard g;
    for (auto& p : model->parameters()) p.add_(comm->rank() * 0.01);
  }
  broadcast_module_state(*model, *comm);
  torch::optim::AdamW optimizer(model->parameters(), torch::optim::AdamWOptions(1e-3));
  GradientSync sync(model->parameters(), comm, 0.05);  // small buckets: several collectives
  ASSERT_GT(sync.bucket_count(), 1u);
  data::TrainLoader loader(store, c.data, comm->rank(), comm->size(), c.train.seed, 0);
  for (int step = 0; step < 3; ++step) {
    torch::manual_seed(100 + comm->rank());
    auto batch = loader.next();
    optimizer.zero_grad();
    model->loss(batch.images, batch.labels.to(torch::kLong)).total.backward();
    sync.synchronize();
    optimizer.step();
  }
  std::vector<torch::Tensor> parts;
  for (auto& p : model->parameters()) parts.push_back(p.detach().reshape({-1}));
  for (auto& b : model->buffers())
    if (b.is_floating_point()) parts.push_back(b.detach().reshape({-1}));
  auto flat = torch::cat(parts);
  auto all = comm->allgather(flat);
  EXPECT_TRUE(torch::equal(all[0], all[1])) << "ranks diverged";
}

// The data-parallel invariant over a run, with the overlapped gradient sync and SyncBN: 20 SGD
// (momentum) steps of 2 ranks x batch 2 follow the loss curve and reach the weights of 1 rank x
// batch 4 (the reference is trained on every rank, without communication), to 1e-4 relative --
// with the buckets started by the communication thread (mpi's default) and by backward itself,
// interleaved with SyncBN's backward all-reduces on one communicator (nccl's default on GPUs).
// SGD, not Adam: Adam turns float-rounding noise of near-zero gradients into lr-sized steps; and
// a small lr: at lr 0.01 the tiny model's dynamics amplify rounding past 1e-4 after ~10 steps.
TEST(DataParallel, TwentyStepsOfTwoRanksMatchOneRankWithTheGlobalBatch) {
  auto comm = world();
  auto store = std::make_shared<data::StoreReader>(tiny_store());
  const int steps = 20;
  auto train = [&](int batch, std::shared_ptr<Communicator> c, int rank, int size, std::vector<double>& losses,
                   BucketLaunch launch) {
    Config cfg = tiny_config(batch);
    auto model = tiny_model(cfg, c, store->num_classes());
    torch::optim::SGD optimizer(model->parameters(), torch::optim::SGDOptions(0.002).momentum(0.5));
    GradSyncOptions options;
    options.bucket_mb = 0.05;  // several buckets, launched from the hooks
    options.launch = launch;
    std::unique_ptr<GradientSync> sync;
    if (c) sync = std::make_unique<GradientSync>(model->parameters(), c, options);
    data::TrainLoader loader(store, cfg.data, rank, size, cfg.train.seed, 0);
    for (int step = 0; step < steps; ++step) {
      auto batch_data = loader.next();
      optimizer.zero_grad();
      auto loss = model->loss(batch_data.images, batch_data.labels.to(torch::kLong)).total;
      loss.backward();
      if (sync) sync->synchronize();
      optimizer.step();
      auto value = loss.detach().reshape({1}).to(torch::kFloat64);
      if (c) {
        c->allreduce(value);
        value.div_(size);
      }
      losses.push_back(value.item<double>());
    }
    std::vector<torch::Tensor> parts;
    for (auto& p : model->parameters()) parts.push_back(p.detach().reshape({-1}));
    return torch::cat(parts);
  };
  std::vector<double> ref_losses;
  torch::Tensor ref_weights = train(4, nullptr, 0, 1, ref_losses, BucketLaunch::kAuto);
  std::vector<torch::Tensor> dist_weights;
  for (BucketLaunch launch : {BucketLaunch::kCommunicationThread, BucketLaunch::kFromBackward}) {
    SCOPED_TRACE(launch == BucketLaunch::kFromBackward ? "buckets started from backward"
                                                       : "buckets started by the communication thread");
    std::vector<double> dist_losses;
    dist_weights.push_back(train(2, comm, comm->rank(), comm->size(), dist_losses, launch));
    ASSERT_EQ(dist_losses.size(), ref_losses.size());
    for (size_t i = 0; i < ref_losses.size(); ++i)
      EXPECT_NEAR(dist_losses[i], ref_losses[i], 1e-4 * std::abs(ref_losses[i]))
          << "step " << i << " losses " << dist_losses[i] << " " << ref_losses[i];
  }
  // The comparison means something only if training moved the weights well beyond the tolerance.
  std::vector<torch::Tensor> init_parts;
  for (auto& p : tiny_model(tiny_config(4), nullptr, store->num_classes())->parameters())
    init_parts.push_back(p.detach().reshape({-1}));
  const double moved = (ref_weights - torch::cat(init_parts)).abs().max().item<double>();
  const double scale = ref_weights.abs().max().item<double>();
  for (const torch::Tensor& weights : dist_weights) {
    const double diff = (weights - ref_weights).abs().max().item<double>();
    EXPECT_LT(diff, 1e-4 * scale) << "max |weight diff| " << diff << " vs max |weight| " << scale;
  }
  // The same arithmetic whoever starts the buckets.
  EXPECT_TRUE(torch::equal(dist_weights[0], dist_weights[1]));
  EXPECT_GT(moved, 10 * 1e-4 * scale) << "training barely moved the weights";
}

}  // namespace
}  // namespace segrun::dist
