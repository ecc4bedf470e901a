#pragma once
// An in-process world: N ranks as N threads of one process, joined by an InProcessGroup, for
// tests of everything that takes a Communicator (collectives, SyncBatchNorm, the gradient sync,
// packing, loss normalizers) at world sizes 1-8 without mpirun. Not a training backend: it copies
// every tensor through host memory and a mutex.
// Contract: the Communicator contract (communicator.h) with backend_name() "inprocess": every
// rank's thread calls the same collectives in the same order; results are the same on every rank
// and reduce in rank order (rank 0 first), so they are deterministic. duplicate(name) is
// collective and gives every rank a communicator over an independent group (the gradient sync's
// communication thread uses one). A collective blocks until every rank has joined it; there is
// no watchdog. Any number of threads may use different communicators of one group.

#include <torch/types.h>

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "dist/communicator.h"

namespace segrun::dist {

// The shared state of one group of ranks.
class InProcessGroup {
 public:
  explicit InProcessGroup(int world);
  int world() const { return world_; }
  // Every rank contributes a tensor and gets all of them, in rank order (copies on the host).
  std::vector<torch::Tensor> exchange(int rank, const torch::Tensor& tensor);
  // The group behind a duplicate: created by the first rank that asks for `key`, shared by the
  // others (the key names the duplicate and counts them, so each call gets a group of its own).
  std::shared_ptr<InProcessGroup> subgroup(const std::string& key);

 private:
  int world_;
  std::mutex mutex_;
  std::condition_variable cv_;
  int arrived_ = 0;
  int64_t generation_ = 0;
  std::vector<torch::Tensor> slots_, result_;
  std::map<std::string, std::shared_ptr<InProcessGroup>> subgroups_;
};

class InProcessCommunicator : public Communicator {
 public:
  InProcessCommunicator(int rank, std::shared_ptr<InProcessGroup> group);
  int rank() const override { return rank_; }
  int size() const override { return group_->world(); }
  std::string backend_name() const override { return "inprocess"; }
  void allreduce(torch::Tensor& tensor, ReduceOp op = ReduceOp::kSum) override;
  void broadcast(torch::Tensor& tensor, int root) override;
  torch::Tensor allgather(const torch::Tensor& tensor) override;
  void barrier() override;
  std::unique_ptr<Communicator> duplicate(const std::string& name) override;
  uint64_t sequence() const override { return sequence_; }

 private:
  int rank_;
  std::shared_ptr<InProcessGroup> group_;
  uint64_t sequence_ = 0;
  uint64_t duplicates_ = 0;  // duplicate() calls so far: every rank makes them in the same order
};

// Runs fn(comm) for ranks 0..world-1, each on its own thread with its own communicator of one
// fresh group, and joins them; rethrows the first exception in rank order. A rank that throws
// while others wait in a collective would leave them blocked: fn must fail the same way on every
// rank, or not inside a collective (test assertions are fine: gtest records them and goes on).
void run_inprocess_world(int world, const std::function<void(Communicator&)>& fn);

}  // namespace segrun::dist
