#pragma once
// Counter-based random streams. Every random choice about a sample (augmentation, crop, flip,
// batch-drop draws) must be a function of (seed, epoch, sample index, purpose) and never of the
// rank, the worker thread or the order of arrival; that is what makes N ranks x batch b the same
// computation as 1 rank x batch N*b. SampleRng derives an independent generator from such a key.
// Not thread-safe per object; create one per sample (construction is a few hash rounds).

#include <cstdint>
#include <random>

namespace segrun {

// SplitMix64 finalizer: a bijective 64-bit mixer with good avalanche.
inline uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

inline uint64_t hash_key(uint64_t seed, uint64_t a, uint64_t b = 0, uint64_t c = 0) {
  uint64_t h = mix64(seed);
  h = mix64(h ^ a);
  h = mix64(h ^ (b + 0x632BE59BD9B4E019ull));
  h = mix64(h ^ (c + 0x8CB92BA72F3D8DD7ull));
  return h;
}

// Purposes keep the streams of different consumers apart.
enum class RngPurpose : uint64_t { kShuffle = 1, kAugment = 2, kBatchDrop = 3, kSynth = 4, kInit = 5, kModel = 6 };

class SampleRng {
 public:
  SampleRng(uint64_t seed, uint64_t epoch, uint64_t index, RngPurpose purpose)
      : engine_(hash_key(seed, epoch, index, static_cast<uint64_t>(purpose))) {}
  explicit SampleRng(uint64_t state) : engine_(state) {}

  // Uniform double in [lo, hi).
  double uniform(double lo = 0.0, double hi = 1.0) {
    return lo + (hi - lo) * (static_cast<double>(engine_() >> 11) * 0x1.0p-53);
  }
  // Uniform integer in [lo, hi) (numpy randint convention); hi > lo.
  int64_t randint(int64_t lo, int64_t hi) {
    uint64_t span = static_cast<uint64_t>(hi - lo);
    return lo + static_cast<int64_t>(engine_() % span);
  }
  bool bernoulli(double p) { return uniform() < p; }
  std::mt19937_64& engine() { return engine_; }

 private:
  std::mt19937_64 engine_;
};

}  // namespace segrun
