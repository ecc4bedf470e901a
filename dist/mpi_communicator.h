#pragma once
// The "mpi" Communicator backend: Open MPI collectives on contiguous CPU tensors of
// MPI_COMM_WORLD (duplicated, so segrun's traffic never mixes with anyone else's).
// Blocking for the caller, but every collective is issued non-blocking (MPI_Iallreduce, ...) and
// polled with MPI_Test against the watchdog deadline (see watchdog.h); one thread at a time per
// communicator (see communicator.h), duplicate() for another thread.

#include <memory>

#include "dist/communicator.h"

namespace segrun::dist {

std::unique_ptr<Communicator> make_mpi_communicator(const RankContext& context,
                                                    const CommunicatorOptions& options = {});

}  // namespace segrun::dist
