#pragma once
// How segrun names one collective in every watchdog message, of either backend: its kind, its
// 1-based sequence number on its communicator, its size and an optional note ("bucket 2"),
// written "collective allreduce #12 (bucket 2, 4.1 MB) on communicator grad-sync". Pure
// functions, no MPI or CUDA: the MPI watchdog (mpi_watchdog.h) and the NCCL stream watchdog
// (stream_watchdog.h) share them.

#include <cstdint>
#include <string>

namespace segrun::dist {

enum class CollectiveKind : int64_t { kAllreduce = 0, kBroadcast = 1, kAllgather = 2, kBarrier = 3 };
const char* collective_name(CollectiveKind kind);

struct CollectiveInfo {
  CollectiveKind kind = CollectiveKind::kAllreduce;
  uint64_t sequence = 0;  // 1-based, per communicator
  int64_t bytes = 0;
  std::string note;  // e.g. "bucket 2"; may be empty
};

// "4.1 MB", "512 B", "12.0 KB" (decimal units).
std::string format_bytes(int64_t bytes);
// "30 s", "2.5 s".
std::string format_seconds(double seconds);
// "collective allreduce #12 (bucket 2, 4.1 MB) on communicator grad-sync".
std::string describe_collective(const CollectiveInfo& info, const std::string& communicator);

}  // namespace segrun::dist
