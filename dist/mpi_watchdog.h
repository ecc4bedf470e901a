#pragma once
// The MPI backend's collective watchdog (private to dist/: includes mpi.h). Every collective of an MPI
// Communicator is issued non-blocking and handed to CollectiveWatchdog::wait(), which polls
// MPI_Test (progressing MPI) until it completes or the deadline passes.
//
// Finding who did not arrive without a coordinator: a rank that has waited longer than
// `announce_after` in collective #s sends a tiny "I am waiting at #s (op, bytes)" message to
// every peer (tag kAnnounceTag on the same communicator); every rank drains such messages at
// each collective and while waiting. When the deadline passes, the rank keeps draining for a
// short grace period, then: a peer whose latest announcement is >= s has arrived; the others
// did not (killed, stalled, busy elsewhere, or at an earlier collective). The report is one log
// line plus a TimeoutError with the same text; the communicator is then marked broken and the
// pending request abandoned (MPI cannot cancel a collective). Cost when nothing is slow: one
// MPI_Iprobe per collective. Threading: a watchdog belongs to one communicator, used by one
// thread at a time.

#include <mpi.h>

#include <array>
#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "dist/collective_info.h"

namespace segrun::dist {

// What a rank knows about a peer when its collective times out.
struct PeerState {
  int rank = 0;
  bool arrived = false;
  int64_t last_sequence = -1;  // latest announced waiting sequence, -1 when never heard of
  CollectiveKind last_kind = CollectiveKind::kAllreduce;
};

// The early warning (Horovod's stall inspector): "collective allreduce #12 (bucket 0 of 5,
// 26.2 MB) on communicator grad-sync has waited 60 s on rank 0 for rank [1] (timeout at 600 s,
// dist.timeout_s)".
std::string stall_warning(const CollectiveInfo& info, const std::string& communicator, double waited_s,
                          double timeout_s, int rank, const std::vector<PeerState>& peers);

// The one-line report: "collective allreduce #123 (bucket 2, 4.1 MB) on communicator world timed
// out after 30 s on rank 0: ranks [1] did not arrive (rank 1 last seen waiting in allreduce
// #120); check rank 1's log (logs/rank-1.log in the run directory) and whether it was killed or
// stalled". Pure function, tested without MPI.
// `own_stall_s` > 0 adds that this rank itself made no progress for that long (it was stopped
// or starved of CPU), which explains a report written after the rank resumes.
std::string timeout_message(const CollectiveInfo& info, const std::string& communicator, double timeout_s, int rank,
                            const std::vector<PeerState>& peers, double own_stall_s = 0);

struct WatchdogOptions {
  double timeout_s = 600.0;       // <= 0: wait forever (still polling)
  double announce_after_s = 1.0;  // capped at timeout_s / 4
  double grace_s = 2.0;           // capped at timeout_s / 4
  double warn_after_s = 60.0;     // one early warning naming the late ranks; capped at timeout/2
  std::string name = "world";
};

class CollectiveWatchdog {
 public:
  CollectiveWatchdog(MPI_Comm comm, WatchdogOptions options);
  ~CollectiveWatchdog();
  CollectiveWatchdog(const CollectiveWatchdog&) = delete;
  CollectiveWatchdog& operator=(const CollectiveWatchdog&) = delete;

  // Assigns the next sequence number to `info` (returned) and checks the watchdog is usable.
  CollectiveInfo begin(CollectiveKind kind, int64_t bytes, const std::string& note);
  // Waits for `request` of collective `info`; throws TimeoutError (after logging) on expiry,
  // DistError when MPI reports an error.
  void wait(MPI_Request& request, const CollectiveInfo& info);

  uint64_t sequence() const { return sequence_; }
  bool broken() const { return broken_; }
  // True when no abandoned request is still pending (the communicator can be freed).
  bool settle();

 private:
  void drain();
  void announce(const CollectiveInfo& info);
  std::vector<PeerState> peer_states(const CollectiveInfo& info) const;
  [[noreturn]] void expire(MPI_Request& request, const CollectiveInfo& info, double own_stall_s);

  MPI_Comm comm_;
  WatchdogOptions options_;
  int rank_ = 0;
  int size_ = 1;
  uint64_t sequence_ = 0;
  bool broken_ = false;
  std::string broken_reason_;
  std::vector<int64_t> latest_sequence_;
  std::vector<int64_t> latest_kind_;
  std::deque<std::array<int64_t, 3>> outgoing_;  // announcement payloads in flight
  std::deque<MPI_Request> outgoing_requests_;
  MPI_Request abandoned_ = MPI_REQUEST_NULL;
};

}  // namespace segrun::dist
