#include "dist/mpi_communicator.h"

#include <mpi.h>
#include <torch/torch.h>

#include "dist/mpi_check.h"

namespace segrun::dist {
namespace {

MPI_Datatype mpi_type_of(const torch::Tensor& t, const char* op) {
  switch (t.scalar_type()) {
    case torch::kFloat32: return MPI_FLOAT;
    case torch::kFloat64: return MPI_DOUBLE;
    case torch::kInt64: return MPI_INT64_T;
    case torch::kInt32: return MPI_INT32_T;
    case torch::kUInt8: return MPI_UINT8_T;
    case torch::kInt8: return MPI_INT8_T;
    default:
      throw DistError(std::string(op) + ": backend mpi does not support dtype " +
                      std::string(c10::toString(t.scalar_type())));
  }
}

MPI_Op mpi_op_of(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return MPI_SUM;
    case ReduceOp::kMax: return MPI_MAX;
    case ReduceOp::kMin: return MPI_MIN;
  }
  return MPI_SUM;
}

void require_cpu_contiguous(const torch::Tensor& t, const char* op) {
  if (!t.device().is_cpu())
    throw DistError(std::string(op) + ": backend mpi needs CPU tensors (use dist.backend = "
                    "\"nccl\" for CUDA tensors)");
  if (!t.is_contiguous()) throw DistError(std::string(op) + ": tensor must be contiguous");
}

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator() {
    SEGRUN_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &comm_), "MPI_Comm_dup");
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
  }
  ~MpiCommunicator() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Comm_free(&comm_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend_name() const override { return "mpi"; }

  void allreduce(torch::Tensor& tensor, ReduceOp op) override {
    require_cpu_contiguous(tensor, "allreduce");
    if (size_ == 1 || tensor.numel() == 0) return;
    SEGRUN_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, tensor.data_ptr(), static_cast<int>(tensor.numel()),
                                   mpi_type_of(tensor, "allreduce"), mpi_op_of(op), comm_),
                     "MPI_Allreduce");
  }

  void broadcast(torch::Tensor& tensor, int root) override {
    require_cpu_contiguous(tensor, "broadcast");
    if (size_ == 1 || tensor.numel() == 0) return;
    SEGRUN_MPI_CHECK(MPI_Bcast(tensor.data_ptr(), static_cast<int>(tensor.numel()),
                               mpi_type_of(tensor, "broadcast"), root, comm_),
                     "MPI_Bcast");
  }

  torch::Tensor allgather(const torch::Tensor& tensor) override {
    require_cpu_contiguous(tensor, "allgather");
    std::vector<int64_t> shape{size_};
    for (auto d : tensor.sizes()) shape.push_back(d);
    torch::Tensor out = torch::empty(shape, tensor.options());
    SEGRUN_MPI_CHECK(MPI_Allgather(tensor.data_ptr(), static_cast<int>(tensor.numel()),
                                   mpi_type_of(tensor, "allgather"), out.data_ptr(),
                                   static_cast<int>(tensor.numel()),
                                   mpi_type_of(tensor, "allgather"), comm_),
                     "MPI_Allgather");
    return out;
  }

  void barrier() override { SEGRUN_MPI_CHECK(MPI_Barrier(comm_), "MPI_Barrier"); }

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
};

}  // namespace

std::unique_ptr<Communicator> make_mpi_communicator(const RankContext& context) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    // Library users and tests without an MpiSession: become a singleton MPI world.
    int provided = 0;
    SEGRUN_MPI_CHECK(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided),
                     "MPI_Init_thread");
  }
  return std::make_unique<MpiCommunicator>();
}

}  // namespace segrun::dist
