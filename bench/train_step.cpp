// bench_train_step: images/s of one training step (forward, mmseg cross-entropy, backward, AdamW)
// of the CLIP-RN50 Semantic FPN baseline on one rank, against the same step in PyTorch/Python
// (bench/train_step_peer.py, the way an mmsegmentation user runs it) measured in the same run on
// the same weights and batch. The result is verified as well as timed: both sides must compute the
// same first-step loss. Prints one markdown table row per side and the ratio.
//   bench_train_step [--width 16] [--channels 64] [--crop 128] [--batch 4] [--steps 20]
//                    [--warmup 3] [--threads 1] [--python /usr/bin/python3]
#include <sys/resource.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>

#include "bench/bench_flags.h"
#include "build_config.h"
#include "models/segmentor.h"

namespace {

using namespace segrun;

double peak_rss_mib() {
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss / 1024.0;
}

}  // namespace

int main(int argc, char** argv) {
  auto flags = bench::parse_flags("bench_train_step", argc, argv,
                                  {{"width", "16"}, {"channels", "64"}, {"crop", "128"}, {"batch", "4"},
                                   {"steps", "20"}, {"warmup", "3"}, {"threads", "1"},
                                   {"python", "/usr/bin/python3"}});
  const int width = std::stoi(flags["width"]), channels = std::stoi(flags["channels"]);
  const int crop = std::stoi(flags["crop"]), batch = std::stoi(flags["batch"]);
  const int steps = std::stoi(flags["steps"]), warmup = std::stoi(flags["warmup"]);
  const int threads = std::stoi(flags["threads"]);
  const int num_classes = 150;
  torch::set_num_threads(threads);
  torch::manual_seed(0);

  models::BuildOptions build;
  build.config.width = width;
  build.config.fpn_channels = channels;
  build.config.norm = "bn";
  build.config.dropout = 0.0;  // no randomness: the two sides must agree on the loss
  build.num_classes = num_classes;
  build.crop_size = crop;
  auto model = models::build_segmentor(build);
  model->train();
  torch::Tensor images = torch::randn({batch, 3, crop, crop});
  torch::Tensor labels = torch::randint(0, num_classes, {batch, crop, crop}, torch::kLong);
  labels.masked_fill_(torch::rand({batch, crop, crop}) < 0.1, 255);

  // Hand the same weights and batch to the peer.
  const std::string exchange = "/tmp/bench_train_step_" + std::to_string(::getpid()) + ".pt";
  {
    c10::Dict<std::string, at::Tensor> dict;
    for (const auto& p : model->named_parameters()) dict.insert(p.key(), p.value().detach());
    for (const auto& b : model->named_buffers()) dict.insert(b.key(), b.value().detach());
    dict.insert("bench.images", images);
    dict.insert("bench.labels", labels);
    auto bytes = torch::pickle_save(c10::IValue(dict));
    std::ofstream(exchange, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }

  torch::optim::AdamW optimizer(model->parameters(), torch::optim::AdamWOptions(1e-4).weight_decay(1e-4));
  double first_loss = 0;
  std::chrono::steady_clock::time_point start;
  for (int step = 0; step < warmup + steps; ++step) {
    if (step == warmup) start = std::chrono::steady_clock::now();
    optimizer.zero_grad();
    auto loss = model->loss(images, labels);
    if (step == 0) first_loss = loss.total.item<double>();
    loss.total.backward();
    optimizer.step();
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double ours = steps * batch / seconds;
  const double our_rss = peak_rss_mib();

  std::ostringstream cmd;
  cmd << flags["python"] << " " << SEGRUN_SOURCE_DIR << "/bench/train_step_peer.py " << exchange << " "
      << width << " " << channels << " " << num_classes << " " << steps << " " << warmup << " " << threads;
  FILE* pipe = ::popen(cmd.str().c_str(), "r");
  double peer = 0, peer_loss = 0, peer_rss = 0;
  if (!pipe || std::fscanf(pipe, "%lf %lf %lf", &peer, &peer_loss, &peer_rss) != 3) {
    std::cerr << "bench_train_step: the peer failed: " << cmd.str() << "\n";
    std::remove(exchange.c_str());
    return 1;
  }
  ::pclose(pipe);
  std::remove(exchange.c_str());

  const bool agree = std::abs(first_loss - peer_loss) <= 1e-4 * std::max(1.0, std::abs(peer_loss));
  std::printf("| side | images/s | first loss | peak RSS MiB |\n|---|---|---|---|\n");
  std::printf("| segrun (LibTorch C++) | %.2f | %.6f | %.0f |\n", ours, first_loss, our_rss);
  std::printf("| peer (PyTorch Python) | %.2f | %.6f | %.0f |\n", peer, peer_loss, peer_rss);
  std::printf("\nratio segrun/peer: %.2fx images/s, %.2fx peak RSS; losses %s\n", ours / peer,
              our_rss / peer_rss, agree ? "agree" : "DISAGREE");
  std::printf("config: width %d, FPN channels %d, crop %d, batch %d, %d timed steps after %d, %d thread(s)\n",
              width, channels, crop, batch, steps, warmup, threads);
  return agree ? 0 : 1;
}
