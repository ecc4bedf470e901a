#pragma once
// Communicator: the collectives segrun's training needs, behind one interface with backends
// chosen at run time by name (config `dist.backend`):
//   "mpi"  Open MPI on contiguous CPU tensors (always built),
//   "nccl" CUDA tensors (built when NCCL headers are found; fails clearly without a GPU).
// Contract: every rank calls the same collectives in the same order with tensors of the same
// dtype and shape (broadcast: same shape on every rank). Tensors are modified in place and must
// be contiguous. Calls are blocking and not thread-safe: one thread per communicator.
// Errors throw DistError naming the operation, the rank and the library's message.

#include <torch/types.h>

#include <memory>
#include <string>
#include <vector>

#include "dist/rank_context.h"

namespace segrun::dist {

enum class ReduceOp { kSum, kMax, kMin };

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
};

// backend: "auto" | "mpi" | "nccl". Unknown names list the backends compiled in.
std::unique_ptr<Communicator> make_communicator(const std::string& backend,
                                                const RankContext& context);
std::vector<std::string> compiled_backends();

}  // namespace segrun::dist
