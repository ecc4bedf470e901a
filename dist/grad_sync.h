#pragma once
// Gradient synchronization for data-parallel training, in the style of DistributedDataParallel.
// Parameters are grouped once into buckets of up to `bucket_mb` MiB (a larger parameter forms a
// bucket of its own), in reverse registration order (the order backward produces gradients), one
// dtype per bucket, and there is one collective per bucket, never one per parameter. With overlap
// each bucket owns a persistent flat buffer; without it synchronize() concatenates the bucket's
// gradients each step.
//
// Overlap (options.overlap, world > 1): a post-hook on each parameter's gradient accumulator
// marks it ready during backward; buckets are all-reduced strictly in bucket-index order
// (identical collective order on every rank, even when buckets become ready out of order) while
// backward continues. Who issues them (options.launch):
//   from backward  the backward thread itself, on `comm`, as DDP: once bucket 0..b are ready it
//                  packs them into their flat buffers and starts their all-reduces
//                  (Communicator::allreduce_start); synchronize() waits for them and writes the
//                  averages back into .grad. For a backend whose all-reduce runs on the device
//                  (nccl on GPU tensors: the compute stream goes on while it runs), and the only
//                  choice that keeps SyncBatchNorm's backward all-reduces and the buckets on one
//                  communicator in one order on every rank (two NCCL communicators used at once
//                  in different orders can deadlock).
//   communication thread  a thread with its own duplicate of `comm` (a backend that blocks the
//                  host, mpi: the thread keeps the all-reduce progressing while backward
//                  computes); it also averages and writes back. SyncBatchNorm's collectives stay
//                  on `comm`, independent of the duplicate's.
//   auto           from backward where every bucketed parameter is on one device on which
//                  comm->starts_asynchronously(), else the communication thread (falling back to
//                  no overlap, with a warning, when the backend has no duplicate()). From
//                  backward, SyncBatchNorm's backward all-reduce queues behind the buckets already
//                  started and its result is waited for at once, so compute pauses there (DDP +
//                  SyncBN alike).
// synchronize() ends the step: parameters whose hook did not fire (unused this step) contribute
// their current .grad (zeros if undefined), the remaining buckets are reduced in order, and it
// waits for all of them. A parameter unused on some ranks only is therefore fine with the
// communication thread and without overlap; from backward it is fine unless other collectives run
// during backward (SyncBatchNorm): its bucket then starts before them on one rank and after them
// on another, and the ranks' collectives no longer pair up (as with DDP). segrun's models give
// every parameter a gradient on every rank (models/losses: zero_attached). An error fails the step
// for good: synchronize() rethrows it. Every rank must call synchronize() once per optimizer step.
//
// no_sync(): while the returned guard lives, backward passes only accumulate into .grad and
// synchronize() is a no-op; the next backward outside it (plus synchronize()) averages the
// accumulated sums. Errors of the communication thread (TimeoutError from the watchdog) are
// rethrown by synchronize(). Threading: construct, backward and synchronize on one thread.
// broadcast_module_state() copies rank `root`'s parameters and buffers to every rank.

#include <torch/torch.h>

#include <memory>
#include <vector>

#include "dist/communicator.h"

namespace segrun::dist {

enum class BucketLaunch { kAuto, kFromBackward, kCommunicationThread };

struct GradSyncOptions {
  double bucket_mb = 25.0;
  bool overlap = true;                        // all-reduce buckets during backward
  BucketLaunch launch = BucketLaunch::kAuto;  // who issues them (with overlap; see above)
};

// Timings of the last synchronized step (seconds), for logs and the overlap measurement.
struct GradSyncStats {
  double comm_seconds = 0;      // sum of bucket all-reduce durations on the host (communication
                                // thread; from backward: the time to start them)
  double wait_seconds = 0;      // time synchronize() blocked the caller
  int buckets_in_backward = 0;  // buckets launched before synchronize() was called
};

class GradientSync {
 public:
  GradientSync(std::vector<torch::Tensor> parameters, std::shared_ptr<Communicator> comm, double bucket_mb = 25.0);
  GradientSync(std::vector<torch::Tensor> parameters, std::shared_ptr<Communicator> comm,
               const GradSyncOptions& options);
  ~GradientSync();
  GradientSync(const GradientSync&) = delete;
  GradientSync& operator=(const GradientSync&) = delete;

  void synchronize();

  class NoSyncGuard {
   public:
    explicit NoSyncGuard(GradientSync& owner);
    ~NoSyncGuard();
    NoSyncGuard(const NoSyncGuard&) = delete;
    NoSyncGuard& operator=(const NoSyncGuard&) = delete;

   private:
    GradientSync& owner_;
  };
  // Usage: { auto guard = sync.no_sync(); loss.backward(); }  (C++17 guaranteed elision)
  NoSyncGuard no_sync() { return NoSyncGuard(*this); }

  size_t bucket_count() const { return buckets_.size(); }
  // Indices into the constructor's parameter list, per bucket (for tests and diagnostics).
  const std::vector<std::vector<size_t>>& buckets() const { return buckets_; }
  bool overlapping() const;
  // With overlap: whether the backward thread starts the all-reduces (else the communication thread).
  bool launches_from_backward() const;
  const GradSyncStats& last_stats() const { return stats_; }

 private:
  struct Shared;  // state shared with the hooks and the communication thread
  void reduce_now();

  std::vector<torch::Tensor> parameters_;
  std::shared_ptr<Communicator> comm_;
  GradSyncOptions options_;
  std::vector<std::vector<size_t>> buckets_;
  std::shared_ptr<Shared> shared_;
  GradSyncStats stats_;
  int no_sync_depth_ = 0;
};

void broadcast_module_state(torch::nn::Module& module, Communicator& comm, int root = 0);

}  // namespace segrun::dist
