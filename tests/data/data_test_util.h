#pragma once
// Helpers for the data tests: scoped temp directories, file byte I/O, and an in-process
// Communicator over threads (world sizes >= 1) so packing is tested without mpirun.

#include <torch/torch.h>

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "data/store.h"
#include "dist/communicator.h"

namespace segrun::data::testing {

class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "segrun-data-XXXXXX").string();
    std::vector<char> buf(pattern.begin(), pattern.end());
    buf.push_back('\0');
    char* made = mkdtemp(buf.data());
    if (!made) throw std::runtime_error("mkdtemp failed");
    path_ = made;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& rel) const { return (std::filesystem::path(path_) / rel).string(); }

 private:
  std::string path_;
};

inline std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

// Flips one byte of record i's image inside its shard file (plain file I/O: the bytes datasets are
// stored uncompressed, so the record's bytes appear verbatim). Returns the shard path.
inline std::string corrupt_record(const std::string& store, int64_t i) {
  std::string shard;
  std::vector<uint8_t> image;
  {
    StoreReader reader(store);
    shard = reader.locate(i).first;
    image = reader.read(i).image_bytes;
  }
  std::vector<uint8_t> file = read_bytes(shard);
  // The whole record is searched (encoded headers are shared between records); the flipped byte
  // sits in the entropy-coded tail, before the end marker.
  auto it = std::search(file.begin(), file.end(), image.begin(), image.end());
  if (it == file.end()) throw std::runtime_error("record bytes not found in " + shard);
  *(it + static_cast<std::ptrdiff_t>(image.size()) - 10) ^= 0xFF;
  write_bytes(shard, file);
  return shard;
}

// Shared state of a group of ThreadCommunicators (one per thread = rank).
class ThreadGroup {
 public:
  explicit ThreadGroup(int world) : world_(world), slots_(static_cast<size_t>(world)) {}
  int world() const { return world_; }

  // Every rank contributes a tensor; every rank gets all of them (in rank order).
  std::vector<torch::Tensor> exchange(int rank, const torch::Tensor& t) {
    std::unique_lock<std::mutex> lock(mutex_);
    const int64_t gen = generation_;
    slots_[static_cast<size_t>(rank)] = t.clone();
    if (++arrived_ == world_) {
      result_ = slots_;
      arrived_ = 0;
      ++generation_;
      cv_.notify_all();
    } else {
      cv_.wait(lock, [&] { return generation_ != gen; });
    }
    return result_;
  }

 private:
  int world_;
  std::mutex mutex_;
  std::condition_variable cv_;
  int arrived_ = 0;
  int64_t generation_ = 0;
  std::vector<torch::Tensor> slots_, result_;
};

class ThreadCommunicator : public dist::Communicator {
 public:
  ThreadCommunicator(int rank, ThreadGroup& group) : rank_(rank), group_(group) {}
  int rank() const override { return rank_; }
  int size() const override { return group_.world(); }
  std::string backend_name() const override { return "test-threads"; }
  void allreduce(torch::Tensor& tensor, dist::ReduceOp op) override {
    auto all = group_.exchange(rank_, tensor);
    torch::Tensor acc = all[0].clone();
    for (size_t i = 1; i < all.size(); ++i) {
      if (op == dist::ReduceOp::kSum) acc += all[i];
      else if (op == dist::ReduceOp::kMax) acc = torch::maximum(acc, all[i]);
      else acc = torch::minimum(acc, all[i]);
    }
    tensor.copy_(acc);
  }
  void broadcast(torch::Tensor& tensor, int root) override {
    auto all = group_.exchange(rank_, tensor);
    tensor.copy_(all[static_cast<size_t>(root)]);
  }
  torch::Tensor allgather(const torch::Tensor& tensor) override {
    return torch::stack(group_.exchange(rank_, tensor));
  }
  void barrier() override { group_.exchange(rank_, torch::zeros({1})); }

 private:
  int rank_;
  ThreadGroup& group_;
};

// Runs fn(comm) on `world` threads; rethrows the first exception (by rank order).
inline void run_ranks(int world, const std::function<void(dist::Communicator&)>& fn) {
  ThreadGroup group(world);
  std::vector<std::exception_ptr> errors(static_cast<size_t>(world));
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      ThreadCommunicator comm(r, group);
      try {
        fn(comm);
      } catch (...) {
        errors[static_cast<size_t>(r)] = std::current_exception();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (auto& e : errors) {
    if (e) std::rethrow_exception(e);
  }
}

}  // namespace segrun::data::testing
