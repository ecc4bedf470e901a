#pragma once
// The "nccl" Communicator backend (built when SEGRUN_WITH_NCCL; without it, make_nccl_communicator
// throws ConfigError: dist/nccl_unavailable.cpp): collectives on CUDA tensors.
// The ncclUniqueId is created on rank 0 and broadcast over MPI; each rank uses the device that
// dist::place_on_device chose (cuda:<local_rank mod GPUs>); NCCL needs one GPU per rank.
// Stream order, as c10d's ProcessGroupNCCL keeps it: a collective runs on the communicator's own
// stream, after an event recorded on the caller's current (torch) stream, so it never reads a
// tensor that queued kernels are still writing; the current stream then waits on an event
// recorded after the collective, so later work sees its result -- except allreduce_start() on a
// CUDA tensor (starts_asynchronously), which leaves that wait to the returned collective's wait()
// so that backward's kernels go on while a gradient bucket is reduced. The host does not wait: the
// blocking contract of communicator.h holds in stream order (a .item() or a copy to the host
// afterwards sees the result). CPU tensors are accepted too, staged through the device (for the
// few small control tensors: a stop flag, metric sums), and there the call returns when done.
// duplicate() opens a second NCCL communicator over the same ranks (for a concurrent thread; the
// gradient sync on GPUs starts its buckets from backward on the communicator itself).
// Watchdog: each collective records an event after it; a background thread queries the events in
// order (cudaEventQuery, ncclCommGetAsyncError) and ends the world when one is late or failed.
// Without a visible GPU, construction throws DistError naming the rank and host.

#include <memory>

#include "dist/communicator.h"

namespace segrun::dist {

// options.timeout_s is the watchdog's deadline per collective (dist/stream_watchdog.h): a
// collective that has not completed on the GPU by then, or that NCCL reports failed, ends the
// process and the MPI world with one line naming it (options.name names the communicator).
std::unique_ptr<Communicator> make_nccl_communicator(const RankContext& context, const CommunicatorOptions& options);

}  // namespace segrun::dist
