// Single-process checks of dist/: SyncBatchNorm against torch's BatchNorm2d (a world of one must
// compute exactly BatchNorm), the bucketing of GradientSync, its buckets started from backward
// (issue order beside SyncBatchNorm, failures) over a fake device-like communicator, the
// watchdogs' messages, and the stream watchdog of the nccl backend driven by fake probes.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "build_config.h"
#include "core/error.h"
#include "dist/communicator.h"
#include "dist/device.h"
#include "dist/grad_sync.h"
#include "dist/rank_context.h"
#include "dist/stream_watchdog.h"
#include "dist/sync_batch_norm.h"
#include "dist/mpi_watchdog.h"

namespace segrun::dist {
namespace {

TEST(Device, PlacementFollowsDistDevice) {
  RankContext context = singleton_context();
  context.world_rank = 3;
  context.host = "node7";
  RankContext cpu = place_on_device(context, "cpu");
  EXPECT_EQ(cpu.device, DeviceKind::kCpu);
  EXPECT_EQ(torch_device(cpu), torch::Device(torch::kCPU));
  EXPECT_EQ(describe_device(cpu), "cpu");
  EXPECT_THROW(place_on_device(context, "tpu"), ConfigError);
  if (SEGRUN_WITH_CUDA && torch::cuda::device_count() > 0) GTEST_SKIP() << "a GPU is visible";
  EXPECT_EQ(place_on_device(context, "auto").device, DeviceKind::kCpu);
  try {
    place_on_device(context, "cuda");
    FAIL() << "dist.device = cuda without a GPU must be refused";
  } catch (const ConfigError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("dist.device = \"cuda\""), std::string::npos) << message;
    EXPECT_NE(message.find("rank 3"), std::string::npos) << message;
    EXPECT_NE(message.find("node7"), std::string::npos) << message;
  }
  // That auto picks the MPI backend on the CPU is checked in mpi_dist_test: making a communicator
  // initializes MPI, which this single-process suite leaves alone (LeakSanitizer flags Open MPI's
  // plugins when a unit suite ends without MPI_Finalize).
}

// Doubles its input; its backward issues the warning of CUDA's sync debug mode.
struct WarnsInBackward : torch::autograd::Function<WarnsInBackward> {
  static torch::Tensor forward(torch::autograd::AutogradContext*, const torch::Tensor& x) { return x * 2; }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext*,
                                                 torch::autograd::variable_list grads) {
    TORCH_WARN("called a synchronizing CUDA operation");
    return {grads[0] * 2};
  }
};

// The counter counts the warning that CUDA's sync debug mode issues at every wait -- raised here
// by hand, once from inside backward (autograd replays it in the thread that called backward) --
// and hands every other warning on. gpu_test counts real waits.
TEST(DevicePlacement, HostWaitCounterCountsTheWaitWarningsOnly) {
  HostWaitCounter counter;
  TORCH_WARN("called a synchronizing CUDA operation");
  TORCH_WARN("HostWaitCounterCountsTheWaitWarningsOnly: a warning passed on (printed, not counted)");
  EXPECT_EQ(counter.waits(), 1);
  const torch::Tensor x = torch::ones({3}, torch::requires_grad());
  WarnsInBackward::apply(x).sum().backward();
  EXPECT_EQ(counter.waits(), 2);
  EXPECT_TRUE(torch::equal(x.grad(), torch::full({3}, 2.0f)));
}

// The world MPI started against what the launcher asked for (SEGRUN_WORLD_SIZE) and against
// srun's task count (SLURM_STEP_NUM_TASKS): the srun environments were read from a real one-node
// Slurm (the batch step has SLURM_NTASKS and SLURM_PROCID but no SLURM_STEP_NUM_TASKS).
TEST(LaunchedWorld, AMismatchNamesTheRankAndTheFix) {
  auto check = [](int world, std::map<std::string, std::string> env) -> std::string {
    RankContext context = singleton_context();
    context.world_size = world;
    context.host = "node7";
    try {
      check_launched_world(context, [&](const char* name) -> const char* {
        auto it = env.find(name);
        return it == env.end() ? nullptr : it->second.c_str();
      });
    } catch (const DistError& e) {
      return e.what();
    }
    return "ok";
  };
  EXPECT_EQ(check(1, {}), "ok");
  EXPECT_EQ(check(2, {{"SEGRUN_WORLD_SIZE", "2"}}), "ok");
  EXPECT_EQ(check(4, {{"SLURM_STEP_NUM_TASKS", "4"}, {"SLURM_NTASKS", "4"}}), "ok");  // srun --mpi=pmix
  EXPECT_EQ(check(1, {{"SLURM_NTASKS", "8"}, {"SLURM_PROCID", "0"}}), "ok");          // the batch script
  EXPECT_EQ(check(1, {{"SLURM_STEP_NUM_TASKS", "1"}}), "ok");
  EXPECT_EQ(check(1, {{"SEGRUN_WORLD_SIZE", ""}, {"SLURM_STEP_NUM_TASKS", "x"}}), "ok");  // unset / garbage
  const std::string plugin = check(1, {{"SLURM_STEP_NUM_TASKS", "2"}, {"SLURM_PROCID", "1"}});
  EXPECT_NE(plugin.find("rank 0/1 on node7"), std::string::npos) << plugin;
  EXPECT_NE(plugin.find("srun started 2 tasks"), std::string::npos) << plugin;
  EXPECT_NE(plugin.find("--mpi=pmix"), std::string::npos) << plugin;
  const std::string size = check(2, {{"SEGRUN_WORLD_SIZE", "4"}});
  EXPECT_NE(size.find("asked for 4 ranks"), std::string::npos) << size;
  EXPECT_NE(size.find("world of 2"), std::string::npos) << size;
}

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
  EXPECT_EQ(names, (std::vector<std::string>{"weight", "bias", "running_mean", "running_var", "num_batches_tracked"}));
}

TEST(GradientSync, BucketsInReverseOrderUpToTheCap) {
  // 4 float params of 1 MiB, 1 MiB, 0.5 MiB, 2 MiB; cap 2 MiB.
  std::vector<torch::Tensor> params{
      torch::zeros({262144}, torch::requires_grad()), torch::zeros({262144}, torch::requires_grad()),
      torch::zeros({131072}, torch::requires_grad()), torch::zeros({524288}, torch::requires_grad())};
  GradientSync sync(params, nullptr, 2.0);
  ASSERT_EQ(sync.bucket_count(), 3u);
  EXPECT_EQ(sync.buckets()[0], (std::vector<size_t>{3}));
  EXPECT_EQ(sync.buckets()[1], (std::vector<size_t>{2, 1}));
  EXPECT_EQ(sync.buckets()[2], (std::vector<size_t>{0}));
}

TEST(GradientSync, ADtypeChangeStartsANewBucketAndFrozenParametersAreLeftOut) {
  std::vector<torch::Tensor> params{torch::zeros({4}, torch::requires_grad()),
                                    torch::zeros({4}, torch::dtype(torch::kFloat64).requires_grad(true)),
                                    torch::zeros({4}),  // frozen: no gradient, no bucket
                                    torch::zeros({4}, torch::requires_grad())};
  GradientSync sync(params, nullptr, 25.0);
  EXPECT_EQ(sync.buckets(), (std::vector<std::vector<size_t>>{{3}, {1}, {0}}));
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

TEST(GradientSync, NoSyncInAWorldOfOneKeepsTheLocalSum) {
  auto a = torch::ones({2}, torch::requires_grad());
  GradientSync sync({a}, nullptr);
  {
    auto guard = sync.no_sync();
    (a * 3).sum().backward();
    sync.synchronize();
  }
  (a * 4).sum().backward();
  sync.synchronize();
  EXPECT_TRUE(torch::equal(a.grad(), torch::full({2}, 7.0)));
}

TEST(GradientSync, RejectsNonPositiveBucketSize) {
  auto a = torch::ones({2}, torch::requires_grad());
  EXPECT_THROW(GradientSync({a}, nullptr, 0.0), ConfigError);
}

// A world of two whose other rank contributes exactly what this one does (every sum doubles), and
// whose all-reduces start asynchronously as a device collective does: allreduce_start() only
// records the call; the values change at wait(). Every call is logged in issue order.
class DeviceLikeCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 2; }
  std::string backend_name() const override { return "device-like"; }
  void allreduce(torch::Tensor& t, ReduceOp op) override { allreduce_noted(t, op, "SyncBatchNorm"); }
  void allreduce_noted(torch::Tensor& t, ReduceOp, const std::string& note) override {
    calls.push_back("allreduce " + note);
    t.mul_(2);
  }
  bool starts_asynchronously(const torch::Tensor&) const override { return true; }
  std::unique_ptr<PendingCollective> allreduce_start(torch::Tensor& t, ReduceOp, const std::string& note) override {
    calls.push_back("start " + note);
    if (note == fail_start_of) throw DistError("start of " + note + " failed");
    return std::make_unique<Pending>(t, note, calls, note == fail_wait_of);
  }
  void broadcast(torch::Tensor&, int) override { throw DistError("not used"); }
  torch::Tensor allgather(const torch::Tensor&) override { throw DistError("not used"); }
  void barrier() override { throw DistError("not used"); }

  std::vector<std::string> calls;
  std::string fail_start_of, fail_wait_of;  // the note of a collective whose start / wait throws

 private:
  class Pending final : public PendingCollective {
   public:
    Pending(torch::Tensor t, std::string note, std::vector<std::string>& calls, bool fail)
        : t_(std::move(t)), note_(std::move(note)), calls_(calls), fail_(fail) {}
    void wait() override {
      calls_.push_back("wait " + note_);
      if (fail_) throw DistError("wait for " + note_ + " failed");
      t_.mul_(2);
    }

   private:
    torch::Tensor t_;
    std::string note_;
    std::vector<std::string>& calls_;
    bool fail_;
  };
};

// conv -> SyncBatchNorm -> conv, on a communicator whose all-reduces run "on the device": the
// buckets are started by backward itself, on the same communicator as SyncBatchNorm's backward
// all-reduce and interleaved with it in backward's order (so every rank issues one sequence),
// and synchronize() only waits and averages.
TEST(GradientSync, ADeviceBackendStartsBucketsFromBackwardBesideSyncBatchNorm) {
  auto comm = std::make_shared<DeviceLikeCommunicator>();
  torch::manual_seed(4);
  torch::nn::Conv2d first(torch::nn::Conv2dOptions(3, 8, 1)), last(torch::nn::Conv2dOptions(8, 2, 1));
  SyncBatchNorm norm(8, comm);
  torch::nn::BatchNorm2d plain(8);  // the reference: the duplicated batch has the local statistics
  std::vector<torch::Tensor> params;
  for (const auto& p : first->parameters()) params.push_back(p);
  for (const auto& p : norm->parameters()) params.push_back(p);
  for (const auto& p : last->parameters()) params.push_back(p);
  const torch::Tensor x = torch::randn({4, 3, 5, 5});

  std::vector<torch::Tensor> expected;
  {
    torch::nn::Conv2d first_ref(torch::nn::Conv2dOptions(3, 8, 1)), last_ref(torch::nn::Conv2dOptions(8, 2, 1));
    torch::NoGradGuard no_grad;
    first_ref->weight.copy_(first->weight), first_ref->bias.copy_(first->bias);
    last_ref->weight.copy_(last->weight), last_ref->bias.copy_(last->bias);
    torch::AutoGradMode grad(true);
    last_ref(plain(first_ref(x))).pow(2).sum().backward();
    for (const auto& m : {first_ref->parameters(), plain->parameters(), last_ref->parameters()})
      for (const auto& p : m) expected.push_back(p.grad().clone());
  }

  GradSyncOptions options;
  options.bucket_mb = 1e-6;  // one parameter per bucket: 6 buckets, `last`'s bias first
  GradientSync sync(params, comm, options);
  ASSERT_TRUE(sync.overlapping());
  ASSERT_TRUE(sync.launches_from_backward());
  ASSERT_EQ(sync.bucket_count(), 6u);
  last(norm(first(x))).pow(2).sum().backward();
  const std::vector<std::string> in_backward = comm->calls;
  sync.synchronize();

  const std::vector<std::string> starts{"start bucket 0 of 6", "start bucket 1 of 6", "start bucket 2 of 6",
                                        "start bucket 3 of 6", "start bucket 4 of 6", "start bucket 5 of 6"};
  // Forward's statistics, then backward: `last`'s two buckets, the norm's input gradient
  // all-reduce, the norm's and `first`'s buckets (each started once its gradient is final).
  std::vector<std::string> issued{"allreduce SyncBatchNorm",
                                  starts[0],
                                  starts[1],
                                  "allreduce SyncBatchNorm",
                                  starts[2],
                                  starts[3],
                                  starts[4],
                                  starts[5]};
  EXPECT_EQ(in_backward, issued);
  for (int b = 0; b < 6; ++b) issued.push_back("wait bucket " + std::to_string(b) + " of 6");
  EXPECT_EQ(comm->calls, issued);
  EXPECT_EQ(sync.last_stats().buckets_in_backward, 6);
  for (size_t k = 0; k < params.size(); ++k)
    EXPECT_TRUE(torch::allclose(params[k].grad(), expected[k], 1e-4, 1e-5))
        << "parameter " << k << " max diff " << (params[k].grad() - expected[k]).abs().max().item<double>();
}

TEST(Watchdog, EarlyWarningNamesTheLateRanks) {
  CollectiveInfo info;
  info.sequence = 12;
  info.bytes = 26200000;
  info.note = "bucket 0 of 5";
  std::vector<PeerState> peers(2);
  peers[0] = {1, false, 11, CollectiveKind::kAllreduce};
  peers[1] = {2, true, 12, CollectiveKind::kAllreduce};
  EXPECT_EQ(stall_warning(info, "grad-sync", 60.7, 600, 0, peers),
            "collective allreduce #12 (bucket 0 of 5, 26.2 MB) on communicator grad-sync has waited "
            "60 s on rank 0 for rank [1] (timeout at 600 s, dist.timeout_s)");
}

TEST(Watchdog, FormatsBytes) {
  EXPECT_EQ(format_bytes(512), "512 B");
  EXPECT_EQ(format_bytes(4000), "4.0 KB");
  EXPECT_EQ(format_bytes(4100000), "4.1 MB");
  EXPECT_EQ(format_bytes(2500000000LL), "2.5 GB");
}

TEST(Watchdog, MessageNamesCollectiveSequenceAndMissingRanks) {
  CollectiveInfo info;
  info.kind = CollectiveKind::kAllreduce;
  info.sequence = 123;
  info.bytes = 4100000;
  info.note = "bucket 2 of 5";
  std::vector<PeerState> peers(3);
  peers[0] = {1, false, 120, CollectiveKind::kBarrier};
  peers[1] = {2, true, 123, CollectiveKind::kAllreduce};
  peers[2] = {3, false, -1, CollectiveKind::kAllreduce};
  EXPECT_EQ(timeout_message(info, "grad-sync", 30, 0, peers),
            "collective allreduce #123 (bucket 2 of 5, 4.1 MB) on communicator grad-sync timed out "
            "after 30 s on rank 0: ranks [1, 3] did not arrive (rank 1 last seen waiting in barrier "
            "#120); check rank 1's log (logs/rank-1.log in the run directory) and whether it was "
            "killed or stalled");
  for (auto& p : peers) p.arrived = true;
  info.kind = CollectiveKind::kBarrier;
  info.note.clear();
  info.bytes = 0;
  EXPECT_EQ(timeout_message(info, "world", 2.5, 1, peers),
            "collective barrier #123 (0 B) on communicator world timed out after 2.5 s on rank 1: "
            "every rank arrived but the collective did not complete; check the network and the MPI "
            "transport (OMPI_MCA_btl) between the hosts");
  // A rank that was itself stopped says so (its report is written after it resumes).
  EXPECT_EQ(timeout_message(info, "world", 10, 1, peers, 14.2),
            "collective barrier #123 (0 B) on communicator world timed out after 10 s on rank 1: "
            "this rank itself made no progress for 14 s (stopped, swapped out or starved of CPU); "
            "every rank arrived but the collective did not complete; check the network and the "
            "MPI transport (OMPI_MCA_btl) between the hosts");
}

// ---- the stream watchdog (nccl backend): fake probes on the host clock -----------------------

using WatchClock = std::chrono::steady_clock;

double seconds_from(WatchClock::time_point t0) { return std::chrono::duration<double>(WatchClock::now() - t0).count(); }

// Collects the watchdog's reports (they come from its thread).
struct Reports {
  std::mutex mutex;
  std::vector<std::string> warnings, failures;
  StreamWatchdog::Report warn() {
    return [this](const std::string& m) {
      std::lock_guard<std::mutex> lock(mutex);
      warnings.push_back(m);
    };
  }
  StreamWatchdog::Report fail() {
    return [this](const std::string& m) {
      std::lock_guard<std::mutex> lock(mutex);
      failures.push_back(m);
    };
  }
  size_t failure_count() {
    std::lock_guard<std::mutex> lock(mutex);
    return failures.size();
  }
};

CollectiveInfo bucket_collective(uint64_t sequence) {
  CollectiveInfo info;
  info.kind = CollectiveKind::kAllreduce;
  info.sequence = sequence;
  info.bytes = 4100000;
  info.note = "bucket 2";
  return info;
}

// Waits up to `limit_s` for `done`.
template <typename Done>
bool eventually(Done done, double limit_s = 10.0) {
  const auto t0 = WatchClock::now();
  while (!done()) {
    if (seconds_from(t0) > limit_s) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

TEST(StreamWatchdog, MessagesNameTheCollectiveTheCommunicatorAndTheRank) {
  StreamWatchdogOptions options;
  options.name = "grad-sync";
  options.rank = 3;
  EXPECT_EQ(stream_timeout_message(bucket_collective(12), options),
            "collective allreduce #12 (bucket 2, 4.1 MB) on communicator grad-sync (nccl) did not complete within "
            "600 s on rank 3: a rank did not join it (stopped, stuck or on another collective) or a GPU or a link "
            "hung; the first error is in the other ranks' logs (logs/rank-<r>.log in the run directory), "
            "NCCL_DEBUG=INFO tells more (dist.timeout_s)");
  EXPECT_EQ(stream_error_message(bucket_collective(12), options, "NCCL: unhandled system error"),
            "collective allreduce #12 (bucket 2, 4.1 MB) on communicator grad-sync (nccl) failed on rank 3: NCCL: "
            "unhandled system error");
  EXPECT_EQ(stream_stall_warning(bucket_collective(12), options, 61.7),
            "collective allreduce #12 (bucket 2, 4.1 MB) on communicator grad-sync (nccl) has not completed after "
            "61 s on rank 3 (timeout at 600 s, dist.timeout_s)");
}

TEST(StreamWatchdog, CompletedCollectivesLeaveInOrderWithoutAReport) {
  Reports reports;
  std::atomic<int> polls{0};
  StreamWatchdogOptions options;
  options.timeout_s = 5;
  StreamWatchdog watchdog(options, reports.warn(), reports.fail());
  std::vector<uint64_t> order;
  std::mutex order_mutex;
  for (uint64_t s = 1; s <= 3; ++s) {
    auto calls = std::make_shared<int>(0);
    watchdog.watch(bucket_collective(s), [&, s, calls] {
      ++polls;
      if (++*calls < 3) return ProbeResult{ProbeResult::State::kPending, ""};
      std::lock_guard<std::mutex> lock(order_mutex);
      order.push_back(s);
      return ProbeResult{ProbeResult::State::kDone, ""};
    });
  }
  ASSERT_TRUE(eventually([&] { return watchdog.pending() == 0; }));
  EXPECT_EQ(order, (std::vector<uint64_t>{1, 2, 3}));
  EXPECT_GE(polls.load(), 9);
  EXPECT_TRUE(reports.warnings.empty());
  EXPECT_TRUE(reports.failures.empty());
  EXPECT_FALSE(watchdog.failed());
}

TEST(StreamWatchdog, ALateCollectiveIsReportedOnceAfterOneWarning) {
  Reports reports;
  std::atomic<int> polls{0};
  StreamWatchdogOptions options;
  options.timeout_s = 1.0;  // slack for a loaded machine: the warning comes at 0.05 s
  options.warn_after_s = 0.05;
  options.rank = 1;
  StreamWatchdog watchdog(options, reports.warn(), reports.fail());
  watchdog.watch(bucket_collective(7), [&] {
    ++polls;
    return ProbeResult{ProbeResult::State::kPending, ""};
  });
  watchdog.watch(bucket_collective(8), [] { return ProbeResult{ProbeResult::State::kPending, ""}; });
  ASSERT_TRUE(eventually([&] { return reports.failure_count() == 1; }));
  EXPECT_TRUE(watchdog.failed());
  const int polls_at_failure = polls.load();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(polls.load(), polls_at_failure);  // no probe after the failure
  std::lock_guard<std::mutex> lock(reports.mutex);
  ASSERT_EQ(reports.failures.size(), 1u);
  EXPECT_EQ(reports.failures[0], stream_timeout_message(bucket_collective(7), options));
  ASSERT_EQ(reports.warnings.size(), 1u);
  EXPECT_EQ(reports.warnings[0].rfind(
                "collective allreduce #7 (bucket 2, 4.1 MB) on communicator world (nccl) has not completed after", 0),
            0u)
      << reports.warnings[0];
}

TEST(StreamWatchdog, AFailureTheProbeReportsEndsItAtOnceWithoutADeadline) {
  Reports reports;
  StreamWatchdogOptions options;
  options.timeout_s = 0;  // no deadline: errors are still reported
  StreamWatchdog watchdog(options, reports.warn(), reports.fail());
  watchdog.watch(bucket_collective(1), [] { return ProbeResult{ProbeResult::State::kDone, ""}; });
  watchdog.watch(bucket_collective(2), [] {
    return ProbeResult{ProbeResult::State::kFailed, "NCCL: unhandled system error"};
  });
  ASSERT_TRUE(eventually([&] { return reports.failure_count() == 1; }));
  std::lock_guard<std::mutex> lock(reports.mutex);
  EXPECT_EQ(reports.failures[0], stream_error_message(bucket_collective(2), options, "NCCL: unhandled system error"));
}

// A stream completes in order: the clock of a collective starts when the one before it is done.
// Here #2 is done 1.5 s after it was issued but only 0.7 s after #1: within the 1 s deadline.
TEST(StreamWatchdog, TheDeadlineCountsFromThePreviousCompletion) {
  Reports reports;
  StreamWatchdogOptions options;
  options.timeout_s = 1.0;
  options.warn_after_s = 100;
  StreamWatchdog watchdog(options, reports.warn(), reports.fail());
  const auto t0 = WatchClock::now();
  const auto done_after = [t0](double s) {
    return [t0, s] {
      return ProbeResult{seconds_from(t0) >= s ? ProbeResult::State::kDone : ProbeResult::State::kPending, ""};
    };
  };
  watchdog.watch(bucket_collective(1), done_after(0.8));
  watchdog.watch(bucket_collective(2), done_after(1.5));
  ASSERT_TRUE(eventually([&] { return watchdog.pending() == 0 || reports.failure_count() > 0; }));
  EXPECT_EQ(reports.failure_count(), 0u) << reports.failures.front();
}

TEST(StreamWatchdog, StopsWithCollectivesPendingWithoutAReport) {
  Reports reports;
  const auto t0 = WatchClock::now();
  {
    StreamWatchdog watchdog(StreamWatchdogOptions{}, reports.warn(), reports.fail());
    watchdog.watch(bucket_collective(1), [] { return ProbeResult{ProbeResult::State::kPending, ""}; });
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    EXPECT_EQ(watchdog.pending(), 1u);
  }
  EXPECT_LT(seconds_from(t0), 2.0);
  EXPECT_TRUE(reports.failures.empty());
  EXPECT_TRUE(reports.warnings.empty());
}

// A start or a wait that fails fails the step for good: the error comes out of backward or
// synchronize(), every later synchronize() rethrows it, and no bucket is started twice on this
// rank (the other ranks would pair the repeat with their next collective).
TEST(GradientSync, AFailedStartOrWaitFailsTheStepForGood) {
  auto expect_error = [](const std::function<void()>& call, const std::string& what) {
    try {
      call();
      ADD_FAILURE() << "expected an error with '" << what << "'";
    } catch (const std::exception& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  for (const std::string failing : {"start", "wait"}) {
    SCOPED_TRACE("a failing " + failing);
    auto comm = std::make_shared<DeviceLikeCommunicator>();
    (failing == "start" ? comm->fail_start_of : comm->fail_wait_of) = "bucket 1 of 3";
    std::vector<torch::Tensor> params{torch::ones({4}, torch::requires_grad()),
                                      torch::full({4}, 2.0, torch::requires_grad()),
                                      torch::full({4}, 3.0, torch::requires_grad())};
    GradSyncOptions options;
    options.bucket_mb = 1e-6;  // one parameter per bucket
    GradientSync sync(params, comm, options);
    ASSERT_TRUE(sync.launches_from_backward());
    const std::string error = failing == "start" ? "start of bucket 1 of 3 failed" : "wait for bucket 1 of 3 failed";
    auto backward = [&] { (params[0] * params[1] * params[2]).sum().backward(); };
    if (failing == "start")
      expect_error(backward, error);
    else
      backward();
    expect_error([&] { sync.synchronize(); }, error);
    expect_error([&] { sync.synchronize(); }, error);
    EXPECT_EQ(std::count(comm->calls.begin(), comm->calls.end(), "start bucket 1 of 3"), 1);
    EXPECT_EQ(std::count(comm->calls.begin(), comm->calls.end(), "start bucket 2 of 3"), failing == "start" ? 0 : 1);
  }
}

}  // namespace
}  // namespace segrun::dist
