#include "data/loader.h"

#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <map>
#include <mutex>
#include <thread>

#include "core/error.h"
#include "core/rng.h"
#include "data/store.h"
#include "dist/device.h"

namespace segrun::data {

std::vector<int64_t> epoch_permutation(uint64_t seed, int64_t epoch, int64_t n) {
  std::vector<int64_t> perm(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) perm[static_cast<size_t>(i)] = i;
  SampleRng rng(seed, static_cast<uint64_t>(epoch), 0, RngPurpose::kShuffle);
  for (int64_t i = n - 1; i > 0; --i) {  // Fisher-Yates
    const int64_t j = rng.randint(0, i + 1);
    std::swap(perm[static_cast<size_t>(i)], perm[static_cast<size_t>(j)]);
  }
  return perm;
}

namespace {

// HWC float32 (RGB) -> CHW at `dst`: cv::split into three planes that wrap `dst` (vectorized;
// a per-element loop was ~12 % of a 512x512 sample's time, bench/data_pipeline.cpp).
void copy_chw(const cv::Mat& image, float* dst) {
  const int h = image.rows, w = image.cols;
  cv::Mat planes[3];
  for (int c = 0; c < 3; ++c) planes[c] = cv::Mat(h, w, CV_32F, dst + static_cast<int64_t>(c) * h * w);
  cv::split(image, planes);
  SEGRUN_CHECK(planes[0].ptr<float>() == dst, DataError, "copy_chw: cv::split reallocated its output");
}

void copy_label(const cv::Mat& label, uint8_t* dst) {
  for (int y = 0; y < label.rows; ++y)
    std::memcpy(dst + static_cast<int64_t>(y) * label.cols, label.ptr<uint8_t>(y), static_cast<size_t>(label.cols));
}

// A label map's values must be classes (0..classes-1) or the ignore index: a store's are by
// construction (data/pack.cpp maps every raw value), so this only catches a store that was
// altered behind its checksums -- here, naming the record, rather than in the loss.
void check_label_values(const cv::Mat& label, const StoreReader& store, const std::string& what) {
  const int classes = store.num_classes(), ignore = store.ignore_index();
  for (int y = 0; y < label.rows; ++y) {
    const uint8_t* row = label.ptr<uint8_t>(y);
    for (int x = 0; x < label.cols; ++x)
      SEGRUN_CHECK(row[x] < classes || row[x] == ignore, DataError,
                   what << ": label value " << static_cast<int>(row[x]) << " at (" << y << ", " << x
                        << ") is neither a class (0.." << classes - 1 << ") nor the ignore index " << ignore);
  }
}

}  // namespace

struct TrainLoader::State {
  std::shared_ptr<const StoreReader> store;
  TrainTransformOptions transform;
  int rank = 0, world = 1, batch = 1, prefetch = 1;
  int accumulate = 1;  // micro-batches per optimizer step (see loader.h)
  uint64_t seed = 0;
  bool skip_corrupt = false;
  int64_t n = 0;
  torch::Device device = torch::kCPU;  // where the batches go: CUDA -> pinned host batches

  struct Pending {
    Batch batch;
    int filled = 0;
    std::exception_ptr error;
  };

  mutable std::mutex mutex;
  std::condition_variable work_cv, ready_cv;
  std::map<int64_t, Pending> pending;  // step -> batch under construction or ready
  int64_t next_claim = 0;              // next sample number k to hand out
  int64_t next_step = 0;               // next step to deliver
  bool stop = false;
  std::atomic<int64_t> skipped{0};
  std::vector<std::thread> threads;

  // Cache of recent epoch permutations.
  std::mutex perm_mutex;
  std::map<int64_t, std::shared_ptr<const std::vector<int64_t>>> perms;

  std::shared_ptr<const std::vector<int64_t>> permutation(int64_t epoch) {
    std::lock_guard<std::mutex> lock(perm_mutex);
    auto it = perms.find(epoch);
    if (it != perms.end()) return it->second;
    auto perm = std::make_shared<const std::vector<int64_t>>(epoch_permutation(seed, epoch, n));
    perms[epoch] = perm;
    while (perms.size() > 4) perms.erase(perms.begin());
    return perm;
  }

  // Sample k is slot j of micro-batch m of optimizer step t: see loader.h.
  int64_t position_of(int64_t k) const {
    const int64_t micro = k / batch, j = k % batch;
    const int64_t t = micro / accumulate, m = micro % accumulate;
    const int64_t virtual_world = static_cast<int64_t>(world) * accumulate;
    return rank + m * world + (t * batch + j) * virtual_world;
  }

  // Reads and transforms the sample at global position p; returns the record used. `raw` is the
  // worker's record buffer, reused from sample to sample.
  int64_t produce(int64_t p, RawRecord* raw, cv::Mat* image, cv::Mat* label) {
    const int64_t epoch = p / n, slot = p % n;
    auto perm = permutation(epoch);
    for (int64_t j = 0; j < n; ++j) {
      const int64_t record = (*perm)[static_cast<size_t>((slot + j) % n)];
      try {
        store->read(record, raw, /*verify=*/true);
      } catch (const CorruptRecordError&) {
        if (!skip_corrupt) throw;
        skipped.fetch_add(1);
        continue;
      }
      const std::string what = store->locate(record).first + ": record " + raw->name;
      cv::Mat bgr = decode_image(raw->image_bytes, what);
      cv::Mat seg = decode_label(raw->label_bytes, what);
      check_label_values(seg, *store, what);
      SampleRng rng(seed, static_cast<uint64_t>(epoch), static_cast<uint64_t>(record), RngPurpose::kAugment);
      Sample s = train_transform(bgr, seg, transform, rng);
      *image = s.image;
      *label = s.label;
      return record;
    }
    SEGRUN_THROW(DataError, store->directory() << ": every record failed its CRC check");
  }

  void worker() {
    dist::bind_thread(device);  // pinned memory belongs to the consumer's device
    const int h = transform.crop[0], w = transform.crop[1];
    const auto image_options = torch::TensorOptions().dtype(torch::kFloat32).pinned_memory(device.is_cuda());
    const auto label_options = torch::TensorOptions().dtype(torch::kUInt8).pinned_memory(device.is_cuda());
    RawRecord raw;
    while (true) {
      int64_t k = 0;
      {
        std::unique_lock<std::mutex> lock(mutex);
        work_cv.wait(lock, [&] { return stop || next_claim < (next_step + prefetch) * batch; });
        if (stop) return;
        k = next_claim++;
      }
      const int64_t step = k / batch;
      const int slot = static_cast<int>(k % batch);
      cv::Mat image, label;
      int64_t record = -1;
      std::exception_ptr error;
      try {
        record = produce(position_of(k), &raw, &image, &label);
        // Every slot is written whole (the batch is allocated uninitialised).
        SEGRUN_CHECK(
            image.rows == h && image.cols == w && label.rows == h && label.cols == w, DataError,
            "train transform: a " << image.cols << "x" << image.rows << " sample for the crop " << w << "x" << h);
      } catch (...) {
        error = std::current_exception();
      }
      std::unique_lock<std::mutex> lock(mutex);
      Pending& p = pending[step];
      if (!p.batch.images.defined()) {
        // Uninitialised: each slot is written whole, and a batch with a failed slot is never
        // handed out. (No fill of ~80 MB for 16 crops of 512x512 while the lock is held.)
        p.batch.images = torch::empty({batch, 3, h, w}, image_options);
        p.batch.labels = torch::empty({batch, h, w}, label_options);
        p.batch.indices.assign(static_cast<size_t>(batch), -1);
        p.batch.positions.assign(static_cast<size_t>(batch), -1);
        p.batch.step = step;
      }
      if (error) {
        if (!p.error) p.error = error;
      } else {
        torch::Tensor images = p.batch.images, labels = p.batch.labels;
        lock.unlock();  // slices are disjoint: copy without the lock
        copy_chw(image, images[slot].data_ptr<float>());
        copy_label(label, labels[slot].data_ptr<uint8_t>());
        lock.lock();
        Pending& q = pending[step];
        q.batch.indices[static_cast<size_t>(slot)] = record;
        q.batch.positions[static_cast<size_t>(slot)] = position_of(k);
      }
      Pending& q = pending[step];
      if (++q.filled == batch) ready_cv.notify_all();
    }
  }
};

TrainLoader::TrainLoader(std::shared_ptr<const StoreReader> store, const DataConfig& config, int rank, int world,
                         uint64_t seed, int64_t start_step, const torch::Device& device, int accumulate)
    : state_(std::make_unique<State>()) {
  State& s = *state_;
  SEGRUN_CHECK(store != nullptr, DataError, "TrainLoader: no store");
  SEGRUN_CHECK(store->size() > 0, DataError, store->directory() << ": store has no records");
  SEGRUN_CHECK(world >= 1 && rank >= 0 && rank < world, DataError,
               "TrainLoader: rank " << rank << " outside world of " << world);
  SEGRUN_CHECK(config.batch_per_rank >= 1, DataError, "data.batch_per_rank must be >= 1");
  SEGRUN_CHECK(config.on_corrupt == "fail" || config.on_corrupt == "skip", DataError,
               "data.on_corrupt: '" << config.on_corrupt << "' is not one of fail, skip");
  SEGRUN_CHECK(start_step >= 0, DataError, "TrainLoader: negative start step " << start_step);
  SEGRUN_CHECK(accumulate >= 1, DataError, "train.accumulate must be >= 1 (got " << accumulate << ")");
  s.store = std::move(store);
  s.transform = train_transform_options(config);
  s.transform.ignore_index = s.store->ignore_index();
  s.rank = rank;
  s.world = world;
  s.accumulate = accumulate;
  s.batch = config.batch_per_rank;
  s.prefetch = std::max(1, config.prefetch);
  s.seed = seed;
  s.skip_corrupt = config.on_corrupt == "skip";
  s.n = s.store->size();
  s.next_step = start_step;
  s.next_claim = start_step * s.batch;
  s.device = device;
  const int workers = std::max(1, config.workers);
  for (int i = 0; i < workers; ++i) s.threads.emplace_back([this] { state_->worker(); });
}

TrainLoader::~TrainLoader() {
  {
    std::lock_guard<std::mutex> lock(state_->mutex);
    state_->stop = true;
  }
  state_->work_cv.notify_all();
  state_->ready_cv.notify_all();
  for (auto& t : state_->threads) t.join();
}

Batch TrainLoader::next() {
  State& s = *state_;
  std::unique_lock<std::mutex> lock(s.mutex);
  const int64_t step = s.next_step;
  s.ready_cv.wait(lock, [&] {
    auto it = s.pending.find(step);
    return it != s.pending.end() && it->second.filled == s.batch;
  });
  State::Pending p = std::move(s.pending[step]);
  s.pending.erase(step);
  ++s.next_step;
  lock.unlock();
  s.work_cv.notify_all();
  if (p.error) std::rethrow_exception(p.error);
  return std::move(p.batch);
}

int64_t TrainLoader::skipped() const { return state_->skipped.load(); }

int64_t TrainLoader::next_step() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->next_step;
}

int TrainLoader::batch_size() const { return state_->batch; }

int64_t TrainLoader::position_of(int64_t k) const { return state_->position_of(k); }

ValSample load_val_sample(const StoreReader& store, int64_t index, const TestTransformOptions& options) {
  RawRecord raw = store.read(index, /*verify=*/true);
  const std::string what = store.locate(index).first + ": record " + raw.name;
  cv::Mat bgr = decode_image(raw.image_bytes, what);
  cv::Mat seg = decode_label(raw.label_bytes, what);
  check_label_values(seg, store, what);
  ValSample v;
  v.index = index;
  v.name = raw.name;
  v.original = bgr;
  v.image = test_image_tensor(bgr, options);
  torch::Tensor label = torch::empty({seg.rows, seg.cols}, torch::kUInt8);
  copy_label(seg, label.data_ptr<uint8_t>());
  v.label = label.to(torch::kInt64);
  return v;
}

torch::Tensor test_image_tensor(const cv::Mat& image_bgr, const TestTransformOptions& options) {
  const cv::Mat image = test_transform(image_bgr, options);
  torch::Tensor tensor = torch::empty({1, 3, image.rows, image.cols}, torch::kFloat32);
  copy_chw(image, tensor.data_ptr<float>());
  return tensor;
}

torch::Tensor original_image_tensor(const cv::Mat& image_bgr, const TestTransformOptions& options) {
  const cv::Mat image = normalize_image(image_bgr, options.mean, options.std);
  torch::Tensor tensor = torch::empty({1, 3, image.rows, image.cols}, torch::kFloat32);
  copy_chw(image, tensor.data_ptr<float>());
  return tensor;
}

std::vector<int64_t> val_indices(int64_t size, int rank, int world) {
  SEGRUN_CHECK(world >= 1 && rank >= 0 && rank < world, DataError,
               "val_indices: rank " << rank << " outside world of " << world);
  std::vector<int64_t> out;
  for (int64_t i = rank; i < size; i += world) out.push_back(i);
  return out;
}

}  // namespace segrun::data
