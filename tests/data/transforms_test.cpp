// The mmseg train/test pipeline: sizes against hand-computed values, crop/flip/pad semantics,
// determinism, and normalization + keep-ratio resize against Python cv2 (mmcv formulas).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <thread>
#include <vector>
#include <zlib.h>

#include "core/error.h"
#include "data/transforms.h"
#include "data_test_util.h"

namespace segrun::data {
namespace {

using testing::TempDir;

cv::Mat random_image(int h, int w, uint64_t seed) {
  SampleRng rng(seed, 0, 0, RngPurpose::kInit);
  cv::Mat m(h, w, CV_8UC3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < 3; ++c) m.at<cv::Vec3b>(y, x)[c] = static_cast<uint8_t>(rng.randint(0, 256));
  return m;
}

// Label whose value identifies the position (x + 7y) % 200.
cv::Mat position_label(int h, int w) {
  cv::Mat m(h, w, CV_8U);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) m.at<uint8_t>(y, x) = static_cast<uint8_t>((x + 7 * y) % 200);
  return m;
}

bool mats_equal(const cv::Mat& a, const cv::Mat& b) {
  if (a.size() != b.size() || a.type() != b.type()) return false;
  return std::memcmp(a.clone().data, b.clone().data, a.total() * a.elemSize()) == 0;
}

// A PNG written by hand (RFC 2083): IHDR with the given bit depth and colour type, an optional
// PLTE, one IDAT of `rows` (each row: filter byte 0, then the packed samples), IEND.
std::vector<uint8_t> hand_png(uint32_t width, uint32_t height, uint8_t bit_depth, uint8_t color_type,
                              const std::vector<uint8_t>& rows, const std::vector<uint8_t>& palette = {}) {
  std::vector<uint8_t> out{0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  const auto chunk = [&out](const char* type, const std::vector<uint8_t>& data) {
    const auto be32 = [&out](uint32_t v) {
      for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(v >> shift));
    };
    be32(static_cast<uint32_t>(data.size()));
    std::vector<uint8_t> typed(type, type + 4);
    typed.insert(typed.end(), data.begin(), data.end());
    out.insert(out.end(), typed.begin(), typed.end());
    be32(static_cast<uint32_t>(crc32(0L, typed.data(), static_cast<uInt>(typed.size()))));
  };
  chunk("IHDR",
        {0, 0, 0, static_cast<uint8_t>(width), 0, 0, 0, static_cast<uint8_t>(height), bit_depth, color_type, 0, 0, 0});
  if (!palette.empty()) chunk("PLTE", palette);
  uLongf size = compressBound(static_cast<uLong>(rows.size()));
  std::vector<uint8_t> packed(size);
  EXPECT_EQ(compress(packed.data(), &size, rows.data(), static_cast<uLong>(rows.size())), Z_OK);
  packed.resize(size);
  chunk("IDAT", packed);
  chunk("IEND", {});
  return out;
}

// Label PNGs of 1, 2 or 4 bits a sample (what PNG optimizers make of labels with few values) read
// as the values they hold, not scaled to 0..255 as OpenCV decodes them (a 4-bit 3 is 3, not 51);
// a palette or gray + alpha label is refused saying so (OpenCV would expand it to 3 or 4 channels).
TEST(Transforms, LabelPngsOfFewBitsReadAsTheirValues) {
  // 4x2, 4 bits: each row 0x23 0x32 = 2, 3, 3, 2.
  const cv::Mat four = decode_label(hand_png(4, 2, 4, 0, {0, 0x23, 0x32, 0, 0x23, 0x32}), "four.png");
  ASSERT_EQ(four.type(), CV_8UC1);
  EXPECT_EQ(std::vector<uint8_t>(four.begin<uint8_t>(), four.end<uint8_t>()),
            (std::vector<uint8_t>{2, 3, 3, 2, 2, 3, 3, 2}));
  // 8x1, 1 bit: 0b10100000; 4x1, 2 bits: 0b00011011 = 0, 1, 2, 3.
  const cv::Mat one = decode_label(hand_png(8, 1, 1, 0, {0, 0xa0}), "one.png");
  EXPECT_EQ(std::vector<uint8_t>(one.begin<uint8_t>(), one.end<uint8_t>()),
            (std::vector<uint8_t>{1, 0, 1, 0, 0, 0, 0, 0}));
  const cv::Mat two = decode_label(hand_png(4, 1, 2, 0, {0, 0x1b}), "two.png");
  EXPECT_EQ(std::vector<uint8_t>(two.begin<uint8_t>(), two.end<uint8_t>()), (std::vector<uint8_t>{0, 1, 2, 3}));
  // 8 bits as before.
  const cv::Mat eight = decode_label(hand_png(2, 1, 8, 0, {0, 7, 150}), "eight.png");
  EXPECT_EQ(std::vector<uint8_t>(eight.begin<uint8_t>(), eight.end<uint8_t>()), (std::vector<uint8_t>{7, 150}));
  EXPECT_THAT(
      [] {
        decode_label(hand_png(2, 1, 8, 3, {0, 0, 1}, {0, 0, 0, 255, 0, 0}), "p.png");
      },
      ::testing::ThrowsMessage<DataError>(::testing::HasSubstr("p.png: label is a palette (indexed-colour) PNG")));
  EXPECT_THAT(
      [] {
        decode_label(hand_png(1, 1, 8, 4, {0, 3, 255}), "ga.png");
      },
      ::testing::ThrowsMessage<DataError>(::testing::HasSubstr("ga.png: label is a gray PNG with an alpha")));
}

TEST(Transforms, RescaleSizeHandComputed) {
  // factor = min(2048/640, 512/480) = 1.0667: (640*1.0667+0.5, 480*1.0667+0.5) -> (683, 512)
  EXPECT_EQ(rescale_size(cv::Size(640, 480), 2048, 512), cv::Size(683, 512));
  // factor = min(2048/2000, 512/500) = 1.024 -> (2048, 512)
  EXPECT_EQ(rescale_size(cv::Size(2000, 500), 2048, 512), cv::Size(2048, 512));
  // portrait, factor = min(1024/1000, 256/300) = 0.8533 -> (256, 853)
  EXPECT_EQ(rescale_size(cv::Size(300, 1000), 1024, 256), cv::Size(256, 853));
  // the order of the scale pair does not matter (mmcv uses max/min)
  EXPECT_EQ(rescale_size(cv::Size(640, 480), 512, 2048), cv::Size(683, 512));
  // Cityscapes 2048x1024 at scale (2048, 1024) stays; at ratio 0.5 -> (1024, 512)
  EXPECT_EQ(rescale_size(cv::Size(2048, 1024), 2048, 1024), cv::Size(2048, 1024));
  EXPECT_EQ(rescale_size(cv::Size(2048, 1024), 1024, 512), cv::Size(1024, 512));
}

TEST(Transforms, RandomScaleUsesIntOfScaleTimesRatio) {
  TrainTransformOptions o;
  o.scale = {2048, 512};
  o.ratio = {0.5, 0.5};
  SampleRng rng(1, 0, 0, RngPurpose::kAugment);
  EXPECT_EQ(random_scale(o, rng), (std::array<int, 2>{1024, 256}));
  o.ratio = {0.5, 2.0};
  for (int i = 0; i < 100; ++i) {
    auto s = random_scale(o, rng);
    EXPECT_GE(s[0], 1024);
    EXPECT_LT(s[0], 4096);
    // both edges come from the same ratio
    EXPECT_NEAR(s[0] / 2048.0, s[1] / 512.0, 1.0 / 256);
  }
}

TEST(Transforms, PadsToCropWithZeroAndIgnore) {
  TrainTransformOptions o;
  o.crop = {32, 40};
  o.scale = {30, 20};
  o.ratio = {1.0, 1.0};
  o.flip_prob = 0.0;
  o.photometric = false;
  cv::Mat image = random_image(20, 30, 3);
  cv::Mat label = position_label(20, 30);
  SampleRng rng(0, 0, 0, RngPurpose::kAugment);
  Sample s = train_transform(image, label, o, rng);
  ASSERT_EQ(s.image.rows, 32);
  ASSERT_EQ(s.image.cols, 40);
  ASSERT_EQ(s.image.type(), CV_32FC3);
  ASSERT_EQ(s.label.type(), CV_8U);
  EXPECT_TRUE(mats_equal(s.label(cv::Rect(0, 0, 30, 20)), label));
  for (int y = 0; y < 32; ++y) {
    for (int x = 0; x < 40; ++x) {
      if (y < 20 && x < 30) continue;
      EXPECT_EQ(s.label.at<uint8_t>(y, x), 255);
      EXPECT_EQ(s.image.at<cv::Vec3f>(y, x), cv::Vec3f(0, 0, 0));
    }
  }
  // Normalization by hand for one pixel: RGB order, CLIP mean/std.
  const cv::Vec3b bgr = image.at<cv::Vec3b>(4, 5);
  const cv::Vec3f out = s.image.at<cv::Vec3f>(4, 5);
  EXPECT_NEAR(out[0], (bgr[2] - 122.7709383) / 68.5005327, 1e-5);
  EXPECT_NEAR(out[1], (bgr[1] - 116.7460125) / 66.6321579, 1e-5);
  EXPECT_NEAR(out[2], (bgr[0] - 104.09373615) / 70.32316305, 1e-5);
}

TEST(Transforms, CropIsAWindowOfTheImageAndLabel) {
  TrainTransformOptions o;
  o.crop = {16, 24};
  o.scale = {64, 64};
  o.ratio = {1.0, 1.0};
  o.cat_max_ratio = 1.0;
  o.flip_prob = 0.0;
  o.photometric = false;
  cv::Mat image = random_image(64, 64, 4);
  cv::Mat label = position_label(64, 64);
  for (uint64_t seed = 0; seed < 20; ++seed) {
    SampleRng rng(seed, 0, 0, RngPurpose::kAugment);
    Sample s = train_transform(image, label, o, rng);
    ASSERT_EQ(s.label.size(), cv::Size(24, 16));
    // The output must be one window of the input, identical in image and label.
    bool found = false;
    for (int y0 = 0; y0 <= 48 && !found; ++y0) {
      for (int x0 = 0; x0 <= 40 && !found; ++x0) {
        // (the position label repeats, so the random image decides which window it is)
        if (!mats_equal(s.label, label(cv::Rect(x0, y0, 24, 16)))) continue;
        cv::Mat expected = normalize_image(image(cv::Rect(x0, y0, 24, 16)), kClipMean, kClipStd);
        found = mats_equal(s.image, expected);
      }
    }
    EXPECT_TRUE(found) << "seed " << seed;
  }
}

TEST(Transforms, FlipMirrorsImageAndLabel) {
  TrainTransformOptions o;
  o.crop = {20, 30};
  o.scale = {30, 20};
  o.ratio = {1.0, 1.0};
  o.flip_prob = 1.0;
  o.photometric = false;
  cv::Mat image = random_image(20, 30, 5);
  cv::Mat label = position_label(20, 30);
  SampleRng rng(0, 0, 0, RngPurpose::kAugment);
  Sample s = train_transform(image, label, o, rng);
  cv::Mat flipped_label, flipped_image;
  cv::flip(label, flipped_label, 1);
  cv::flip(image, flipped_image, 1);
  EXPECT_TRUE(mats_equal(s.label, flipped_label));
  EXPECT_TRUE(mats_equal(s.image, normalize_image(flipped_image, kClipMean, kClipStd)));
}

TEST(Transforms, CatMaxRatioRedrawsCrops) {
  // Left half class 1, right half class 2; a 16-wide crop is acceptable only when it straddles
  // the border with both shares < 0.75: x0 in 21..27, i.e. 7 of the 49 offsets.
  cv::Mat label(16, 64, CV_8U, cv::Scalar(1));
  label(cv::Rect(32, 0, 32, 16)).setTo(2);
  TrainTransformOptions o;
  o.crop = {16, 16};
  auto accepted_fraction = [&](double cat_max_ratio) {
    o.cat_max_ratio = cat_max_ratio;
    int accepted = 0;
    for (uint64_t seed = 0; seed < 400; ++seed) {
      SampleRng rng(seed, 0, 0, RngPurpose::kAugment);
      cv::Rect box = random_crop_box(label, o, rng);
      EXPECT_EQ(box.width, 16);
      EXPECT_EQ(box.height, 16);
      accepted += box.x >= 21 && box.x <= 27;
    }
    return accepted / 400.0;
  };
  // Without the check: ~7/49 = 0.14. With 1 + 10 draws: 1 - (42/49)^11 = 0.82.
  EXPECT_NEAR(accepted_fraction(1.0), 7.0 / 49, 0.06);
  EXPECT_NEAR(accepted_fraction(0.75), 1 - std::pow(42.0 / 49, 11), 0.06);
}

TEST(Transforms, DeterministicAcrossCallsAndThreads) {
  TrainTransformOptions o;
  o.crop = {32, 32};
  o.scale = {64, 48};
  cv::Mat image = random_image(48, 64, 6);
  cv::Mat label = position_label(48, 64);
  auto run = [&](uint64_t index) {
    SampleRng rng(11, 2, index, RngPurpose::kAugment);
    return train_transform(image, label, o, rng);
  };
  std::vector<Sample> reference;
  for (uint64_t i = 0; i < 8; ++i) reference.push_back(run(i));
  std::vector<Sample> threaded(8);
  std::vector<std::thread> threads;
  for (uint64_t i = 0; i < 8; ++i) threads.emplace_back([&, i] { threaded[7 - i] = run(7 - i); });  // reverse order
  for (auto& t : threads) t.join();
  int differing = 0;
  for (uint64_t i = 0; i < 8; ++i) {
    Sample again = run(i);
    EXPECT_TRUE(mats_equal(reference[i].image, again.image));
    EXPECT_TRUE(mats_equal(reference[i].label, again.label));
    EXPECT_TRUE(mats_equal(reference[i].image, threaded[i].image));
    EXPECT_TRUE(mats_equal(reference[i].label, threaded[i].label));
    if (i > 0 && !mats_equal(reference[i].image, reference[0].image)) ++differing;
  }
  EXPECT_GE(differing, 6);  // different sample indices draw different augmentations
}

TEST(Transforms, PhotometricKeepsGeometryAndChangesColors) {
  TrainTransformOptions o;
  o.crop = {20, 30};
  o.scale = {30, 20};
  o.ratio = {1.0, 1.0};
  o.flip_prob = 0.0;
  cv::Mat image = random_image(20, 30, 8);
  cv::Mat label = position_label(20, 30);
  int changed = 0;
  for (uint64_t seed = 0; seed < 10; ++seed) {
    o.photometric = true;
    SampleRng a(seed, 0, 0, RngPurpose::kAugment);
    Sample with = train_transform(image, label, o, a);
    EXPECT_TRUE(mats_equal(with.label, label));
    changed += !mats_equal(with.image, normalize_image(image, kClipMean, kClipStd));
  }
  EXPECT_GE(changed, 7);  // all four steps skip with probability 1/16
}

TEST(Transforms, PhotometricMatchesMmsegFormulasInPython) {
  // The draws are replayed here in the documented order; the pixel math (mmseg convert(): float32,
  // clip, truncate; cv2 HSV round trips; hue modulo 180) is recomputed by /usr/bin/python3 + cv2.
  TempDir tmp;
  cv::Mat image = random_image(23, 31, 12);
  cv::imwrite(tmp / "in.png", image);
  std::ofstream params(tmp / "params.txt");
  const int kSeeds = 24;
  std::vector<cv::Mat> ours;
  for (uint64_t seed = 0; seed < kSeeds; ++seed) {
    SampleRng replay(seed, 1, 2, RngPurpose::kAugment);
    const int64_t b = replay.randint(0, 2);
    const double beta = b ? replay.uniform(-32.0, 32.0) : 0.0;
    const int64_t mode = replay.randint(0, 2);
    double alpha1 = 1.0, alpha2 = 1.0;
    int64_t c1 = 0, c2 = 0;
    if (mode == 1 && (c1 = replay.randint(0, 2))) alpha1 = replay.uniform(0.5, 1.5);
    const int64_t s = replay.randint(0, 2);
    const double sat = s ? replay.uniform(0.5, 1.5) : 1.0;
    const int64_t h = replay.randint(0, 2);
    const int64_t delta = h ? replay.randint(-18, 18) : 0;
    if (mode == 0 && (c2 = replay.randint(0, 2))) alpha2 = replay.uniform(0.5, 1.5);
    params.precision(17);
    params << b << " " << beta << " " << mode << " " << c1 << " " << alpha1 << " " << s << " " << sat << " " << h << " "
           << delta << " " << c2 << " " << alpha2 << "\n";
    cv::Mat img = image.clone();
    SampleRng rng(seed, 1, 2, RngPurpose::kAugment);
    photometric_distortion(img, rng);
    ours.push_back(img);
  }
  params.close();
  const std::string code =
      "import cv2, numpy as np\n"
      "def convert(img, alpha=1, beta=0):\n"
      "    img = img.astype(np.float32) * np.float32(alpha) + np.float32(beta)\n"
      "    return np.clip(img, 0, 255).astype(np.uint8)\n"
      "src = cv2.imread('" +
      (tmp / "in.png") +
      "')\n"
      "for i, line in enumerate(open('" +
      (tmp / "params.txt") +
      "')):\n"
      "    b, beta, mode, c1, a1, s, sat, h, delta, c2, a2 = [float(v) for v in line.split()]\n"
      "    img = src.copy()\n"
      "    if b: img = convert(img, beta=beta)\n"
      "    if mode == 1 and c1: img = convert(img, alpha=a1)\n"
      "    if s:\n"
      "        hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)\n"
      "        hsv[:, :, 1] = convert(hsv[:, :, 1], alpha=sat)\n"
      "        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)\n"
      "    if h:\n"
      "        hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)\n"
      "        hsv[:, :, 0] = (hsv[:, :, 0].astype(int) + int(delta)) % 180\n"
      "        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)\n"
      "    if mode == 0 and c2: img = convert(img, alpha=a2)\n"
      "    cv2.imwrite('" +
      tmp.path() + "/ref%d.png' % i, img)\n";
  std::ofstream(tmp / "ref.py") << code;
  ASSERT_EQ(std::system((std::string(SEGRUN_TEST_PYTHON) + " " + (tmp / "ref.py")).c_str()), 0);
  for (int i = 0; i < kSeeds; ++i) {
    cv::Mat ref = cv::imread(tmp.path() + "/ref" + std::to_string(i) + ".png", cv::IMREAD_COLOR);
    ASSERT_FALSE(ref.empty());
    EXPECT_TRUE(mats_equal(ours[static_cast<size_t>(i)], ref)) << "seed " << i;
  }
}

TEST(Transforms, TestPipelineMatchesPythonCv2) {
  TempDir tmp;
  cv::Mat image = random_image(37, 53, 9);
  const std::string png = tmp / "img.png";
  const std::string raw = tmp / "out.f32";
  cv::imwrite(png, image);
  TestTransformOptions o;
  o.scale = {80, 24};
  cv::Mat out = test_transform(image, o);
  // mmcv rescale_size + imresize (cv2 bilinear) + imnormalize (to_rgb) written independently.
  const std::string code =
      "import cv2, numpy as np\n"
      "img = cv2.imread('" +
      png +
      "')\n"
      "h, w = img.shape[:2]\n"
      "f = min(max(80, 24) / max(h, w), min(80, 24) / min(h, w))\n"
      "size = (int(w * f + 0.5), int(h * f + 0.5))\n"
      "img = cv2.resize(img, size, interpolation=cv2.INTER_LINEAR)\n"
      "img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB).astype(np.float32)\n"
      "mean = np.array([122.7709383, 116.7460125, 104.09373615])\n"
      "std = np.array([68.5005327, 66.6321579, 70.32316305])\n"
      "img = ((img - mean) / std).astype(np.float32)\n"
      "open('" +
      raw +
      "', 'w').write(str(img.shape[0]) + ' ' + str(img.shape[1]) + '\\n')\n"
      "img.tofile('" +
      raw + ".bin')\n";
  std::ofstream(tmp / "ref.py") << code;
  ASSERT_EQ(std::system((std::string(SEGRUN_TEST_PYTHON) + " " + (tmp / "ref.py")).c_str()), 0);
  int h = 0, w = 0;
  std::ifstream(raw) >> h >> w;
  ASSERT_EQ(out.rows, h);
  ASSERT_EQ(out.cols, w);
  EXPECT_EQ(h, 24);  // factor = min(80/53, 24/37) = 0.6486 -> (34, 24)
  EXPECT_EQ(w, 34);
  std::vector<uint8_t> bytes = testing::read_bytes(raw + ".bin");
  ASSERT_EQ(bytes.size(), static_cast<size_t>(h * w * 3) * sizeof(float));
  const float* ref = reinterpret_cast<const float*>(bytes.data());
  double max_err = 0;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < 3; ++c)
        max_err =
            std::max(max_err, std::abs(static_cast<double>(out.at<cv::Vec3f>(y, x)[c]) - ref[(y * w + x) * 3 + c]));
  EXPECT_LT(max_err, 1e-5);
}

TEST(Transforms, DecodeErrorsNameTheSource) {
  std::vector<uint8_t> garbage(100, 0x42);
  try {
    decode_image(garbage, "shard-0.h5: record x");
    FAIL();
  } catch (const DataError& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("shard-0.h5: record x"));
  }
}

}  // namespace
}  // namespace segrun::data
