#include "dist/collective_info.h"

#include <cmath>
#include <cstdio>

namespace segrun::dist {

const char* collective_name(CollectiveKind kind) {
  switch (kind) {
    case CollectiveKind::kAllreduce: return "allreduce";
    case CollectiveKind::kBroadcast: return "broadcast";
    case CollectiveKind::kAllgather: return "allgather";
    case CollectiveKind::kBarrier: return "barrier";
  }
  return "collective";
}

std::string format_seconds(double s) {
  char buf[32];
  if (s == std::floor(s))
    std::snprintf(buf, sizeof(buf), "%.0f s", s);
  else
    std::snprintf(buf, sizeof(buf), "%.1f s", s);
  return buf;
}

std::string format_bytes(int64_t bytes) {
  char buf[32];
  const double b = static_cast<double>(bytes);
  if (bytes < 1000)
    std::snprintf(buf, sizeof(buf), "%lld B", static_cast<long long>(bytes));
  else if (b < 1e6)
    std::snprintf(buf, sizeof(buf), "%.1f KB", b / 1e3);
  else if (b < 1e9)
    std::snprintf(buf, sizeof(buf), "%.1f MB", b / 1e6);
  else
    std::snprintf(buf, sizeof(buf), "%.1f GB", b / 1e9);
  return buf;
}

std::string describe_collective(const CollectiveInfo& info, const std::string& communicator) {
  std::string what =
      std::string("collective ") + collective_name(info.kind) + " #" + std::to_string(info.sequence) + " (";
  if (!info.note.empty()) what += info.note + ", ";
  return what + format_bytes(info.bytes) + ") on communicator " + communicator;
}

}  // namespace segrun::dist
