#include "dist/communicator.h"

#include "build_config.h"
#include "core/error.h"
#include "dist/mpi_communicator.h"
#if SEGRUN_WITH_NCCL
#include "dist/nccl_communicator.h"
#endif

namespace segrun::dist {

std::vector<std::string> compiled_backends() {
  std::vector<std::string> names{"mpi"};
  if (SEGRUN_WITH_NCCL) names.push_back("nccl");
  return names;
}

std::vector<double> mean_over_ranks(const std::vector<double>& values, Communicator* comm) {
  if (comm == nullptr || comm->size() == 1 || values.empty()) return values;
  torch::Tensor sums = torch::tensor(values, torch::kFloat64);
  comm->allreduce(sums);
  sums.div_(comm->size());
  return std::vector<double>(sums.data_ptr<double>(), sums.data_ptr<double>() + sums.numel());
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
  if (chosen == "mpi") return make_mpi_communicator(context, options);
#if SEGRUN_WITH_NCCL
  if (chosen == "nccl") return make_nccl_communicator(context, options);
#endif
  std::string list;
  for (const auto& n : compiled_backends()) list += (list.empty() ? "" : ", ") + n;
  throw ConfigError("dist.backend: '" + backend + "' is not a backend of this build (compiled in: " + list +
                    ", or auto)");
}

}  // namespace segrun::dist
