// bench_grad_sync: the cost of segrun's gradient all-reduce inside a training step, with and
// without overlapping it with backward (the figures of docs/distributed.md "Measured figures").
// Each mode times the same step on every rank: 0 no gradient sync (no_sync), 1 the synchronous
// bucketed all-reduce after backward, 2 the overlapped one launched from the gradient hooks.
//   mpirun -np 2 bench_grad_sync --model toy [--batch 16] [--steps 10] [--bucket-mb 2]
//       a comm-heavy toy: 12 x Linear(512, 512) (12.3 MB of gradients), squared-output loss;
//   mpirun -np 2 bench_grad_sync --model r50fpn [--batch 2] [--steps 4] [--bucket-mb 25]
//       the CLIP-RN50 + Semantic FPN parameter set (31 M parameters) with SyncBN at crop 64,
//       150 classes, a random batch per rank; a warm-up round of the three modes first.
// Prints, on rank 0, one line per mode: step time, overhead against no sync, the time
// synchronize() kept the step waiting, and (toy) the all-reduce busy time; then the overlapped
// step against its peer, the synchronous one (ratio, and the share of the overhead hidden).
// Nothing is asserted: these are figures, so this is a benchmark and not a test.
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <stdexcept>
#include <string>

#include "bench/bench_flags.h"
#include "bench/guarded_main.h"
#include "core/config.h"
#include "dist/communicator.h"
#include "dist/grad_sync.h"
#include "dist/rank_context.h"
#include "models/segmentor.h"

namespace {

using namespace segrun;
using Clock = std::chrono::steady_clock;

const char* const kModeNames[] = {"no sync    ", "synchronous", "overlapped "};

// The comparison the figures exist for: the overlapped step against its peer, the synchronous
// one, both measured above against the same step without sync.
void print_comparison(const double step_s[3]) {
  const double sync_overhead = step_s[1] - step_s[0], overlap_overhead = step_s[2] - step_s[0];
  std::printf("overlapped / synchronous step: %.3fx; overhead hidden by overlapping: %.0f %%\n", step_s[2] / step_s[1],
              sync_overhead > 0 ? 100.0 * (1.0 - overlap_overhead / sync_overhead) : 0.0);
}

// One timed step of `step` (forward + backward) in `mode`, after a barrier.
template <typename Step>
double timed_step(dist::Communicator& comm, dist::GradientSync& sync, int mode, const Step& step) {
  comm.barrier();
  const auto start = Clock::now();
  if (mode == 0) {
    auto guard = sync.no_sync();
    step();
  } else {
    step();
    sync.synchronize();
  }
  return std::chrono::duration<double>(Clock::now() - start).count();
}

void toy(const std::shared_ptr<dist::Communicator>& comm, int64_t batch, int steps, double bucket_mb) {
  const int64_t width = 512, depth = 12;
  double step_none = 0, step_of[3] = {0, 0, 0};
  for (int mode = 0; mode < 3; ++mode) {
    torch::manual_seed(5);
    torch::nn::Sequential net;
    for (int64_t i = 0; i < depth; ++i) {
      net->push_back(torch::nn::Linear(width, width));
      net->push_back(torch::nn::Functional(torch::relu));
    }
    dist::GradSyncOptions options;
    options.bucket_mb = bucket_mb;
    options.overlap = mode == 2;
    dist::GradientSync sync(net->parameters(), comm, options);
    const torch::Tensor x = torch::randn({batch, width});
    double step_s = 0, wait_s = 0, comm_s = 0;
    for (int s = -1; s < steps; ++s) {  // step -1 warms up
      net->zero_grad();
      const double t = timed_step(*comm, sync, mode, [&] { net->forward(x).pow(2).mean().backward(); });
      if (s < 0) continue;
      step_s += t;
      if (mode > 0) {
        wait_s += sync.last_stats().wait_seconds;
        comm_s += sync.last_stats().comm_seconds;
      }
    }
    step_s /= steps;
    step_of[mode] = step_s;
    if (mode == 0) step_none = step_s;
    if (comm->rank() == 0)
      std::printf(
          "%s batch %lld, %zu buckets: step %.1f ms, overhead vs no sync %.1f ms, "
          "synchronize() blocked %.1f ms, all-reduce busy %.1f ms (mean of %d steps)\n",
          kModeNames[mode], static_cast<long long>(batch), sync.bucket_count(), 1e3 * step_s,
          1e3 * (step_s - step_none), 1e3 * wait_s / steps, 1e3 * comm_s / steps, steps);
  }
  if (comm->rank() == 0) print_comparison(step_of);
}

void r50fpn(const std::shared_ptr<dist::Communicator>& comm, int64_t batch, int steps, double bucket_mb) {
  models::BuildOptions build;
  build.config =
      parse_config("", "bench_grad_sync", {"model.width=64", "model.fpn_channels=256", "model.dropout=0"}).model;
  build.num_classes = 150;
  build.comm = comm;
  build.crop_size = 64;
  torch::manual_seed(1);
  auto model = models::build_segmentor(build);
  torch::manual_seed(100 + comm->rank());
  const torch::Tensor images = torch::randn({batch, 3, 64, 64});
  const torch::Tensor labels = torch::randint(0, 150, {batch, 64, 64}, torch::kLong);
  int64_t numel = 0;
  for (const auto& p : model->parameters()) numel += p.numel();
  double none = 0, step_of[3] = {0, 0, 0};
  for (int round = 0; round < 6; ++round) {  // the first three rounds warm up
    const int mode = round % 3;
    dist::GradSyncOptions options;
    options.bucket_mb = bucket_mb;
    options.overlap = mode == 2;
    dist::GradientSync sync(model->parameters(), comm, options);
    double total = 0, blocked = 0;
    for (int s = -1; s < steps; ++s) {
      model->zero_grad();
      const double t = timed_step(*comm, sync, mode, [&] { model->loss(images, labels).total.backward(); });
      if (s < 0) continue;
      total += t;
      if (mode > 0) blocked += sync.last_stats().wait_seconds;
    }
    total /= steps;
    step_of[mode] = total;
    if (mode == 0) none = total;
    if (comm->rank() == 0 && round >= 3)
      std::printf(
          "R50+FPN %.1f M params (%.0f MB), %zu buckets, %s: step %.0f ms, overhead vs no sync %.0f ms, "
          "synchronize() blocked %.0f ms\n",
          numel / 1e6, numel * 4 / 1e6, sync.bucket_count(), kModeNames[mode], 1e3 * total, 1e3 * (total - none),
          1e3 * blocked / steps);
  }
  if (comm->rank() == 0) print_comparison(step_of);
}

int run(int argc, char** argv) {
  std::map<std::string, std::string> flags =
      bench::parse_flags("bench_grad_sync", argc, argv,
                         {{"model", "toy"}, {"batch", ""}, {"steps", ""}, {"bucket-mb", ""}, {"threads", "1"}});
  bench::log_warnings_only();
  const bool is_toy = flags["model"] == "toy";
  if (!is_toy && flags["model"] != "r50fpn") throw std::runtime_error("--model: toy | r50fpn, got " + flags["model"]);
  const int64_t batch = std::stoll(flags["batch"].empty() ? (is_toy ? "16" : "2") : flags["batch"]);
  const int steps = std::stoi(flags["steps"].empty() ? (is_toy ? "10" : "4") : flags["steps"]);
  const double bucket_mb = std::stod(flags["bucket-mb"].empty() ? (is_toy ? "2" : "25") : flags["bucket-mb"]);
  torch::set_num_threads(std::stoi(flags["threads"]));
  dist::MpiSession session(&argc, &argv, std::stoi(flags["threads"]));
  std::shared_ptr<dist::Communicator> comm = dist::make_communicator("mpi", session.context());
  if (is_toy)
    toy(comm, batch, steps, bucket_mb);
  else
    r50fpn(comm, batch, steps, bucket_mb);
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return segrun::bench::guarded_main("bench_grad_sync", argc, argv, run); }
