#include "dist/grad_sync.h"

#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/utils/lambda_post_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <chrono>
#include <condition_variable>
#include <exception>
#include <limits>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "core/error.h"
#include "core/log.h"
#include "dist/device.h"

namespace segrun::dist {
namespace {

using Clock = std::chrono::steady_clock;
constexpr size_t kNoBucket = std::numeric_limits<size_t>::max();

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// The watchdog's note for a bucket's all-reduce: "bucket 2 of 9".
std::string bucket_note(size_t bucket, size_t buckets) {
  return "bucket " + std::to_string(bucket) + " of " + std::to_string(buckets);
}

std::vector<std::vector<size_t>> assign_buckets(const std::vector<torch::Tensor>& parameters, double bucket_mb) {
  std::vector<std::vector<size_t>> buckets;
  const double cap_bytes = bucket_mb * 1024.0 * 1024.0;
  std::vector<size_t> current;
  double current_bytes = 0;
  torch::ScalarType current_type = torch::kFloat32;
  for (size_t k = parameters.size(); k-- > 0;) {
    const auto& p = parameters[k];
    if (!p.requires_grad()) continue;
    double bytes = static_cast<double>(p.numel() * p.element_size());
    bool type_change = !current.empty() && p.scalar_type() != current_type;
    if (!current.empty() && (type_change || current_bytes + bytes > cap_bytes)) {
      buckets.push_back(std::move(current));
      current.clear();
      current_bytes = 0;
    }
    current.push_back(k);
    current_bytes += bytes;
    current_type = p.scalar_type();
  }
  if (!current.empty()) buckets.push_back(std::move(current));
  return buckets;
}

}  // namespace

// State shared by the owner (main thread), the autograd hooks (the backward thread, which is
// the main thread on CPU) and the communication thread, if any. `mutex` guards the per-step fields.
struct GradientSync::Shared {
  std::vector<torch::Tensor> params;
  std::vector<std::vector<size_t>> buckets;
  std::vector<size_t> bucket_of;
  std::vector<torch::Tensor> flats;  // one flat buffer per bucket
  int world = 1;
  bool from_backward = false;
  // From backward: the owner's communicator; else the duplicate of the communication thread.
  std::shared_ptr<Communicator> comm;
  std::vector<std::unique_ptr<PendingCollective>> started;  // from backward: per bucket, this step

  std::mutex mutex;
  std::condition_variable cv;
  std::vector<char> param_ready;
  std::vector<size_t> pending;  // per bucket: parameters not yet ready
  std::vector<char> bucket_ready;
  size_t next = 0;  // next bucket to reduce (from backward: to start)
  bool no_sync = false;
  bool stop = false;
  std::exception_ptr error;
  double comm_seconds = 0;
  std::thread thread;
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators;
  std::vector<uintptr_t> hook_keys;

  void reset_step() {
    std::fill(param_ready.begin(), param_ready.end(), 0);
    for (size_t b = 0; b < buckets.size(); ++b) pending[b] = buckets[b].size();
    std::fill(bucket_ready.begin(), bucket_ready.end(), 0);
    next = 0;
    comm_seconds = 0;
  }

  // Copies the bucket's gradients into its flat buffer (zeros for undefined ones).
  void pack(size_t b) {
    torch::NoGradGuard no_grad;
    int64_t offset = 0;
    for (size_t k : buckets[b]) {
      const auto& g = params[k].grad();
      const int64_t n = params[k].numel();
      auto slice = flats[b].slice(0, offset, offset + n);
      if (g.defined())
        slice.copy_(g.reshape({-1}));
      else
        slice.zero_();
      offset += n;
    }
  }

  // Averages the reduced buffer and writes it back into .grad.
  void unpack(size_t b) {
    torch::NoGradGuard no_grad;
    flats[b].div_(world);
    int64_t offset = 0;
    for (size_t k : buckets[b]) {
      auto& p = params[k];
      const int64_t n = p.numel();
      auto slice = flats[b].slice(0, offset, offset + n).view(p.sizes());
      if (p.grad().defined())
        p.mutable_grad().copy_(slice);
      else
        p.mutable_grad() = slice.clone();
      offset += n;
    }
  }

  // From backward: starts, in index order, every ready bucket whose predecessors have started.
  // Called with `mutex` held, on the backward thread or (for the rest) in synchronize(). A
  // failure fails the step for good (`error`): a bucket is never issued twice on one rank.
  void start_ready_buckets() {
    if (error) std::rethrow_exception(error);
    while (next < buckets.size() && bucket_ready[next]) {
      const size_t b = next++;
      try {
        pack(b);
        const auto t0 = Clock::now();
        started[b] = comm->allreduce_start(flats[b], ReduceOp::kSum, bucket_note(b, buckets.size()));
        comm_seconds += seconds_since(t0);
      } catch (...) {
        error = std::current_exception();
        throw;
      }
    }
  }

  // From backward, at the end of the step: the compute stream waits for every bucket, whose
  // averages are then written back into .grad. Called with `mutex` held.
  void finish_started_buckets() {
    start_ready_buckets();  // every bucket is ready now
    try {
      for (size_t b = 0; b < buckets.size(); ++b) {
        started[b]->wait();
        started[b].reset();
        unpack(b);
      }
    } catch (...) {
      error = std::current_exception();
      throw;
    }
  }

  void on_gradient_ready(size_t k) {
    std::unique_lock<std::mutex> lock(mutex);
    if (no_sync || stop) return;
    const size_t b = bucket_of[k];
    if (b == kNoBucket) return;
    if (param_ready[k])
      throw DistError("gradient sync: parameter " + std::to_string(k) +
                      " received a second gradient before synchronize(); call synchronize() "
                      "after each backward, or accumulate inside no_sync()");
    param_ready[k] = 1;
    if (--pending[b] > 0) return;
    if (from_backward) {
      bucket_ready[b] = 1;
      start_ready_buckets();
      return;
    }
    lock.unlock();
    pack(b);  // the communication thread touches flats[b] only once bucket_ready[b] is set
    lock.lock();
    bucket_ready[b] = 1;
    cv.notify_all();
  }

  void run() {
    if (!params.empty()) bind_thread(params.front().device());
    const size_t n = buckets.size();
    for (;;) {
      size_t b;
      {
        std::unique_lock<std::mutex> lock(mutex);
        cv.wait(lock, [&] { return stop || (!error && next < n && bucket_ready[next]); });
        if (stop) return;
        b = next;
      }
      try {
        const auto t0 = Clock::now();
        comm->allreduce_noted(flats[b], ReduceOp::kSum, bucket_note(b, n));
        unpack(b);
        const double secs = seconds_since(t0);
        std::lock_guard<std::mutex> lock(mutex);
        comm_seconds += secs;
        ++next;
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex);
        error = std::current_exception();
      }
      cv.notify_all();
    }
  }
};

GradientSync::GradientSync(std::vector<torch::Tensor> parameters, std::shared_ptr<Communicator> comm, double bucket_mb)
    : GradientSync(std::move(parameters), std::move(comm), GradSyncOptions{bucket_mb, true}) {}

GradientSync::GradientSync(std::vector<torch::Tensor> parameters, std::shared_ptr<Communicator> comm,
                           const GradSyncOptions& options)
    : parameters_(std::move(parameters)), comm_(std::move(comm)), options_(options) {
  SEGRUN_CHECK(options_.bucket_mb > 0, ConfigError,
               "dist.bucket_mb: must be positive (got " << options_.bucket_mb << ")");
  buckets_ = assign_buckets(parameters_, options_.bucket_mb);
  const int world = comm_ ? comm_->size() : 1;
  if (world == 1 || !options_.overlap || buckets_.empty()) return;

  BucketLaunch launch = options_.launch;
  if (launch == BucketLaunch::kAuto) {
    // Only where every gradient is on one device whose collectives the backend starts
    // asynchronously: then every hook runs on that device's autograd thread, never beside it.
    const torch::Device device = parameters_[buckets_.front().front()].device();
    bool one_async_device = true;
    for (const auto& bucket : buckets_)
      for (size_t k : bucket)
        one_async_device =
            one_async_device && parameters_[k].device() == device && comm_->starts_asynchronously(parameters_[k]);
    launch = one_async_device ? BucketLaunch::kFromBackward : BucketLaunch::kCommunicationThread;
  }
  std::shared_ptr<Communicator> issuing = comm_;
  if (launch == BucketLaunch::kCommunicationThread) {
    try {
      issuing = comm_->duplicate("grad-sync");
    } catch (const DistError& e) {
      // This backend cannot run a second communicator: reduce inside synchronize(), and say so
      // (the run's config.toml says dist.overlap = true).
      log::warn("dist.overlap = true is not in effect: {}; the gradients are reduced after backward", e.what());
      return;
    }
  }
  auto shared = std::make_shared<Shared>();
  shared->params = parameters_;
  shared->buckets = buckets_;
  shared->world = world;
  shared->from_backward = launch == BucketLaunch::kFromBackward;
  shared->comm = std::move(issuing);
  shared->started.resize(buckets_.size());
  shared->bucket_of.assign(parameters_.size(), kNoBucket);
  for (size_t b = 0; b < buckets_.size(); ++b) {
    int64_t numel = 0;
    for (size_t k : buckets_[b]) {
      shared->bucket_of[k] = b;
      numel += parameters_[k].numel();
    }
    shared->flats.push_back(torch::empty({numel}, parameters_[buckets_[b].front()].options().requires_grad(false)));
  }
  shared->param_ready.assign(parameters_.size(), 0);
  shared->pending.assign(buckets_.size(), 0);
  shared->bucket_ready.assign(buckets_.size(), 0);
  shared->reset_step();

  // A post-hook on each leaf's gradient accumulator runs after .grad holds this backward's
  // gradient. The accumulators are kept alive here (a variable only holds a weak reference).
  std::weak_ptr<Shared> weak = shared;
  for (size_t k = 0; k < parameters_.size(); ++k) {
    const auto& p = parameters_[k];
    if (shared->bucket_of[k] == kNoBucket || !p.is_leaf()) continue;
    auto accumulator = torch::autograd::impl::grad_accumulator(p);
    if (!accumulator) continue;
    auto key = accumulator->add_post_hook(std::make_unique<torch::autograd::utils::LambdaPostHook>(
        [weak, k](const torch::autograd::variable_list& outputs, const torch::autograd::variable_list&) {
          if (auto s = weak.lock()) s->on_gradient_ready(k);
          return outputs;
        }));
    shared->accumulators.push_back(accumulator);
    shared->hook_keys.push_back(key);
  }
  // The thread holds its own reference, so it may outlive this object (see the destructor).
  if (!shared->from_backward) shared->thread = std::thread([keep = shared] { keep->run(); });
  shared_ = std::move(shared);
}

GradientSync::~GradientSync() {
  if (!shared_) return;
  {
    std::lock_guard<std::mutex> lock(shared_->mutex);
    shared_->stop = true;
  }
  shared_->cv.notify_all();
  for (size_t i = 0; i < shared_->accumulators.size(); ++i)
    shared_->accumulators[i]->del_post_hook(shared_->hook_keys[i]);
  if (!shared_->thread.joinable()) return;
  // Unwinding from an error mid-step: the thread may be inside a bucket all-reduce that the other
  // ranks will never join; joining would delay main's MPI_Abort until the watchdog deadline.
  if (std::uncaught_exceptions() > 0)
    shared_->thread.detach();
  else
    shared_->thread.join();
}

bool GradientSync::overlapping() const { return shared_ != nullptr; }

bool GradientSync::launches_from_backward() const { return shared_ && shared_->from_backward; }

GradientSync::NoSyncGuard::NoSyncGuard(GradientSync& owner) : owner_(owner) {
  ++owner_.no_sync_depth_;
  if (owner_.shared_) {
    std::lock_guard<std::mutex> lock(owner_.shared_->mutex);
    owner_.shared_->no_sync = true;
  }
}

GradientSync::NoSyncGuard::~NoSyncGuard() {
  --owner_.no_sync_depth_;
  if (owner_.shared_) {
    std::lock_guard<std::mutex> lock(owner_.shared_->mutex);
    owner_.shared_->no_sync = owner_.no_sync_depth_ > 0;
  }
}

void GradientSync::reduce_now() {
  const int world = comm_ ? comm_->size() : 1;
  torch::NoGradGuard no_grad;
  const auto t0 = Clock::now();
  for (size_t b = 0; b < buckets_.size(); ++b) {
    const auto& bucket = buckets_[b];
    std::vector<torch::Tensor> grads;
    grads.reserve(bucket.size());
    for (size_t k : bucket) {
      auto& p = parameters_[k];
      if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
      grads.push_back(p.grad());
    }
    if (world == 1) continue;
    std::vector<torch::Tensor> flat_views;
    flat_views.reserve(grads.size());
    for (auto& g : grads) flat_views.push_back(g.reshape({-1}));
    torch::Tensor flat = torch::cat(flat_views);
    comm_->allreduce_noted(flat, ReduceOp::kSum, bucket_note(b, buckets_.size()));
    flat.div_(world);
    int64_t offset = 0;
    for (auto& g : grads) {
      int64_t n = g.numel();
      g.copy_(flat.slice(0, offset, offset + n).view(g.sizes()));
      offset += n;
    }
  }
  stats_.comm_seconds = world > 1 ? seconds_since(t0) : 0;
  stats_.wait_seconds = stats_.comm_seconds;
  stats_.buckets_in_backward = 0;
}

void GradientSync::synchronize() {
  if (no_sync_depth_ > 0) return;
  if (!shared_) {
    reduce_now();
    return;
  }
  const auto t0 = Clock::now();
  auto& s = *shared_;
  std::unique_lock<std::mutex> lock(s.mutex);
  int launched = 0;
  if (s.from_backward)
    launched = static_cast<int>(s.next);
  else
    for (char r : s.bucket_ready) launched += r ? 1 : 0;
  // Parameters whose hook did not fire this step: their current .grad (zeros if none).
  {
    torch::NoGradGuard no_grad;
    for (size_t k = 0; k < parameters_.size(); ++k) {
      const size_t b = s.bucket_of[k];
      if (b == kNoBucket || s.param_ready[k]) continue;
      auto& p = parameters_[k];
      if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
      s.param_ready[k] = 1;
      if (--s.pending[b] == 0) {
        if (!s.from_backward) s.pack(b);  // from backward: packed when started
        s.bucket_ready[b] = 1;
      }
    }
  }
  if (s.from_backward) {
    s.finish_started_buckets();
  } else {
    s.cv.notify_all();
    s.cv.wait(lock, [&] { return s.error || s.next == s.buckets.size(); });
    if (s.error) std::rethrow_exception(s.error);  // the step cannot be completed: stays failed
  }
  stats_.comm_seconds = s.comm_seconds;
  stats_.buckets_in_backward = launched;
  s.reset_step();
  stats_.wait_seconds = seconds_since(t0);
}

void broadcast_module_state(torch::nn::Module& module, Communicator& comm, int root) {
  if (comm.size() == 1) return;
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> tensors;
  for (auto& p : module.parameters()) tensors.push_back(p);
  for (auto& b : module.buffers()) tensors.push_back(b);
  // One broadcast per dtype: pack, send, unpack.
  std::map<torch::ScalarType, std::vector<torch::Tensor>> by_type;
  for (auto& t : tensors) by_type[t.scalar_type()].push_back(t);
  for (auto& [type, group] : by_type) {
    std::vector<torch::Tensor> flat_views;
    for (auto& t : group) flat_views.push_back(t.reshape({-1}));
    torch::Tensor flat = torch::cat(flat_views);
    comm.broadcast(flat, root);
    int64_t offset = 0;
    for (auto& t : group) {
      int64_t n = t.numel();
      t.copy_(flat.slice(0, offset, offset + n).view(t.sizes()));
      offset += n;
    }
  }
}

}  // namespace segrun::dist
