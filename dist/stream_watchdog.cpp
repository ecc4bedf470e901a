// Watchdog for stream-ordered collectives: see stream_watchdog.h.
#include "dist/stream_watchdog.h"

#include <algorithm>
#include <cmath>
#include <utility>

namespace segrun::dist {
namespace {

// "collective allreduce #12 (bucket 2, 4.1 MB) on communicator grad-sync (nccl)"
std::string describe(const CollectiveInfo& info, const StreamWatchdogOptions& options) {
  return describe_collective(info, options.name) + " (" + options.backend + ")";
}

}  // namespace

std::string stream_timeout_message(const CollectiveInfo& info, const StreamWatchdogOptions& options) {
  return describe(info, options) + " did not complete within " + format_seconds(options.timeout_s) + " on rank " +
         std::to_string(options.rank) +
         ": a rank did not join it (stopped, stuck or on another collective) or a GPU or a link hung; the "
         "first error is in the other ranks' logs (logs/rank-<r>.log in the run directory), NCCL_DEBUG=INFO "
         "tells more (dist.timeout_s)";
}

std::string stream_error_message(const CollectiveInfo& info, const StreamWatchdogOptions& options,
                                 const std::string& error) {
  return describe(info, options) + " failed on rank " + std::to_string(options.rank) + ": " + error;
}

std::string stream_stall_warning(const CollectiveInfo& info, const StreamWatchdogOptions& options, double waited_s) {
  std::string text = describe(info, options) + " has not completed after " + format_seconds(std::floor(waited_s)) +
                     " on rank " + std::to_string(options.rank);
  if (options.timeout_s > 0) text += " (timeout at " + format_seconds(options.timeout_s) + ", dist.timeout_s)";
  return text;
}

StreamWatchdog::StreamWatchdog(StreamWatchdogOptions options, Report on_warning, Report on_failure)
    : options_(std::move(options)),
      on_warning_(std::move(on_warning)),
      on_failure_(std::move(on_failure)),
      start_(std::chrono::steady_clock::now()),
      thread_([this] { run(); }) {}

StreamWatchdog::~StreamWatchdog() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

double StreamWatchdog::now_s() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void StreamWatchdog::watch(const CollectiveInfo& info, Probe probe) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queue_.push_back({info, std::move(probe), now_s()});
  }
  wake_.notify_all();
}

size_t StreamWatchdog::pending() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return queue_.size();
}

bool StreamWatchdog::failed() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return failed_;
}

void StreamWatchdog::run() {
  const double warn_after =
      options_.timeout_s > 0 ? std::min(options_.warn_after_s, options_.timeout_s / 2) : options_.warn_after_s;
  const auto poll = std::chrono::duration<double>(options_.poll_s);
  double previous_done_s = 0;  // when the collective before the front one was seen complete
  bool warned = false;         // about the front one
  std::unique_lock<std::mutex> lock(mutex_);
  while (true) {
    wake_.wait(lock, [&] { return stop_ || !queue_.empty(); });
    if (stop_) return;
    // Only this thread pops, and push_back keeps references to other elements valid.
    const Entry& front = queue_.front();
    lock.unlock();
    const ProbeResult result = front.probe();
    const double now = now_s();
    std::string failure, warning;
    lock.lock();
    const double waited = now - std::max(front.issued_s, previous_done_s);
    if (result.state == ProbeResult::State::kDone) {
      previous_done_s = now;
      warned = false;
      queue_.pop_front();
      continue;  // the next one may be done too
    }
    if (result.state == ProbeResult::State::kFailed) {
      failure = stream_error_message(front.info, options_, result.error);
    } else if (options_.timeout_s > 0 && waited > options_.timeout_s) {
      failure = stream_timeout_message(front.info, options_);
    } else if (!warned && warn_after > 0 && waited > warn_after) {
      warned = true;
      warning = stream_stall_warning(front.info, options_, waited);
    }
    if (!failure.empty()) {
      failed_ = true;
      lock.unlock();
      on_failure_(failure);
      return;
    }
    if (!warning.empty()) {
      lock.unlock();
      on_warning_(warning);
      lock.lock();
    }
    wake_.wait_for(lock, poll, [&] { return stop_; });
  }
}

}  // namespace segrun::dist
