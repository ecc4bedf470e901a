#pragma once
// The MPI session of a segrun process, created on first use: rank-level commands (train, eval,
// data pack) run on every rank of an MPI world — alone they form a singleton world — and ask for
// context(); the other commands never start MPI. On creation it checks that the world is the one
// the launcher started (dist::check_launched_world) and keeps OpenCV single-threaded (ranks,
// LibTorch's intra-op threads and the loader's workers already use the cores).

#include <memory>

#include "dist/rank_context.h"

namespace segrun::launcher {

class MpiHolder {
 public:
  MpiHolder(int* argc, char*** argv) : argc_(argc), argv_(argv) {}
  const dist::RankContext& context();
  bool active() const { return session_ != nullptr; }
  int world_size() const { return session_ ? session_->context().world_size : 1; }
  void finalize() { session_.reset(); }

 private:
  int* argc_;
  char*** argv_;
  std::unique_ptr<dist::MpiSession> session_;
};

// Logging of a rank-level command: tagged with the rank, at `level`.
void init_rank_logging(const dist::RankContext& context, const std::string& level = "info");

}  // namespace segrun::launcher
