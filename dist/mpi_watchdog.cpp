#include "dist/mpi_watchdog.h"

#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <thread>

#include "core/error.h"
#include "core/log.h"
#include "dist/mpi_check.h"

namespace segrun::dist {
namespace {

constexpr int kAnnounceTag = 7301;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

}  // namespace

std::string timeout_message(const CollectiveInfo& info, const std::string& communicator, double timeout_s, int rank,
                            const std::vector<PeerState>& peers, double own_stall_s) {
  std::string what = describe_collective(info, communicator) + " timed out after " + format_seconds(timeout_s) +
                     " on rank " + std::to_string(rank) + ": ";
  if (own_stall_s > 0) {
    char buf[160];
    std::snprintf(buf, sizeof(buf),
                  "this rank itself made no progress for %.0f s (stopped, swapped out or starved "
                  "of CPU); ",
                  own_stall_s);
    what += buf;
  }
  std::vector<const PeerState*> missing;
  for (const auto& p : peers)
    if (!p.arrived) missing.push_back(&p);
  if (missing.empty())
    return what +
           "every rank arrived but the collective did not complete; check the network "
           "and the MPI transport (OMPI_MCA_btl) between the hosts";
  std::string list, seen;
  for (const auto* p : missing) {
    list += (list.empty() ? "" : ", ") + std::to_string(p->rank);
    if (p->last_sequence >= 0)
      seen += std::string(seen.empty() ? "" : ", ") + "rank " + std::to_string(p->rank) + " last seen waiting in " +
              collective_name(p->last_kind) + " #" + std::to_string(p->last_sequence);
  }
  what += (missing.size() == 1 ? "rank" : "ranks");
  what += " [" + list + "] did not arrive";
  if (!seen.empty()) what += " (" + seen + ")";
  const int first = missing.front()->rank;
  what += "; check rank " + std::to_string(first) + "'s log (logs/rank-" + std::to_string(first) +
          ".log in the run directory) and whether it was killed or stalled";
  return what;
}

std::string stall_warning(const CollectiveInfo& info, const std::string& communicator, double waited_s,
                          double timeout_s, int rank, const std::vector<PeerState>& peers) {
  std::string what = describe_collective(info, communicator) + " has waited " + format_seconds(std::floor(waited_s)) +
                     " on rank " + std::to_string(rank) + " for ";
  std::string list;
  int count = 0;
  for (const auto& p : peers)
    if (!p.arrived) {
      list += (list.empty() ? "" : ", ") + std::to_string(p.rank);
      ++count;
    }
  what += count == 0 ? std::string("a collective every rank has joined")
                     : std::string(count == 1 ? "rank" : "ranks") + " [" + list + "]";
  if (timeout_s > 0) what += " (timeout at " + format_seconds(timeout_s) + ", dist.timeout_s)";
  return what;
}

CollectiveWatchdog::CollectiveWatchdog(MPI_Comm comm, WatchdogOptions options)
    : comm_(comm), options_(std::move(options)) {
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
  if (options_.timeout_s > 0) {
    options_.announce_after_s = std::min(options_.announce_after_s, options_.timeout_s / 4);
    options_.grace_s = std::min(options_.grace_s, options_.timeout_s / 4);
    options_.warn_after_s = std::min(options_.warn_after_s, options_.timeout_s / 2);
  }
  latest_sequence_.assign(static_cast<size_t>(size_), -1);
  latest_kind_.assign(static_cast<size_t>(size_), 0);
}

CollectiveWatchdog::~CollectiveWatchdog() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  // Announcements to dead or stalled peers may never complete: free the requests and, if any
  // is still in flight, deliberately keep its payload alive until the process ends.
  bool pending = false;
  for (auto& r : outgoing_requests_) {
    int done = 0;
    if (r != MPI_REQUEST_NULL) MPI_Test(&r, &done, MPI_STATUS_IGNORE);
    if (r != MPI_REQUEST_NULL && !done) {
      pending = true;
      MPI_Request_free(&r);
    }
  }
  if (pending) new std::deque<std::array<int64_t, 3>>(std::move(outgoing_));  // NOLINT: intended
}

bool CollectiveWatchdog::settle() {
  if (abandoned_ == MPI_REQUEST_NULL) return true;
  int done = 0;
  MPI_Test(&abandoned_, &done, MPI_STATUS_IGNORE);
  return done != 0;
}

CollectiveInfo CollectiveWatchdog::begin(CollectiveKind kind, int64_t bytes, const std::string& note) {
  if (broken_)
    throw DistError("communicator " + options_.name + " on rank " + std::to_string(rank_) +
                    " is unusable after a timed-out collective: " + broken_reason_);
  CollectiveInfo info;
  info.kind = kind;
  info.sequence = ++sequence_;
  info.bytes = bytes;
  info.note = note;
  return info;
}

void CollectiveWatchdog::drain() {
  for (;;) {
    int flag = 0;
    MPI_Status status;
    SEGRUN_MPI_CHECK(MPI_Iprobe(MPI_ANY_SOURCE, kAnnounceTag, comm_, &flag, &status), "MPI_Iprobe");
    if (!flag) break;
    std::array<int64_t, 3> msg{};
    SEGRUN_MPI_CHECK(MPI_Recv(msg.data(), 3, MPI_INT64_T, status.MPI_SOURCE, kAnnounceTag, comm_, MPI_STATUS_IGNORE),
                     "MPI_Recv(watchdog announcement)");
    auto src = static_cast<size_t>(status.MPI_SOURCE);
    if (msg[0] > latest_sequence_[src]) {
      latest_sequence_[src] = msg[0];
      latest_kind_[src] = msg[1];
    }
  }
  // Forget announcements that have left.
  while (!outgoing_requests_.empty()) {
    int done = 0;
    MPI_Test(&outgoing_requests_.front(), &done, MPI_STATUS_IGNORE);
    if (!done) break;
    outgoing_requests_.pop_front();
    outgoing_.pop_front();
  }
}

void CollectiveWatchdog::announce(const CollectiveInfo& info) {
  // One payload per request (outgoing_ and outgoing_requests_ stay aligned); deque elements
  // never move, so each buffer lives until its send completes.
  for (int peer = 0; peer < size_; ++peer) {
    if (peer == rank_) continue;
    outgoing_.push_back({static_cast<int64_t>(info.sequence), static_cast<int64_t>(info.kind), info.bytes});
    MPI_Request request = MPI_REQUEST_NULL;
    SEGRUN_MPI_CHECK(MPI_Isend(outgoing_.back().data(), 3, MPI_INT64_T, peer, kAnnounceTag, comm_, &request),
                     "MPI_Isend(watchdog announcement)");
    outgoing_requests_.push_back(request);
  }
}

void CollectiveWatchdog::wait(MPI_Request& request, const CollectiveInfo& info) {
  drain();
  auto start = Clock::now();
  bool announced = false;
  bool warned = false;
  auto last_drain = start;
  auto last_poll = start;
  double own_stall = 0;  // longest gap between two polls: this process was not running
  for (;;) {
    const auto poll = Clock::now();
    const double gap = std::chrono::duration<double>(poll - last_poll).count();
    own_stall = std::max(own_stall, gap);
    last_poll = poll;
    // This process itself was not running (stopped, suspended, starved): the peers are not to
    // blame for that time, so the deadline restarts.
    if (gap > std::max(1.0, options_.grace_s)) start = poll;
    int done = 0;
    int rc = MPI_Test(&request, &done, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) {
      broken_ = true;
      broken_reason_ = "MPI error in " + std::string(collective_name(info.kind)) + " #" + std::to_string(info.sequence);
      throw_mpi_error(rc, (std::string(collective_name(info.kind)) + " #" + std::to_string(info.sequence) +
                           " on communicator " + options_.name)
                              .c_str());
    }
    if (done) return;
    const double waited = seconds_since(start);
    if (size_ > 1 && !announced && waited > options_.announce_after_s) {
      announce(info);
      announced = true;
    }
    if (announced && seconds_since(last_drain) > 0.1) {
      drain();
      last_drain = Clock::now();
    }
    if (size_ > 1 && !warned && waited > options_.warn_after_s) {
      drain();
      log::warn("{}", stall_warning(info, options_.name, waited, options_.timeout_s, rank_, peer_states(info)));
      warned = true;
    }
    if (options_.timeout_s > 0 && waited > options_.timeout_s + options_.grace_s)
      expire(request, info, own_stall > options_.grace_s ? own_stall : 0);
    // Spin briefly (small collectives finish in microseconds), then yield the core to compute
    // threads, then sleep: a rank waiting for a straggler must not steal its peer's CPU.
    if (waited < 1e-3) continue;
    if (waited < 0.05)
      sched_yield();
    else
      std::this_thread::sleep_for(std::chrono::microseconds(500));
  }
}

std::vector<PeerState> CollectiveWatchdog::peer_states(const CollectiveInfo& info) const {
  std::vector<PeerState> peers;
  for (int p = 0; p < size_; ++p) {
    if (p == rank_) continue;
    PeerState s;
    s.rank = p;
    s.last_sequence = latest_sequence_[static_cast<size_t>(p)];
    s.last_kind = static_cast<CollectiveKind>(latest_kind_[static_cast<size_t>(p)]);
    s.arrived = s.last_sequence >= static_cast<int64_t>(info.sequence);
    peers.push_back(s);
  }
  return peers;
}

void CollectiveWatchdog::expire(MPI_Request& request, const CollectiveInfo& info, double own_stall_s) {
  drain();
  std::vector<PeerState> peers = peer_states(info);
  std::string message = timeout_message(info, options_.name, options_.timeout_s, rank_, peers, own_stall_s);
  broken_ = true;
  broken_reason_ = message;
  abandoned_ = request;
  request = MPI_REQUEST_NULL;
  log::error("{}", message);
  log::flush();
  throw TimeoutError(message);
}

}  // namespace segrun::dist
