// TrainLoader stream semantics (epochs, rank/world union, determinism across worker counts,
// resume, corrupt records) and validation samples.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <opencv2/imgcodecs.hpp>
#include <set>

#include "core/error.h"
#include "data/classes.h"
#include "data/loader.h"
#include "data/manifest.h"
#include "data/pack.h"
#include "data/store.h"
#include "data/synth.h"
#include "data_test_util.h"

namespace segrun::data {
namespace {

using ::testing::HasSubstr;
using testing::run_ranks;
using testing::TempDir;

class LoaderTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    tmp_ = new TempDir();
    SynthOptions so;
    so.layout = Layout::kAde20k;
    so.out = *tmp_ / "src";
    so.train = 12;
    so.val = 0;
    so.height = 48;
    so.width = 64;
    so.seed = 3;
    synthesize(so);
    run_ranks(1, [&](dist::Communicator& comm) {
      pack_store({Layout::kAde20k, so.out, "training", *tmp_ / "store", 2}, comm);
    });
  }
  static void TearDownTestSuite() {
    delete tmp_;
    tmp_ = nullptr;
  }
  static std::string store_path() { return *tmp_ / "store"; }
  static std::shared_ptr<const StoreReader> open() { return std::make_shared<const StoreReader>(store_path()); }
  static DataConfig config(int batch, int workers) {
    DataConfig c;
    c.crop = {32, 32};
    c.scale = {64, 48};
    c.ratio = {0.5, 2.0};
    c.batch_per_rank = batch;
    c.workers = workers;
    c.prefetch = 2;
    return c;
  }
  static TempDir* tmp_;
};
TempDir* LoaderTest::tmp_ = nullptr;

TEST_F(LoaderTest, BatchShapesAndValues) {
  TrainLoader loader(open(), config(3, 2), 0, 1, 5);
  for (int64_t step = 0; step < 3; ++step) {
    Batch b = loader.next();
    EXPECT_EQ(b.step, step);
    EXPECT_EQ(b.images.sizes(), (std::vector<int64_t>{3, 3, 32, 32}));
    EXPECT_EQ(b.images.scalar_type(), torch::kFloat32);
    EXPECT_EQ(b.labels.sizes(), (std::vector<int64_t>{3, 32, 32}));
    EXPECT_EQ(b.labels.scalar_type(), torch::kUInt8);
    auto valid = (b.labels < 150) | (b.labels == 255);
    EXPECT_TRUE(valid.all().item<bool>());
    EXPECT_TRUE((b.labels >= 0).all().item<bool>());
    ASSERT_EQ(b.indices.size(), 3u);
    for (int64_t i : b.indices) {
      EXPECT_GE(i, 0);
      EXPECT_LT(i, 12);
    }
    // normalized CLIP range: (0-122.8)/68.5 .. (255-104.1)/70.3
    EXPECT_GT(b.images.min().item<float>(), -1.8f);
    EXPECT_LT(b.images.max().item<float>(), 2.2f);
  }
  EXPECT_EQ(loader.next_step(), 3);
}

TEST_F(LoaderTest, EachEpochVisitsEveryRecordOnce) {
  TrainLoader loader(open(), config(4, 2), 0, 1, 9);
  std::vector<int64_t> first, second;
  for (int s = 0; s < 3; ++s) {
    auto b = loader.next();
    first.insert(first.end(), b.indices.begin(), b.indices.end());
  }
  for (int s = 0; s < 3; ++s) {
    auto b = loader.next();
    second.insert(second.end(), b.indices.begin(), b.indices.end());
  }
  EXPECT_EQ(first, epoch_permutation(9, 0, 12));
  EXPECT_EQ(second, epoch_permutation(9, 1, 12));
  EXPECT_NE(first, second);
  std::set<int64_t> a(first.begin(), first.end());
  EXPECT_EQ(a.size(), 12u);
}

TEST_F(LoaderTest, WorkerCountDoesNotChangeBatches) {
  TrainLoader one(open(), config(4, 1), 0, 1, 21);
  TrainLoader three(open(), config(4, 3), 0, 1, 21);
  for (int s = 0; s < 5; ++s) {
    Batch a = one.next(), b = three.next();
    EXPECT_EQ(a.indices, b.indices);
    EXPECT_TRUE(torch::equal(a.images, b.images)) << "step " << s;
    EXPECT_TRUE(torch::equal(a.labels, b.labels)) << "step " << s;
  }
}

TEST_F(LoaderTest, TwoRanksOfTwoEqualOneRankOfFour) {
  auto store = open();
  TrainLoader single(store, config(4, 2), 0, 1, 33);
  TrainLoader rank0(store, config(2, 1), 0, 2, 33);
  TrainLoader rank1(store, config(2, 2), 1, 2, 33);
  for (int s = 0; s < 5; ++s) {  // crosses the epoch boundary (12 records, 4 per step)
    Batch all = single.next(), r0 = rank0.next(), r1 = rank1.next();
    std::multiset<int64_t> u(r0.indices.begin(), r0.indices.end());
    u.insert(r1.indices.begin(), r1.indices.end());
    EXPECT_EQ(u, std::multiset<int64_t>(all.indices.begin(), all.indices.end())) << "step " << s;
    // Sample-level identity: global position 4s + j is rank (j % 2), slot j / 2.
    for (int j = 0; j < 4; ++j) {
      const Batch& rb = j % 2 == 0 ? r0 : r1;
      EXPECT_EQ(all.indices[j], rb.indices[j / 2]);
      EXPECT_TRUE(torch::equal(all.images[j], rb.images[j / 2])) << "step " << s << " sample " << j;
      EXPECT_TRUE(torch::equal(all.labels[j], rb.labels[j / 2]));
    }
  }
  EXPECT_EQ(rank1.position_of(3), 1 + 3 * 2);
}

// Gradient accumulation: micro-batch m of rank r (world 2, accumulate 2) is rank r + 2m's batch
// of a world of 4, sample for sample; a loader resumed at optimizer step 2 starts at micro-batch 4.
TEST_F(LoaderTest, AccumulatedMicroBatchesAreTheBatchesOfAWorldThatManyTimesLarger) {
  auto store = open();
  const auto device = torch::Device(torch::kCPU);
  std::vector<std::unique_ptr<TrainLoader>> accumulating, wide;
  for (int r = 0; r < 2; ++r)
    accumulating.push_back(std::make_unique<TrainLoader>(store, config(2, 2), r, 2, 33, 0, device, /*accumulate=*/2));
  for (int r = 0; r < 4; ++r) wide.push_back(std::make_unique<TrainLoader>(store, config(2, 1), r, 4, 33));
  for (int t = 0; t < 3; ++t) {  // 8 samples per optimizer step: crosses the 12-record epoch
    std::vector<Batch> wide_batches;
    for (auto& loader : wide) wide_batches.push_back(loader->next());
    for (int r = 0; r < 2; ++r) {
      for (int m = 0; m < 2; ++m) {
        const Batch micro = accumulating[r]->next();
        const Batch& expected = wide_batches[static_cast<size_t>(r + 2 * m)];
        EXPECT_EQ(micro.step, 2 * t + m);
        EXPECT_EQ(micro.positions, expected.positions) << "step " << t << " rank " << r << " micro-batch " << m;
        EXPECT_EQ(micro.indices, expected.indices);
        EXPECT_TRUE(torch::equal(micro.images, expected.images));
        EXPECT_TRUE(torch::equal(micro.labels, expected.labels));
      }
    }
  }
  // Hand-computed: rank 1, micro-batch 1 of step 2, slot 1 = position (1 + 2) + (2*2 + 1) * 4.
  EXPECT_EQ(accumulating[1]->position_of(/*k=*/(2 * 2 + 1) * 2 + 1), 23);
  TrainLoader resumed(store, config(2, 1), 1, 2, 33, /*start_step=*/2 * 2, device, /*accumulate=*/2);
  EXPECT_EQ(resumed.next().positions, (std::vector<int64_t>{1 + (2 * 2 + 0) * 4, 1 + (2 * 2 + 1) * 4}));
  EXPECT_THROW(TrainLoader(store, config(2, 1), 0, 1, 33, 0, device, /*accumulate=*/0), DataError);
}

// A store whose label map holds a value that is neither a class nor the ignore index (it cannot
// be packed so: pack maps every raw value; here it is written shard by shard, checksums intact)
// is refused by the loader, naming the record, not by the loss or a GPU kernel's assert.
TEST_F(LoaderTest, ALabelValueOutsideTheClassesNamesItsRecord) {
  const std::filesystem::path dir = *tmp_ / "bad_label_store";
  std::filesystem::create_directories(dir);
  ShardHeader header;
  header.dataset = "ade20k";
  header.split = "training";
  header.class_names = class_names(Layout::kAde20k);
  header.label_mapping = "ade20k_reduce_zero_label";
  StoreWriter writer((dir / shard_file_name(0, 1)).string(), header);
  cv::Mat label(40, 40, CV_8U, cv::Scalar(3));
  label.at<uint8_t>(7, 9) = 200;  // 150 classes: 0..149, and 255
  std::vector<uint8_t> image_png, label_png;
  cv::imencode(".png", cv::Mat(40, 40, CV_8UC3, cv::Scalar(10, 20, 30)), image_png);
  cv::imencode(".png", label, label_png);
  RecordInput record{image_png, label_png, 40, 40, "ADE_train_bad", std::vector<uint8_t>(150, 0)};
  record.presence[3] = 1;
  writer.append(record);
  writer.commit();
  Manifest manifest;
  manifest.dataset = header.dataset;
  manifest.split = header.split;
  manifest.num_classes = 150;
  manifest.class_names = header.class_names;
  manifest.label_mapping = header.label_mapping;
  manifest.records = 1;
  manifest.shards = {{shard_file_name(0, 1), 1}};
  manifest.cooccurrence.assign(150 * 150, 0);
  std::ofstream(dir / "manifest.json") << manifest_to_json(manifest);

  const auto store = std::make_shared<const StoreReader>(dir.string());
  const std::string expected =
      "record ADE_train_bad: label value 200 at (7, 9) is neither a class (0..149) nor the "
      "ignore index 255";
  TrainLoader loader(store, config(1, 1), 0, 1, 0);
  try {
    loader.next();
    FAIL() << "a label value of 200 was accepted";
  } catch (const DataError& e) {
    EXPECT_THAT(e.what(), HasSubstr(expected));
  }
  try {
    load_val_sample(*store, 0, TestTransformOptions{});
    FAIL() << "a label value of 200 was accepted";
  } catch (const DataError& e) {
    EXPECT_THAT(e.what(), HasSubstr(expected));
  }
}

TEST_F(LoaderTest, ResumeAtStepMatchesUninterruptedStream) {
  TrainLoader from_start(open(), config(4, 2), 0, 1, 4);
  for (int s = 0; s < 4; ++s) from_start.next();
  Batch expected = from_start.next();
  TrainLoader resumed(open(), config(4, 2), 0, 1, 4, /*start_step=*/4);
  Batch got = resumed.next();
  EXPECT_EQ(got.step, 4);
  EXPECT_EQ(got.indices, expected.indices);
  EXPECT_TRUE(torch::equal(got.images, expected.images));
}

TEST_F(LoaderTest, StopsCleanlyWhenConsumerStopsEarly) {
  for (int i = 0; i < 3; ++i) {
    auto c = config(2, 3);
    c.prefetch = 1;
    TrainLoader loader(open(), c, 0, 1, 1);
    if (i > 0) loader.next();
  }  // destructors join; a hang would hit the test timeout
  SUCCEED();
}

TEST_F(LoaderTest, RejectsBadOptions) {
  auto c = config(2, 1);
  c.on_corrupt = "ignore";
  EXPECT_THROW(TrainLoader(open(), c, 0, 1, 1), DataError);
  EXPECT_THROW(TrainLoader(open(), config(2, 1), 2, 2, 1), DataError);
}

TEST_F(LoaderTest, ValSampleKeepsLabelAtOriginalSize) {
  auto store = open();
  TestTransformOptions o;
  o.scale = {32, 24};  // factor = min(32/64, 24/48) = 0.5
  ValSample v = load_val_sample(*store, 5, o);
  EXPECT_EQ(v.index, 5);
  EXPECT_EQ(v.name, store->name(5));
  EXPECT_EQ(v.image.sizes(), (std::vector<int64_t>{1, 3, 24, 32}));
  EXPECT_EQ(v.label.sizes(), (std::vector<int64_t>{48, 64}));
  cv::Mat label = cv::imdecode(store->read(5).label_bytes, cv::IMREAD_UNCHANGED);
  for (int y = 0; y < 48; y += 7)
    for (int x = 0; x < 64; x += 5) EXPECT_EQ(v.label[y][x].item<int64_t>(), label.at<uint8_t>(y, x));
  EXPECT_EQ(val_indices(10, 1, 3), (std::vector<int64_t>{1, 4, 7}));
  EXPECT_EQ(val_indices(2, 0, 4), (std::vector<int64_t>{0}));
  EXPECT_TRUE(val_indices(2, 3, 4).empty());
}

TEST(LoaderCorrupt, FailRethrowsAndSkipReplacesDeterministically) {
  TempDir tmp;
  SynthOptions so;
  so.out = tmp / "src";
  so.train = 8;
  so.val = 0;
  so.height = 32;
  so.width = 32;
  synthesize(so);
  run_ranks(1, [&](dist::Communicator& comm) {
    pack_store({Layout::kAde20k, so.out, "training", tmp / "store", 1}, comm);
  });
  const std::string shard = testing::corrupt_record(tmp / "store", 6);
  auto store = std::make_shared<const StoreReader>(tmp / "store");
  DataConfig c;
  c.crop = {16, 16};
  c.scale = {32, 32};
  c.batch_per_rank = 4;
  c.workers = 2;
  c.prefetch = 2;
  {
    c.on_corrupt = "fail";
    TrainLoader loader(store, c, 0, 1, 0);
    try {
      for (int s = 0; s < 2; ++s) loader.next();  // one epoch: record 6 is in it
      FAIL() << "expected the CRC error";
    } catch (const DataError& e) {
      EXPECT_EQ(std::string(e.what()), shard + ": record 6 (ADE_train_00000007): CRC mismatch");
    }
  }
  c.on_corrupt = "skip";
  std::vector<std::vector<int64_t>> runs;
  for (int workers : {1, 3}) {
    c.workers = workers;
    TrainLoader loader(store, c, 0, 1, 0);
    std::vector<int64_t> seen;
    for (int s = 0; s < 4; ++s) {
      Batch b = loader.next();
      seen.insert(seen.end(), b.indices.begin(), b.indices.end());
    }
    EXPECT_EQ(std::count(seen.begin(), seen.end(), 6), 0);
    // once per epoch for the two epochs consumed; prefetching may already have met the third
    EXPECT_GE(loader.skipped(), 2);
    EXPECT_LE(loader.skipped(), 3);
    // The substitute is the next record of the same permutation.
    const auto perm = epoch_permutation(0, 0, 8);
    const auto pos = std::find(perm.begin(), perm.end(), 6) - perm.begin();
    EXPECT_EQ(seen[static_cast<size_t>(pos)], perm[static_cast<size_t>((pos + 1) % 8)]);
    runs.push_back(seen);
  }
  EXPECT_EQ(runs[0], runs[1]);
}

}  // namespace
}  // namespace segrun::data
