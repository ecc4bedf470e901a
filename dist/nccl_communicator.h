#pragma once
// The "nccl" Communicator backend (built when SEGRUN_WITH_NCCL): collectives on CUDA tensors.
// The ncclUniqueId is created on rank 0 and broadcast over MPI; each rank binds
// cuda:<local_rank>. Operations run on a stream owned by the communicator and are synchronized
// before returning, matching the blocking contract of communicator.h. The code works on raw
// device pointers so it compiles against a CPU-only LibTorch; a CUDA LibTorch build uses it as is.
// Without a visible GPU, construction throws DistError naming the rank and host.

#include <memory>

#include "dist/communicator.h"

namespace segrun::dist {

std::unique_ptr<Communicator> make_nccl_communicator(const RankContext& context);

}  // namespace segrun::dist
