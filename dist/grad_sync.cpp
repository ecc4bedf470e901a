#include "dist/grad_sync.h"

namespace segrun::dist {

GradientSync::GradientSync(std::vector<torch::Tensor> parameters, std::shared_ptr<Communicator> comm,
                           double bucket_mb)
    : parameters_(std::move(parameters)), comm_(std::move(comm)) {
  const double cap_bytes = bucket_mb * 1024.0 * 1024.0;
  std::vector<size_t> current;
  double current_bytes = 0;
  torch::ScalarType current_type = torch::kFloat32;
  for (size_t k = parameters_.size(); k-- > 0;) {
    const auto& p = parameters_[k];
    if (!p.requires_grad()) continue;
    double bytes = static_cast<double>(p.numel() * p.element_size());
    bool type_change = !current.empty() && p.scalar_type() != current_type;
    if (!current.empty() && (type_change || current_bytes + bytes > cap_bytes)) {
      buckets_.push_back(std::move(current));
      current.clear();
      current_bytes = 0;
    }
    current.push_back(k);
    current_bytes += bytes;
    current_type = p.scalar_type();
  }
  if (!current.empty()) buckets_.push_back(std::move(current));
}

void GradientSync::synchronize() {
  const int world = comm_ ? comm_->size() : 1;
  for (const auto& bucket : buckets_) {
    std::vector<torch::Tensor> grads;
    grads.reserve(bucket.size());
    for (size_t k : bucket) {
      auto& p = parameters_[k];
      if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
      grads.push_back(p.grad());
    }
    if (world == 1) continue;
    std::vector<torch::Tensor> flat_views;
    flat_views.reserve(grads.size());
    for (auto& g : grads) flat_views.push_back(g.reshape({-1}));
    torch::Tensor flat = torch::cat(flat_views);
    comm_->allreduce(flat);
    flat.div_(world);
    int64_t offset = 0;
    for (auto& g : grads) {
      int64_t n = g.numel();
      g.copy_(flat.slice(0, offset, offset + n).view(g.sizes()));
      offset += n;
    }
  }
}

void broadcast_module_state(torch::nn::Module& module, Communicator& comm, int root) {
  if (comm.size() == 1) return;
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> tensors;
  for (auto& p : module.parameters()) tensors.push_back(p);
  for (auto& b : module.buffers()) tensors.push_back(b);
  // One broadcast per dtype: pack, send, unpack.
  std::map<torch::ScalarType, std::vector<torch::Tensor>> by_type;
  for (auto& t : tensors) by_type[t.scalar_type()].push_back(t);
  for (auto& [type, group] : by_type) {
    std::vector<torch::Tensor> flat_views;
    for (auto& t : group) flat_views.push_back(t.reshape({-1}));
    torch::Tensor flat = torch::cat(flat_views);
    comm.broadcast(flat, root);
    int64_t offset = 0;
    for (auto& t : group) {
      int64_t n = t.numel();
      t.copy_(flat.slice(0, offset, offset + n).view(t.sizes()));
      offset += n;
    }
  }
}

}  // namespace segrun::dist
