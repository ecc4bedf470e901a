#include "dist/rank_context.h"

#include <mpi.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <thread>

#include "build_config.h"
#include "core/error.h"
#include "core/process.h"
#include "dist/mpi_check.h"

namespace segrun::dist {

std::string RankContext::label() const {
  return "rank " + std::to_string(world_rank) + "/" + std::to_string(world_size) + " on " + host;
}

MpiSession::MpiSession(int* argc, char*** argv, int threads_override) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    int provided = 0;
    // The gradient-sync communication thread issues MPI calls off the main thread.
    SEGRUN_MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided), "MPI_Init_thread");
    if (provided < MPI_THREAD_SERIALIZED)
      throw DistError("MPI_Init_thread: the MPI library provides thread level " + std::to_string(provided) +
                      ", segrun needs at least MPI_THREAD_SERIALIZED");
  }
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_rank(MPI_COMM_WORLD, &context_.world_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &context_.world_size);
  MPI_Comm local;
  SEGRUN_MPI_CHECK(
      MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, context_.world_rank, MPI_INFO_NULL, &local),
      "MPI_Comm_split_type");
  MPI_Comm_rank(local, &context_.local_rank);
  MPI_Comm_size(local, &context_.local_size);
  MPI_Comm_free(&local);
  context_.host = process::host_name();

  // The device itself is chosen per run from dist.device (dist/device.h); until then, CPU.
  context_.visible_devices = static_cast<int>(torch::cuda::device_count());
  int threads = threads_override;
  if (threads <= 0) {
    const char* omp = std::getenv("OMP_NUM_THREADS");
    threads = omp ? std::atoi(omp) : 0;
  }
  if (threads <= 0) threads = std::max(1, process::usable_cores() / std::max(1, context_.local_size));
  context_.intra_op_threads = threads;
  torch::set_num_threads(threads);
}

MpiSession::~MpiSession() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

void MpiSession::abort_world(int code) {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) {
    int size = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size > 1) MPI_Abort(MPI_COMM_WORLD, code);
    MPI_Finalize();
  }
  std::_Exit(code);
}

void check_launched_world(const RankContext& context, const std::function<const char*(const char*)>& getenv) {
  auto env = [&](const char* name) -> std::string {
    const char* value = getenv ? getenv(name) : std::getenv(name);
    return value ? value : "";
  };
  auto as_count = [](const std::string& text) -> int {
    char* end = nullptr;
    const long value = std::strtol(text.c_str(), &end, 10);
    return end && *end == '\0' && !text.empty() && value > 0 && value < (1L << 30) ? static_cast<int>(value) : 0;
  };
  const int asked = as_count(env("SEGRUN_WORLD_SIZE"));
  if (asked > 0 && asked != context.world_size)
    throw DistError(context.label() + ": the launcher asked for " + std::to_string(asked) +
                    " ranks (SEGRUN_WORLD_SIZE) but MPI " + "started a world of " + std::to_string(context.world_size) +
                    "; start the ranks with the mpirun that matches this Open MPI (segrun launch -n N does)");
  const int step_tasks = as_count(env("SLURM_STEP_NUM_TASKS"));
  if (step_tasks > 1 && context.world_size == 1)
    throw DistError(context.label() + ": srun started " + std::to_string(step_tasks) +
                    " tasks (SLURM_STEP_NUM_TASKS) " +
                    "but MPI sees a world of one: srun's --mpi plugin does not reach Open MPI, so every task would " +
                    "train its own copy; use srun --mpi=pmix (cluster.slurm.mpi = \"pmix\") or " +
                    "cluster.slurm.launcher = \"mpirun\"");
}

RankContext singleton_context() {
  RankContext c;
  c.host = process::host_name();
  c.intra_op_threads = std::max(1, process::usable_cores());
  return c;
}

}  // namespace segrun::dist
