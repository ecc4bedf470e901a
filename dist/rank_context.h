#pragma once
// The rank context: who this process is in the world. Created once by the launcher's main
// (it owns MPI_Init_thread / MPI_Finalize through MpiSession) and passed by reference to every
// part that needs it. Beyond it segrun keeps process-wide state only where a signal handler must
// reach it (core/process.cpp's signal forwarding and counting, core/stop_request.cpp's stop flag).
// A process started without mpirun is a singleton world (rank 0 of 1).

#include <memory>
#include <functional>
#include <string>

namespace segrun::dist {

enum class DeviceKind { kCpu, kCuda };

struct RankContext {
  int world_rank = 0;
  int world_size = 1;
  int local_rank = 0;  // rank among the processes on this host (MPI_COMM_TYPE_SHARED)
  int local_size = 1;
  std::string host;
  DeviceKind device = DeviceKind::kCpu;  // chosen by dist::place_on_device (dist.device)
  int device_index = -1;                 // cuda:<local_rank mod visible_devices> when on CUDA
  int visible_devices = 0;               // CUDA devices this rank sees (0 in a build without CUDA)
  int intra_op_threads = 1;
  bool is_root() const { return world_rank == 0; }
  std::string label() const;  // "rank 1/2 on host"
};

// Owns the MPI lifetime. Initializes with the thread level the communication thread needs,
// discovers ranks and the visible GPU count (the device is chosen per run from dist.device,
// dist/device.h) and sets LibTorch's intra-op threads to `threads_override` when > 0, else
// OMP_NUM_THREADS when set, else max(1, usable cores / local ranks).
class MpiSession {
 public:
  MpiSession(int* argc, char*** argv, int threads_override = 0);
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;

  const RankContext& context() const { return context_; }
  // Terminates every rank of the world with `code` (MPI_Abort). Used by main's single catch.
  [[noreturn]] static void abort_world(int code);

 private:
  RankContext context_;
};

// Makes a RankContext for code that runs without MPI (tests of single-process logic).
RankContext singleton_context();

// The world MPI started must be the one the launcher asked for; a mismatch would have every
// process train its own copy into the same run folder. Checked against the environment
// (`getenv`, std::getenv by default):
//  - SEGRUN_WORLD_SIZE (exported by `segrun launch` and the Slurm job script): the ranks asked for;
//  - SLURM_STEP_NUM_TASKS (set by srun for each task of a step; not in the batch script itself):
//    more than one task while MPI sees a world of one means srun's --mpi plugin does not reach
//    Open MPI (every task then starts as a world of its own).
// Throws DistError naming the rank, the host and the fix. Call once MPI is up, before any work.
void check_launched_world(const RankContext& context, const std::function<const char*(const char*)>& getenv = nullptr);

}  // namespace segrun::dist
