// GPU checks in one process (ctest label gpu; skipped without a CUDA device, see gpu_main.cpp).
// References are the same computations on the CPU in the same process: the models are built twice
// from one seed, one copy moved to cuda:0, and fed the same batch (the gradient-sync case compares
// with the same network in a world of one on the GPU). TF32 is off while comparing, so the
// tolerances below are float32 reduction-order differences (cuDNN vs oneDNN/OpenBLAS).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <iostream>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "build_config.h"
#include "core/config.h"
#include "core/error.h"
#include "dist/communicator.h"
#include "dist/grad_sync.h"
#include "dist/device.h"
#include "dist/rank_context.h"
#include "engine/checkpoint.h"
#include "engine/metrics.h"
#include "engine/optimizer.h"
#include "engine/out_of_memory.h"
#include "engine/precision.h"
#include "models/segmentor.h"
#include "tests/dist/communicator_conformance.h"
#include "tests/gpu/gpu_test_device.h"
#include "tests/gpu/sync_bn_net.h"

namespace segrun {
namespace {

// cuda:0, or the CPU in a rehearsal (gpu_test_device.h).
torch::Device test_device() { return test::gpu_test_device(); }

// Largest |a - b| relative to max(1, largest |b|): one number per tensor pair.
double relative_gap(const torch::Tensor& a, const torch::Tensor& b) {
  const torch::Tensor x = a.detach().to(torch::kCPU, torch::kFloat64), y = b.detach().to(torch::kCPU, torch::kFloat64);
  return (x - y).abs().max().item<double>() / std::max(1.0, y.abs().max().item<double>());
}

ModelConfig tiny_model(const std::string& head) {
  ModelConfig m;
  m.backbone = "clip_rn50";
  m.width = 8;
  m.head = head;
  m.norm = "syncbn";  // without a communicator: the world-of-one path (LibTorch's batch_norm)
  m.fpn_channels = 16;
  m.dropout = 0.0;  // the CPU and CUDA generators differ: no random draws in the compared pass
  m.clip_sp.top_k = 5;
  m.clip_sp.graph_blocks = 2;
  m.clip_sp.graph_nodes = 6;
  m.clip_sp.attn_dim = 32;
  m.clip_sp.heads = 4;
  m.clip_sp.srm_dim = 16;
  m.clip_sp.drop_r_start = 0.0;  // batch drop off: scene labels by top-k only
  m.clip_sp.drop_r_end = 0.0;
  m.text.width = 32;
  m.text.layers = 1;
  m.text.heads = 2;
  m.mask2former.num_queries = 8;
  m.mask2former.hidden_dim = 32;
  m.mask2former.dec_layers = 3;
  m.mask2former.enc_layers = 1;
  m.mask2former.heads = 4;
  m.mask2former.enc_points = 2;
  m.mask2former.enc_ffn = 64;
  m.mask2former.dec_ffn = 64;
  m.mask2former.num_points = 256;
  m.mta_clip.prompts = 2;
  m.mta_clip.context_length = 4;
  return m;
}

// The tiny models on a 4-block, 32-wide ViT with patch 16 instead of the ResNet.
ModelConfig with_tiny_vit(ModelConfig m) {
  m.backbone = "clip_vit_b16";
  m.vit.width = 32;
  m.vit.layers = 4;
  m.vit.heads = 2;
  m.vit.embed_dim = 32;
  m.vit.out_indices = {0, 1, 2, 3};
  return m;
}

std::shared_ptr<models::SegmentorImpl> build(const ModelConfig& config, int64_t classes) {
  torch::manual_seed(7);
  models::BuildOptions options;
  options.config = config;
  options.num_classes = static_cast<int>(classes);
  for (int64_t k = 0; k < classes; ++k) options.class_names.push_back("class " + std::to_string(k));
  options.crop_size = 64;
  return models::build_segmentor(options);
}

std::shared_ptr<models::SegmentorImpl> build(const std::string& head, int64_t classes, bool vit = false) {
  return build(vit ? with_tiny_vit(tiny_model(head)) : tiny_model(head), classes);
}

struct Batch {
  torch::Tensor images, labels;
};

Batch make_batch(int64_t classes) {
  torch::manual_seed(11);
  Batch b;
  b.images = torch::randn({2, 3, 64, 64});
  b.labels = torch::randint(0, classes, {2, 64, 64}, torch::kLong);
  b.labels.masked_fill_(torch::rand({2, 64, 64}) < 0.1, 255);
  return b;
}

class GpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    engine::set_math_modes(/*tf32=*/false, /*cudnn_benchmark=*/false);
    dist::bind_thread(test_device());
  }
};

// The loss and every gradient of FPN and CLIP-SP (deterministic losses) on CUDA equal the CPU's,
// on the ResNet and on the ViT.
TEST_F(GpuTest, LossAndGradientsOnCudaEqualCpu) {
  for (const auto& [head, vit] : std::vector<std::pair<std::string, bool>>{
           {"fpn", false}, {"clip_sp", false}, {"fpn", true}, {"clip_sp", true}}) {
    SCOPED_TRACE(head + (vit ? " on the ViT" : " on the ResNet"));
    const int64_t classes = 12;
    auto cpu = build(head, classes, vit), gpu = build(head, classes, vit);
    gpu->to(test_device());
    cpu->train();
    gpu->train();
    const Batch batch = make_batch(classes);
    models::LossTerms lc = cpu->loss(batch.images, batch.labels);
    models::LossTerms lg = gpu->loss(batch.images.to(test_device()), batch.labels.to(test_device()));
    ASSERT_EQ(lg.total.device(), test_device());
    EXPECT_LT(relative_gap(lg.total, lc.total), 1e-4) << lg.total.item<double>() << " vs " << lc.total.item<double>();
    lc.total.backward();
    lg.total.backward();
    const auto pc = cpu->named_parameters(), pg = gpu->named_parameters();
    ASSERT_EQ(pc.size(), pg.size());
    double worst = 0;
    std::string worst_name;
    for (size_t i = 0; i < pc.size(); ++i) {
      if (!pc[i].value().grad().defined()) continue;
      ASSERT_TRUE(pg[i].value().grad().defined()) << pc[i].key();
      const double gap = relative_gap(pg[i].value().grad(), pc[i].value().grad());
      if (gap > worst) worst = gap, worst_name = pc[i].key();
    }
    EXPECT_LT(worst, 2e-3) << "largest gradient gap at " << worst_name;
  }
}

// Mask2Former and MTA-CLIP draw their loss's sample points from the device's generator, so their
// CUDA loss cannot equal the CPU's; their outputs and the gradients of a fixed function of the
// outputs (every forward and backward kernel of the model) must, and their real loss must train.
TEST_F(GpuTest, MaskModelsOnCudaEqualCpu) {
  for (const std::string head : {"mask2former", "mta_clip"}) {
    SCOPED_TRACE(head);
    const int64_t classes = 5;
    auto cpu = build(head, classes), gpu = build(head, classes);
    gpu->to(test_device());
    cpu->train();
    gpu->train();
    const Batch batch = make_batch(classes);
    torch::Tensor oc = cpu->forward(batch.images), og = gpu->forward(batch.images.to(test_device()));
    EXPECT_LT(relative_gap(og, oc), 1e-3);
    torch::manual_seed(3);
    const torch::Tensor weights = torch::randn(oc.sizes());
    (oc * weights).sum().backward();
    (og * weights.to(test_device())).sum().backward();
    const auto pc = cpu->named_parameters(), pg = gpu->named_parameters();
    double worst = 0;
    std::string worst_name;
    for (size_t i = 0; i < pc.size(); ++i) {
      if (!pc[i].value().grad().defined()) continue;
      const double gap = relative_gap(pg[i].value().grad(), pc[i].value().grad());
      if (gap > worst) worst = gap, worst_name = pc[i].key();
    }
    EXPECT_LT(worst, 5e-3) << "largest gradient gap at " << worst_name;
    gpu->zero_grad();
    models::LossTerms loss = gpu->loss(batch.images.to(test_device()), batch.labels.to(test_device()));
    loss.total.backward();
    EXPECT_TRUE(std::isfinite(loss.total.item<double>()));
  }
}

// Doubles its input; its backward reads a device value on the host (a wait in autograd's device
// thread, which the counter must see).
struct ReadsInBackward : torch::autograd::Function<ReadsInBackward> {
  static torch::Tensor forward(torch::autograd::AutogradContext*, const torch::Tensor& x) { return x * 2; }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext*,
                                                 torch::autograd::variable_list grads) {
    EXPECT_EQ(grads[0].sum().item<float>(), static_cast<float>(grads[0].numel()));
    return {grads[0] * 2};
  }
};

// How often one training step's loss and backward make the host wait for the GPU (a wait drains
// the device's queue, and the GPU idles until the host has queued work again), on one GPU: FPN
// never; CLIP-SP once (its slot-wise batch drop fills the slots on the host); Mask2Former and
// MTA-CLIP twice (which classes each image holds; every Hungarian matching's costs, all
// predictions and images in one copy). In a rehearsal on the CPU nothing waits.
TEST_F(GpuTest, HostWaitsPerTrainingStep) {
  if (test_device().is_cuda()) {
    dist::HostWaitCounter probe;
    EXPECT_EQ(torch::ones({1}, test_device()).item<float>(), 1.0f);
    ASSERT_EQ(probe.waits(), 1) << "the counter must see a .item()";
    const torch::Tensor x = torch::ones({3}, torch::dtype(torch::kFloat32).device(test_device()).requires_grad(true));
    ReadsInBackward::apply(x).sum().backward();
    ASSERT_EQ(probe.waits(), 2) << "the counter must see a wait in backward's device thread";
  }
  for (const auto& [head, expected] :
       std::vector<std::pair<std::string, int64_t>>{{"fpn", 0}, {"clip_sp", 1}, {"mask2former", 2}, {"mta_clip", 2}}) {
    SCOPED_TRACE(head);
    ModelConfig config = tiny_model(head);
    config.clip_sp.drop_r_start = 0.9;  // the slot-wise batch drop on (tiny_model turns it off)
    config.clip_sp.drop_r_end = 0.5;
    config.clip_sp.drop_mode = "slots";
    const int64_t classes = 8;  // more than top_k = 5: a dropped slot has classes to take
    auto model = build(config, classes);
    model->to(test_device());
    model->train();
    const Batch batch = make_batch(classes);
    const torch::Tensor images = batch.images.to(test_device()), labels = batch.labels.to(test_device());
    model->loss(images, labels).total.backward();  // first-use set-up (prompt ids, pinned blocks)
    int64_t waits = 0;
    {
      dist::HostWaitCounter counter;
      model->loss(images, labels).total.backward();
      waits = counter.waits();
    }
    EXPECT_EQ(waits, test_device().is_cuda() ? expected : 0);
    std::cout << "[ waits    ] " << head << ": " << waits << " per step\n";
  }
}

// The ordering case of the issue: an all-gather issued right after kernels that write its input
// on torch's stream must read the finished values (measured: 19 of 20 wrong without the event),
// and work queued right after it must read the gathered result.
TEST_F(GpuTest, NcclCollectivesAreOrderedWithTorchsStream) {
  SEGRUN_SKIP_ON_CPU("CUDA streams and NCCL");
  if (!SEGRUN_WITH_NCCL) GTEST_SKIP() << "NCCL backend not built";
  dist::RankContext context = dist::place_on_device(dist::singleton_context(), test::gpu_test_device_key());
  auto comm = dist::make_communicator("nccl", context);
  ASSERT_EQ(comm->backend_name(), "nccl");
  torch::manual_seed(0);
  const torch::Tensor a = torch::randn({8192, 8192}, test_device());
  int wrong_inputs = 0, wrong_outputs = 0;
  for (int i = 0; i < 20; ++i) {
    torch::Tensor t = torch::matmul(a, a).mul_(0).add_(i + 1);
    torch::Tensor gathered = comm->allgather(t);
    torch::Tensor after = gathered[0] * 2;  // queued on torch's stream right after the collective
    if (!torch::equal(gathered[0], t)) ++wrong_inputs;
    if (!torch::equal(after, t * 2)) ++wrong_outputs;
  }
  EXPECT_EQ(wrong_inputs, 0);
  EXPECT_EQ(wrong_outputs, 0);
  // In-place all-reduce right after a producing kernel, and a CPU tensor staged through the GPU.
  torch::Tensor x = torch::matmul(a, a).mul_(0).add_(3);
  comm->allreduce(x);
  EXPECT_TRUE(torch::equal(x, torch::full_like(x, 3)));
  // Started without ordering torch's stream after it (gradient buckets), wait() orders it: runs
  // that path; in a world of one the in-place sum leaves the tensor as it is, so an ordering
  // error would not show here (the stream-ordering case above covers the issuing side).
  torch::Tensor bucket = torch::matmul(a, a).mul_(0).add_(5);
  EXPECT_TRUE(comm->starts_asynchronously(bucket));
  auto pending = comm->allreduce_start(bucket, dist::ReduceOp::kSum, "bucket 0 of 1");
  pending->wait();
  EXPECT_TRUE(torch::equal(bucket * 2, torch::full_like(bucket, 10)));
  torch::Tensor host = torch::tensor({1.5, -2.0}, torch::kFloat64);
  EXPECT_FALSE(comm->starts_asynchronously(host));
  comm->allreduce(host, dist::ReduceOp::kMax);
  EXPECT_TRUE(host.device().is_cpu());
  EXPECT_TRUE(torch::equal(host, torch::tensor({1.5, -2.0}, torch::kFloat64)));
  auto thread_comm = comm->duplicate("grad-sync");
  torch::Tensor y = torch::ones({1000}, test_device());
  thread_comm->broadcast(y, 0);
  EXPECT_EQ(y.sum().item<double>(), 1000.0);
}

// segrun's world-1 NCCL communicator seen as a world of two: every collective is the real one,
// so GradientSync starts its buckets from backward through NCCL (allreduce_start on the
// communicator's stream, events, wait()) as on several GPUs, and SyncBatchNorm takes its
// all-reducing path; each "sum" holds this process's part only, so the statistics are the local
// batch's and the averaged gradients half the one-process ones.
class WorldOfTwoView final : public dist::Communicator {
 public:
  explicit WorldOfTwoView(std::shared_ptr<dist::Communicator> inner) : inner_(std::move(inner)) {}
  int rank() const override { return 0; }
  int size() const override { return 2; }
  std::string backend_name() const override { return inner_->backend_name(); }
  void allreduce(torch::Tensor& t, dist::ReduceOp op) override { inner_->allreduce(t, op); }
  void allreduce_noted(torch::Tensor& t, dist::ReduceOp op, const std::string& note) override {
    inner_->allreduce_noted(t, op, note);
  }
  std::unique_ptr<dist::PendingCollective> allreduce_start(torch::Tensor& t, dist::ReduceOp op,
                                                           const std::string& note) override {
    return inner_->allreduce_start(t, op, note);
  }
  bool starts_asynchronously(const torch::Tensor& t) const override { return inner_->starts_asynchronously(t); }
  void broadcast(torch::Tensor& t, int root) override { inner_->broadcast(t, root); }
  torch::Tensor allgather(const torch::Tensor&) override { throw DistError("WorldOfTwoView: no allgather"); }
  void barrier() override { inner_->barrier(); }

 private:
  std::shared_ptr<dist::Communicator> inner_;
};

// (Rehearsed on the CPU through the world-1 mpi communicator, told to start the buckets from
// backward as nccl makes it do by itself.)
TEST_F(GpuTest, GradientBucketsStartedFromBackwardThroughNccl) {
  const bool rehearsal = test::gpu_tests_on_cpu();
  if (!rehearsal && !SEGRUN_WITH_NCCL) GTEST_SKIP() << "NCCL backend not built";
  dist::RankContext context = dist::place_on_device(dist::singleton_context(), test::gpu_test_device_key());
  auto view = std::make_shared<WorldOfTwoView>(dist::make_communicator(rehearsal ? "mpi" : "nccl", context));
  dist::Net reference = dist::make_sync_bn_net(nullptr, test_device()),
            net = dist::make_sync_bn_net(view, test_device());
  dist::GradSyncOptions options;
  options.bucket_mb = 0.001;  // 3 buckets
  if (rehearsal) options.launch = dist::BucketLaunch::kFromBackward;
  dist::GradientSync sync(net->parameters(), view, options);
  ASSERT_TRUE(sync.launches_from_backward());
  ASSERT_GT(sync.bucket_count(), 2u);
  for (int step = 0; step < 3; ++step) {
    SCOPED_TRACE("step " + std::to_string(step));
    torch::manual_seed(100 + step);
    const torch::Tensor images = torch::randn({4, 3, 16, 16}).to(test_device()),
                        targets = torch::randn({4, 4}).to(test_device());
    reference->zero_grad();
    net->zero_grad();
    torch::nn::functional::mse_loss(reference->forward(images), targets).backward();
    torch::nn::functional::mse_loss(net->forward(images), targets).backward();
    sync.synchronize();
    EXPECT_EQ(sync.last_stats().buckets_in_backward, static_cast<int>(sync.bucket_count()));
    const auto ref_params = reference->named_parameters();
    for (const auto& p : net->named_parameters())
      EXPECT_LT(relative_gap(p.value().grad(), ref_params[p.key()].grad() / 2), 1e-5) << p.key();
  }
}

// The Communicator contract in a world of one: nccl on CUDA tensors and on CPU tensors (staged
// through the GPU), mpi on CUDA tensors.
TEST_F(GpuTest, BackendsKeepTheCommunicatorContract) {
  dist::RankContext context = dist::place_on_device(dist::singleton_context(), test::gpu_test_device_key());
  if (SEGRUN_WITH_NCCL && !test::gpu_tests_on_cpu()) {
    auto nccl = dist::make_communicator("nccl", context);
    dist::conformance::expect_communicator_contract(*nccl, test_device());
    dist::conformance::expect_communicator_contract(*nccl, torch::kCPU);
  }
  auto mpi = dist::make_communicator("mpi", context);
  dist::conformance::expect_communicator_contract(*mpi, test_device());
}

// A checkpoint written from a GPU run loads into a CPU model (evaluation elsewhere) and resumes
// on the GPU with its optimizer state there: equal weights and state, and the next gradients equal
// the uninterrupted run's to rounding.
TEST_F(GpuTest, CheckpointsMoveBetweenGpuAndCpu) {
  const int64_t classes = 12;
  const Batch batch = make_batch(classes);
  auto step = [&](models::SegmentorImpl& model, torch::optim::AdamW& optimizer) {
    optimizer.zero_grad();
    model.loss(batch.images.to(test_device()), batch.labels.to(test_device())).total.backward();
    optimizer.step();
  };
  TrainConfig train;
  train.lr = 1e-3;
  auto model = build("fpn", classes);
  model->to(test_device());
  model->train();
  auto optimizer = engine::make_optimizer(*model, train);
  step(*model, *optimizer);
  const std::string dir =
      (std::filesystem::temp_directory_path() / ("segrun_gpu_ckpt_" + std::to_string(::getpid()))).string();
  engine::CheckpointMeta meta{1, 0, 1, "gpu-test"};
  const std::string path = engine::save_checkpoint(dir, meta, *model, *optimizer, 1);

  auto on_cpu = build("fpn", classes);
  engine::load_checkpoint(path, "gpu-test", *on_cpu, nullptr);
  for (const auto& p : model->named_parameters())
    EXPECT_TRUE(torch::equal(p.value().cpu(), on_cpu->named_parameters()[p.key()])) << p.key();

  auto resumed = build("fpn", classes);
  resumed->to(test_device());
  resumed->train();
  auto resumed_optimizer = engine::make_optimizer(*resumed, train);
  engine::load_checkpoint(path, "gpu-test", *resumed, resumed_optimizer.get());
  // The copies are exact: the weights and the optimizer's state as written, on the GPU again.
  const auto resumed_parameters = resumed->named_parameters();  // OrderedDict: keep it alive
  for (const auto& p : model->named_parameters()) {
    const torch::Tensor& q = resumed_parameters[p.key()];
    EXPECT_TRUE(torch::equal(p.value(), q)) << p.key();
    const torch::optim::AdamWParamState* saved = optimizer->state_of(p.value());
    const torch::optim::AdamWParamState* loaded = resumed_optimizer->state_of(q);
    EXPECT_TRUE(saved != nullptr && loaded != nullptr) << p.key();
    if (saved == nullptr || loaded == nullptr) continue;
    EXPECT_EQ(loaded->step(), saved->step()) << p.key();
    EXPECT_TRUE(loaded->exp_avg().device() == test_device() && torch::equal(loaded->exp_avg(), saved->exp_avg()))
        << p.key();
    EXPECT_TRUE(loaded->exp_avg_sq().device() == test_device() &&
                torch::equal(loaded->exp_avg_sq(), saved->exp_avg_sq()))
        << p.key();
  }
  // The next gradients match to float rounding, not bit for bit: CUDA's backward of a bilinear
  // upsampling adds with atomics (nondeterministic order), and cuDNN may pick another
  // weight-gradient algorithm. (Not the weights after the next step: an element whose first
  // gradient was 0 -- each block's zero-initialised bn3 -- moves by +-0.74 lr in the sign of its
  // second, which that rounding can flip.)
  for (auto* m : {model.get(), resumed.get()}) {
    m->zero_grad();
    m->loss(batch.images.to(test_device()), batch.labels.to(test_device())).total.backward();
  }
  for (const auto& p : model->named_parameters())
    EXPECT_LT(relative_gap(p.value().grad(), resumed_parameters[p.key()].grad()), 1e-4) << p.key();
  std::filesystem::remove_all(dir);
}

// The multi-tensor AdamW equals LibTorch's per-parameter AdamW on the GPU too.
TEST_F(GpuTest, MultiTensorAdamWEqualsAdamW) {
  torch::manual_seed(5);
  std::vector<torch::Tensor> a, b;
  for (int64_t n : {7, 300, 4096}) {
    a.push_back(torch::randn({n}, test_device()).requires_grad_());
    b.push_back(a.back().detach().clone().requires_grad_());
  }
  auto options = torch::optim::AdamWOptions(1e-2).weight_decay(0.05);
  torch::optim::AdamW reference(a, options);
  engine::MultiTensorAdamW fused(b, options);
  for (int s = 0; s < 3; ++s) {
    for (size_t i = 0; i < a.size(); ++i) {
      const torch::Tensor g = torch::randn(a[i].sizes(), test_device());
      a[i].mutable_grad() = g.clone();
      b[i].mutable_grad() = g.clone();
    }
    reference.step();
    fused.step();
  }
  for (size_t i = 0; i < a.size(); ++i) EXPECT_LT(relative_gap(b[i], a[i]), 1e-6);
}

// bf16 and fp16 autocast train on the GPU: losses near fp32, the fp16 scaler skips a poisoned step.
TEST_F(GpuTest, MixedPrecisionSteps) {
  SEGRUN_SKIP_ON_CPU("CUDA's autocast (LibTorch 1.13's CPU autocast covers too few ops)");
  const int64_t classes = 12;
  const Batch batch = make_batch(classes);
  auto model = build("fpn", classes);
  model->to(test_device());
  model->train();
  const torch::Tensor images = batch.images.to(test_device()), labels = batch.labels.to(test_device());
  const double fp32 = model->loss(images, labels).total.item<double>();
  for (auto precision : {engine::Precision::kBf16, engine::Precision::kFp16}) {
    SCOPED_TRACE(engine::precision_name(precision));
    model->zero_grad();
    models::LossTerms loss;
    {
      engine::AutocastScope autocast(test_device(), precision);
      loss = model->loss(images, labels);
    }
    EXPECT_NEAR(loss.total.item<double>(), fp32, 0.03 * fp32);
    engine::LossScaler scaler(precision == engine::Precision::kFp16, engine::LossScalerOptions{1024.0});
    scaler.scale(loss.total).backward();
    EXPECT_TRUE(scaler.unscale_and_update(model->parameters()));
    for (const auto& p : model->parameters()) {
      if (p.grad().defined()) {
        EXPECT_TRUE(p.grad().isfinite().all().item<bool>());
      }
    }
    if (scaler.enabled()) {
      const double before = scaler.current_scale();
      model->parameters()[0].mutable_grad().fill_(std::numeric_limits<float>::infinity());
      EXPECT_FALSE(scaler.unscale_and_update(model->parameters()));
      EXPECT_EQ(scaler.current_scale(), before * 0.5);
      EXPECT_EQ(scaler.skipped_steps(), 1);
    }
  }
  EXPECT_THROW(engine::parse_precision("fp16", torch::Device(torch::kCPU)), ConfigError);
}

// Every head's loss runs under bf16 and fp16 autocast on the GPU, on the ResNet and on the ViT,
// and backpropagates to finite float32 gradients: no op of a head mixes dtypes that autocast
// leaves apart.
TEST_F(GpuTest, EveryHeadTrainsUnderAutocast) {
  SEGRUN_SKIP_ON_CPU("CUDA's autocast (LibTorch 1.13's CPU autocast covers too few ops)");
  for (const std::string head : {"fpn", "clip_sp", "mask2former", "mta_clip"}) {
    for (const bool vit : {false, true}) {
      for (auto precision : {engine::Precision::kBf16, engine::Precision::kFp16}) {
        SCOPED_TRACE(head + " " + engine::precision_name(precision) + (vit ? " on the ViT" : ""));
        const int64_t classes = 5;
        auto model = build(head, classes, vit);
        model->to(test_device());
        model->train();
        const Batch batch = make_batch(classes);
        models::LossTerms loss;
        {
          engine::AutocastScope autocast(test_device(), precision);
          loss = model->loss(batch.images.to(test_device()), batch.labels.to(test_device()));
        }
        ASSERT_TRUE(std::isfinite(loss.total.item<double>()));
        loss.total.backward();
        for (const auto& p : model->named_parameters()) {
          if (!p.value().grad().defined()) continue;
          EXPECT_EQ(p.value().grad().scalar_type(), torch::kFloat32) << p.key();
          EXPECT_TRUE(p.value().grad().isfinite().all().item<bool>()) << p.key();
        }
      }
    }
  }
}

// A CUDA allocation the GPU cannot hold throws c10::OutOfMemoryError -- what the trainer, the
// evaluator and predict turn into out_of_memory_error's one line -- and CUDA's message gives the
// size it tried (the caching allocator writes sizes past 1 GiB in GiB).
TEST_F(GpuTest, OutOfMemoryIsTheErrorSegrunCatches) {
  SEGRUN_SKIP_ON_CPU("CUDA's caching allocator");
  try {
    const torch::Tensor huge = torch::empty({int64_t{1} << 44}, torch::dtype(torch::kFloat32).device(test_device()));
    FAIL() << "64 TiB allocated on " << test_device();
  } catch (const c10::OutOfMemoryError& e) {
    const std::string line = engine::out_of_memory_error(engine::MemoryPhase::kTraining, "training step 0", Config(),
                                                         test_device(), e.what_without_backtrace())
                                 .what();
    EXPECT_NE(line.find("out of GPU memory in training step 0 on cuda:0 (peak allocated "), std::string::npos) << line;
    EXPECT_NE(line.find(", allocating 65536.00 GiB failed: data.batch_per_rank = "), std::string::npos) << line;
    EXPECT_EQ(line.find('\n'), std::string::npos) << line;
  }
}

// IoU areas accumulated on the GPU equal the CPU's counting loop.
TEST_F(GpuTest, IoUAreasOnTheDevice) {
  torch::manual_seed(9);
  const torch::Tensor pred = torch::randint(0, 6, {3, 50, 70}, torch::kLong);
  torch::Tensor label = torch::randint(0, 6, {3, 50, 70}, torch::kLong);
  label.masked_fill_(torch::rand({3, 50, 70}) < 0.2, 255);
  engine::IoUAccumulator on_cpu(6), on_gpu(6, 255, test_device());
  on_cpu.add(pred, label);
  on_gpu.add(pred.to(test_device()), label.to(test_device()));
  EXPECT_EQ(on_gpu.areas().device(), test_device());
  EXPECT_TRUE(torch::equal(on_gpu.areas().cpu(), on_cpu.areas()));
  EXPECT_EQ(on_gpu.summarize().mIoU, on_cpu.summarize().mIoU);
}

}  // namespace
}  // namespace segrun
