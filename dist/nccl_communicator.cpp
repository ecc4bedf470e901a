#include "dist/nccl_communicator.h"

#include <cuda_runtime_api.h>
#include <mpi.h>
#include <nccl.h>
#include <torch/torch.h>

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "build_config.h"
#include "core/log.h"
#include "dist/device.h"
#include "dist/mpi_check.h"
#include "dist/stream_watchdog.h"
#if SEGRUN_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace segrun::dist {
namespace {

std::string where(const RankContext& c) { return "rank " + std::to_string(c.world_rank) + " (" + c.host + ")"; }

// `rank` as where() names it.
void cuda_check(cudaError_t rc, const char* op, const std::string& rank) {
  if (rc != cudaSuccess) throw DistError(std::string(op) + " failed on " + rank + ": " + cudaGetErrorString(rc));
}

void cuda_check(cudaError_t rc, const char* op, const RankContext& c) {
  if (rc != cudaSuccess) cuda_check(rc, op, where(c));
}

void nccl_check(ncclResult_t rc, const char* op, const RankContext& c) {
  if (rc != ncclSuccess)
    throw DistError(std::string(op) + " failed on " + where(c) + ": " + ncclGetErrorString(rc) + " (NCCL " +
                    std::to_string(NCCL_MAJOR) + "." + std::to_string(NCCL_MINOR) + ")");
}

ncclDataType_t nccl_type_of(const torch::Tensor& t) {
  switch (t.scalar_type()) {
    case torch::kFloat32: return ncclFloat32;
    case torch::kFloat64: return ncclFloat64;
    case torch::kFloat16: return ncclFloat16;
#if NCCL_VERSION_CODE >= NCCL_VERSION(2, 10, 0)
    case torch::kBFloat16: return ncclBfloat16;
#endif
    case torch::kInt64: return ncclInt64;
    case torch::kInt32: return ncclInt32;
    case torch::kUInt8: return ncclUint8;
    case torch::kInt8: return ncclInt8;
    default: throw DistError("backend nccl does not support dtype " + std::string(c10::toString(t.scalar_type())));
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

// LibTorch's current stream on `device`: the stream the caller's kernels were queued on. In a
// build whose LibTorch has no CUDA no tensor can live on a GPU; the legacy default stream then
// stands for it.
cudaStream_t torch_current_stream(int device) {
#if SEGRUN_WITH_CUDA
  return c10::cuda::getCurrentCUDAStream(static_cast<c10::DeviceIndex>(device)).stream();
#else
  (void)device;
  return cudaStreamLegacy;
#endif
}

// Makes `device` the calling thread's current CUDA device for the scope's life and restores the
// one before (the caller's, LibTorch's device guards alike): the gradient-sync thread and a
// caller on another device see no change. Its callers are bound to a device (dist::bind_thread,
// LibTorch's autograd device threads): restoring an unbound thread's default device 0 would
// create a CUDA context there.
class CudaDeviceScope {
 public:
  CudaDeviceScope(int device, const std::string& rank) {
    cuda_check(cudaGetDevice(&previous_), "cudaGetDevice", rank);
    if (previous_ != device)
      cuda_check(cudaSetDevice(device), "cudaSetDevice", rank);
    else
      previous_ = -1;
  }
  ~CudaDeviceScope() {
    if (previous_ >= 0) cudaSetDevice(previous_);
  }
  CudaDeviceScope(const CudaDeviceScope&) = delete;
  CudaDeviceScope& operator=(const CudaDeviceScope&) = delete;

 private:
  int previous_ = -1;  // -1: nothing to restore
};

// Exit status of a rank whose NCCL collective timed out or failed (the process is aborted from
// the watchdog's thread; main's catch gives 1 for the mpi backend's TimeoutError).
constexpr int kExitCollectiveFailure = 1;

// A collective started on `stream` without ordering the current stream after it: an event of
// its own, recorded after it, that wait() makes the then-current stream wait for.
class StreamCollective final : public PendingCollective {
 public:
  StreamCollective(int device, cudaStream_t stream, std::string rank) : device_(device), rank_(std::move(rank)) {
    cudaEvent_t event = nullptr;
    cuda_check(cudaEventCreateWithFlags(&event, cudaEventDisableTiming), "cudaEventCreate", rank_);
    const cudaError_t recorded = cudaEventRecord(event, stream);
    if (recorded != cudaSuccess) cudaEventDestroy(event);
    cuda_check(recorded, "cudaEventRecord", rank_);
    event_ = event;
  }
  ~StreamCollective() override {
    if (event_) cudaEventDestroy(event_);  // released by CUDA once the event has completed
  }
  StreamCollective(const StreamCollective&) = delete;
  StreamCollective& operator=(const StreamCollective&) = delete;

  void wait() override {
    const CudaDeviceScope on_device(device_, rank_);
    cuda_check(cudaStreamWaitEvent(torch_current_stream(device_), event_, 0), "cudaStreamWaitEvent", rank_);
  }

 private:
  int device_;
  std::string rank_;
  cudaEvent_t event_ = nullptr;
};

class NcclCommunicator final : public Communicator {
 public:
  // Collective: every rank of MPI_COMM_WORLD constructs one (rank 0's unique id is broadcast).
  NcclCommunicator(const RankContext& context, const CommunicatorOptions& options)
      : context_(context), options_(options), name_(options.name) {
    int devices = 0;
    cudaError_t rc = cudaGetDeviceCount(&devices);
    if (rc != cudaSuccess || devices == 0)
      throw DistError("dist.backend = \"nccl\" needs a CUDA device, but " + where(context) + " sees none (" +
                      (rc != cudaSuccess ? cudaGetErrorString(rc) : "0 devices") +
                      "); use dist.backend = \"mpi\" on CPU nodes");
    if (context.local_size > devices)
      throw DistError("dist.backend = \"nccl\": " + std::to_string(context.local_size) + " ranks on host " +
                      context.host + " share " + std::to_string(devices) +
                      " GPU(s), and NCCL needs one GPU per rank; use dist.backend = \"mpi\" (or \"auto\") "
                      "or start at most " +
                      std::to_string(devices) + " ranks per host");
    device_ = context.device_index >= 0 ? context.device_index : context.local_rank % devices;
    cuda_check(cudaSetDevice(device_), "cudaSetDevice", context_);
    ncclUniqueId id;
    if (context.world_rank == 0) nccl_check(ncclGetUniqueId(&id), "ncclGetUniqueId", context_);
    SEGRUN_MPI_CHECK(MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, MPI_COMM_WORLD), "MPI_Bcast(ncclUniqueId)");
    nccl_check(ncclCommInitRank(&comm_, context.world_size, id, context.world_rank), "ncclCommInitRank", context_);
#if SEGRUN_WITH_CUDA
    // A stream of LibTorch's pool, so the caching allocator can be told about its use of memory.
    torch_stream_ = std::make_unique<c10::cuda::CUDAStream>(
        c10::cuda::getStreamFromPool(/*isHighPriority=*/true, static_cast<c10::DeviceIndex>(device_)));
    stream_ = torch_stream_->stream();
#else
    cuda_check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate", context_);
    owns_stream_ = true;
#endif
    cuda_check(cudaEventCreateWithFlags(&inputs_ready_, cudaEventDisableTiming), "cudaEventCreate", context_);
    StreamWatchdogOptions watch;
    watch.timeout_s = options.timeout_s;
    watch.name = name_;
    watch.rank = context.world_rank;
    watchdog_ = std::make_unique<StreamWatchdog>(
        watch, [](const std::string& warning) { log::warn("{}", warning); },
        [this](const std::string& failure) { abort_world(failure); });
  }
  ~NcclCommunicator() override {
    watchdog_.reset();  // its thread probes the events below
    if (inputs_ready_) cudaEventDestroy(inputs_ready_);
    for (cudaEvent_t event : all_events_) cudaEventDestroy(event);
    if (owns_stream_ && stream_) cudaStreamDestroy(stream_);
    if (comm_) ncclCommDestroy(comm_);
  }

  int rank() const override { return context_.world_rank; }
  int size() const override { return context_.world_size; }
  std::string backend_name() const override { return "nccl"; }
  uint64_t sequence() const override { return sequence_; }

  void allreduce(torch::Tensor& t, ReduceOp op) override { allreduce_noted(t, op, ""); }
  void allreduce_noted(torch::Tensor& t, ReduceOp op, const std::string& note) override {
    run(CollectiveKind::kAllreduce, note, t, [&](torch::Tensor& d) { launch_allreduce(d, op); });
  }
  bool starts_asynchronously(const torch::Tensor& t) const override { return t.is_cuda(); }
  // On a CUDA tensor the current stream is not made to wait: the returned collective's wait()
  // does that (DDP's bucket all-reduce). A CPU tensor goes the blocking way.
  std::unique_ptr<PendingCollective> allreduce_start(torch::Tensor& t, ReduceOp op, const std::string& note) override {
    if (!t.is_cuda() || t.numel() == 0) return Communicator::allreduce_start(t, op, note);
    require_contiguous(t, "allreduce");
    std::vector<torch::Tensor*> tensors{&t};
    issue_on_device(CollectiveKind::kAllreduce, note, tensors, [&] { launch_allreduce(t, op); });
    return std::make_unique<StreamCollective>(device_, stream_, where(context_));
  }
  void broadcast(torch::Tensor& t, int root) override {
    run(CollectiveKind::kBroadcast, "", t, [&](torch::Tensor& d) {
      nccl_check(ncclBroadcast(d.data_ptr(), d.data_ptr(), static_cast<size_t>(d.numel()), nccl_type_of(d), root, comm_,
                               stream_),
                 "ncclBroadcast", context_);
    });
  }
  torch::Tensor allgather(const torch::Tensor& t) override {
    std::vector<int64_t> shape{context_.world_size};
    for (auto d : t.sizes()) shape.push_back(d);
    require_contiguous(t, "allgather");
    torch::Tensor in = t.is_cuda() ? t : to_device_async(t, device_of(t));  // as run(): one wait, the read back
    torch::Tensor out = torch::empty(shape, t.options().device(device_of(t)));
    std::vector<torch::Tensor*> tensors{&in, &out};
    run_on_device(CollectiveKind::kAllgather, "", tensors, [&] {
      nccl_check(ncclAllGather(in.data_ptr(), out.data_ptr(), static_cast<size_t>(in.numel()), nccl_type_of(in), comm_,
                               stream_),
                 "ncclAllGather", context_);
    });
    return t.is_cuda() ? out : out.to(torch::kCPU);
  }
  // A one-element allreduce, as c10d's ProcessGroupNCCL::barrier: stream-ordered and under the
  // watchdog like every other collective (a bare MPI_Barrier waited forever for a rank stuck
  // before it, e.g. rank 0 writing a checkpoint to a hung file system). The host returns once the
  // result is copied back, i.e. once every rank has arrived.
  void barrier() override {
    torch::Tensor token = torch::zeros({1}, torch::kFloat32);
    run(CollectiveKind::kBarrier, "", token, [&](torch::Tensor& d) {
      nccl_check(ncclAllReduce(d.data_ptr(), d.data_ptr(), 1, ncclFloat32, ncclSum, comm_, stream_), "ncclAllReduce",
                 context_);
    });
  }

  std::unique_ptr<Communicator> duplicate(const std::string& name) override {
    CommunicatorOptions options = options_;
    options.name = name;
    return std::make_unique<NcclCommunicator>(context_, options);
  }

 private:
  torch::Device device_of(const torch::Tensor& t) const {
    return t.is_cuda() ? t.device() : torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(device_));
  }

  // One in-place collective on `t`: a CUDA tensor in stream order; a CPU tensor through a device
  // copy (uploaded without waiting), returning when the result is back on the host -- the one
  // wait for the device.
  template <typename Launch>
  void run(CollectiveKind kind, const std::string& note, torch::Tensor& t, Launch launch) {
    require_contiguous(t, collective_name(kind));
    if (t.numel() == 0) return;
    torch::Tensor d = t.is_cuda() ? t : to_device_async(t, device_of(t));
    std::vector<torch::Tensor*> tensors{&d};
    run_on_device(kind, note, tensors, [&] { launch(d); });
    if (!t.is_cuda()) t.copy_(d);  // a blocking copy on the current stream, which waits for the collective
  }

  void launch_allreduce(torch::Tensor& d, ReduceOp op) {
    nccl_check(ncclAllReduce(d.data_ptr(), d.data_ptr(), static_cast<size_t>(d.numel()), nccl_type_of(d),
                             nccl_op_of(op), comm_, stream_),
               "ncclAllReduce", context_);
  }

  // Orders `launch` (NCCL calls on stream_) after the work queued on the current stream, and the
  // current stream's later work after it.
  template <typename Launch>
  void run_on_device(CollectiveKind kind, const std::string& note, const std::vector<torch::Tensor*>& tensors,
                     Launch launch) {
    const CudaDeviceScope on_device(device_, where(context_));
    const cudaEvent_t done = issue_on_device(kind, note, tensors, launch);
    // `done` is recycled only after the watchdog saw it complete, and re-recorded only by this
    // thread: waiting on it now waits for this collective.
    cuda_check(cudaStreamWaitEvent(torch_current_stream(device_), done, 0), "cudaStreamWaitEvent", context_);
  }

  // Orders `launch` after the work queued on the current stream; the watchdog follows it to
  // completion. Returns the event recorded after it on stream_ (see run_on_device).
  template <typename Launch>
  cudaEvent_t issue_on_device(CollectiveKind kind, const std::string& note, const std::vector<torch::Tensor*>& tensors,
                              Launch launch) {
    for (const torch::Tensor* t : tensors) {
      if (!t->is_cuda() || t->device().index() != device_)
        throw DistError(std::string(collective_name(kind)) + ": backend nccl's communicator '" + name_ + "' on " +
                        where(context_) + " is bound to cuda:" + std::to_string(device_) + ", got a tensor on " +
                        t->device().str());
    }
    CollectiveInfo info;
    info.kind = kind;
    info.sequence = ++sequence_;
    info.bytes = tensors.front()->numel() * static_cast<int64_t>(tensors.front()->element_size());
    info.note = note;
    const CudaDeviceScope on_device(device_, where(context_));  // the gradient-sync thread's too
    const cudaStream_t current = torch_current_stream(device_);
    cuda_check(cudaEventRecord(inputs_ready_, current), "cudaEventRecord", context_);
    cuda_check(cudaStreamWaitEvent(stream_, inputs_ready_, 0), "cudaStreamWaitEvent", context_);
    launch();
    const cudaEvent_t done = acquire_event();
    cuda_check(cudaEventRecord(done, stream_), "cudaEventRecord", context_);
    watchdog_->watch(info, [this, done] { return probe(done); });
#if SEGRUN_WITH_CUDA
    // The allocator reuses the tensors' memory, freed on any stream, only once stream_ has
    // passed this point.
    for (const torch::Tensor* t : tensors)
      c10::cuda::CUDACachingAllocator::recordStream(t->storage().data_ptr(), *torch_stream_);
#endif
    return done;
  }

  // An event for one collective's completion: recycled once the watchdog has seen it complete.
  cudaEvent_t acquire_event() {
    std::lock_guard<std::mutex> lock(events_mutex_);
    if (!free_events_.empty()) {
      const cudaEvent_t event = free_events_.back();
      free_events_.pop_back();
      return event;
    }
    cudaEvent_t event = nullptr;
    cuda_check(cudaEventCreateWithFlags(&event, cudaEventDisableTiming), "cudaEventCreate", context_);
    all_events_.push_back(event);
    return event;
  }

  // On the watchdog's thread: has the collective that recorded `done` completed?
  ProbeResult probe(cudaEvent_t done) {
    cudaSetDevice(device_);  // the current device is per thread
    const cudaError_t rc = cudaEventQuery(done);
    if (rc == cudaSuccess || rc == cudaErrorCudartUnloading) {  // done, or the process is exiting
      std::lock_guard<std::mutex> lock(events_mutex_);
      free_events_.push_back(done);
      return {ProbeResult::State::kDone, ""};
    }
    if (rc != cudaErrorNotReady) return {ProbeResult::State::kFailed, std::string("CUDA: ") + cudaGetErrorString(rc)};
    ncclResult_t async = ncclSuccess;
    if (ncclCommGetAsyncError(comm_, &async) == ncclSuccess && async != ncclSuccess
#if NCCL_VERSION_CODE >= NCCL_VERSION(2, 14, 0)
        && async != ncclInProgress
#endif
    )
      return {ProbeResult::State::kFailed, std::string("NCCL: ") + ncclGetErrorString(async)};
    return {ProbeResult::State::kPending, ""};
  }

  // The watchdog's verdict: the rank cannot go on, and neither can the others.
  [[noreturn]] void abort_world(const std::string& failure) {
    log::error("{}", failure);
    log::flush();
    ncclCommAbort(comm_);  // frees the GPU from the hung collective
    comm_ = nullptr;
    MPI_Abort(MPI_COMM_WORLD, kExitCollectiveFailure);
    std::_Exit(kExitCollectiveFailure);  // MPI_Abort does not return; in case it does
  }

  RankContext context_;
  CommunicatorOptions options_;
  std::string name_;
  int device_ = 0;
  uint64_t sequence_ = 0;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  bool owns_stream_ = false;
#if SEGRUN_WITH_CUDA
  std::unique_ptr<c10::cuda::CUDAStream> torch_stream_;
#endif
  cudaEvent_t inputs_ready_ = nullptr;
  std::mutex events_mutex_;  // the issuing thread acquires, the watchdog's thread recycles
  std::vector<cudaEvent_t> free_events_;
  std::vector<cudaEvent_t> all_events_;
  std::unique_ptr<StreamWatchdog> watchdog_;  // last: stopped first
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(const RankContext& context, const CommunicatorOptions& options) {
  return std::make_unique<NcclCommunicator>(context, options);
}

}  // namespace segrun::dist
