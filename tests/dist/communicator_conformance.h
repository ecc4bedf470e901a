#pragma once
// The Communicator contract (dist/communicator.h) as one check every backend passes, whatever its
// world size: each rank of the world calls expect_communicator_contract(comm, device) at the same
// time, with tensors on `device` (CPU, or the rank's GPU). It runs over the in-process world at
// sizes 1-8, over mpi with 2 ranks (CPU, and CUDA tensors staged through the host in
// gpu_mpi_test) and over nccl on a GPU (gpu_test); a new backend runs it first.
// Checked, against values worked out from the rank numbers: all-reduce (sum, max, min) of
// float32, float64, int64 and int32 tensors, also through allreduce_noted and allreduce_start
// (whose result is final at return unless the backend says it starts asynchronously); broadcast
// from every root; allgather's shape, order, dtype and device; empty tensors left alone; a
// non-contiguous tensor refused with DistError; barrier; mean_over_ranks (host values, and a
// tensor on `device`); a duplicate's collectives independent of its parent's; results on the
// input's device.
// Every ASSERT here fails on all ranks alike (it checks what every rank sees the same): one rank
// returning early while the others go on to the next collective would hang them.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>
#include <vector>

#include "core/error.h"
#include "dist/communicator.h"

namespace segrun::dist::conformance {

// Rank r's contribution for element j: (r + 1) * (j + 1), alternating in sign with the rank for
// signed types, so sum, max and min all differ.
inline torch::Tensor rank_values(int rank, torch::ScalarType type, const torch::Device& device) {
  const double sign = rank % 2 == 0 ? 1.0 : -1.0;
  return (torch::arange(1, 7, torch::kFloat64) * ((rank + 1) * sign)).view({2, 3}).to(type).to(device);
}

inline torch::Tensor expected_reduction(int world, ReduceOp op, torch::ScalarType type) {
  std::vector<torch::Tensor> all;
  for (int r = 0; r < world; ++r) all.push_back(rank_values(r, torch::kFloat64, torch::kCPU));
  const torch::Tensor stacked = torch::stack(all);
  torch::Tensor out = op == ReduceOp::kSum   ? stacked.sum(0)
                      : op == ReduceOp::kMax ? std::get<0>(stacked.max(0))
                                             : std::get<0>(stacked.min(0));
  return out.to(type);
}

inline void expect_on(const torch::Tensor& t, const torch::Device& device, const std::string& what) {
  EXPECT_EQ(t.device(), device) << what << " left the device";
}

inline void expect_communicator_contract(Communicator& comm, const torch::Device& device) {
  const int world = comm.size(), r = comm.rank();
  ASSERT_GE(world, 1);
  ASSERT_TRUE(r >= 0 && r < world) << "rank " << r << " of " << world;
  const std::string where = comm.backend_name() + " rank " + std::to_string(r) + " of " + std::to_string(world);

  for (torch::ScalarType type : {torch::kFloat32, torch::kFloat64, torch::kInt64, torch::kInt32}) {
    for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kMax, ReduceOp::kMin}) {
      const std::string what = where + ", " + c10::toString(type) + " reduce op " + std::to_string(int(op));
      const torch::Tensor expected = expected_reduction(world, op, type);
      torch::Tensor plain = rank_values(r, type, device), noted = plain.clone(), started = plain.clone();
      comm.allreduce(plain, op);
      comm.allreduce_noted(noted, op, "conformance");
      std::unique_ptr<PendingCollective> pending = comm.allreduce_start(started, op, "conformance");
      ASSERT_TRUE(pending) << what;
      if (!comm.starts_asynchronously(started)) {
        EXPECT_TRUE(torch::equal(started.cpu(), expected)) << what << ": allreduce_start returned early";
      }
      pending->wait();
      for (const torch::Tensor* t : {&plain, &noted, &started}) {
        expect_on(*t, device, what);
        EXPECT_EQ(t->scalar_type(), type) << what;
        EXPECT_TRUE(torch::equal(t->cpu(), expected)) << what << ": got " << *t << " expected " << expected;
      }
    }
  }

  for (int root = 0; root < world; ++root) {
    torch::Tensor values = rank_values(r, torch::kFloat64, device);
    torch::Tensor ids = torch::full({4}, int64_t{100} + r, torch::TensorOptions(torch::kInt64).device(device));
    comm.broadcast(values, root);
    comm.broadcast(ids, root);
    expect_on(values, device, "broadcast");
    EXPECT_TRUE(torch::equal(values.cpu(), rank_values(root, torch::kFloat64, torch::kCPU)))
        << where << ", broadcast from " << root;
    EXPECT_TRUE(torch::equal(ids.cpu(), torch::full({4}, int64_t{100} + root))) << where << ", broadcast from " << root;
  }

  const torch::Tensor gathered = comm.allgather(rank_values(r, torch::kInt64, device));
  expect_on(gathered, device, "allgather");
  EXPECT_EQ(gathered.scalar_type(), torch::kInt64) << where;
  ASSERT_EQ(gathered.sizes(), torch::IntArrayRef({world, 2, 3})) << where;
  for (int k = 0; k < world; ++k)
    EXPECT_TRUE(torch::equal(gathered[k].cpu(), rank_values(k, torch::kInt64, torch::kCPU)))
        << where << ", allgather row " << k;

  torch::Tensor empty = torch::empty({0}, torch::TensorOptions(torch::kFloat32).device(device));
  comm.allreduce(empty);
  comm.broadcast(empty, 0);
  comm.allreduce_start(empty, ReduceOp::kSum, "conformance")->wait();
  EXPECT_EQ(empty.numel(), 0) << where;

  torch::Tensor strided = rank_values(r, torch::kFloat32, device).t();
  ASSERT_FALSE(strided.is_contiguous());
  EXPECT_THROW(comm.allreduce(strided), DistError) << where;
  EXPECT_THROW(comm.allreduce_start(strided, ReduceOp::kSum, "conformance"), DistError) << where;
  EXPECT_THROW(comm.broadcast(strided, 0), DistError) << where;
  EXPECT_THROW(comm.allgather(strided), DistError) << where;

  comm.barrier();
  const std::vector<double> means = mean_over_ranks({double(r), 2.0 * r}, &comm);
  EXPECT_DOUBLE_EQ(means[0], (world - 1) / 2.0) << where;
  EXPECT_DOUBLE_EQ(means[1], world - 1.0) << where;
  const torch::Tensor means_there = mean_over_ranks({double(r), 2.0 * r}, &comm, device);
  ASSERT_EQ(means_there.device(), device) << where;
  ASSERT_EQ(means_there.scalar_type(), torch::kFloat64) << where;
  const torch::Tensor means_here = means_there.cpu();
  EXPECT_DOUBLE_EQ(means_here[0].item<double>(), (world - 1) / 2.0) << where;
  EXPECT_DOUBLE_EQ(means_here[1].item<double>(), world - 1.0) << where;

  // A duplicate and its parent interleaved: each sees only its own collectives.
  std::unique_ptr<Communicator> side = comm.duplicate("conformance");
  ASSERT_EQ(side->size(), world);
  ASSERT_EQ(side->rank(), r);
  torch::Tensor on_side = torch::full({1}, 2.0, torch::TensorOptions(torch::kFloat64).device(device));
  torch::Tensor on_parent = torch::full({1}, 3.0, torch::TensorOptions(torch::kFloat64).device(device));
  side->allreduce(on_side);
  comm.allreduce(on_parent);
  side->barrier();
  EXPECT_EQ(on_side.item<double>(), 2.0 * world) << where;
  EXPECT_EQ(on_parent.item<double>(), 3.0 * world) << where;
}

}  // namespace segrun::dist::conformance
