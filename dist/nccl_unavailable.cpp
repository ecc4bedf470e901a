// make_nccl_communicator in a build without NCCL (SEGRUN_WITH_NCCL off): dist/CMakeLists.txt
// compiles this file instead of nccl_communicator.cpp, so the backend switch in communicator.cpp
// needs no #if. make_communicator() refuses "nccl" before it gets here (compiled_backends()).
#include "core/error.h"
#include "dist/nccl_communicator.h"

namespace segrun::dist {

std::unique_ptr<Communicator> make_nccl_communicator(const RankContext& /*context*/,
                                                     const CommunicatorOptions& /*options*/) {
  throw ConfigError("dist.backend: nccl is not compiled into this segrun (built without NCCL: docs/gpu.md)");
}

}  // namespace segrun::dist
