#pragma once
// Communicator: the collectives segrun's training needs, behind one interface with backends
// chosen at run time by name (config `dist.backend`):
//   "mpi"  Open MPI (always built); CUDA tensors are staged through pinned host memory, or handed
//          to MPI directly when the library is CUDA-aware,
//   "nccl" NCCL on the rank's GPU (built when NCCL headers are found; fails clearly without a
//          GPU); CPU tensors are staged through the GPU.
// So every backend takes tensors on the host or on the rank's device.
// Contract: every rank calls the same collectives in the same order with tensors of the same
// dtype and shape (broadcast: same shape on every rank). Tensors are modified in place and must
// be contiguous. Calls are blocking -- for CUDA tensors in stream order: work queued afterwards
// on the current stream, and host reads of the tensor, see the result -- and not thread-safe:
// one thread at a time per communicator (the main thread, and LibTorch's autograd thread while
// the main thread waits in backward); use duplicate() to give a concurrent thread (the
// gradient-sync communication thread) its own. Non-contiguous tensors throw DistError.
// Errors throw DistError naming the operation, the rank and the library's message.
// Watchdog (mpi backend): every collective carries a per-communicator sequence number and runs
// under CommunicatorOptions::timeout_s; on expiry the rank logs one line naming the collective,
// its sequence number, the note given by the caller and the ranks that did not arrive, then
// throws TimeoutError (main's catch aborts the world). The communicator is unusable afterwards.
// (nccl backend): the same deadline, kept by a background thread that follows each collective
// to its completion on the GPU (dist/stream_watchdog.h); a late or failed one is logged in one
// line naming it, and the rank aborts its NCCL communicator and the MPI world. barrier() is such a
// collective on both backends (nccl: a one-element allreduce); the trainer's barrier after a
// checkpoint covers rank 0's write, so timeout_s must exceed the time a checkpoint takes to write.

#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dist/rank_context.h"

namespace segrun::dist {

enum class ReduceOp { kSum, kMax, kMin };

// A collective issued by Communicator::allreduce_start(). wait() orders the caller after it: for
// a collective on a device stream, work queued afterwards on the caller's current stream (no host
// synchronization); otherwise the collective had already completed when start returned. Call
// wait() once, on any thread of the issuing communicator's rank, before touching the tensor.
class PendingCollective {
 public:
  virtual ~PendingCollective() = default;
  virtual void wait() = 0;
};

struct CommunicatorOptions {
  double timeout_s = 600.0;    // watchdog deadline per collective (both backends); <= 0 waits forever
  std::string name = "world";  // shown in watchdog messages
  // MPI backend: elements per MPI call (MPI counts are int); a larger allreduce or broadcast goes
  // as several calls, in order. In [1, 2^31 - 1]; tests lower it to reach the chunked path.
  int64_t mpi_max_elements_per_call = int64_t{1} << 30;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string backend_name() const = 0;

  virtual void allreduce(torch::Tensor& tensor, ReduceOp op = ReduceOp::kSum) = 0;
  virtual void broadcast(torch::Tensor& tensor, int root) = 0;
  // Returns a tensor of shape [size, *tensor.shape] holding every rank's tensor.
  virtual torch::Tensor allgather(const torch::Tensor& tensor) = 0;
  virtual void barrier() = 0;

  // allreduce with a note for diagnostics ("bucket 2"), shown if the watchdog fires.
  virtual void allreduce_noted(torch::Tensor& tensor, ReduceOp op, const std::string& note) { allreduce(tensor, op); }
  // Starts allreduce_noted and returns before it completes where the backend can (nccl, on a CUDA
  // tensor: the collective runs on the communicator's stream, ordered after the work already
  // queued on the current stream, while the caller queues more; nothing may write the tensor until
  // the returned collective's wait()). Elsewhere it is the blocking call. Same contract otherwise:
  // every rank starts the same collectives in the same order.
  virtual std::unique_ptr<PendingCollective> allreduce_start(torch::Tensor& tensor, ReduceOp op,
                                                             const std::string& note);
  // Whether allreduce_start() on `tensor` returns before the collective completes.
  virtual bool starts_asynchronously(const torch::Tensor& tensor) const { return false; }
  // A communicator over the same ranks whose collectives are independent of this one's, for use
  // by another thread. Collective: every rank calls it. Backends without it throw DistError.
  virtual std::unique_ptr<Communicator> duplicate(const std::string& name);
  // Collectives issued so far on this communicator (= the last one's 1-based sequence number).
  virtual uint64_t sequence() const { return 0; }
};

// backend: "auto" | "mpi" | "nccl". auto = nccl when the rank is on a CUDA device (see
// dist/device.h), every rank of its host has a GPU of its own and NCCL is built; else mpi.
// Unknown names list the backends compiled in.
std::unique_ptr<Communicator> make_communicator(const std::string& backend, const RankContext& context);
std::unique_ptr<Communicator> make_communicator(const std::string& backend, const RankContext& context,
                                                const CommunicatorOptions& options);
std::vector<std::string> compiled_backends();

// Throws DistError "<op>: tensor must be contiguous" for a non-contiguous tensor (every backend
// checks its arguments with it, before a collective counts).
void require_contiguous(const torch::Tensor& tensor, const char* op);

// The mean over the ranks of `comm` of each value, in one all-reduce (a collective: every rank
// calls it with as many values); a null or one-rank `comm` returns them unchanged. For loss
// normalizers: dividing a rank's sum by the mean of the ranks' counts makes the averaged gradient
// that of the global batch, whatever the number of ranks.
std::vector<double> mean_over_ranks(const std::vector<double>& values, Communicator* comm);

// The same means as a 1-D float64 tensor on `device` that the host never reads back: the values
// go up without a wait (to_device_async) and, where the backend starts collectives on the device
// (nccl), are all-reduced there, queued like the kernels around them: the calling thread does not
// wait for the GPU (the host-value form above waits once, for the read back). A backend that
// blocks the host (mpi) reduces the host values and uploads the means: no wait either. A loss
// divides by the elements.
torch::Tensor mean_over_ranks(const std::vector<double>& values, Communicator* comm, const torch::Device& device);

}  // namespace segrun::dist
