#pragma once
// Watchdog for collectives that complete after the call returns, on a device stream (the nccl
// backend; private to dist/). The issuing thread hands each collective over with a probe that
// says whether it has completed; one background thread polls, in issue order (a stream completes
// its work in order), the oldest collective not yet seen complete:
//   - pending longer than warn_after_s (counted from when the collective before it completed, or
//     from its own issue if that is later): one early warning, `on_warning`;
//   - pending longer than timeout_s (> 0), or a probe reporting an error (a CUDA or NCCL error):
//     `on_failure` once, with a one-line message naming the collective, its sequence number, note
//     and size, the communicator, the rank and what to check. The watchdog stops polling then;
//     on_failure is meant to end the process (the nccl backend aborts its NCCL communicator and
//     the MPI world, as the mpi backend's TimeoutError does through main).
// The issuing thread only pushes into a queue: nothing is added to a collective's path but a
// mutex and a notify. The destructor stops the thread without reporting what is pending.
// Thread-safe: watch() from any thread; probes and reports run on the watchdog's thread.

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "dist/collective_info.h"

namespace segrun::dist {

struct ProbeResult {
  enum class State { kPending, kDone, kFailed };
  State state = State::kPending;
  std::string error;  // kFailed: what the library said
};

struct StreamWatchdogOptions {
  double timeout_s = 600.0;    // <= 0: no deadline (errors are still reported)
  double warn_after_s = 60.0;  // capped at timeout_s / 2
  double poll_s = 0.005;       // between two probes of a pending collective
  std::string name = "world";  // the communicator, in messages
  std::string backend = "nccl";
  int rank = 0;
};

// "collective allreduce #12 (bucket 2, 4.1 MB) on communicator grad-sync (nccl) did not complete
// within 600 s on rank 3: ..." (what to check follows). Pure function.
std::string stream_timeout_message(const CollectiveInfo& info, const StreamWatchdogOptions& options);
// "... failed on rank 3: <error>".
std::string stream_error_message(const CollectiveInfo& info, const StreamWatchdogOptions& options,
                                 const std::string& error);
// "... has not completed after 60 s on rank 3 (timeout at 600 s, dist.timeout_s)".
std::string stream_stall_warning(const CollectiveInfo& info, const StreamWatchdogOptions& options, double waited_s);

class StreamWatchdog {
 public:
  using Probe = std::function<ProbeResult()>;
  using Report = std::function<void(const std::string& message)>;

  StreamWatchdog(StreamWatchdogOptions options, Report on_warning, Report on_failure);
  ~StreamWatchdog();
  StreamWatchdog(const StreamWatchdog&) = delete;
  StreamWatchdog& operator=(const StreamWatchdog&) = delete;

  // Watches a collective just issued; `probe` is called on the watchdog's thread until it says
  // done or failed (after a failure, never again).
  void watch(const CollectiveInfo& info, Probe probe);
  // Collectives handed over and not yet seen complete.
  size_t pending() const;
  bool failed() const;

 private:
  struct Entry {
    CollectiveInfo info;
    Probe probe;
    double issued_s = 0;  // on the watchdog's clock
  };
  void run();
  double now_s() const;

  StreamWatchdogOptions options_;
  Report on_warning_;
  Report on_failure_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Entry> queue_;
  bool stop_ = false;
  bool failed_ = false;
  std::chrono::steady_clock::time_point start_;
  std::thread thread_;  // last: started once everything above is ready
};

}  // namespace segrun::dist
