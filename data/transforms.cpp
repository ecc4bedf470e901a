#include "data/transforms.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "core/error.h"

namespace segrun::data {
namespace {

// Stores hold PNG and JPEG only (what ADE20K and Cityscapes ship). Their headers give the size
// before anything is allocated: a record whose header claims more than kMaxImagePixels (a damaged
// or hostile store; found by the record fuzzer: a PNG header asking for 3 GB) is refused, and so
// is every other format (OpenCV would try JPEG 2000, TIFF, GDAL, ... on arbitrary bytes).
constexpr uint64_t kMaxImagePixels = uint64_t{1} << 26;  // 8192 x 8192

uint32_t big_endian(const std::vector<uint8_t>& b, size_t at, int bytes) {
  uint32_t v = 0;
  for (int i = 0; i < bytes; ++i) v = (v << 8) | b[at + static_cast<size_t>(i)];
  return v;
}

// Width x height from a PNG IHDR or a JPEG SOF marker; false when the bytes are neither format or
// the header is cut short.
bool header_size(const std::vector<uint8_t>& b, uint64_t& width, uint64_t& height) {
  static const uint8_t kPng[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  if (b.size() >= 24 && std::equal(kPng, kPng + 8, b.begin())) {
    width = big_endian(b, 16, 4);
    height = big_endian(b, 20, 4);
    return true;
  }
  if (b.size() < 4 || b[0] != 0xFF || b[1] != 0xD8) return false;
  size_t i = 2;
  while (i + 9 <= b.size()) {
    if (b[i] != 0xFF) return false;
    const uint8_t marker = b[i + 1];
    if (marker == 0xFF) {  // fill byte
      ++i;
      continue;
    }
    const bool frame = marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
    if (frame) {
      height = big_endian(b, i + 5, 2);
      width = big_endian(b, i + 7, 2);
      return true;
    }
    if (marker == 0xD8 || (marker >= 0xD0 && marker <= 0xD7) || marker == 0x01) {
      i += 2;
      continue;
    }
    i += 2 + big_endian(b, i + 2, 2);
  }
  return false;
}

cv::Mat imdecode(const std::vector<uint8_t>& bytes, int flags) {
  if (bytes.empty()) return cv::Mat();
  uint64_t width = 0, height = 0;
  if (!header_size(bytes, width, height) || width == 0 || height == 0 || width * height > kMaxImagePixels)
    return cv::Mat();
  try {
    return cv::imdecode(cv::Mat(1, static_cast<int>(bytes.size()), CV_8U, const_cast<uint8_t*>(bytes.data())), flags);
  } catch (const cv::Exception&) {
    return cv::Mat();
  }
}

// mmseg's convert(): float32 x*alpha + beta, clipped to [0, 255], truncated to uint8.
inline uint8_t convert(uint8_t v, float alpha, float beta) {
  float x = static_cast<float>(v) * alpha + beta;
  x = std::min(255.0f, std::max(0.0f, x));
  return static_cast<uint8_t>(x);
}

// convert() of every uint8 value: applying it through cv::LUT is bit-identical to the per-element
// formula and vectorized (the per-element loop was the largest segrun-only cost of a sample).
cv::Mat convert_table(float alpha, float beta) {
  cv::Mat table(1, 256, CV_8U);
  for (int v = 0; v < 256; ++v) table.at<uint8_t>(v) = convert(static_cast<uint8_t>(v), alpha, beta);
  return table;
}

void convert_all(cv::Mat& m, float alpha, float beta) { cv::LUT(m, convert_table(alpha, beta), m); }

}  // namespace

namespace {
const std::array<double, 3>& normalize_mean(const DataConfig& c) {
  return c.normalize == "imagenet" ? kImageNetMean : kClipMean;
}
const std::array<double, 3>& normalize_std(const DataConfig& c) {
  return c.normalize == "imagenet" ? kImageNetStd : kClipStd;
}
}  // namespace

TrainTransformOptions train_transform_options(const DataConfig& c) {
  TrainTransformOptions o;
  o.mean = normalize_mean(c);
  o.std = normalize_std(c);
  o.crop = c.crop;
  o.scale = c.scale;
  o.ratio = c.ratio;
  o.cat_max_ratio = c.cat_max_ratio;
  o.flip_prob = c.flip_prob;
  o.photometric = c.photometric;
  return o;
}

TestTransformOptions test_transform_options(const DataConfig& c) {
  TestTransformOptions o;
  o.mean = normalize_mean(c);
  o.std = normalize_std(c);
  o.scale = c.scale;
  return o;
}

cv::Mat decode_image(const std::vector<uint8_t>& bytes, const std::string& what) {
  cv::Mat m = imdecode(bytes, cv::IMREAD_COLOR);
  SEGRUN_CHECK(!m.empty(), DataError, what << ": cannot decode image");
  return m;
}

namespace {

// A PNG's IHDR fields that decide how its samples decode; nullopt for another format.
struct PngHeader {
  int bit_depth;
  int color_type;  // 0 gray, 2 RGB, 3 palette, 4 gray + alpha, 6 RGBA
};
std::optional<PngHeader> png_header(const std::vector<uint8_t>& bytes) {
  static const uint8_t kSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  // signature, IHDR length and type, width, height, then bit depth (byte 24) and colour type (25)
  if (bytes.size() < 26 || !std::equal(std::begin(kSignature), std::end(kSignature), bytes.begin()) ||
      std::string(bytes.begin() + 12, bytes.begin() + 16) != "IHDR")
    return std::nullopt;
  return PngHeader{bytes[24], bytes[25]};
}

}  // namespace

cv::Mat decode_label(const std::vector<uint8_t>& bytes, const std::string& what) {
  const std::optional<PngHeader> png = png_header(bytes);
  SEGRUN_CHECK(!png || png->color_type != 3, DataError,
               what << ": label is a palette (indexed-colour) PNG; segrun reads label ids from single-channel gray "
                       "PNGs (its indices saved as gray: Image.fromarray(numpy.array(Image.open(f))).save(f))");
  SEGRUN_CHECK(!png || png->color_type != 4, DataError,
               what << ": label is a gray PNG with an alpha channel; labels are single-channel (no alpha)");
  cv::Mat m = imdecode(bytes, cv::IMREAD_UNCHANGED);
  SEGRUN_CHECK(!m.empty(), DataError, what << ": cannot decode label PNG");
  SEGRUN_CHECK(m.type() == CV_8UC1, DataError,
               what << ": label must be an 8-bit single-channel PNG (got " << m.channels() << " channel(s), depth "
                    << (m.elemSize1() * 8) << " bits)");
  // A gray PNG of 1, 2 or 4 bits a sample (optipng and the like write labels of few values so)
  // decodes scaled to 0..255 (a 4-bit 3 reads 51): back to the values the file holds.
  if (png && png->color_type == 0 && (png->bit_depth == 1 || png->bit_depth == 2 || png->bit_depth == 4))
    m /= 255 / ((1 << png->bit_depth) - 1);
  return m;
}

cv::Size rescale_size(cv::Size old_size, int scale_a, int scale_b) {
  const double w = old_size.width, h = old_size.height;
  const double long_edge = std::max(scale_a, scale_b), short_edge = std::min(scale_a, scale_b);
  const double factor = std::min(long_edge / std::max(h, w), short_edge / std::min(h, w));
  // At least 1 pixel: a very thin image (e.g. 300x1) would round to 0 and cv::resize would throw.
  return cv::Size(std::max(1, static_cast<int>(w * factor + 0.5)), std::max(1, static_cast<int>(h * factor + 0.5)));
}

std::array<int, 2> random_scale(const TrainTransformOptions& o, SampleRng& rng) {
  const double ratio = rng.uniform() * (o.ratio[1] - o.ratio[0]) + o.ratio[0];
  return {static_cast<int>(o.scale[0] * ratio), static_cast<int>(o.scale[1] * ratio)};
}

cv::Rect random_crop_box(const cv::Mat& label, const TrainTransformOptions& o, SampleRng& rng) {
  const int ch = o.crop[0], cw = o.crop[1];
  auto draw = [&]() {
    const int margin_h = std::max(label.rows - ch, 0), margin_w = std::max(label.cols - cw, 0);
    const int y = static_cast<int>(rng.randint(0, margin_h + 1));
    const int x = static_cast<int>(rng.randint(0, margin_w + 1));
    return cv::Rect(x, y, std::min(cw, label.cols - x), std::min(ch, label.rows - y));
  };
  cv::Rect box = draw();
  if (o.cat_max_ratio < 1.0) {
    for (int attempt = 0; attempt < 10; ++attempt) {
      int64_t counts[256] = {0};
      const cv::Mat crop = label(box);
      for (int y = 0; y < crop.rows; ++y) {
        const uint8_t* p = crop.ptr<uint8_t>(y);
        for (int x = 0; x < crop.cols; ++x) ++counts[p[x]];
      }
      int64_t total = 0, max_count = 0, kinds = 0;
      for (int v = 0; v < 256; ++v) {
        if (v == o.ignore_index || counts[v] == 0) continue;
        ++kinds;
        total += counts[v];
        max_count = std::max(max_count, counts[v]);
      }
      if (kinds > 1 && static_cast<double>(max_count) / static_cast<double>(total) < o.cat_max_ratio) break;
      box = draw();
    }
  }
  return box;
}

void photometric_distortion(cv::Mat& img, SampleRng& rng) {
  auto contrast = [&]() {
    if (rng.randint(0, 2)) convert_all(img, static_cast<float>(rng.uniform(0.5, 1.5)), 0.0f);
  };
  if (rng.randint(0, 2)) convert_all(img, 1.0f, static_cast<float>(rng.uniform(-32.0, 32.0)));
  const int64_t mode = rng.randint(0, 2);
  if (mode == 1) contrast();
  if (rng.randint(0, 2)) {
    const float alpha = static_cast<float>(rng.uniform(0.5, 1.5));
    const cv::Mat table = convert_table(alpha, 0.0f);
    const uint8_t* t = table.ptr<uint8_t>();
    cv::Mat hsv;
    cv::cvtColor(img, hsv, cv::COLOR_BGR2HSV);
    for (int y = 0; y < hsv.rows; ++y) {
      auto* p = hsv.ptr<cv::Vec3b>(y);
      for (int x = 0; x < hsv.cols; ++x) p[x][1] = t[p[x][1]];
    }
    cv::cvtColor(hsv, img, cv::COLOR_HSV2BGR);
  }
  if (rng.randint(0, 2)) {
    const int delta = static_cast<int>(rng.randint(-18, 18));
    cv::Mat hsv;
    cv::cvtColor(img, hsv, cv::COLOR_BGR2HSV);
    for (int y = 0; y < hsv.rows; ++y) {
      auto* p = hsv.ptr<cv::Vec3b>(y);
      for (int x = 0; x < hsv.cols; ++x) p[x][0] = static_cast<uint8_t>(((p[x][0] + delta) % 180 + 180) % 180);
    }
    cv::cvtColor(hsv, img, cv::COLOR_HSV2BGR);
  }
  if (mode == 0) contrast();
}

cv::Mat normalize_image(const cv::Mat& bgr, const std::array<double, 3>& mean, const std::array<double, 3>& std) {
  cv::Mat out(bgr.rows, bgr.cols, CV_32FC3);
  const double inv[3] = {1.0 / std[0], 1.0 / std[1], 1.0 / std[2]};
  for (int y = 0; y < bgr.rows; ++y) {
    const auto* in = bgr.ptr<cv::Vec3b>(y);
    auto* o = out.ptr<cv::Vec3f>(y);
    for (int x = 0; x < bgr.cols; ++x) {
      for (int c = 0; c < 3; ++c) {
        // RGB channel c comes from BGR channel 2 - c.
        o[x][c] = static_cast<float>((static_cast<double>(in[x][2 - c]) - mean[c]) * inv[c]);
      }
    }
  }
  return out;
}

Sample train_transform(const cv::Mat& image_bgr, const cv::Mat& label, const TrainTransformOptions& o, SampleRng& rng) {
  SEGRUN_CHECK(image_bgr.type() == CV_8UC3 && label.type() == CV_8UC1 && image_bgr.size() == label.size(), DataError,
               "train_transform: image and label must be BGR uint8 and uint8 of the same size");
  // RandomResize.
  const auto scale = random_scale(o, rng);
  const cv::Size size = rescale_size(image_bgr.size(), scale[0], scale[1]);
  cv::Mat image, seg;
  cv::resize(image_bgr, image, size, 0, 0, cv::INTER_LINEAR);
  cv::resize(label, seg, size, 0, 0, cv::INTER_NEAREST);
  // RandomCrop.
  const cv::Rect box = random_crop_box(seg, o, rng);
  image = image(box).clone();
  seg = seg(box).clone();
  // RandomFlip.
  if (rng.uniform() < o.flip_prob) {
    cv::flip(image, image, 1);
    cv::flip(seg, seg, 1);
  }
  if (o.photometric) photometric_distortion(image, rng);
  Sample s;
  cv::Mat normalized = normalize_image(image, o.mean, o.std);
  // Pad bottom/right to the crop size.
  const int pad_h = std::max(o.crop[0] - normalized.rows, 0), pad_w = std::max(o.crop[1] - normalized.cols, 0);
  if (pad_h > 0 || pad_w > 0) {
    cv::copyMakeBorder(normalized, s.image, 0, pad_h, 0, pad_w, cv::BORDER_CONSTANT, cv::Scalar::all(0));
    cv::copyMakeBorder(seg, s.label, 0, pad_h, 0, pad_w, cv::BORDER_CONSTANT, cv::Scalar::all(o.ignore_index));
  } else {
    s.image = normalized;
    s.label = seg;
  }
  return s;
}

cv::Mat test_transform(const cv::Mat& image_bgr, const TestTransformOptions& o) {
  const cv::Size size = rescale_size(image_bgr.size(), o.scale[0], o.scale[1]);
  cv::Mat image;
  cv::resize(image_bgr, image, size, 0, 0, cv::INTER_LINEAR);
  return normalize_image(image, o.mean, o.std);
}

}  // namespace segrun::data
