#pragma once
// Random draws keyed by sample, so that training does not depend on how the global batch is split
// over ranks (the invariant of docs/distributed.md). Before each training forward pass the trainer
// gives the model one key per row of its batch: hash(seed, iteration, the sample's position in the
// global data stream). A draw for row b at a call site (a "stream": dropout, batch drop, the
// matcher's points of decoder layer p, ...) comes from a generator on the tensor's device seeded
// with hash(key_b, stream): the same numbers for that sample whether it is trained on 1 rank in a
// batch of 2b or on 2 ranks in batches of b. Without keys (evaluation, direct calls in tests), each
// call draws fresh keys from LibTorch's default CPU generator, so torch::manual_seed still makes
// runs repeatable. One object is shared (shared_ptr) by a segmentor and the parts of it that draw.
// Not thread-safe: one forward pass at a time, as the segmentor itself.

#include <torch/torch.h>

#include <cstdint>
#include <vector>

namespace segrun::models {

// Call sites that draw; combined with an index (a decoder layer) by stream_id().
enum class RandomSite : uint64_t { kDropout = 1, kBatchDrop = 2, kMatchPoints = 3, kLossPoints = 4, kDropPath = 5 };
uint64_t stream_id(RandomSite site, uint64_t index = 0);

class SampleRandom {
 public:
  // One key per row of the coming batch; an empty vector removes them.
  void set_keys(std::vector<uint64_t> keys) { keys_ = std::move(keys); }

  // The keys of a batch of `rows` rows: the ones set (a batch of another size is a ModelError),
  // else `rows` fresh draws from LibTorch's default CPU generator.
  std::vector<uint64_t> keys(int64_t rows) const;

  // A generator of `device`'s type seeded with hash(key, stream).
  static torch::Generator generator(uint64_t key, uint64_t stream, const torch::Device& device);

  // Uniform floats in [0, 1), [rows, *shape]: row b drawn from generator(keys(rows)[b], stream).
  torch::Tensor uniform(int64_t rows, uint64_t stream, c10::IntArrayRef shape,
                        const torch::TensorOptions& options) const;

 private:
  std::vector<uint64_t> keys_;
};

// Dropout2d with keyed masks: in training, each channel of each image is zeroed with probability
// p (and the others scaled by 1 / (1 - p)), from `random`'s dropout stream; identity otherwise.
torch::Tensor keyed_dropout2d(const torch::Tensor& x, double p, bool training, const SampleRandom& random);

}  // namespace segrun::models
