// bench_train_ddp: one data-parallel training step of a config's model on N MPI ranks, the way
// `segrun train` runs it (forward, the model's losses, backward with segrun's bucketed gradient
// all-reduce overlapped with backward, AdamW), on a fixed synthetic batch per rank (the data
// pipeline is measured by bench_data_pipeline). Its peer is bench/train_ddp_peer.py (PyTorch DDP
// over Gloo); bench/train_ddp_compare.py runs the two interleaved and writes the tables.
//   mpirun -np N bench_train_ddp --config C [--crop 128] [--batch 4] [--steps 10] [--warmup 2]
//          [--threads 1] [--bucket-mb 25] [--exchange DIR] [key=value ...]
//   bench_train_ddp --gemm 1024 [--reps 5] [--threads 1]   (float32 torch::mm rate, best of reps)
//   bench_train_ddp --config C --flops 1 [--crop 128]      (forward FLOPs of one image)
//   bench_train_ddp --config C --buckets 1 [--bucket-mb 25] (gradient bucket sizes in bytes)
// Model: config.model with norm = bn (PyTorch's SyncBatchNorm has no CPU path, so the peer cannot
// run SyncBN), dropout 0 and CLIP-SP's batch drop off (both sides must compute the same loss; the
// drop is a top-k over [B, K] scores, negligible work), 150 classes. Every rank builds the same
// weights (seed 0) and its own batch (seed 1000 + rank). With --exchange, rank 0 writes the weights
// to DIR/weights.pt and the model's settings to DIR/model.txt (every key the peer's reference
// model reads: for CLIP-SP also the SRM gate, srm_sigmoid = 1 under model.clip_sp.srm_gate =
// "sigmoid", and srm_output_proj), every rank its batch to DIR/batch_<rank>.pt, for the peer.
// Output (rank 0, one line): "images_per_s_total first_loss_rank0 max_peak_rss_mib world
// images_per_cpu_s" (CPU = user + system time of every thread of every rank in the timed steps).
#include <mpi.h>
#include <sys/resource.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "bench/guarded_main.h"
#include "core/config.h"
#include "dist/communicator.h"
#include "dist/grad_sync.h"
#include "dist/rank_context.h"
#include "models/flop_counter.h"
#include "models/segmentor.h"

namespace {

using namespace segrun;

struct Flags {
  std::map<std::string, std::string> values{{"config", ""},  {"crop", "128"},  {"batch", "4"},      {"steps", "10"},
                                            {"warmup", "2"}, {"threads", "1"}, {"bucket-mb", "25"}, {"exchange", ""},
                                            {"gemm", "0"},   {"reps", "5"},    {"flops", "0"},      {"buckets", "0"}};
  std::vector<std::string> overrides;
};

Flags parse_flags(int argc, char** argv) {
  Flags flags;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.rfind("--", 0) == 0 && i + 1 < argc && flags.values.count(arg.substr(2))) {
      flags.values[arg.substr(2)] = argv[++i];
    } else if (arg.find('=') != std::string::npos && arg.rfind("--", 0) != 0) {
      flags.overrides.push_back(arg);
    } else {
      throw std::runtime_error("bench_train_ddp: unknown flag " + arg);
    }
  }
  return flags;
}

// CPU seconds (user + system) of every thread of this process so far.
double cpu_seconds() {
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_utime.tv_sec + usage.ru_stime.tv_sec + (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

double peak_rss_mib() {
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss / 1024.0;
}

void save_dict(const c10::Dict<std::string, at::Tensor>& dict, const std::string& path) {
  auto bytes = torch::pickle_save(c10::IValue(dict));
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("bench_train_ddp: cannot write " + path);
}

// Best float32 GEMM rate (GFLOP/s, 2 n^3 FLOPs per product) of torch::mm on n x n matrices.
double gemm_gflops(int n, int reps) {
  torch::Tensor a = torch::randn({n, n}), b = torch::randn({n, n}), c = torch::empty({n, n});
  torch::mm_out(c, a, b);  // warm-up (allocations, BLAS thread setup)
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    auto start = std::chrono::steady_clock::now();
    torch::mm_out(c, a, b);
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  return 2.0 * n * n * static_cast<double>(n) / best / 1e9;
}

// skip_text: leave CLIP-SP's text embeddings zero (sizes, FLOPs and buckets do not depend on them).
std::shared_ptr<models::SegmentorImpl> build_model(const Config& config, int crop, bool skip_text = false) {
  models::BuildOptions build;
  build.config = config.model;
  build.config.norm = "bn";
  build.config.dropout = 0.0;
  build.config.pretrained.clear();
  build.config.clip_sp.drop_r_start = 0.0;
  build.config.clip_sp.drop_r_end = 0.0;
  build.num_classes = 150;
  build.crop_size = crop;
  build.weights_from_checkpoint = skip_text;
  torch::manual_seed(0);
  return models::build_segmentor(build);
}

int run(int argc, char** argv) {
  Flags flags = parse_flags(argc, argv);
  const int threads = std::stoi(flags.values["threads"]);
  torch::set_num_threads(threads);
  if (const int n = std::stoi(flags.values["gemm"]); n > 0) {
    std::printf("%.3f\n", gemm_gflops(n, std::stoi(flags.values["reps"])));
    return 0;
  }
  if (flags.values["config"].empty()) throw std::runtime_error("bench_train_ddp: --config is required");
  const Config config = load_config(flags.values["config"], flags.overrides);
  const int crop = std::stoi(flags.values["crop"]), batch = std::stoi(flags.values["batch"]);
  if (flags.values["flops"] != "0") {
    auto model = build_model(config, crop, true);
    model->eval();
    torch::NoGradGuard no_grad;
    torch::Tensor image = torch::randn({1, 3, crop, crop});
    models::FlopReport report = models::count_flops([&] { model->forward(image); }, model.get());
    std::printf("%lld\n", static_cast<long long>(report.total));
    return 0;
  }

  dist::MpiSession session(&argc, &argv, threads);
  const dist::RankContext& context = session.context();
  std::shared_ptr<dist::Communicator> comm = dist::make_communicator("mpi", context);
  if (flags.values["buckets"] != "0") {  // gradient buckets as dist::GradientSync forms them
    auto model = build_model(config, crop, true);
    dist::GradientSync sync(model->parameters(), comm, std::stod(flags.values["bucket-mb"]));
    std::vector<torch::Tensor> params = model->parameters();
    for (const auto& bucket : sync.buckets()) {
      int64_t bytes = 0;
      for (size_t index : bucket) bytes += params[index].numel() * params[index].element_size();
      std::printf("%lld ", static_cast<long long>(bytes));
    }
    std::printf("\n");
    return 0;
  }
  const int rank = context.world_rank, world = context.world_size;
  const int steps = std::stoi(flags.values["steps"]), warmup = std::stoi(flags.values["warmup"]);

  auto model = build_model(config, crop);
  dist::broadcast_module_state(*model, *comm);
  model->train();
  torch::manual_seed(1000 + rank);
  torch::Tensor images = torch::randn({batch, 3, crop, crop});
  // Labels: blocks of a few classes per image (like a scene), 10 % ignored pixels.
  torch::Tensor classes = torch::randint(0, 150, {batch, 1, 1}, torch::kLong);
  torch::Tensor labels = (classes + torch::randint(0, 6, {batch, crop / 16, crop / 16}, torch::kLong)) % 150;
  labels = labels.repeat_interleave(16, 1).repeat_interleave(16, 2).contiguous();
  labels.masked_fill_(torch::rand({batch, crop, crop}) < 0.1, 255);

  const std::string exchange = flags.values["exchange"];
  if (!exchange.empty()) {
    if (rank == 0) {
      c10::Dict<std::string, at::Tensor> weights;
      for (const auto& p : model->named_parameters()) weights.insert("seg." + p.key(), p.value().detach());
      for (const auto& b : model->named_buffers()) weights.insert("seg." + b.key(), b.value().detach());
      save_dict(weights, exchange + "/weights.pt");
      const ModelConfig& m = config.model;
      const ClipSpConfig& sp = m.clip_sp;
      if ((m.head != "fpn" && m.head != "clip_sp") || m.backbone != "clip_rn50" ||
          (m.head == "clip_sp" && (sp.ml_decoder != "dual_graphformer" || sp.asl_gamma_neg != 4.0 ||
                                   sp.asl_gamma_pos != 1.0 || sp.asl_clip != 0.05))) {
        throw std::runtime_error(
            "--exchange: the peer has clip_rn50 with the fpn head, or clip_sp with the "
            "dual_graphformer decoder and the default ASL");
      }
      std::ofstream model_file(exchange + "/model.txt");
      model_file << "kind=" << m.head << "\nwidth=" << m.width << "\nchannels=" << m.fpn_channels
                 << "\ntop_k=" << sp.top_k << "\nblocks=" << sp.graph_blocks << "\nnodes=" << sp.graph_nodes
                 << "\nattn_dim=" << sp.attn_dim << "\nheads=" << sp.heads << "\nsrm_dim=" << sp.srm_dim
                 << "\nsrm_sigmoid=" << (sp.srm_gate == "sigmoid" ? 1 : 0)
                 << "\nsrm_output_proj=" << (sp.srm_output_proj ? 1 : 0) << "\nlambda_ml=" << sp.lambda_ml
                 << "\nlambda_aux=" << sp.lambda_aux << "\n";
      if (!model_file) throw std::runtime_error("bench_train_ddp: cannot write " + exchange + "/model.txt");
    }
    c10::Dict<std::string, at::Tensor> data;
    data.insert("images", images);
    data.insert("labels", labels);
    save_dict(data, exchange + "/batch_" + std::to_string(rank) + ".pt");
  }

  dist::GradSyncOptions sync_options;
  sync_options.bucket_mb = std::stod(flags.values["bucket-mb"]);
  sync_options.overlap = true;
  dist::GradientSync grad_sync(model->parameters(), comm, sync_options);
  torch::optim::AdamW optimizer(model->parameters(), torch::optim::AdamWOptions(1e-4).weight_decay(1e-4));
  double first_loss = 0;
  std::chrono::steady_clock::time_point start;
  double cpu_start = 0;
  for (int step = 0; step < warmup + steps; ++step) {
    if (step == warmup) {
      comm->barrier();
      start = std::chrono::steady_clock::now();
      cpu_start = cpu_seconds();
    }
    optimizer.zero_grad();
    models::LossTerms loss = model->loss(images, labels);
    if (step == 0) first_loss = loss.total.item<double>();
    loss.total.backward();
    grad_sync.synchronize();
    optimizer.step();
  }
  comm->barrier();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  double cpu = cpu_seconds() - cpu_start, total_cpu = 0;
  double rss = peak_rss_mib(), max_rss = 0;
  MPI_Reduce(&rss, &max_rss, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
  MPI_Reduce(&cpu, &total_cpu, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
  if (rank == 0) {
    std::printf("%.4f %.6f %.1f %d %.4f\n", static_cast<double>(steps) * batch * world / seconds, first_loss, max_rss,
                world, static_cast<double>(steps) * batch * world / total_cpu);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return segrun::bench::guarded_main("bench_train_ddp", argc, argv, run); }
