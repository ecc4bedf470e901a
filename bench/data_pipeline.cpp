// bench_data_pipeline: images/s (and images per CPU-second) of the training data pipeline: read from
// the HDF5 store, decode, mmseg train transforms (RandomResize, RandomCrop with cat_max_ratio,
// RandomFlip, PhotoMetricDistortion, Normalize, Pad) and collate to a batch. segrun's
// data::TrainLoader (worker threads) against a torch.utils.data.DataLoader with the same number of
// worker processes reading the same store shards with h5py and transforming with cv2/numpy the way
// mmsegmentation does (bench/data_pipeline_peer.py), measured in the same run on the same store.
// The bench makes its own store (data::synthesize + data::pack_store, 1 rank) in a temp directory.
// Verified as well as timed: every batch on both sides must have the right shapes and labels only
// in {0..K-1, 255}, and both sides must deliver the same number of images.
//   bench_data_pipeline [--images 64] [--height 512] [--width 683] [--crop 512] [--batch 4]
//                       [--batches 50] [--warmup 3] [--workers 1,2] [--threads 0,1]
//                       [--profile 128] [--python /usr/bin/python3] [--keep-store 0]
// --profile N (0 = off) also times each step over N samples on one thread on both sides.
// --python none: segrun's side alone (a machine whose Python has torch but not cv2 and h5py, such
// as a GPU node's pip environment); the peer's columns then show "-".
// --threads 0 = the libraries' defaults (OpenCV's TBB pool on segrun's side; mmseg's
// setup_multi_processes defaults on the peer's), 1 = one thread per worker on both sides
// (cv::setNumThreads(1) + torch::set_num_threads(1); OMP_NUM_THREADS=1 and cv2.setNumThreads(1) for
// the peer).
#include <torch/torch.h>

#include <chrono>
#include <cstring>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <map>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>
#include <sstream>
#include <thread>
#include <unistd.h>
#include <string>
#include <vector>

#include "bench/bench_flags.h"
#include "bench/guarded_main.h"
#include "build_config.h"
#include "core/config.h"
#include "data/loader.h"
#include "data/pack.h"
#include "data/store.h"
#include "data/synth.h"
#include "data/transforms.h"
#include "core/rng.h"
#include "dist/communicator.h"
#include "dist/rank_context.h"

namespace {

using namespace segrun;
namespace fs = std::filesystem;

std::vector<int> parse_list(const std::string& text) {
  std::vector<int> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(std::stoi(item));
  return out;
}

double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

struct SideResult {
  double images_per_s = 0;
  double cpu_seconds = 0;  // CPU time of every thread/process of the side over the timed window
  int64_t images = 0;
  double mean_value = 0;  // mean normalized pixel value (both sides should be close)
  double ignore_fraction = 0;
  bool ok = false;
  std::string problem;
};

// Shapes and label range of one batch; accumulates the image mean and ignore fraction.
bool check_batch(const data::Batch& b, int batch, int crop, int num_classes, double* mean_sum, double* ignore_sum,
                 std::string* problem) {
  if (b.images.sizes() != torch::IntArrayRef({batch, 3, crop, crop}) || b.images.scalar_type() != torch::kFloat32) {
    *problem = "images batch has the wrong shape or dtype";
    return false;
  }
  if (b.labels.sizes() != torch::IntArrayRef({batch, crop, crop}) || b.labels.scalar_type() != torch::kUInt8) {
    *problem = "labels batch has the wrong shape or dtype";
    return false;
  }
  auto valid = (b.labels >= 0).logical_and(b.labels < num_classes).logical_or(b.labels == 255);
  if (!valid.all().item<bool>()) {
    *problem = "a label outside {0..K-1, 255}";
    return false;
  }
  *mean_sum += b.images.mean().item<double>();
  *ignore_sum += (b.labels == 255).to(torch::kFloat64).mean().item<double>();
  return true;
}

SideResult run_segrun(const std::string& store_dir, int workers, int threads, int crop, int batch, int batches,
                      int warmup) {
  auto store = std::make_shared<const data::StoreReader>(store_dir);
  DataConfig config;
  config.crop = {crop, crop};
  config.batch_per_rank = batch;
  config.workers = workers;
  config.prefetch = 2 * workers;  // = the peer DataLoader's prefetch_factor 2 x workers
  SideResult r;
  double mean_sum = 0, ignore_sum = 0;
  data::TrainLoader loader(store, config, /*rank=*/0, /*world=*/1, /*seed=*/0);
  for (int i = 0; i < warmup; ++i) {
    auto b = loader.next();
    if (!check_batch(b, batch, crop, store->num_classes(), &mean_sum, &ignore_sum, &r.problem)) return r;
  }
  mean_sum = ignore_sum = 0;
  const double cpu0 = process_cpu_seconds();
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < batches; ++i) {
    auto b = loader.next();
    if (!check_batch(b, batch, crop, store->num_classes(), &mean_sum, &ignore_sum, &r.problem)) return r;
    r.images += b.images.size(0);
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.cpu_seconds = process_cpu_seconds() - cpu0;  // includes workers prefetching past the window
  r.images_per_s = static_cast<double>(r.images) / seconds;
  r.mean_value = mean_sum / batches;
  r.ignore_fraction = ignore_sum / batches;
  r.ok = true;
  (void)threads;
  return r;
}

SideResult run_peer(const std::string& python, const std::string& store_dir, int workers, int threads, int crop,
                    int batch, int batches, int warmup) {
  std::ostringstream cmd;
  if (threads == 1) cmd << "OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 ";
  cmd << python << " " << SEGRUN_SOURCE_DIR << "/bench/data_pipeline_peer.py --store " << store_dir << " --workers "
      << workers << " --threads " << threads << " --crop " << crop << " --batch " << batch << " --batches " << batches
      << " --warmup " << warmup;
  SideResult r;
  FILE* pipe = ::popen(cmd.str().c_str(), "r");
  if (!pipe) {
    r.problem = "cannot start " + cmd.str();
    return r;
  }
  char line[512];
  std::string last;
  while (std::fgets(line, sizeof line, pipe)) last = line;
  const int status = ::pclose(pipe);
  long long images = 0;
  if (status != 0 || std::sscanf(last.c_str(), "%lf %lf %lld %lf %lf", &r.images_per_s, &r.cpu_seconds, &images,
                                 &r.mean_value, &r.ignore_fraction) != 5) {
    r.problem = "the peer failed (" + cmd.str() + "): " + last;
    return r;
  }
  r.images = images;
  r.ok = true;
  return r;
}

// Per-step wall time (ms per sample, this thread only) of the same steps TrainLoader runs, called
// one by one through data/transforms.h in train_transform's order; the CHW float and uint8 label
// copies are those of data/loader.cpp into the batch tensor.
std::vector<std::pair<std::string, double>> profile_segrun(const std::string& store_dir, int crop, int samples) {
  data::StoreReader store(store_dir);
  data::TrainTransformOptions o;
  o.crop = {crop, crop};
  std::vector<std::pair<std::string, double>> steps{
      {"read", 0}, {"decode image", 0}, {"decode label", 0}, {"resize", 0}, {"crop", 0},
      {"flip", 0}, {"photometric", 0},  {"normalize", 0},    {"pad", 0},    {"to tensor", 0}};
  torch::Tensor images = torch::zeros({1, 3, crop, crop}), labels = torch::zeros({1, crop, crop}, torch::kUInt8);
  for (int i = 0; i < samples; ++i) {
    const int64_t record = i % store.size();
    auto t = std::chrono::steady_clock::now();
    size_t step = 0;
    auto lap = [&]() {
      const auto now = std::chrono::steady_clock::now();
      steps[step++].second += std::chrono::duration<double, std::milli>(now - t).count();
      t = now;
    };
    data::RawRecord raw = store.read(record, /*verify=*/true);
    lap();
    cv::Mat image = data::decode_image(raw.image_bytes, "profile");
    lap();
    cv::Mat seg = data::decode_label(raw.label_bytes, "profile");
    lap();
    SampleRng rng(0, 0, static_cast<uint64_t>(record), RngPurpose::kAugment);
    const auto scale = data::random_scale(o, rng);
    const cv::Size size = data::rescale_size(image.size(), scale[0], scale[1]);
    cv::resize(image, image, size, 0, 0, cv::INTER_LINEAR);
    cv::resize(seg, seg, size, 0, 0, cv::INTER_NEAREST);
    lap();
    const cv::Rect box = data::random_crop_box(seg, o, rng);
    image = image(box).clone();
    seg = seg(box).clone();
    lap();
    if (rng.uniform() < o.flip_prob) {
      cv::flip(image, image, 1);
      cv::flip(seg, seg, 1);
    }
    lap();
    data::photometric_distortion(image, rng);
    lap();
    cv::Mat normalized = data::normalize_image(image, o.mean, o.std);
    lap();
    const int pad_h = std::max(crop - normalized.rows, 0), pad_w = std::max(crop - normalized.cols, 0);
    if (pad_h > 0 || pad_w > 0) {
      cv::copyMakeBorder(normalized, normalized, 0, pad_h, 0, pad_w, cv::BORDER_CONSTANT, cv::Scalar::all(0));
      cv::copyMakeBorder(seg, seg, 0, pad_h, 0, pad_w, cv::BORDER_CONSTANT, cv::Scalar::all(255));
    }
    lap();
    cv::Mat planes[3];  // as data/loader.cpp's copy_chw: split into planes wrapping the tensor
    for (int c = 0; c < 3; ++c)
      planes[c] = cv::Mat(crop, crop, CV_32F, images.data_ptr<float>() + static_cast<int64_t>(c) * crop * crop);
    cv::split(normalized, planes);
    uint8_t* ldst = labels.data_ptr<uint8_t>();  // as copy_label: the uint8 rows as they are
    for (int y = 0; y < crop; ++y)
      std::memcpy(ldst + static_cast<int64_t>(y) * crop, seg.ptr<uint8_t>(y), static_cast<size_t>(crop));
    lap();
  }
  for (auto& step : steps) step.second /= samples;
  return steps;
}

std::map<std::string, double> profile_peer(const std::string& python, const std::string& store_dir, int crop,
                                           int samples) {
  std::ostringstream cmd;
  cmd << "OMP_NUM_THREADS=1 " << python << " " << SEGRUN_SOURCE_DIR << "/bench/data_pipeline_peer.py --store "
      << store_dir << " --threads 1 --crop " << crop << " --profile " << samples;
  std::map<std::string, double> out;
  FILE* pipe = ::popen(cmd.str().c_str(), "r");
  if (!pipe) return out;
  char line[256];
  while (std::fgets(line, sizeof line, pipe)) {
    std::string text(line);
    const auto tab = text.find('\t');
    if (tab != std::string::npos) out[text.substr(0, tab)] = std::stod(text.substr(tab + 1));
  }
  ::pclose(pipe);
  return out;
}

}  // namespace

int run(int argc, char** argv) {
  auto flags = bench::parse_flags("bench_data_pipeline", argc, argv,
                                  {{"images", "64"},
                                   {"height", "512"},
                                   {"width", "683"},
                                   {"crop", "512"},
                                   {"batch", "4"},
                                   {"batches", "50"},
                                   {"warmup", "3"},
                                   {"workers", "1,2"},
                                   {"threads", "0,1"},
                                   {"python", "/usr/bin/python3"},
                                   {"keep-store", "0"},
                                   {"profile", "128"}});
  bench::log_warnings_only();
  const int images = std::stoi(flags["images"]), height = std::stoi(flags["height"]);
  const int width = std::stoi(flags["width"]), crop = std::stoi(flags["crop"]);
  const int batch = std::stoi(flags["batch"]), batches = std::stoi(flags["batches"]);
  const int warmup = std::stoi(flags["warmup"]);
  const auto worker_counts = parse_list(flags["workers"]);
  const auto thread_modes = parse_list(flags["threads"]);

  const fs::path tmp = fs::temp_directory_path() / ("bench_data_pipeline_" + std::to_string(::getpid()));
  fs::create_directories(tmp);
  const std::string store_dir = (tmp / "store").string();
  {
    const auto t0 = std::chrono::steady_clock::now();
    data::SynthOptions synth;
    synth.layout = data::Layout::kAde20k;
    synth.out = (tmp / "raw").string();
    synth.train = images;
    synth.val = 1;
    synth.height = height;
    synth.width = width;
    data::synthesize(synth);
    auto comm = dist::make_communicator("mpi", dist::singleton_context());
    data::pack_store({data::Layout::kAde20k, synth.out, "training", store_dir, 1}, *comm);
    fs::remove_all(synth.out);
    std::fprintf(stderr, "store: %d synthetic ADE20K images %dx%d packed in %.1f s\n", images, height, width,
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  const int default_cv_threads = cv::getNumThreads();
  const int default_torch_threads = torch::get_num_threads();

  const bool with_peer = flags["python"] != "none";
  bool all_ok = true;
  std::printf(
      "| workers | threads | segrun images/s | peer images/s | ratio | segrun images/CPU-s | "
      "peer images/CPU-s | ratio | images (both) |\n|---|---|---|---|---|---|---|---|---|\n");
  std::ostringstream notes;
  for (int threads : thread_modes) {
    if (threads == 1) {
      cv::setNumThreads(1);
      torch::set_num_threads(1);
    } else {
      cv::setNumThreads(default_cv_threads);
      torch::set_num_threads(default_torch_threads);
    }
    for (int workers : worker_counts) {
      SideResult ours = run_segrun(store_dir, workers, threads, crop, batch, batches, warmup);
      SideResult peer;
      if (with_peer) peer = run_peer(flags["python"], store_dir, workers, threads, crop, batch, batches, warmup);
      const bool ok = ours.ok && (!with_peer || (peer.ok && ours.images == peer.images));
      if (!ours.ok) std::fprintf(stderr, "segrun side failed: %s\n", ours.problem.c_str());
      if (with_peer && !peer.ok) std::fprintf(stderr, "peer side failed: %s\n", peer.problem.c_str());
      if (ours.ok && peer.ok && ours.images != peer.images)
        std::fprintf(stderr, "image counts differ: %lld vs %lld\n", static_cast<long long>(ours.images),
                     static_cast<long long>(peer.images));
      all_ok = all_ok && ok;
      const double our_cpu = ours.cpu_seconds > 0 ? ours.images / ours.cpu_seconds : 0;
      const double peer_cpu = peer.cpu_seconds > 0 ? peer.images / peer.cpu_seconds : 0;
      if (with_peer) {
        std::printf("| %d | %s | %.1f | %.1f | %.2fx | %.1f | %.1f | %.2fx | %lld |\n", workers,
                    threads == 1 ? "1" : "default", ours.images_per_s, peer.images_per_s,
                    peer.images_per_s > 0 ? ours.images_per_s / peer.images_per_s : 0.0, our_cpu, peer_cpu,
                    peer_cpu > 0 ? our_cpu / peer_cpu : 0.0, static_cast<long long>(ours.images));
      } else {
        std::printf("| %d | %s | %.1f | - | - | %.1f | - | - | %lld |\n", workers, threads == 1 ? "1" : "default",
                    ours.images_per_s, our_cpu, static_cast<long long>(ours.images));
      }
      std::fflush(stdout);
      notes << "workers " << workers << ", threads " << (threads == 1 ? "1" : "default")
            << ": mean normalized value segrun " << ours.mean_value;
      if (with_peer) notes << " peer " << peer.mean_value;
      notes << "; ignore fraction segrun " << ours.ignore_fraction;
      if (with_peer) notes << " peer " << peer.ignore_fraction;
      notes << "\n";
    }
  }
  std::printf("\n%s", notes.str().c_str());
  std::printf(
      "config: %d synthetic ADE20K JPEG images %dx%d in 1 shard, crop %d, batch %d, %d timed batches after "
      "%d, %d core(s); checks (shapes, labels in {0..149, 255}, equal image counts) %s\n",
      images, height, width, crop, batch, batches, warmup, static_cast<int>(std::thread::hardware_concurrency()),
      all_ok ? "passed" : "FAILED");
  if (const int samples = std::stoi(flags["profile"]); samples > 0) {
    cv::setNumThreads(1);
    torch::set_num_threads(1);
    const auto ours = profile_segrun(store_dir, crop, samples);
    auto peer = with_peer ? profile_peer(flags["python"], store_dir, crop, samples) : std::map<std::string, double>{};
    std::printf("\n| step (1 thread, ms per sample) | segrun | peer | peer - segrun |\n|---|---|---|---|\n");
    double our_total = 0, peer_total = 0;
    for (const auto& [step, ms] : ours) {
      const double p = peer.count(step) ? peer[step] : 0.0;
      our_total += ms;
      peer_total += p;
      std::printf("| %s | %.2f | %.2f | %+.2f |\n", step.c_str(), ms, p, p - ms);
    }
    const double collate = peer.count("collate") ? peer["collate"] : 0.0;
    peer_total += collate;
    std::printf("| collate (peer: torch.stack; segrun: copied in place above) | - | %.2f | %+.2f |\n", collate,
                collate);
    std::printf("| **total** | **%.2f** | **%.2f** | %.2fx |\n", our_total, peer_total,
                our_total > 0 ? peer_total / our_total : 0.0);
  }
  if (flags["keep-store"] == "0") fs::remove_all(tmp);
  return all_ok ? 0 : 1;
}

int main(int argc, char** argv) { return segrun::bench::guarded_main("bench_data_pipeline", argc, argv, run); }
