// Synthetic layouts, pack -> store round trip, CRC detection and bad-input errors.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <opencv2/imgcodecs.hpp>
#include <random>
#include <set>
#include <thread>

#include "core/error.h"
#include "data/classes.h"
#include "data/inspect.h"
#include "data/manifest.h"
#include "data/pack.h"
#include "data/store.h"
#include "data/synth.h"
#include "data_test_util.h"

namespace segrun::data {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using testing::read_bytes;
using testing::run_ranks;
using testing::TempDir;
using testing::write_bytes;

std::set<int> label_values(const std::string& png) {
  cv::Mat m = cv::imread(png, cv::IMREAD_UNCHANGED);
  EXPECT_EQ(m.type(), CV_8UC1) << png;
  std::set<int> values;
  for (int y = 0; y < m.rows; ++y)
    for (int x = 0; x < m.cols; ++x) values.insert(m.at<uint8_t>(y, x));
  return values;
}

SynthOptions small_synth(Layout layout, const std::string& out, int train = 6, int val = 3) {
  SynthOptions o;
  o.layout = layout;
  o.out = out;
  o.train = train;
  o.val = val;
  o.height = 40;
  o.width = 48;
  o.seed = 7;
  return o;
}

PackSummary pack_single(const PackOptions& o) {
  PackSummary s;
  run_ranks(1, [&](dist::Communicator& comm) { s = pack_store(o, comm); });
  return s;
}

template <typename Fn>
std::string data_error_of(Fn&& fn) {
  try {
    fn();
  } catch (const DataError& e) {
    return e.what();
  }
  return "<no DataError thrown>";
}

// The message of the ConfigError (a command-line mistake: exit 2) that fn throws.
template <typename Fn>
std::string config_error_of(Fn&& fn) {
  try {
    fn();
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "<no ConfigError thrown>";
}

TEST(Synth, AdeWritesTheRealLayout) {
  TempDir tmp;
  auto o = small_synth(Layout::kAde20k, tmp / "ade");
  synthesize(o);
  const std::string base = tmp / "ade/ADEChallengeData2016";
  std::set<int> allowed = {0};
  for (int v : synth_raw_classes(o)) allowed.insert(v);
  EXPECT_EQ(synth_raw_classes(o).size(), 12u);
  std::set<int> seen;
  for (int i = 1; i <= 6; ++i) {
    char stem[64];
    std::snprintf(stem, sizeof(stem), "ADE_train_%08d", i);
    const std::string image = base + "/images/training/" + stem + ".jpg";
    const std::string label = base + "/annotations/training/" + stem + ".png";
    ASSERT_TRUE(fs::is_regular_file(image)) << image;
    ASSERT_TRUE(fs::is_regular_file(label)) << label;
    cv::Mat img = cv::imread(image, cv::IMREAD_UNCHANGED);
    EXPECT_EQ(img.type(), CV_8UC3);
    EXPECT_EQ(img.rows, 40);
    EXPECT_EQ(img.cols, 48);
    for (int v : label_values(label)) {
      EXPECT_TRUE(allowed.count(v)) << "value " << v << " in " << label;
      seen.insert(v);
    }
  }
  EXPECT_GE(seen.size(), 4u);
  EXPECT_TRUE(fs::is_regular_file(base + "/images/validation/ADE_val_00000003.jpg"));
  EXPECT_TRUE(fs::is_regular_file(base + "/annotations/validation/ADE_val_00000003.png"));
  EXPECT_FALSE(fs::exists(base + "/images/validation/ADE_val_00000004.jpg"));
}

TEST(Synth, CityscapesWritesTheRealLayout) {
  TempDir tmp;
  auto o = small_synth(Layout::kCityscapes, tmp / "cs", 4, 2);
  synthesize(o);
  const std::string root = tmp / "cs";
  EXPECT_TRUE(fs::is_regular_file(root + "/leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png"));
  EXPECT_TRUE(fs::is_regular_file(root + "/leftImg8bit/train/bochum/bochum_000001_000019_leftImg8bit.png"));
  EXPECT_TRUE(fs::is_regular_file(root + "/leftImg8bit/train/aachen/aachen_000003_000019_leftImg8bit.png"));
  EXPECT_TRUE(fs::is_regular_file(root + "/leftImg8bit/val/frankfurt/frankfurt_000000_000019_leftImg8bit.png"));
  const std::string label = root + "/gtFine/train/aachen/aachen_000000_000019_gtFine_labelIds.png";
  ASSERT_TRUE(fs::is_regular_file(label));
  std::set<int> allowed = {0, 4};
  const auto raw = synth_raw_classes(o);
  EXPECT_EQ(raw.size(), 10u);
  for (int v : raw) {
    allowed.insert(v);
    EXPECT_NE(label_lut(Layout::kCityscapes)[v], 255) << "raw class " << v << " must map to a train id";
  }
  for (int v : label_values(label)) EXPECT_TRUE(allowed.count(v)) << v;
}

TEST(Synth, DeterministicFromSeed) {
  TempDir tmp;
  auto a = small_synth(Layout::kAde20k, tmp / "a", 2, 0);
  auto b = a;
  b.out = tmp / "b";
  auto c = a;
  c.out = tmp / "c";
  c.seed = 8;
  synthesize(a);
  synthesize(b);
  synthesize(c);
  const std::string rel = "/ADEChallengeData2016/images/training/ADE_train_00000002.jpg";
  EXPECT_EQ(read_bytes(a.out + rel), read_bytes(b.out + rel));
  EXPECT_NE(read_bytes(a.out + rel), read_bytes(c.out + rel));
}

TEST(Synth, UnwritableOutputNamesTheDirectory) {
  TempDir tmp;
  write_bytes(tmp / "afile", {1, 2, 3});
  auto o = small_synth(Layout::kAde20k, tmp / "afile/sub");
  EXPECT_THAT(data_error_of([&] { synthesize(o); }), HasSubstr(tmp / "afile/sub"));
}

TEST(Pack, AdeRoundTripBytesPresenceCooccurrence) {
  TempDir tmp;
  auto so = small_synth(Layout::kAde20k, tmp / "src", 7, 0);
  synthesize(so);
  PackOptions po{Layout::kAde20k, so.out, "training", tmp / "store", 3};
  PackSummary summary = pack_single(po);
  EXPECT_EQ(summary.records, 7);
  EXPECT_EQ(summary.shards, 3);
  EXPECT_EQ(summary.manifest, tmp / "store/manifest.json");
  for (const auto& entry : fs::directory_iterator(tmp / "store")) {
    EXPECT_EQ(entry.path().string().find(".tmp-"), std::string::npos) << entry.path();
  }

  StoreReader reader(tmp / "store");
  ASSERT_EQ(reader.size(), 7);
  EXPECT_EQ(reader.num_shards(), 3);
  EXPECT_EQ(reader.num_classes(), 150);
  EXPECT_EQ(reader.dataset(), "ade20k");
  EXPECT_EQ(reader.split(), "training");
  EXPECT_EQ(reader.label_mapping(), "ade20k_reduce_zero_label");
  EXPECT_EQ(reader.class_names()[7], "bed");
  // Shards split contiguously: 7 records over 3 shards -> 2, 2, 3.
  EXPECT_EQ(reader.manifest().shards[0].records, 2);
  EXPECT_EQ(reader.manifest().shards[1].records, 2);
  EXPECT_EQ(reader.manifest().shards[2].records, 3);
  EXPECT_EQ(reader.locate(4).second, 0);
  EXPECT_THAT(reader.locate(4).first, HasSubstr("shard-00002-of-00003.h5"));

  const int k = 150;
  std::vector<int64_t> cooc(static_cast<size_t>(k * k), 0);
  const std::string base = so.out + "/ADEChallengeData2016";
  for (int i = 0; i < 7; ++i) {
    char stem[64];
    std::snprintf(stem, sizeof(stem), "ADE_train_%08d", i + 1);
    EXPECT_EQ(reader.name(i), stem);
    RawRecord r = reader.read(i);
    EXPECT_EQ(r.image_bytes, read_bytes(base + "/images/training/" + stem + ".jpg"));
    EXPECT_EQ(r.height, 40u);
    EXPECT_EQ(r.width, 48u);
    cv::Mat raw = cv::imread(base + "/annotations/training/" + stem + ".png", cv::IMREAD_UNCHANGED);
    cv::Mat mapped = cv::imdecode(r.label_bytes, cv::IMREAD_UNCHANGED);
    ASSERT_EQ(mapped.type(), CV_8UC1);
    std::vector<int> present(k, 0);
    for (int y = 0; y < raw.rows; ++y) {
      for (int x = 0; x < raw.cols; ++x) {
        const int v = raw.at<uint8_t>(y, x);
        const int expected = v == 0 ? 255 : v - 1;  // reduce_zero_label by hand
        ASSERT_EQ(mapped.at<uint8_t>(y, x), expected);
        if (expected != 255) present[expected] = 1;
      }
    }
    for (int c = 0; c < k; ++c) EXPECT_EQ(reader.presence(i)[c], present[c]) << i << " " << c;
    for (int a = 0; a < k; ++a)
      for (int b = 0; b < k; ++b) cooc[a * k + b] += present[a] && present[b];
  }
  EXPECT_EQ(reader.cooccurrence(), cooc);
}

TEST(Pack, TwoRanksProduceTheSameStoreAsOne) {
  TempDir tmp;
  auto so = small_synth(Layout::kCityscapes, tmp / "src", 5, 0);
  synthesize(so);
  pack_single({Layout::kCityscapes, so.out, "train", tmp / "one", 3});
  run_ranks(2, [&](dist::Communicator& comm) {  // ADE20K's name of the split: the same folder
    pack_store({Layout::kCityscapes, so.out, "training", tmp / "two", 3}, comm);
  });
  StoreReader one(tmp / "one"), two(tmp / "two");
  ASSERT_EQ(one.size(), 5);
  ASSERT_EQ(two.size(), 5);
  EXPECT_EQ(one.cooccurrence(), two.cooccurrence());
  EXPECT_EQ(one.num_classes(), 19);
  for (int64_t i = 0; i < 5; ++i) {
    EXPECT_EQ(one.name(i), two.name(i));
    EXPECT_EQ(one.read(i).image_bytes, two.read(i).image_bytes);
    EXPECT_EQ(one.read(i).label_bytes, two.read(i).label_bytes);
  }
  // Sorted by path: aachen_000000, aachen_000003, bochum_000001, bochum_000004, bremen_000002.
  EXPECT_EQ(one.name(0), "aachen_000000_000019");
  EXPECT_EQ(one.name(1), "aachen_000003_000019");
  EXPECT_EQ(one.name(4), "bremen_000002_000019");
}

// Writes an ADE20K-layout folder with hand-made 8x8 label maps.
void write_ade_case(const std::string& root, const std::vector<std::vector<int>>& labels_per_image) {
  const std::string base = root + "/ADEChallengeData2016";
  fs::create_directories(base + "/images/training");
  fs::create_directories(base + "/annotations/training");
  for (size_t i = 0; i < labels_per_image.size(); ++i) {
    char stem[64];
    std::snprintf(stem, sizeof(stem), "ADE_train_%08zu", i + 1);
    cv::Mat image(8, 8, CV_8UC3, cv::Scalar(10, 20, 30 + static_cast<int>(i)));
    cv::Mat label(8, 8, CV_8U);
    const auto& values = labels_per_image[i];
    for (int p = 0; p < 64; ++p) label.at<uint8_t>(p / 8, p % 8) = static_cast<uint8_t>(values[p % values.size()]);
    cv::imwrite(base + "/images/training/" + stem + ".jpg", image);
    cv::imwrite(base + "/annotations/training/" + stem + ".png", label);
  }
}

TEST(Pack, CooccurrenceHandChecked) {
  TempDir tmp;
  // Raw ADE values: image 1 {1,2} -> train {0,1}; image 2 {2,3} -> {1,2}; image 3 {1,0} -> {0} (+ignore).
  write_ade_case(tmp / "src", {{1, 2}, {2, 3}, {1, 0}});
  pack_single({Layout::kAde20k, tmp / "src", "train", tmp / "store", 1});
  StoreReader reader(tmp / "store");
  const auto& c = reader.cooccurrence();
  auto at = [&](int i, int j) { return c[static_cast<size_t>(i * 150 + j)]; };
  EXPECT_EQ(at(0, 0), 2);
  EXPECT_EQ(at(1, 1), 2);
  EXPECT_EQ(at(2, 2), 1);
  EXPECT_EQ(at(0, 1), 1);
  EXPECT_EQ(at(1, 0), 1);
  EXPECT_EQ(at(1, 2), 1);
  EXPECT_EQ(at(2, 1), 1);
  EXPECT_EQ(at(0, 2), 0);
  EXPECT_EQ(at(2, 0), 0);
  int64_t total = 0;
  for (int64_t v : c) total += v;
  EXPECT_EQ(total, 2 + 2 + 1 + 4);
  EXPECT_EQ(reader.split(), "train");
}

TEST(Store, CrcMismatchNamesShardAndRecord) {
  TempDir tmp;
  auto so = small_synth(Layout::kAde20k, tmp / "src", 4, 0);
  synthesize(so);
  pack_single({Layout::kAde20k, so.out, "training", tmp / "store", 2});
  std::string name;
  {
    StoreReader reader(tmp / "store");
    name = reader.name(3);
    EXPECT_EQ(reader.locate(3).second, 1);
  }
  const std::string shard = testing::corrupt_record(tmp / "store", 3);
  StoreReader reader(tmp / "store");
  EXPECT_NO_THROW(reader.read(2));
  try {
    reader.read(3);
    FAIL() << "expected CorruptRecordError";
  } catch (const CorruptRecordError& e) {
    EXPECT_EQ(std::string(e.what()), shard + ": record 1 (" + name + "): CRC mismatch");
  }
  StoreSummary s = inspect_store(tmp / "store", true);
  EXPECT_EQ(s.records_verified, 4);
  ASSERT_EQ(s.crc_failures.size(), 1u);
  EXPECT_EQ(s.crc_failures[0].index, 3);
  EXPECT_EQ(s.crc_failures[0].name, name);
  EXPECT_THAT(to_json(s), HasSubstr("\"crc_failures\""));
  EXPECT_THAT(to_text(s), HasSubstr("1 CRC failure(s)"));
}

TEST(Store, RecordCrcIsZlibCrc32) {
  // Independent reference: zlib's crc32 over the image bytes, continued over the label bytes.
  std::mt19937 gen(5);
  for (size_t image_size : {0, 1, 15, 16, 63, 64, 1000, 100003}) {
    for (size_t label_size : {0, 7, 4096}) {
      std::vector<uint8_t> image(image_size), label(label_size);
      for (auto& b : image) b = static_cast<uint8_t>(gen());
      for (auto& b : label) b = static_cast<uint8_t>(gen());
      // (zlib's crc32 of a null buffer returns the initial value: empty parts are skipped.)
      uLong expected = crc32(0L, Z_NULL, 0);
      if (!image.empty()) expected = crc32(expected, image.data(), static_cast<uInt>(image.size()));
      if (!label.empty()) expected = crc32(expected, label.data(), static_cast<uInt>(label.size()));
      EXPECT_EQ(record_crc(image, label), static_cast<uint32_t>(expected)) << image_size << " + " << label_size;
    }
  }
}

TEST(Store, ConcurrentReadsMatchSequential) {
  // Record bytes are read with pread(2) and no lock: 4 threads reading every record in their own
  // order get the bytes one thread gets, CRCs checked.
  TempDir tmp;
  auto so = small_synth(Layout::kAde20k, tmp / "src", 12, 0);
  synthesize(so);
  pack_single({Layout::kAde20k, so.out, "training", tmp / "store", 3});
  auto open_descriptors = [] {
    return std::distance(fs::directory_iterator("/proc/self/fd"), fs::directory_iterator{});
  };
  const auto descriptors_before = open_descriptors();
  const StoreReader reader(tmp / "store");
  EXPECT_EQ(open_descriptors() - descriptors_before, 2 * 3) << "two per shard; HDF5 closed the files";
  std::vector<RawRecord> expected;
  for (int64_t i = 0; i < reader.size(); ++i) expected.push_back(reader.read(i));
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      RawRecord r;
      for (int round = 0; round < 20; ++round) {
        for (int64_t j = 0; j < reader.size(); ++j) {
          const int64_t i = (j * (2 * t + 1) + round) % reader.size();
          reader.read(i, &r);
          if (r.image_bytes != expected[i].image_bytes || r.label_bytes != expected[i].label_bytes ||
              r.name != expected[i].name)
            ++mismatches[t];
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(mismatches, std::vector<int>(4, 0));
}

TEST(Inspect, SummaryMatchesStore) {
  TempDir tmp;
  write_ade_case(tmp / "src", {{1, 2}, {2, 3}, {1, 0}});
  pack_single({Layout::kAde20k, tmp / "src", "training", tmp / "store", 2});
  StoreSummary s = inspect_store(tmp / "store", false);
  EXPECT_EQ(s.records, 3);
  EXPECT_EQ(s.classes, 150);
  EXPECT_EQ(s.shards, 2);
  EXPECT_EQ(s.images_per_class[0], 2);
  EXPECT_EQ(s.images_per_class[1], 2);
  EXPECT_EQ(s.images_per_class[2], 1);
  EXPECT_EQ(s.images_per_class[3], 0);
  const std::string json = to_json(s);
  EXPECT_THAT(json, HasSubstr("\"records\": 3"));
  EXPECT_THAT(json, HasSubstr("\"wall\": 2"));
  EXPECT_THAT(to_text(s), HasSubstr("3 of 150 classes"));
}

// ---- bad input ---------------------------------------------------------------------------------

class PackBadInput : public ::testing::Test {
 protected:
  void SetUp() override {
    so_ = small_synth(Layout::kAde20k, tmp_ / "src", 3, 0);
    synthesize(so_);
    base_ = so_.out + "/ADEChallengeData2016";
  }
  std::string pack_error() {
    return data_error_of([&] { pack_single({Layout::kAde20k, so_.out, "training", tmp_ / "store", 1}); });
  }
  TempDir tmp_;
  SynthOptions so_;
  std::string base_;
};

TEST_F(PackBadInput, MissingFolder) {
  const std::string missing = tmp_ / "nowhere";
  // A --root that is not there is the command line's mistake (exit 2) ...
  EXPECT_EQ(config_error_of([&] {
              pack_single({Layout::kAde20k, missing, "training", tmp_ / "store", 1});
            }),
            "--root " + missing + ": missing dataset root folder");
  EXPECT_EQ(config_error_of([&] {
              check_pack_request({Layout::kAde20k, missing, "training", tmp_ / "store", 1});
            }),
            "--root " + missing + ": missing dataset root folder");
  // ... as is a root of the other layout (the default layout is ade20k) ...
  EXPECT_EQ(config_error_of([&] {
              pack_single({Layout::kCityscapes, so_.out, "train", tmp_ / "store", 1});
            }),
            "--root " + so_.out + ": an ADE20K folder (images/, annotations/): pack it with --layout ade20k");
  // ... a folder missing below it the dataset's.
  const std::string city = tmp_ / "city";
  std::filesystem::create_directories(city + "/leftImg8bit/val");
  std::filesystem::create_directories(city + "/gtFine/val");
  EXPECT_THAT(data_error_of([&] {
                pack_single({Layout::kCityscapes, city, "train", tmp_ / "store", 1});
              }),
              HasSubstr(city + "/leftImg8bit/train"));
}

TEST_F(PackBadInput, ImageWithoutAnnotation) {
  fs::remove(base_ + "/annotations/training/ADE_train_00000002.png");
  EXPECT_THAT(pack_error(), HasSubstr(base_ + "/images/training/ADE_train_00000002.jpg: image without annotation"));
  EXPECT_FALSE(fs::exists(tmp_ / "store/manifest.json"));
}

TEST_F(PackBadInput, LabelOutOfRange) {
  const std::string label = base_ + "/annotations/training/ADE_train_00000003.png";
  cv::Mat m = cv::imread(label, cv::IMREAD_UNCHANGED);
  m.at<uint8_t>(5, 5) = 173;
  cv::imwrite(label, m);
  const std::string err = pack_error();
  EXPECT_THAT(err, HasSubstr(label));
  EXPECT_THAT(err, HasSubstr("label value 173 outside 0..150"));
  // Found while writing the shard: nothing half-made is left, and the error says so.
  EXPECT_THAT(err, HasSubstr("(" + (tmp_ / "store") + " was not created)"));
  EXPECT_FALSE(fs::exists(tmp_ / "store"));
  EXPECT_FALSE(fs::exists(tmp_ / ".store.packing"));
}

TEST_F(PackBadInput, AFailureOnOneOfTwoRanksLeavesNoTarget) {
  // Three shards over two ranks: the bad label is in the last record, rank 0's second shard.
  const std::string label = base_ + "/annotations/training/ADE_train_00000003.png";
  cv::Mat m = cv::imread(label, cv::IMREAD_UNCHANGED);
  m.at<uint8_t>(1, 1) = 200;
  cv::imwrite(label, m);
  std::vector<std::string> errors(2);
  run_ranks(2, [&](dist::Communicator& comm) {
    errors[static_cast<size_t>(comm.rank())] = data_error_of([&] {
      pack_store({Layout::kAde20k, so_.out, "training", tmp_ / "store", 3}, comm);
    });
  });
  EXPECT_THAT(errors[0], HasSubstr("label value 200"));
  EXPECT_THAT(errors[1], HasSubstr("packing failed on another rank"));
  for (const auto& e : errors) EXPECT_THAT(e, HasSubstr("was not created"));
  EXPECT_FALSE(fs::exists(tmp_ / "store"));
  EXPECT_FALSE(fs::exists(tmp_ / ".store.packing"));
}

TEST_F(PackBadInput, AStagingFolderLeftByAKilledPackIsReplaced) {
  fs::create_directories(tmp_ / ".store.packing");
  write_bytes(tmp_ / ".store.packing/shard-00000-of-00001.h5.tmp-123", {'x'});
  write_bytes(tmp_ / ".store.packing/shard-00001-of-00002.h5", {'x'});
  write_bytes(tmp_ / ".store.packing/manifest.json.tmp-77", {'x'});
  check_pack_request({Layout::kAde20k, so_.out, "training", tmp_ / "store", 1});  // nothing but pack's files
  EXPECT_EQ(pack_single({Layout::kAde20k, so_.out, "training", tmp_ / "store", 1}).records, 3);
  EXPECT_FALSE(fs::exists(tmp_ / ".store.packing"));
  EXPECT_EQ(StoreReader(tmp_ / "store").size(), 3);
  EXPECT_FALSE(fs::exists(tmp_ / "store/shard-00000-of-00001.h5.tmp-123"));
}

TEST_F(PackBadInput, LabelNotSingleChannel) {
  const std::string label = base_ + "/annotations/training/ADE_train_00000001.png";
  cv::imwrite(label, cv::Mat(40, 48, CV_8UC3, cv::Scalar(1, 1, 1)));
  EXPECT_THAT(pack_error(), HasSubstr(label + ": label must be an 8-bit single-channel PNG"));
}

TEST_F(PackBadInput, LabelSizeMismatch) {
  const std::string label = base_ + "/annotations/training/ADE_train_00000001.png";
  cv::imwrite(label, cv::Mat(20, 48, CV_8U, cv::Scalar(1)));
  EXPECT_THAT(pack_error(), HasSubstr(label + ": label is 20x48 (HxW) but the image is 40x48"));
}

TEST_F(PackBadInput, CorruptJpeg) {
  const std::string image = base_ + "/images/training/ADE_train_00000002.jpg";
  std::vector<uint8_t> bytes = read_bytes(image);
  for (size_t i = 0; i < 64 && i < bytes.size(); ++i) bytes[i] = 0x42;
  write_bytes(image, bytes);
  EXPECT_THAT(pack_error(), HasSubstr(image + ": cannot decode image"));
}

TEST_F(PackBadInput, ExistingOutput) {
  fs::create_directories(tmp_ / "store");
  write_bytes(tmp_ / "store/keep.txt", {'x'});
  try {  // the user's --out: a config error (exit 2)
    pack_single({Layout::kAde20k, so_.out, "training", tmp_ / "store", 1});
    ADD_FAILURE() << "packed onto a folder with a file";
  } catch (const ConfigError& e) {
    EXPECT_EQ(
        std::string(e.what()),
        (tmp_ / "store") + " already exists and is not empty; nothing there is overwritten: choose another --out");
  }
  EXPECT_TRUE(fs::exists(tmp_ / "store/keep.txt"));
  // An empty directory is accepted.
  fs::remove(tmp_ / "store/keep.txt");
  EXPECT_EQ(pack_single({Layout::kAde20k, so_.out, "training", tmp_ / "store", 1}).records, 3);
}

TEST_F(PackBadInput, UnknownSplit) {
  // The command line's mistake: a ConfigError (exit 2), checked before launch too.
  const std::string expected = "--split test: unknown ade20k split (valid: train, val, training, validation)";
  EXPECT_EQ(config_error_of([&] { pack_single({Layout::kAde20k, so_.out, "test", tmp_ / "store", 1}); }), expected);
  EXPECT_EQ(config_error_of([&] {
              check_pack_request({Layout::kAde20k, so_.out, "test", tmp_ / "store", 1});
            }),
            expected);
  EXPECT_FALSE(fs::exists(tmp_ / "store"));
}

TEST_F(PackBadInput, AStagingFolderHoldingOtherFilesIsNotRemoved) {
  // `.<name>.packing` with a file pack never writes there: refused (exit 2), nothing removed.
  fs::create_directories(tmp_ / ".store.packing");
  write_bytes(tmp_ / ".store.packing/shard-00000-of-00001.h5", {'x'});
  write_bytes(tmp_ / ".store.packing/junk", {'x'});
  const std::string expected = (tmp_ / ".store.packing") +
                               ": holds junk, which `segrun data pack` does not write; nothing removed: move your "
                               "files out of it (or delete it) and pack again";
  EXPECT_EQ(config_error_of([&] { pack_single({Layout::kAde20k, so_.out, "training", tmp_ / "store", 1}); }), expected);
  EXPECT_EQ(config_error_of([&] {
              check_pack_request({Layout::kAde20k, so_.out, "training", tmp_ / "store", 1});
            }),
            expected);
  EXPECT_TRUE(fs::exists(tmp_ / ".store.packing/junk"));
  EXPECT_TRUE(fs::exists(tmp_ / ".store.packing/shard-00000-of-00001.h5"));
  EXPECT_FALSE(fs::exists(tmp_ / "store"));
  // A subfolder is not pack's either.
  fs::remove(tmp_ / ".store.packing/junk");
  fs::create_directories(tmp_ / ".store.packing/manifest.json");
  EXPECT_THAT(config_error_of([&] {
                pack_single({Layout::kAde20k, so_.out, "training", tmp_ / "store", 1});
              }),
              HasSubstr(": holds manifest.json, which `segrun data pack` does not write"));
  EXPECT_TRUE(fs::exists(tmp_ / ".store.packing/manifest.json"));
}

class StoreBadInput : public ::testing::Test {
 protected:
  void SetUp() override {
    auto so = small_synth(Layout::kAde20k, tmp_ / "src", 3, 0);
    synthesize(so);
    pack_single({Layout::kAde20k, so.out, "training", tmp_ / "store", 1});
    shard_ = tmp_ / "store/shard-00000-of-00001.h5";
    ASSERT_TRUE(fs::is_regular_file(shard_));
  }
  std::string open_error() {
    return data_error_of([&] { StoreReader reader(tmp_ / "store"); });
  }
  void python(const std::string& code) {
    const std::string cmd = std::string(SEGRUN_TEST_PYTHON) + " -c \"" + code + "\"";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
  TempDir tmp_;
  std::string shard_;
};

TEST_F(StoreBadInput, OpensViaManifestPathToo) {
  StoreReader reader(tmp_ / "store/manifest.json");
  EXPECT_EQ(reader.size(), 3);
}

TEST_F(StoreBadInput, MissingStoreAndManifest) {
  try {  // a path the user gave: a config error (exit 2)
    StoreReader r(tmp_ / "nostore");
    ADD_FAILURE() << "opened a store that does not exist";
  } catch (const ConfigError& e) {
    EXPECT_THAT(e.what(), HasSubstr((tmp_ / "nostore") + ": store not found"));
  }
  fs::remove(tmp_ / "store/manifest.json");
  EXPECT_THAT(open_error(), HasSubstr((tmp_ / "store/manifest.json") + ": missing store manifest"));
}

// Folders users give for a store by mistake are named for what they are (exit 2): a run folder,
// a dataset folder that was never packed.
TEST_F(StoreBadInput, ARunFolderOrADatasetFolderIsNamed) {
  const auto open_message = [](const std::string& path) -> std::string {
    try {
      StoreReader r(path);
    } catch (const ConfigError& e) {
      return e.what();
    }
    return "opened";
  };
  fs::create_directories(tmp_ / "run/checkpoints");
  std::ofstream(tmp_ / "run/config.toml") << "[data]\n";
  std::ofstream(tmp_ / "run/status") << "done\n";
  EXPECT_EQ(open_message(tmp_ / "run"), (tmp_ / "run") +
                                            ": a run folder, not a store (the run's stores are data.store "
                                            "and data.val_store in " +
                                            (tmp_ / "run/config.toml") + ")");
  fs::create_directories(tmp_ / "ade/images/training");
  fs::create_directories(tmp_ / "ade/annotations/training");
  EXPECT_EQ(open_message(tmp_ / "ade"), (tmp_ / "ade") +
                                            ": an ADE20K dataset folder, not a store; pack it first: segrun "
                                            "data pack --layout ade20k --root " +
                                            (tmp_ / "ade") + " --split <train|val> --out <store>");
  fs::create_directories(tmp_ / "cs/leftImg8bit");
  fs::create_directories(tmp_ / "cs/gtFine");
  EXPECT_THAT(open_message(tmp_ / "cs"), HasSubstr(": a Cityscapes dataset folder, not a store; pack it first"));
}

TEST_F(StoreBadInput, MissingShard) {
  fs::remove(shard_);
  EXPECT_THAT(open_error(), HasSubstr(shard_ + ": shard file missing"));
}

TEST_F(StoreBadInput, TruncatedShard) {
  fs::resize_file(shard_, fs::file_size(shard_) / 2);
  EXPECT_THAT(open_error(), HasSubstr(shard_ + ": cannot open HDF5 shard (truncated or corrupt file)"));
  // With HDF5's own account, where it has one.
  EXPECT_THAT(open_error(), HasSubstr(" (truncated file: eof = "));
}

TEST_F(StoreBadInput, NotHdf5) {
  write_bytes(shard_, std::vector<uint8_t>(4096, 'x'));
  EXPECT_EQ(open_error(), shard_ + ": not an HDF5 file (corrupt or truncated shard)");
}

TEST_F(StoreBadInput, ForeignHdf5) {
  python("import h5py, numpy; f = h5py.File('" + shard_ + "', 'w'); f['x'] = numpy.arange(3); f.close()");
  EXPECT_EQ(open_error(), shard_ + ": not a segrun store shard (no 'format' attribute)");
}

TEST_F(StoreBadInput, WrongVersion) {
  python("import h5py; f = h5py.File('" + shard_ + "', 'r+'); f.attrs['version'] = 2; f.close()");
  EXPECT_THAT(open_error(), HasSubstr(shard_ + ": store format version 2 is not supported"));
}

TEST_F(StoreBadInput, ShardReadableByH5py) {
  // Independent reader: h5py sees the documented datasets and attributes.
  python("import h5py, numpy, zlib; f = h5py.File('" + shard_ +
         "', 'r'); assert f.attrs['format'] == 'segrun-store', f.attrs['format']; "
         "assert f.attrs['version'] == 1; assert f['presence'].shape == (3, 150); "
         "o = f['images/offsets'][:]; b = f['images/bytes'][o[0]:o[1]].tobytes(); "
         "lo = f['labels/offsets'][:]; l = f['labels/bytes'][lo[0]:lo[1]].tobytes(); "
         "assert zlib.crc32(b + l) == int(f['crc32'][0]); "
         "assert f['name'][0].decode() == 'ADE_train_00000001', f['name'][0]; "
         "assert tuple(f['shape'][0]) == (40, 48); "
         "assert f['images/bytes'].chunks is None and f['labels/bytes'].chunks is None");
}

TEST_F(StoreBadInput, ChunkedShardOfEarlierPacksStillReads) {
  // Shards packed before the contiguous layout hold the bytes in extendible 256 KiB chunks; the
  // reader reads those through HDF5 and gets the same records.
  std::vector<RawRecord> before;
  {
    StoreReader reader(tmp_ / "store");
    for (int64_t i = 0; i < reader.size(); ++i) before.push_back(reader.read(i));
  }
  python("import h5py; f = h5py.File('" + shard_ +
         "', 'r+'); "
         "exec('for g in (\\'images\\', \\'labels\\'):\\n"
         " d = f[g + \\'/bytes\\'][:]; del f[g + \\'/bytes\\']\\n"
         " f.create_dataset(g + \\'/bytes\\', data=d, chunks=(262144,), maxshape=(None,))'); "
         "assert f['images/bytes'].chunks == (262144,); f.close()");
  StoreReader reader(tmp_ / "store");
  RawRecord r;
  for (int64_t i = 0; i < reader.size(); ++i) {
    reader.read(i, &r);  // CRC checked
    EXPECT_EQ(r.image_bytes, before[i].image_bytes) << i;
    EXPECT_EQ(r.label_bytes, before[i].label_bytes) << i;
  }
}

TEST_F(StoreBadInput, ShardTruncatedAfterOpenNamesTheFile) {
  StoreReader reader(tmp_ / "store");
  fs::resize_file(shard_, 0);
  EXPECT_THAT(data_error_of([&] { reader.read(1); }), HasSubstr(shard_ + ": reading 'images/bytes' at byte "));
  EXPECT_THAT(data_error_of([&] { reader.read(1); }), HasSubstr("unexpected end of file (shard truncated?)"));
}

TEST_F(StoreBadInput, ManifestWrongFormat) {
  write_bytes(tmp_ / "store/manifest.json", {'{', '}'});
  EXPECT_THAT(open_error(), HasSubstr((tmp_ / "store/manifest.json") + ": not a segrun store manifest"));
}

}  // namespace
}  // namespace segrun::data
