// Keyed random draws: see sample_random.h.
#include "models/sample_random.h"

#include <limits>

#include "core/error.h"
#include "core/rng.h"

namespace segrun::models {

uint64_t stream_id(RandomSite site, uint64_t index) { return hash_key(static_cast<uint64_t>(site), index); }

std::vector<uint64_t> SampleRandom::keys(int64_t rows) const {
  if (!keys_.empty()) {
    SEGRUN_CHECK(static_cast<int64_t>(keys_.size()) == rows, ModelError,
                 "sample keys: " << keys_.size() << " keys set for a batch of " << rows);
    return keys_;
  }
  const torch::Tensor drawn = torch::randint(std::numeric_limits<int64_t>::max(), {rows}, torch::kLong);
  std::vector<uint64_t> keys(static_cast<size_t>(rows));
  for (int64_t b = 0; b < rows; ++b) keys[static_cast<size_t>(b)] = static_cast<uint64_t>(drawn[b].item<int64_t>());
  return keys;
}

torch::Generator SampleRandom::generator(uint64_t key, uint64_t stream, const torch::Device& device) {
  torch::Generator generator = at::globalContext().defaultGenerator(device).clone();
  generator.set_current_seed(hash_key(key, stream));
  return generator;
}

torch::Tensor SampleRandom::uniform(int64_t rows, uint64_t stream, c10::IntArrayRef shape,
                                    const torch::TensorOptions& options) const {
  const std::vector<uint64_t> row_keys = keys(rows);
  std::vector<int64_t> full{rows};
  full.insert(full.end(), shape.begin(), shape.end());
  torch::Tensor out = torch::empty(full, options);
  for (int64_t b = 0; b < rows; ++b) {
    torch::Generator g = generator(row_keys[static_cast<size_t>(b)], stream, options.device());
    out[b].uniform_(0.0, 1.0, g);
  }
  return out;
}

torch::Tensor keyed_dropout2d(const torch::Tensor& x, double p, bool training, const SampleRandom& random) {
  if (!training || p <= 0.0) return x;
  SEGRUN_CHECK(x.dim() == 4, ModelError, "dropout2d: expected [B, C, H, W], got " << x.sizes());
  const torch::Tensor u =
      random.uniform(x.size(0), stream_id(RandomSite::kDropout), {x.size(1)}, x.options().dtype(torch::kFloat32));
  const torch::Tensor mask = (u >= p).to(x.scalar_type()).div_(1.0 - p).view({x.size(0), x.size(1), 1, 1});
  return x * mask;
}

}  // namespace segrun::models
