#pragma once
// The "mpi" Communicator backend: Open MPI collectives on contiguous tensors of MPI_COMM_WORLD
// (duplicated, so segrun's traffic never mixes with anyone else's). CUDA tensors go through a
// pinned host copy (the call returns once the result is back on the device), or straight to MPI
// after the device's current stream is synchronized when the library is CUDA-aware; so ranks
// that share one GPU, or a cluster without NCCL, still train on their GPUs.
// Blocking for the caller, but every collective is issued non-blocking (MPI_Iallreduce, ...) and
// polled with MPI_Test against the watchdog deadline (see mpi_watchdog.h); one thread at a time per
// communicator (see communicator.h), duplicate() for another thread.

#include <memory>

#include "dist/communicator.h"

namespace segrun::dist {

std::unique_ptr<Communicator> make_mpi_communicator(const RankContext& context,
                                                    const CommunicatorOptions& options = {});

}  // namespace segrun::dist
