// In-process communicator for tests: see inprocess_communicator.h.
#include "dist/inprocess_communicator.h"

#include <exception>
#include <thread>

#include "core/error.h"

namespace segrun::dist {

InProcessGroup::InProcessGroup(int world) : world_(world), slots_(static_cast<size_t>(world)) {
  SEGRUN_CHECK(world >= 1, DistError, "in-process world: size must be at least 1, got " << world);
}

std::vector<torch::Tensor> InProcessGroup::exchange(int rank, const torch::Tensor& tensor) {
  const torch::Tensor copy = tensor.detach().to(torch::kCPU).clone();
  std::unique_lock<std::mutex> lock(mutex_);
  const int64_t generation = generation_;
  slots_[static_cast<size_t>(rank)] = copy;
  if (++arrived_ == world_) {
    result_ = slots_;
    arrived_ = 0;
    ++generation_;
    cv_.notify_all();
  } else {
    cv_.wait(lock, [&] { return generation_ != generation; });
  }
  return result_;
}

std::shared_ptr<InProcessGroup> InProcessGroup::subgroup(const std::string& key) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto& group = subgroups_[key];
  if (!group) group = std::make_shared<InProcessGroup>(world_);
  return group;
}

InProcessCommunicator::InProcessCommunicator(int rank, std::shared_ptr<InProcessGroup> group)
    : rank_(rank), group_(std::move(group)) {
  SEGRUN_CHECK(rank_ >= 0 && rank_ < group_->world(), DistError,
               "in-process world: rank " << rank_ << " outside a world of " << group_->world());
}

void InProcessCommunicator::allreduce(torch::Tensor& tensor, ReduceOp op) {
  require_contiguous(tensor, "allreduce");
  ++sequence_;
  const std::vector<torch::Tensor> all = group_->exchange(rank_, tensor);
  torch::Tensor acc = all[0].clone();
  for (size_t i = 1; i < all.size(); ++i) {
    if (op == ReduceOp::kSum)
      acc += all[i];
    else if (op == ReduceOp::kMax)
      acc = torch::maximum(acc, all[i]);
    else
      acc = torch::minimum(acc, all[i]);
  }
  tensor.copy_(acc);
}

void InProcessCommunicator::broadcast(torch::Tensor& tensor, int root) {
  require_contiguous(tensor, "broadcast");
  ++sequence_;
  SEGRUN_CHECK(root >= 0 && root < size(), DistError, "broadcast: root " << root << " outside a world of " << size());
  const std::vector<torch::Tensor> all = group_->exchange(rank_, tensor);
  tensor.copy_(all[static_cast<size_t>(root)]);
}

torch::Tensor InProcessCommunicator::allgather(const torch::Tensor& tensor) {
  require_contiguous(tensor, "allgather");
  ++sequence_;
  return torch::stack(group_->exchange(rank_, tensor)).to(tensor.device());
}

void InProcessCommunicator::barrier() {
  ++sequence_;
  group_->exchange(rank_, torch::zeros({1}));
}

std::unique_ptr<Communicator> InProcessCommunicator::duplicate(const std::string& name) {
  barrier();  // collective, like the other backends' duplicate()
  return std::make_unique<InProcessCommunicator>(rank_, group_->subgroup(name + "#" + std::to_string(duplicates_++)));
}

void run_inprocess_world(int world, const std::function<void(Communicator&)>& fn) {
  auto group = std::make_shared<InProcessGroup>(world);
  std::vector<std::exception_ptr> errors(static_cast<size_t>(world));
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      InProcessCommunicator comm(r, group);
      try {
        fn(comm);
      } catch (...) {
        errors[static_cast<size_t>(r)] = std::current_exception();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace segrun::dist
