#include "dist/mpi_communicator.h"

#include <mpi.h>
#include <torch/torch.h>

#include <cstdlib>
#include <limits>

#include "dist/device.h"
#include "dist/mpi_check.h"
#include "dist/mpi_watchdog.h"
#if __has_include(<mpi-ext.h>)
#include <mpi-ext.h>  // Open MPI's extensions: MPIX_Query_cuda_support
#endif

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

// Whether this MPI library reads and writes CUDA device memory itself (Open MPI built with CUDA
// reports it through its extension; others, and Debian's Open MPI, do not).
bool mpi_is_cuda_aware() {
#if defined(MPIX_CUDA_AWARE_SUPPORT) && MPIX_CUDA_AWARE_SUPPORT
  return MPIX_Query_cuda_support() == 1;
#else
  return false;
#endif
}

// The buffer MPI works on for a CUDA tensor: the tensor itself once its queued writes are done
// (CUDA-aware MPI), else a pinned host copy (a blocking copy; pinned memory makes it a DMA
// transfer) whose result the caller copies back.
torch::Tensor host_view(const torch::Tensor& t, bool cuda_aware) {
  if (cuda_aware) {
    synchronize(t.device());
    return t;
  }
  torch::Tensor host = torch::empty(t.sizes(), t.options().device(torch::kCPU).pinned_memory(true));
  host.copy_(t);
  return host;
}

// Open MPI's libnbc (which serves MPI_Iallreduce) picks a binomial reduce-then-broadcast for every
// in-place call and for every world under 4 ranks (nbc_iallreduce.c), whatever the size: twice the
// data movement of the blocking MPI_Allreduce, i.e. half its bandwidth (measured with
// bench/allreduce.cpp). Select its Rabenseifner algorithm (reduce-scatter + allgather, 2 log p
// steps, bandwidth-optimal; libnbc falls back to its ring when count < p) through the MPI tool
// interface, unless the algorithm was chosen by the user (mpirun --mca, environment, file).
// Every rank does this before its first collective, so all ranks always agree on the algorithm.
// Other MPI libraries lack the variable: nothing happens.
void prefer_bandwidth_optimal_iallreduce() {
  if (std::getenv("OMPI_MCA_coll_libnbc_iallreduce_algorithm")) return;
  // Open MPI's MPI_T_init_thread overwrites the level MPI_Query_thread reports: ask for the
  // level MPI already has (duplicate() checks it for MPI_THREAD_MULTIPLE).
  int level = MPI_THREAD_SINGLE, provided = 0;
  MPI_Query_thread(&level);
  if (MPI_T_init_thread(level, &provided) != MPI_SUCCESS) return;
  int index = 0;
  if (MPI_T_cvar_get_index("coll_libnbc_iallreduce_algorithm", &index) == MPI_SUCCESS) {
    MPI_T_cvar_handle handle;
    int count = 0;
    if (MPI_T_cvar_handle_alloc(index, nullptr, &handle, &count) == MPI_SUCCESS) {
      int value = 0;
      if (count == 1 && MPI_T_cvar_read(handle, &value) == MPI_SUCCESS && value == 0) {
        value = 3;  // 0 ignore (libnbc's choice), 1 ring, 2 binomial, 3 rabenseifner
        MPI_T_cvar_write(handle, &value);
      }
      MPI_T_cvar_handle_free(&handle);
    }
  }
  MPI_T_finalize();
}

class MpiCommunicator final : public Communicator {
 public:
  // Takes a duplicate of `parent`, so segrun's traffic never mixes with anyone else's.
  MpiCommunicator(MPI_Comm parent, const CommunicatorOptions& options) : options_(options) {
    const int64_t max_count = options.mpi_max_elements_per_call;
    if (max_count < 1 || max_count > std::numeric_limits<int>::max())
      throw DistError("communicator '" + options.name + "': mpi_max_elements_per_call " + std::to_string(max_count) +
                      " is outside [1, " + std::to_string(std::numeric_limits<int>::max()) + "]");
    SEGRUN_MPI_CHECK(MPI_Comm_dup(parent, &comm_), "MPI_Comm_dup");
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
    WatchdogOptions w;
    w.timeout_s = options.timeout_s;
    w.name = options.name;
    watchdog_ = std::make_unique<CollectiveWatchdog>(comm_, w);
  }
  ~MpiCommunicator() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (finalized) return;
    const bool settled = watchdog_->settle();
    watchdog_.reset();
    // A timed-out collective still pending on this communicator: never free it under MPI.
    if (settled) MPI_Comm_free(&comm_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend_name() const override { return "mpi"; }
  uint64_t sequence() const override { return watchdog_->sequence(); }

  void allreduce(torch::Tensor& tensor, ReduceOp op) override { allreduce_noted(tensor, op, ""); }

  // Tensors above options_.mpi_max_elements_per_call elements go as several collectives
  // (for_each_chunk).
  void allreduce_noted(torch::Tensor& tensor, ReduceOp op, const std::string& note) override {
    require_contiguous(tensor, "allreduce");
    if (size_ == 1 || tensor.numel() == 0) return;
    torch::Tensor buffer = tensor.is_cuda() ? host_view(tensor, cuda_aware_) : tensor;
    for_each_chunk(buffer, CollectiveKind::kAllreduce, note, [&](void* data, int count, MPI_Request* request) {
      SEGRUN_MPI_CHECK(
          MPI_Iallreduce(MPI_IN_PLACE, data, count, mpi_type_of(tensor, "allreduce"), mpi_op_of(op), comm_, request),
          "MPI_Iallreduce");
    });
    if (!buffer.is_same(tensor)) tensor.copy_(buffer);
  }

  void broadcast(torch::Tensor& tensor, int root) override {
    require_contiguous(tensor, "broadcast");
    if (size_ == 1 || tensor.numel() == 0) return;
    torch::Tensor buffer = tensor.is_cuda() ? host_view(tensor, cuda_aware_) : tensor;
    const std::string note = "root " + std::to_string(root);
    for_each_chunk(buffer, CollectiveKind::kBroadcast, note, [&](void* data, int count, MPI_Request* request) {
      SEGRUN_MPI_CHECK(MPI_Ibcast(data, count, mpi_type_of(tensor, "broadcast"), root, comm_, request), "MPI_Ibcast");
    });
    if (!buffer.is_same(tensor)) tensor.copy_(buffer);
  }

  torch::Tensor allgather(const torch::Tensor& tensor) override {
    require_contiguous(tensor, "allgather");
    if (tensor.is_cuda() && !cuda_aware_) return allgather(host_view(tensor, false)).to(tensor.device());
    if (tensor.is_cuda()) synchronize(tensor.device());
    std::vector<int64_t> shape{size_};
    for (auto d : tensor.sizes()) shape.push_back(d);
    torch::Tensor out = torch::empty(shape, tensor.options());
    if (size_ == 1) {
      out[0].copy_(tensor);
      return out;
    }
    const MPI_Datatype type = mpi_type_of(tensor, "allgather");
    const auto gather = [&](const torch::Tensor& part, torch::Tensor& into) {
      auto info = watchdog_->begin(CollectiveKind::kAllgather, part.nbytes(), "");
      MPI_Request request = MPI_REQUEST_NULL;
      SEGRUN_MPI_CHECK(MPI_Iallgather(part.data_ptr(), static_cast<int>(part.numel()), type, into.data_ptr(),
                                      static_cast<int>(part.numel()), type, comm_, &request),
                       "MPI_Iallgather");
      watchdog_->wait(request, info);
    };
    // Each call receives at most mpi_max_elements_per_call elements (ranks x its part): a larger
    // tensor goes in parts, in order, each gathered to [ranks, part] and copied into its columns.
    const int64_t numel = tensor.numel();
    const int64_t per_call = std::max<int64_t>(1, options_.mpi_max_elements_per_call / size_);
    if (numel <= per_call) {
      gather(tensor, out);
      return out;
    }
    const torch::Tensor flat = tensor.view({numel});
    torch::Tensor columns = out.view({size_, numel});
    for (int64_t begin = 0; begin < numel; begin += per_call) {
      const int64_t count = std::min(per_call, numel - begin);
      torch::Tensor part_out = torch::empty({size_, count}, tensor.options());
      gather(flat.narrow(0, begin, count), part_out);
      columns.narrow(1, begin, count).copy_(part_out);
    }
    return out;
  }

  void barrier() override {
    if (size_ == 1) return;
    auto info = watchdog_->begin(CollectiveKind::kBarrier, 0, "");
    MPI_Request request = MPI_REQUEST_NULL;
    SEGRUN_MPI_CHECK(MPI_Ibarrier(comm_, &request), "MPI_Ibarrier");
    watchdog_->wait(request, info);
  }

  std::unique_ptr<Communicator> duplicate(const std::string& name) override {
    // Two communicators used from two threads at once need full thread support.
    int level = MPI_THREAD_SINGLE;
    MPI_Query_thread(&level);
    if (level < MPI_THREAD_MULTIPLE)
      throw DistError("duplicate('" + name + "'): the MPI library provides thread level " + std::to_string(level) +
                      ", a communicator for another thread needs "
                      "MPI_THREAD_MULTIPLE");
    CommunicatorOptions options = options_;
    options.name = name;
    return std::make_unique<MpiCommunicator>(comm_, options);
  }

 private:
  // MPI counts are int: one non-blocking collective per chunk of at most
  // options_.mpi_max_elements_per_call elements of `buffer`, in the same order on every rank, each
  // under the watchdog with its own sequence number. start(chunk data, element count, &request)
  // issues the chunk's collective.
  template <typename Start>
  void for_each_chunk(const torch::Tensor& buffer, CollectiveKind kind, const std::string& note, Start&& start) {
    const int64_t total = buffer.numel(), item = buffer.element_size();
    const int64_t max_count = options_.mpi_max_elements_per_call;
    auto* base = static_cast<char*>(buffer.data_ptr());
    for (int64_t begin = 0; begin < total; begin += max_count) {
      const int64_t count = std::min(max_count, total - begin);
      auto info = watchdog_->begin(kind, count * item, note);
      MPI_Request request = MPI_REQUEST_NULL;
      start(static_cast<void*>(base + begin * item), static_cast<int>(count), &request);
      watchdog_->wait(request, info);
    }
  }

  CommunicatorOptions options_;
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
  std::unique_ptr<CollectiveWatchdog> watchdog_;
  bool cuda_aware_ = mpi_is_cuda_aware();
};

}  // namespace

std::unique_ptr<Communicator> make_mpi_communicator(const RankContext& context, const CommunicatorOptions& options) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    // Library users and tests without an MpiSession: become a singleton MPI world.
    int provided = 0;
    SEGRUN_MPI_CHECK(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided), "MPI_Init_thread");
  }
  prefer_bandwidth_optimal_iallreduce();
  return std::make_unique<MpiCommunicator>(MPI_COMM_WORLD, options);
}

}  // namespace segrun::dist
