#pragma once
// The training stream and validation samples.
//
// TrainLoader: an infinite, iteration-based stream of batches for one rank. With N records, the
// global sample position p maps to epoch e = p / N and record perm_e[p % N], where perm_e is a
// shuffle of 0..N-1 drawn from SampleRng(seed, e, 0, kShuffle). Rank r's k-th sample is position
// r + k * world; its batch s holds k in [s*b, (s+1)*b). Hence 1 rank x batch W*b sees exactly the
// union of W ranks x batch b at every step, and each sample's augmentation comes from
// SampleRng(seed, e, record, kAugment): batches do not depend on the rank layout, the number of
// worker threads or their timing.
// Gradient accumulation (`accumulate` = A micro-batches per optimizer step): the loader's steps
// are micro-batches, and micro-batch m of optimizer step t on rank r is what rank r + m * world
// of a world of world * A ranks takes at step t: positions (r + m * world) + (t*b + j) * world * A,
// j < b. So N ranks x batch b x A see, per optimizer step and per micro-batch, exactly the samples
// of N * A ranks x batch b.
// `workers` threads read + decode + transform samples into a bounded queue of `prefetch`
// batches; next() returns them strictly in step order. An exception in a worker is rethrown by
// next() at the step it belongs to. The destructor stops and joins the workers (never hangs, also
// when the consumer stops early). on_corrupt = "skip": a record failing its CRC is replaced by the
// next valid record of the same permutation (deterministic) and counted in skipped();
// "fail": next() throws the CRC DataError.
// next() is meant for one consumer thread.

#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/config.h"
#include "data/transforms.h"

namespace segrun::data {

class StoreReader;

struct Batch {
  torch::Tensor images;            // float32 [B, 3, H, W], normalized RGB
  torch::Tensor labels;            // uint8 [B, H, W], 255 = ignore (the models take int64: see below)
  std::vector<int64_t> indices;    // store record of each sample
  std::vector<int64_t> positions;  // each sample's position in the global data stream (see above)
  int64_t step = 0;
};

// perm_e: the shuffle of 0..n-1 for epoch e.
std::vector<int64_t> epoch_permutation(uint64_t seed, int64_t epoch, int64_t n);

class TrainLoader {
 public:
  // `device`: where the trainer uses the batches. For a CUDA device they are built in pinned
  // (page-locked) host memory, so the copy to the GPU can run asynchronously (non_blocking), and
  // the workers make that device current. Labels travel as uint8 (the stores' own type), 1/8 of
  // the int64 the models take: the trainer converts them on the device, after the copy.
  // `start_step` counts micro-batches (= optimizer steps x accumulate).
  TrainLoader(std::shared_ptr<const StoreReader> store, const DataConfig& config, int rank, int world, uint64_t seed,
              int64_t start_step = 0, const torch::Device& device = torch::kCPU, int accumulate = 1);
  ~TrainLoader();
  TrainLoader(const TrainLoader&) = delete;
  TrainLoader& operator=(const TrainLoader&) = delete;

  Batch next();
  int64_t skipped() const;    // corrupt records replaced so far (on_corrupt = "skip")
  int64_t next_step() const;  // step the next call to next() returns
  int batch_size() const;
  // Global sample position of this rank's k-th sample.
  int64_t position_of(int64_t k) const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

struct ValSample {
  torch::Tensor image;  // float32 [1, 3, h, w], resized keep-ratio to `scale` and normalized
  torch::Tensor label;  // int64 [H, W] at the ORIGINAL size, 255 = ignore
  cv::Mat original;     // the decoded image, BGR uint8 at the original size (for pictures)
  int64_t index = 0;
  std::string name;
};

ValSample load_val_sample(const StoreReader& store, int64_t index, const TestTransformOptions& options);
// A decoded BGR image through the same test pipeline: float32 [1, 3, h, w], resized keep-ratio
// to options.scale and normalized (ValSample::image of a record holding that image).
torch::Tensor test_image_tensor(const cv::Mat& image_bgr, const TestTransformOptions& options);
// The same, normalized at the image's own size (no resize): float32 [1, 3, H, W].
torch::Tensor original_image_tensor(const cv::Mat& image_bgr, const TestTransformOptions& options);
// Rank r's validation records: r, r + world, ... (no padding: every record evaluated once).
std::vector<int64_t> val_indices(int64_t size, int rank, int world);

}  // namespace segrun::data
