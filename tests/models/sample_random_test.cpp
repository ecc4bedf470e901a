// Keyed random draws (models/sample_random.h): a sample draws the same numbers whatever batch it
// is in, different streams and keys draw different numbers, and without keys the draws follow
// torch::manual_seed. The dropout masks are Dropout2d's: whole channels, scaled by 1 / (1 - p).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "core/error.h"
#include "models/sample_random.h"

namespace segrun::models {
namespace {

TEST(SampleRandom, ASampleDrawsTheSameInAnyBatch) {
  SampleRandom pair, single;
  pair.set_keys({11, 22});
  single.set_keys({22});
  const uint64_t stream = stream_id(RandomSite::kLossPoints, 3);
  const torch::Tensor a = pair.uniform(2, stream, {5, 2}, torch::kFloat32);
  const torch::Tensor b = single.uniform(1, stream, {5, 2}, torch::kFloat32);
  ASSERT_EQ(a.sizes(), (std::vector<int64_t>{2, 5, 2}));
  EXPECT_TRUE(torch::equal(a[1], b[0]));
  EXPECT_FALSE(torch::equal(a[0], a[1]));  // keys differ
  EXPECT_FALSE(torch::equal(b, single.uniform(1, stream_id(RandomSite::kLossPoints, 4), {5, 2}, torch::kFloat32)));
  EXPECT_TRUE(a.ge(0).all().item<bool>() && a.lt(1).all().item<bool>());
  EXPECT_THROW(pair.uniform(3, stream, {1}, torch::kFloat32), ModelError);  // keys for another batch
}

TEST(SampleRandom, WithoutKeysDrawsFollowTheGlobalSeed) {
  SampleRandom random;
  torch::manual_seed(5);
  const torch::Tensor first = random.uniform(2, 1, {4}, torch::kFloat32);
  torch::manual_seed(5);
  EXPECT_TRUE(torch::equal(first, random.uniform(2, 1, {4}, torch::kFloat32)));
  EXPECT_FALSE(torch::equal(first, random.uniform(2, 1, {4}, torch::kFloat32)));
}

TEST(SampleRandom, KeyedDropout2dDropsWholeChannelsPerSample) {
  SampleRandom random;
  random.set_keys({7, 8, 9});
  const torch::Tensor x = torch::ones({3, 64, 4, 4});
  const torch::Tensor y = keyed_dropout2d(x, 0.25, /*training=*/true, random);
  const torch::Tensor channel_max = std::get<0>(y.flatten(2).max(2));
  const torch::Tensor channel_min = std::get<0>(y.flatten(2).min(2));
  EXPECT_TRUE(torch::equal(channel_max, channel_min));  // a channel is kept or dropped whole
  const torch::Tensor kept = channel_max.gt(0);
  EXPECT_TRUE(torch::allclose(channel_max.masked_select(kept), torch::full({kept.sum().item<int64_t>()}, 1.0 / 0.75)));
  const double dropped = 1.0 - kept.to(torch::kDouble).mean().item<double>();
  EXPECT_GT(dropped, 0.1);  // 192 channels at p = 0.25: 48 expected
  EXPECT_LT(dropped, 0.4);
  // Sample 9 alone gets its same mask.
  SampleRandom alone;
  alone.set_keys({9});
  EXPECT_TRUE(torch::equal(keyed_dropout2d(x.slice(0, 2, 3), 0.25, true, alone), y.slice(0, 2, 3)));
  EXPECT_TRUE(torch::equal(keyed_dropout2d(x, 0.25, /*training=*/false, random), x));
}

}  // namespace
}  // namespace segrun::models
