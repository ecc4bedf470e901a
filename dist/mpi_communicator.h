#pragma once
// The "mpi" Communicator backend: Open MPI collectives on contiguous CPU tensors of
// MPI_COMM_WORLD (duplicated, so segrun's traffic never mixes with anyone else's).
// Blocking; one thread at a time per communicator (see communicator.h).

#include <memory>

#include "dist/communicator.h"

namespace segrun::dist {

std::unique_ptr<Communicator> make_mpi_communicator(const RankContext& context);

}  // namespace segrun::dist
