// bench_allreduce: all-reduce bus bandwidth of segrun's "mpi" Communicator (non-blocking
// MPI_Iallreduce polled by the collective watchdog) against raw blocking MPI_Allreduce on
// MPI_COMM_WORLD and, when built with Gloo headers, against LibTorch's own c10d
// ProcessGroupGloo, in the same run on the same buffers. Run under mpirun (any number of ranks):
//   mpirun -np 2 bench_allreduce [--min-bytes 4096] [--max-bytes 268435456] [--factor 4]
//                                [--reps-bytes 1073741824] [--min-reps 5] [--max-reps 200]
//                                [--timeout-s 600]   (segrun watchdog deadline per collective)
// For each size (float32, powers of `factor`), the three implementations run round-robin, one
// repetition each per round, so load from other processes on the machine hits all three alike.
// Every repetition is verified: rank r fills the buffer with base[i] * (r + 1) + r (base[i] =
// i % 251 + 1, exact in float), and after the sum every element must equal
// base[i] * n(n+1)/2 + n(n-1)/2 exactly. Each repetition is timed from a barrier to the
// operation's return on every rank, the slowest rank counts; the table reports the median over
// repetitions (and the minimum), nccl-tests style: algbw = bytes / time, busbw = algbw *
// 2(n-1)/n. Exits non-zero if any result is wrong.
#include <mpi.h>
#include <torch/torch.h>
#ifdef SEGRUN_BENCH_GLOO
#include <torch/csrc/distributed/c10d/FileStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <iostream>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench/guarded_main.h"
#include "dist/communicator.h"
#include "dist/rank_context.h"

namespace {

using namespace segrun;
using Clock = std::chrono::steady_clock;

std::map<std::string, int64_t> parse_flags(int argc, char** argv) {
  std::map<std::string, int64_t> flags{{"min-bytes", 4096}, {"max-bytes", int64_t{256} << 20},
                                       {"factor", 4},       {"reps-bytes", int64_t{1} << 30},
                                       {"min-reps", 5},     {"max-reps", 200},
                                       {"timeout-s", 600}};
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string key = argv[i];
    if (key.rfind("--", 0) != 0 || !flags.count(key.substr(2)))
      throw std::runtime_error("bench_allreduce: unknown flag " + key);
    flags[key.substr(2)] = std::stoll(argv[i + 1]);
  }
  if (flags["factor"] < 2) throw std::runtime_error("bench_allreduce: --factor must be >= 2");
  return flags;
}

std::string format_size(int64_t bytes) {
  char out[32];
  if (bytes >= (int64_t{1} << 20))
    std::snprintf(out, sizeof out, "%lld MiB", static_cast<long long>(bytes >> 20));
  else if (bytes >= 1024)
    std::snprintf(out, sizeof out, "%lld KiB", static_cast<long long>(bytes >> 10));
  else
    std::snprintf(out, sizeof out, "%lld B", static_cast<long long>(bytes));
  return out;
}

struct Impl {
  Impl(std::string n, std::function<void(torch::Tensor&)> f) : name(std::move(n)), run(std::move(f)) {}
  std::string name;
  std::function<void(torch::Tensor&)> run;
  std::vector<double> seconds;  // this size's repetitions, slowest rank
  int64_t wrong = 0;            // repetitions with a wrong result, any rank
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int run(int argc, char** argv) {
  dist::MpiSession session(&argc, &argv, 1);
  const dist::RankContext& ctx = session.context();
  auto flags = parse_flags(argc, argv);
  const int n = ctx.world_size, rank = ctx.world_rank;

  dist::CommunicatorOptions options;
  options.timeout_s = static_cast<double>(flags["timeout-s"]);
  options.name = "bench";
  std::unique_ptr<dist::Communicator> segrun_comm = dist::make_communicator("mpi", ctx, options);

  std::vector<Impl> impls;
  impls.emplace_back("raw MPI_Allreduce", [](torch::Tensor& t) {
    MPI_Allreduce(MPI_IN_PLACE, t.data_ptr(), static_cast<int>(t.numel()), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
  });
  impls.emplace_back("segrun mpi", [&](torch::Tensor& t) { segrun_comm->allreduce(t); });

#ifdef SEGRUN_BENCH_GLOO
  // Rendezvous through a FileStore whose path rank 0 chooses and broadcasts.
  long long token = static_cast<long long>(getpid());
  MPI_Bcast(&token, 1, MPI_LONG_LONG, 0, MPI_COMM_WORLD);
  const std::string store_path = "/tmp/segrun-bench-allreduce-" + std::to_string(token);
  if (rank == 0) std::remove(store_path.c_str());
  MPI_Barrier(MPI_COMM_WORLD);
  auto store = c10::make_intrusive<c10d::FileStore>(store_path, n);
  auto gloo_options = c10d::ProcessGroupGloo::Options::create();
  gloo_options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
  auto gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, n, gloo_options);
  impls.emplace_back("c10d Gloo", [&](torch::Tensor& t) {
    std::vector<torch::Tensor> tensors{t};
    gloo->allreduce(tensors)->wait();
  });
#endif

  const int64_t max_bytes = flags["max-bytes"];
  const int64_t max_count = max_bytes / 4;
  // base[i] = i % 251 + 1; every rank's input and the expected sum are exact in float32.
  torch::Tensor base = torch::remainder(torch::arange(max_count, torch::kFloat32), 251).add_(1);
  torch::Tensor input = base * static_cast<float>(rank + 1) + static_cast<float>(rank);
  torch::Tensor expected = base * static_cast<float>(n * (n + 1) / 2) + static_cast<float>(n * (n - 1) / 2);
  torch::Tensor buffer = torch::empty({max_count}, torch::kFloat32);
  base = torch::Tensor();

  if (rank == 0) {
    std::printf("All-reduce, %d ranks on %s, float32 sum (%ld cores, %s).\n\n", n, ctx.host.c_str(),
                sysconf(_SC_NPROCESSORS_ONLN), "median of reps; min in ()");
    std::printf("| size | reps |");
    for (const auto& impl : impls) std::printf(" %s time us | algbw GB/s | busbw GB/s |", impl.name.c_str());
    std::printf(" segrun/raw |%s\n", impls.size() > 2 ? " segrun/gloo |" : "");
    std::printf("|---|---|");
    for (size_t i = 0; i < impls.size(); ++i) std::printf("---|---|---|");
    std::printf("---|%s\n", impls.size() > 2 ? "---|" : "");
    std::fflush(stdout);
  }

  const double bus_factor = n > 1 ? 2.0 * (n - 1) / n : 1.0;
  int64_t total_wrong = 0;
  for (int64_t bytes = flags["min-bytes"]; bytes <= max_bytes; bytes *= flags["factor"]) {
    const int64_t count = bytes / 4;
    const int64_t reps = std::clamp(flags["reps-bytes"] / bytes, flags["min-reps"], flags["max-reps"]);
    torch::Tensor t = buffer.narrow(0, 0, count);
    torch::Tensor in = input.narrow(0, 0, count), want = expected.narrow(0, 0, count);
    for (auto& impl : impls) {
      impl.seconds.clear();
      impl.wrong = 0;
    }
    for (int64_t r = -1; r < reps; ++r) {  // r == -1: warm-up round, verified but not timed
      for (auto& impl : impls) {
        t.copy_(in);
        MPI_Barrier(MPI_COMM_WORLD);
        const auto start = Clock::now();
        impl.run(t);
        double seconds = std::chrono::duration<double>(Clock::now() - start).count();
        MPI_Allreduce(MPI_IN_PLACE, &seconds, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        int wrong = torch::equal(t, want) ? 0 : 1;
        MPI_Allreduce(MPI_IN_PLACE, &wrong, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
        impl.wrong += wrong;
        if (r >= 0) impl.seconds.push_back(seconds);
      }
    }
    if (rank != 0) continue;
    std::printf("| %s | %lld |", format_size(bytes).c_str(), static_cast<long long>(reps));
    std::vector<double> medians;
    for (const auto& impl : impls) {
      const double med = median(impl.seconds);
      const double best = *std::min_element(impl.seconds.begin(), impl.seconds.end());
      const double algbw = static_cast<double>(bytes) / med / 1e9;
      medians.push_back(med);
      std::printf(" %.1f (%.1f)%s | %.3f | %.3f |", med * 1e6, best * 1e6, impl.wrong ? " WRONG" : "", algbw,
                  algbw * bus_factor);
      total_wrong += impl.wrong;
    }
    std::printf(" %.3f |", medians[0] / medians[1]);
    if (impls.size() > 2) std::printf(" %.3f |", medians[2] / medians[1]);
    std::printf("\n");
    std::fflush(stdout);
  }
  MPI_Bcast(&total_wrong, 1, MPI_INT64_T, 0, MPI_COMM_WORLD);
  if (rank == 0) {
    std::printf("\nratio = other time / segrun time (> 1: segrun faster). results %s.\n",
                total_wrong ? "WRONG" : "verified on every repetition");
#ifndef SEGRUN_BENCH_GLOO
    std::printf("c10d Gloo not built: install libgloo-dev and reconfigure.\n");
#endif
  }
#ifdef SEGRUN_BENCH_GLOO
  gloo.reset();
  store.reset();
  MPI_Barrier(MPI_COMM_WORLD);
  if (rank == 0) std::remove(store_path.c_str());
#endif
  segrun_comm.reset();
  return total_wrong ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  return segrun::bench::guarded_main("bench_allreduce", argc, argv, run,
                                     [] { segrun::dist::MpiSession::abort_world(1); });
}
