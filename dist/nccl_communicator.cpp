#include "dist/nccl_communicator.h"

#include <cuda_runtime_api.h>
#include <mpi.h>
#include <nccl.h>
#include <torch/torch.h>

#include "dist/mpi_check.h"

namespace segrun::dist {
namespace {

std::string where(const RankContext& c) { return "rank " + std::to_string(c.world_rank) + " (" + c.host + ")"; }

void cuda_check(cudaError_t rc, const char* op, const RankContext& c) {
  if (rc != cudaSuccess)
    throw DistError(std::string(op) + " failed on " + where(c) + ": " + cudaGetErrorString(rc));
}

void nccl_check(ncclResult_t rc, const char* op, const RankContext& c) {
  if (rc != ncclSuccess)
    throw DistError(std::string(op) + " failed on " + where(c) + ": " + ncclGetErrorString(rc) +
                    " (NCCL " + std::to_string(NCCL_MAJOR) + "." + std::to_string(NCCL_MINOR) + ")");
}

ncclDataType_t nccl_type_of(const torch::Tensor& t) {
  switch (t.scalar_type()) {
    case torch::kFloat32: return ncclFloat32;
    case torch::kFloat64: return ncclFloat64;
    case torch::kFloat16: return ncclFloat16;
    case torch::kInt64: return ncclInt64;
    case torch::kInt32: return ncclInt32;
    case torch::kUInt8: return ncclUint8;
    default:
      throw DistError("backend nccl does not support dtype " +
                      std::string(c10::toString(t.scalar_type())));
  }
}

ncclRedOp_t nccl_op_of(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return ncclSum;
    case ReduceOp::kMax: return ncclMax;
    case ReduceOp::kMin: return ncclMin;
  }
  return ncclSum;
}

class NcclCommunicator final : public Communicator {
 public:
  explicit NcclCommunicator(const RankContext& context) : context_(context) {
    int devices = 0;
    cudaError_t rc = cudaGetDeviceCount(&devices);
    if (rc != cudaSuccess || devices == 0)
      throw DistError("dist.backend = \"nccl\" needs a CUDA device, but " + where(context) +
                      " sees none (" + (rc != cudaSuccess ? cudaGetErrorString(rc) : "0 devices") +
                      "); use dist.backend = \"mpi\" on CPU nodes");
    device_ = context.local_rank % devices;
    cuda_check(cudaSetDevice(device_), "cudaSetDevice", context_);
    ncclUniqueId id;
    if (context.world_rank == 0) nccl_check(ncclGetUniqueId(&id), "ncclGetUniqueId", context_);
    SEGRUN_MPI_CHECK(MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, MPI_COMM_WORLD), "MPI_Bcast(ncclUniqueId)");
    nccl_check(ncclCommInitRank(&comm_, context.world_size, id, context.world_rank),
               "ncclCommInitRank", context_);
    cuda_check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate",
               context_);
  }
  ~NcclCommunicator() override {
    if (stream_) cudaStreamDestroy(stream_);
    if (comm_) ncclCommDestroy(comm_);
  }

  int rank() const override { return context_.world_rank; }
  int size() const override { return context_.world_size; }
  std::string backend_name() const override { return "nccl"; }

  void allreduce(torch::Tensor& t, ReduceOp op) override {
    require_cuda(t, "allreduce");
    nccl_check(ncclAllReduce(t.data_ptr(), t.data_ptr(), static_cast<size_t>(t.numel()),
                             nccl_type_of(t), nccl_op_of(op), comm_, stream_),
               "ncclAllReduce", context_);
    synchronize("allreduce");
  }
  void broadcast(torch::Tensor& t, int root) override {
    require_cuda(t, "broadcast");
    nccl_check(ncclBroadcast(t.data_ptr(), t.data_ptr(), static_cast<size_t>(t.numel()),
                             nccl_type_of(t), root, comm_, stream_),
               "ncclBroadcast", context_);
    synchronize("broadcast");
  }
  torch::Tensor allgather(const torch::Tensor& t) override {
    require_cuda(t, "allgather");
    std::vector<int64_t> shape{context_.world_size};
    for (auto d : t.sizes()) shape.push_back(d);
    torch::Tensor out = torch::empty(shape, t.options());
    nccl_check(ncclAllGather(t.data_ptr(), out.data_ptr(), static_cast<size_t>(t.numel()),
                             nccl_type_of(t), comm_, stream_),
               "ncclAllGather", context_);
    synchronize("allgather");
    return out;
  }
  void barrier() override {
    SEGRUN_MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
  }

 private:
  void require_cuda(const torch::Tensor& t, const char* op) const {
    if (!t.device().is_cuda())
      throw DistError(std::string(op) + ": backend nccl needs CUDA tensors (got " +
                      t.device().str() + ") on " + where(context_));
    if (!t.is_contiguous()) throw DistError(std::string(op) + ": tensor must be contiguous");
  }
  void synchronize(const char* op) {
    cuda_check(cudaStreamSynchronize(stream_), op, context_);
  }

  RankContext context_;
  int device_ = 0;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(const RankContext& context) {
  return std::make_unique<NcclCommunicator>(context);
}

}  // namespace segrun::dist
