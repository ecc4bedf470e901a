// Decode-head loss benchmark: segrun's fused upsample + cross-entropy
// (models/losses/upsampled_cross_entropy.h) against the unfused ops it replaces, in the same run:
// LibTorch's F::interpolate + F::cross_entropy (the kernels PyTorch runs) and the PyTorch Python
// peer bench/seg_loss_peer.py, forward + backward on one thread, medians over --reps. Checks that
// the fused and unfused LibTorch losses agree before timing.
//   bench_seg_loss [--batch 2] [--classes 150] [--logits 64] [--labels 256] [--reps 5]
//                  [--python /usr/bin/python3]
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "bench/bench_flags.h"
#include "bench/guarded_main.h"
#include "build_config.h"
#include "models/losses/upsampled_cross_entropy.h"

namespace F = torch::nn::functional;

namespace {

template <typename Fn>
double median_seconds(int reps, Fn&& step) {
  std::vector<double> times;
  for (int i = 0; i <= reps; ++i) {  // the first round warms up
    const auto t0 = std::chrono::steady_clock::now();
    step();
    if (i > 0) times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

}  // namespace

int run(int argc, char** argv) {
  auto flags = segrun::bench::parse_flags("bench_seg_loss", argc, argv,
                                          {{"batch", "2"},
                                           {"classes", "150"},
                                           {"logits", "64"},
                                           {"labels", "256"},
                                           {"reps", "5"},
                                           {"python", "/usr/bin/python3"}});
  const int64_t b = std::stoll(flags["batch"]), k = std::stoll(flags["classes"]);
  const int64_t h = std::stoll(flags["logits"]), big = std::stoll(flags["labels"]);
  const int reps = std::stoi(flags["reps"]);
  torch::set_num_threads(1);
  torch::manual_seed(0);
  torch::Tensor logits = (torch::randn({b, k, h, h}) * 3.0).requires_grad_(true);
  torch::Tensor labels = torch::randint(0, k, {b, big, big}, torch::kLong);
  labels.masked_fill_(torch::rand({b, big, big}).lt(0.1), 255);

  auto unfused = [&] {
    torch::Tensor up = F::interpolate(
        logits,
        F::InterpolateFuncOptions().size(std::vector<int64_t>{big, big}).mode(torch::kBilinear).align_corners(false));
    return F::cross_entropy(up, labels, F::CrossEntropyFuncOptions().ignore_index(255).reduction(torch::kNone)).mean();
  };
  const double a = segrun::models::upsampled_cross_entropy(logits, labels, 255).item<double>(),
               c = unfused().item<double>();
  if (std::abs(a - c) > 1e-5 * std::max(1.0, std::abs(c))) {
    std::fprintf(stderr, "bench_seg_loss: fused loss %.7f differs from unfused %.7f\n", a, c);
    return 1;
  }
  const double fused_s = median_seconds(reps, [&] {
    logits.mutable_grad() = torch::Tensor();
    segrun::models::upsampled_cross_entropy(logits, labels, 255).backward();
  });
  const double unfused_s = median_seconds(reps, [&] {
    logits.mutable_grad() = torch::Tensor();
    unfused().backward();
  });
  const std::string command = flags["python"] + " " + SEGRUN_SOURCE_DIR + "/bench/seg_loss_peer.py " +
                              std::to_string(b) + " " + std::to_string(k) + " " + std::to_string(h) + " " +
                              std::to_string(big) + " " + std::to_string(reps);
  double peer_s = -1;
  if (FILE* pipe = ::popen(command.c_str(), "r")) {
    if (std::fscanf(pipe, "%lf", &peer_s) != 1) peer_s = -1;
    ::pclose(pipe);
  }
  std::printf(
      "decode-head loss, forward + backward, 1 thread: logits %lldx%lldx%lldx%lld -> labels %lldx%lld, "
      "median of %d (loss %.6f both)\n\n",
      static_cast<long long>(b), static_cast<long long>(k), static_cast<long long>(h), static_cast<long long>(h),
      static_cast<long long>(big), static_cast<long long>(big), reps, a);
  std::printf("| side | seconds | unfused / this |\n|---|---|---|\n");
  std::printf("| segrun fused (upsampled_cross_entropy) | %.4f | %.2fx |\n", fused_s, unfused_s / fused_s);
  std::printf("| LibTorch unfused (interpolate + cross_entropy) | %.4f | 1.00x |\n", unfused_s);
  if (peer_s > 0)
    std::printf("| PyTorch peer (bench/seg_loss_peer.py) | %.4f | %.2fx |\n", peer_s, unfused_s / peer_s);
  else
    std::printf("| PyTorch peer | (failed: %s) | |\n", command.c_str());
  return 0;
}

int main(int argc, char** argv) { return segrun::bench::guarded_main("bench_seg_loss", argc, argv, run); }
