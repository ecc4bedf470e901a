// bench_train_step: time and memory of one training step (forward, loss, backward, AdamW) on one
// rank, on the CPU or a GPU, in fp32 or under bf16/fp16 autocast.
// Model: the CLIP-RN50 Semantic FPN baseline built from the flags (150 classes, plain BatchNorm,
// no dropout), timed against the same step in PyTorch/Python (bench/train_step_peer.py, the way an
// mmsegmentation user runs it) in the same run on the same weights and batch; the result is
// verified as well as timed: both sides must compute the same first-step loss. Or, with --config,
// the model, crop and per-rank batch of a config file (CLIP-SP, MTA-CLIP at their papers' sizes),
// timed alone. Prints one markdown table row per side and the ratios, and on stderr one "summary:"
// line of key=value pairs (for scripts/gpu-check.sh).
//   bench_train_step [--width 16] [--channels 64] [--crop 128] [--batch 4] [--steps 20]
//                    [--warmup 3] [--threads 1] [--python /usr/bin/python3] [--device cpu|cuda]
//                    [--precision fp32|bf16|fp16] [--tf32 1] [--config FILE] [--peer 1]
// GPU timings synchronize the device before reading the clock; peak memory on a GPU is the caching
// allocator's peak of allocated bytes over the timed steps (torch.cuda.max_memory_allocated on the
// peer's side), on the CPU the process's peak RSS.
#include <sys/resource.h>
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>

#include "bench/bench_flags.h"
#include "bench/guarded_main.h"
#include "build_config.h"
#include "core/config.h"
#include "data/classes.h"
#include "dist/device.h"
#include "engine/optimizer.h"
#include "engine/precision.h"
#include "models/segmentor.h"

namespace {

using namespace segrun;

double peak_rss_mib() {
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss / 1024.0;
}

struct Side {
  double ms_per_step = 0, images_per_s = 0, first_loss = 0, peak_mib = 0;
  int64_t host_waits = 0;  // in one step: how often the host waited for the device
};

}  // namespace

int run(int argc, char** argv) {
  auto flags = bench::parse_flags("bench_train_step", argc, argv,
                                  {{"width", "16"},
                                   {"channels", "64"},
                                   {"crop", "128"},
                                   {"batch", "4"},
                                   {"steps", "20"},
                                   {"warmup", "3"},
                                   {"threads", "1"},
                                   {"python", "/usr/bin/python3"},
                                   {"device", "cpu"},
                                   {"precision", "fp32"},
                                   {"tf32", "1"},
                                   {"config", ""},
                                   {"peer", "1"}});
  bench::log_warnings_only();
  const int steps = std::stoi(flags["steps"]), warmup = std::stoi(flags["warmup"]);
  const int threads = std::stoi(flags["threads"]);
  const bool tf32 = flags["tf32"] == "1";
  torch::set_num_threads(threads);
  // "cuda" means cuda:0 (the c10::cuda calls below refuse the index -1 of a bare "cuda").
  torch::Device device(flags["device"]);
  if (device.is_cuda() && !device.has_index()) device = torch::Device(torch::kCUDA, 0);
  if (device.is_cuda() && !SEGRUN_WITH_CUDA) {
    std::fprintf(stderr, "bench_train_step: --device cuda needs a segrun built with CUDA (docs/gpu.md)\n");
    return 2;
  }
  const engine::Precision precision = engine::parse_precision(flags["precision"], device);
  engine::set_math_modes(tf32, /*cudnn_benchmark=*/true);
  dist::bind_thread(device);
  torch::manual_seed(0);

  // The model: FPN from the flags, or whatever a config file describes.
  models::BuildOptions build;
  std::string what;
  int crop = std::stoi(flags["crop"]), batch = std::stoi(flags["batch"]);
  const bool from_config = !flags["config"].empty();
  if (from_config) {
    const Config config = load_config(flags["config"]);
    build.config = config.model;
    build.config.pretrained.clear();  // timing does not need the weights
    build.class_names = data::class_names(data::parse_layout(config.data.layout));
    crop = config.data.crop[0];
    batch = config.data.batch_per_rank;
    build.config.norm = build.config.norm == "syncbn" ? "bn" : build.config.norm;  // one rank
    what = config.name + " (" + config.model.head + ", " + config.model.backbone + " width " +
           std::to_string(config.model.width) + ")";
  } else {
    build.config.width = std::stoi(flags["width"]);
    build.config.fpn_channels = std::stoi(flags["channels"]);
    build.config.norm = "bn";
    build.config.dropout = 0.0;  // no randomness: the two sides must agree on the loss
    build.class_names = data::class_names(data::Layout::kAde20k);
    what = "CLIP-RN50 Semantic FPN, width " + flags["width"] + ", FPN channels " + flags["channels"];
  }
  const int num_classes = static_cast<int>(build.class_names.size());
  build.num_classes = num_classes;
  build.crop_size = crop;
  auto model = models::build_segmentor(build);
  model->train();
  torch::Tensor images = torch::randn({batch, 3, crop, crop});
  torch::Tensor labels = torch::randint(0, num_classes, {batch, crop, crop}, torch::kLong);
  labels.masked_fill_(torch::rand({batch, crop, crop}) < 0.1, 255);

  // Hand the same weights and batch to the peer (FPN only: its reference model).
  const bool with_peer = !from_config && flags["peer"] == "1";
  const std::string exchange = "/tmp/bench_train_step_" + std::to_string(::getpid()) + ".pt";
  if (with_peer) {
    c10::Dict<std::string, at::Tensor> dict;
    for (const auto& p : model->named_parameters()) dict.insert(p.key(), p.value().detach());
    for (const auto& b : model->named_buffers()) dict.insert(b.key(), b.value().detach());
    dict.insert("bench.images", images);
    dict.insert("bench.labels", labels);
    auto bytes = torch::pickle_save(c10::IValue(dict));
    std::ofstream(exchange, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }

  model->to(device);
  const torch::Tensor dev_images = images.to(device), dev_labels = labels.to(device);
  auto optimizer = engine::MultiTensorAdamW(model->parameters(), torch::optim::AdamWOptions(1e-4).weight_decay(1e-4));
  engine::LossScaler scaler(precision == engine::Precision::kFp16);
  // One training step; returns its loss.
  const auto train_step = [&] {
    optimizer.zero_grad();
    models::LossTerms loss;
    {
      engine::AutocastScope autocast(device, precision);
      loss = model->loss(dev_images, dev_labels);
    }
    scaler.scale(loss.total).backward();
    if (scaler.unscale_and_update(model->parameters())) optimizer.step();
    return loss.total.detach();
  };
  Side ours;
  std::chrono::steady_clock::time_point start;
  for (int step = 0; step < warmup + steps; ++step) {
    if (step == warmup) {
      dist::synchronize(device);
      dist::reset_peak_memory_stats(device);
      start = std::chrono::steady_clock::now();
    }
    const torch::Tensor loss = train_step();
    if (step == 0) ours.first_loss = loss.item<double>();
  }
  dist::synchronize(device);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ours.ms_per_step = 1000.0 * seconds / steps;
  ours.images_per_s = steps * batch / seconds;
  ours.peak_mib = device.is_cuda() ? dist::memory_stats(device).peak_allocated_bytes / 1048576.0 : peak_rss_mib();
  {
    // One more step, untimed, counting the host's waits for the device (0 on the CPU).
    dist::HostWaitCounter counter;
    train_step();
    ours.host_waits = counter.waits();
  }
  const char* memory = device.is_cuda() ? "peak GPU memory allocated MiB" : "peak RSS MiB";

  Side peer;
  if (with_peer) {
    std::ostringstream cmd;
    cmd << flags["python"] << " " << SEGRUN_SOURCE_DIR << "/bench/train_step_peer.py " << exchange << " "
        << flags["width"] << " " << flags["channels"] << " " << num_classes << " " << steps << " " << warmup << " "
        << threads << " " << device.str() << " " << flags["precision"] << " " << (tf32 ? 1 : 0);
    FILE* pipe = ::popen(cmd.str().c_str(), "r");
    if (!pipe || std::fscanf(pipe, "%lf %lf %lf", &peer.images_per_s, &peer.first_loss, &peer.peak_mib) != 3) {
      std::cerr << "bench_train_step: the peer failed: " << cmd.str() << "\n";
      std::remove(exchange.c_str());
      return 1;
    }
    ::pclose(pipe);
    std::remove(exchange.c_str());
    peer.ms_per_step = 1000.0 * batch / peer.images_per_s;
  }

  std::printf("| side | ms/step | images/s | first loss | %s |\n|---|---|---|---|---|\n", memory);
  std::printf("| segrun (LibTorch C++) | %.1f | %.2f | %.6f | %.0f |\n", ours.ms_per_step, ours.images_per_s,
              ours.first_loss, ours.peak_mib);
  // GPU kernels round differently from run to run (cuDNN's algorithm choice, TF32); bf16 / fp16
  // keep 8 / 11 mantissa bits, and the two sides round at different places in the network (a
  // different model would be off by far more: the check is that both train the same network).
  const double tolerance = precision != engine::Precision::kFp32 ? 1e-2 : (device.is_cuda() ? 2e-3 : 1e-4);
  bool agree = true;
  if (with_peer) {
    std::printf("| peer (PyTorch Python) | %.1f | %.2f | %.6f | %.0f |\n", peer.ms_per_step, peer.images_per_s,
                peer.first_loss, peer.peak_mib);
    agree = std::abs(ours.first_loss - peer.first_loss) <= tolerance * std::max(1.0, std::abs(peer.first_loss));
    std::printf("\nratio segrun/peer: %.2fx step time, %.2fx images/s, %.2fx peak memory; losses %s\n",
                ours.ms_per_step / peer.ms_per_step, ours.images_per_s / peer.images_per_s,
                ours.peak_mib / peer.peak_mib, agree ? "agree" : "DISAGREE");
  }
  std::printf("config: %s, %d classes, crop %d, batch %d, %s on %s%s, %d timed steps after %d, %d thread(s)\n",
              what.c_str(), num_classes, crop, batch, flags["precision"].c_str(), device.str().c_str(),
              device.is_cuda() ? (tf32 ? ", TF32 on" : ", TF32 off") : "", steps, warmup, threads);
  if (device.is_cuda())
    std::printf("host waits for the GPU in one step (an untimed step after the timed ones): %lld\n",
                static_cast<long long>(ours.host_waits));
  std::fprintf(stderr, "summary: model=%s device=%s precision=%s batch=%d crop=%d ms=%.2f img_s=%.2f mem_mib=%.0f",
               from_config ? flags["config"].c_str() : "fpn", device.str().c_str(), flags["precision"].c_str(), batch,
               crop, ours.ms_per_step, ours.images_per_s, ours.peak_mib);
  std::fprintf(stderr, " host_waits=%lld", static_cast<long long>(ours.host_waits));
  if (with_peer)
    std::fprintf(stderr, " peer_ms=%.2f peer_mem_mib=%.0f time_ratio=%.3f mem_ratio=%.3f agree=%d", peer.ms_per_step,
                 peer.peak_mib, ours.ms_per_step / peer.ms_per_step, ours.peak_mib / peer.peak_mib, agree ? 1 : 0);
  std::fprintf(stderr, "\n");
  return agree ? 0 : 1;
}

int main(int argc, char** argv) { return segrun::bench::guarded_main("bench_train_step", argc, argv, run); }
