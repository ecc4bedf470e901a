#include "dist/communicator.h"

#include "build_config.h"
#include "core/error.h"
#include "core/kinds.h"
#include "dist/device.h"
#include "dist/mpi_communicator.h"
#include "dist/nccl_communicator.h"

namespace segrun::dist {

namespace {

bool compiled_in(CommBackend kind) { return kind != CommBackend::kNccl || SEGRUN_WITH_NCCL; }

std::unique_ptr<Communicator> open_backend(CommBackend kind, const RankContext& context,
                                           const CommunicatorOptions& options) {
  switch (kind) {
    case CommBackend::kMpi: return make_mpi_communicator(context, options);
    case CommBackend::kNccl: return make_nccl_communicator(context, options);
  }
  throw ConfigError("dist.backend: backend kind " + std::to_string(static_cast<int>(kind)) + " has no builder");
}

}  // namespace

std::vector<std::string> compiled_backends() {
  std::vector<std::string> names;
  for (const auto& [name, kind] : comm_backends())
    if (compiled_in(kind)) names.push_back(name);
  return names;
}

std::vector<double> mean_over_ranks(const std::vector<double>& values, Communicator* comm) {
  if (comm == nullptr || comm->size() == 1 || values.empty()) return values;
  torch::Tensor sums = torch::tensor(values, torch::kFloat64);
  comm->allreduce(sums);
  sums.div_(comm->size());
  return std::vector<double>(sums.data_ptr<double>(), sums.data_ptr<double>() + sums.numel());
}

torch::Tensor mean_over_ranks(const std::vector<double>& values, Communicator* comm, const torch::Device& device) {
  torch::Tensor sums = to_device_async(torch::tensor(values, torch::kFloat64), device);
  if (comm == nullptr || comm->size() == 1 || values.empty()) return sums;
  if (sums.is_cuda() && !comm->starts_asynchronously(sums)) {
    // A backend that stages device tensors through the host (mpi) would wait for the device twice:
    // the host values are reduced instead, and only the means go up.
    return to_device_async(torch::tensor(mean_over_ranks(values, comm), torch::kFloat64), device);
  }
  comm->allreduce(sums);
  return sums.div_(comm->size());
}

namespace {
class CompletedCollective final : public PendingCollective {
 public:
  void wait() override {}
};
}  // namespace

std::unique_ptr<PendingCollective> Communicator::allreduce_start(torch::Tensor& tensor, ReduceOp op,
                                                                 const std::string& note) {
  allreduce_noted(tensor, op, note);
  return std::make_unique<CompletedCollective>();
}

void require_contiguous(const torch::Tensor& tensor, const char* op) {
  if (!tensor.is_contiguous()) throw DistError(std::string(op) + ": tensor must be contiguous");
}

std::unique_ptr<Communicator> Communicator::duplicate(const std::string& name) {
  throw DistError("backend " + backend_name() + " does not support duplicate() (asked for '" + name + "')");
}

std::unique_ptr<Communicator> make_communicator(const std::string& backend, const RankContext& context) {
  return make_communicator(backend, context, CommunicatorOptions{});
}

std::unique_ptr<Communicator> make_communicator(const std::string& backend, const RankContext& context,
                                                const CommunicatorOptions& options) {
  std::string chosen = backend;
  if (chosen == "auto") {
    // NCCL needs one GPU per rank: ranks that share a GPU (tests, a small node) use MPI, which
    // stages CUDA tensors through the host.
    const bool gpu_per_rank = context.device == DeviceKind::kCuda && context.local_size <= context.visible_devices;
    chosen = gpu_per_rank && SEGRUN_WITH_NCCL ? "nccl" : "mpi";
  }
  for (const auto& [name, kind] : comm_backends())
    if (name == chosen && compiled_in(kind)) return open_backend(kind, context, options);
  std::string list;
  for (const auto& n : compiled_backends()) list += (list.empty() ? "" : ", ") + n;
  throw ConfigError("dist.backend: '" + backend + "' is not a backend of this build (compiled in: " + list +
                    ", or auto)");
}

}  // namespace segrun::dist
